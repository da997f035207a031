"""Reading YAML files the tool trusts: a key given twice is an error naming its line, not a silent last-wins;
an unreadable, binary or malformed file is a UserError naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cattlepose.core.errors import UserError
from cattlepose.core.files import unreadable


class StrictLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a mapping that holds the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' appears twice (lines {seen[key]} and {line}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)


def load_yaml(path: str | Path, what: str = "file") -> Any:
    """A YAML file's content; every way it cannot be read is a UserError naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(unreadable(path, what), path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError("not a text file (it is not UTF-8: binary, or another encoding); give a YAML file",
                        path=path) from None  # fmt: skip
    except OSError as e:
        raise UserError(f"cannot read it ({e.strerror})", path=path) from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise UserError(f"not valid YAML{where}: {problem}", path=path) from None
