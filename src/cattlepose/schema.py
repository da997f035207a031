"""Keypoint schemas: names, left/right partners, skeleton, OKS sigmas, body halves, PCK normaliser.

Schemas are YAML files that name keypoints rather than number them, so a typo is caught by name.
Built-in ones live in `configs/schemas/`; `from_data` builds one from a COCO category.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cattlepose.errors import UserError
from cattlepose.resources import configs_dir

DEFAULT_SIGMA = 0.079  # COCO's shoulder sigma: a middling value for joints nobody has measured


@dataclass(frozen=True)
class KeypointSchema:
    name: str
    keypoints: tuple[str, ...]
    flip_index: tuple[int, ...]  # flip_index[k] = the keypoint k becomes after a horizontal mirror
    skeleton: tuple[tuple[int, int], ...]  # 0-indexed pairs
    sigmas: tuple[float, ...]
    upper: tuple[int, ...]
    lower: tuple[int, ...]
    pck_pair: tuple[int, int] | None  # normaliser of torso PCK; None means only box PCK is defined

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise UserError(f"unknown keypoint '{name}'{_suggest(name, self.keypoints)}") from None

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(k, j) for k, j in enumerate(self.flip_index) if k < j]

    def to_dict(self) -> dict[str, Any]:
        n = self.keypoints
        return {
            "name": self.name,
            "keypoints": list(n),
            "pairs": [[n[a], n[b]] for a, b in self.pairs],
            "skeleton": [[n[a], n[b]] for a, b in self.skeleton],
            "sigmas": list(self.sigmas),
            "upper": [n[i] for i in self.upper],
            "lower": [n[i] for i in self.lower],
            "pck_normalizer": None if self.pck_pair is None else [n[i] for i in self.pck_pair],
        }


def _suggest(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def builtin_schemas() -> list[str]:
    return sorted(p.stem for p in (configs_dir() / "schemas").glob("*.yaml"))


def load_schema(spec: str | Path) -> KeypointSchema:
    """A built-in schema by name (`adk17`) or a schema YAML file by path."""
    spec_str = str(spec)
    builtin = configs_dir() / "schemas" / f"{spec_str}.yaml"
    if builtin.is_file():
        path = builtin
    elif Path(spec_str).is_file():
        path = Path(spec_str)
    else:
        raise UserError(
            f"no schema named '{spec_str}': use one of {', '.join(builtin_schemas())}, "
            "'from_data' for a COCO file, or the path of a schema YAML file",
            field="data.schema",
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {e}", path=path) from None
    return schema_from_dict(raw, source=path)


def schema_from_dict(raw: Any, source: str | Path = "<schema>") -> KeypointSchema:
    """Validate a schema mapping (names, not numbers) and build the schema; each failure names the field."""
    if not isinstance(raw, dict):
        raise UserError("a schema must be a mapping", path=source)
    known = {"name", "keypoints", "pairs", "skeleton", "sigmas", "upper", "lower", "pck_normalizer"}
    for key in raw:
        if key not in known:
            raise UserError(f"unknown key '{key}'{_suggest(str(key), sorted(known))}", path=source, field=key)
    names = raw.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError("must be a non-empty list of keypoint names", path=source, field="keypoints")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"duplicate keypoint names {dup}", path=source, field="keypoints")
    k = len(names)

    def idx(name: Any, field: str) -> int:
        if isinstance(name, int) and not isinstance(name, bool):
            if not 0 <= name < k:
                raise UserError(f"index {name} out of range 0..{k - 1}", path=source, field=field)
            return name
        if name not in names:
            raise UserError(f"unknown keypoint '{name}'{_suggest(str(name), names)}", path=source, field=field)
        return names.index(name)

    flip = list(range(k))
    for i, pair in enumerate(raw.get("pairs") or []):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise UserError("each pair must be [left, right]", path=source, field=f"pairs[{i}]")
        a, b = idx(pair[0], f"pairs[{i}]"), idx(pair[1], f"pairs[{i}]")
        if a == b or flip[a] != a or flip[b] != b:
            raise UserError(
                f"'{names[a]}' and '{names[b]}' cannot be partners: each keypoint has at most one "
                "partner and is not its own",
                path=source,
                field=f"pairs[{i}]",
            )
        flip[a], flip[b] = b, a
    if any(flip[flip[i]] != i for i in range(k)):  # pragma: no cover - guaranteed by the loop above
        raise UserError("left/right swaps are not symmetric", path=source, field="pairs")

    skeleton = []
    for i, edge in enumerate(raw.get("skeleton") or []):
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise UserError("each edge must be [a, b]", path=source, field=f"skeleton[{i}]")
        skeleton.append((idx(edge[0], f"skeleton[{i}]"), idx(edge[1], f"skeleton[{i}]")))

    sigmas = raw.get("sigmas")
    if sigmas is None:
        sigmas = [DEFAULT_SIGMA] * k
    if not isinstance(sigmas, list) or len(sigmas) != k:
        got = len(sigmas) if isinstance(sigmas, list) else type(sigmas).__name__
        raise UserError(f"needs {k} sigmas, one per keypoint; got {got}", path=source, field="sigmas")
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in sigmas):
        raise UserError("every sigma must be a positive number", path=source, field="sigmas")

    upper = tuple(idx(n, "upper") for n in raw.get("upper") or [])
    lower = tuple(idx(n, "lower") for n in raw.get("lower") or [])
    norm = raw.get("pck_normalizer")
    if norm is None:
        pck_pair = None
    elif isinstance(norm, (list, tuple)) and len(norm) == 2:
        pck_pair = (idx(norm[0], "pck_normalizer"), idx(norm[1], "pck_normalizer"))
        if pck_pair[0] == pck_pair[1]:
            raise UserError("needs two different keypoints", path=source, field="pck_normalizer")
    else:
        raise UserError("must be a pair of keypoint names", path=source, field="pck_normalizer")

    return KeypointSchema(
        name=str(raw.get("name") or Path(str(source)).stem),
        keypoints=tuple(names),
        flip_index=tuple(flip),
        skeleton=tuple(skeleton),
        sigmas=tuple(float(s) for s in sigmas),
        upper=upper,
        lower=lower,
        pck_pair=pck_pair,
    )


# Substitutions that turn a keypoint name into its mirror partner, tried on lower-cased names.
_SIDE_PATTERNS = [
    (re.compile(r"(^|[_\-\s])left(?=$|[_\-\s])"), r"\1right"),
    (re.compile(r"(^|[_\-\s])right(?=$|[_\-\s])"), r"\1left"),
    (re.compile(r"^left"), "right"),
    (re.compile(r"^right"), "left"),
    (re.compile(r"(^|[_\-\s])l(?=$|[_\-\s])"), r"\1r"),
    (re.compile(r"(^|[_\-\s])r(?=$|[_\-\s])"), r"\1l"),
    (re.compile(r"^near"), "off"),  # horse anatomy: near side = left, off side = right
    (re.compile(r"^off"), "near"),
]


def infer_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Left/right partners from names: left_/right_, L_/R_, _left/_right, leftX/rightX, NearX/OffX."""
    lower = [n.lower() for n in names]
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    for i, n in enumerate(lower):
        if i in taken:
            continue
        for pattern, repl in _SIDE_PATTERNS:
            partner = pattern.sub(repl, n, count=1)
            if partner != n and partner in lower:
                j = lower.index(partner)
                if j != i and j not in taken:
                    pairs.append((i, j))
                    taken.update((i, j))
                    break
    return pairs


def schema_from_coco_category(category: dict[str, Any], source: str | Path = "<coco>") -> KeypointSchema:
    """Build a schema from a COCO category's `keypoints` and 1-indexed `skeleton`; sigmas default with a warning."""
    names = category.get("keypoints")
    if not isinstance(names, list) or not names:
        raise UserError(
            "category has no 'keypoints' name list, so it cannot serve as a schema",
            path=source,
            field="categories[].keypoints",
        )
    skeleton = []
    for edge in category.get("skeleton") or []:
        a, b = int(edge[0]) - 1, int(edge[1]) - 1
        if not (0 <= a < len(names) and 0 <= b < len(names)):
            raise UserError(f"skeleton edge {edge} is out of range 1..{len(names)}", path=source, field="skeleton")
        skeleton.append([names[a], names[b]])
    warnings.warn(
        f"{source}: schema built from the data has no OKS sigmas; using {DEFAULT_SIGMA} for every keypoint",
        stacklevel=2,
    )
    raw = {
        "name": str(category.get("name", "from_data")),
        "keypoints": list(names),
        "pairs": [[names[a], names[b]] for a, b in infer_pairs(names)],
        "skeleton": skeleton,
    }
    return schema_from_dict(raw, source=source)
