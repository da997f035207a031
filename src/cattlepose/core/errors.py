"""One exception type for mistakes a user can fix; the CLI turns it into a message and exit code 2."""

from __future__ import annotations

import re
from pathlib import Path

# Control characters (C0, DEL, C1) printed raw would cut a message (NUL), redraw the line (CR) or drive the
# terminal (ESC sequences): a file name or a value from a data file may hold any of them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """`text` with each control character written as an escape (`\\x00`, `\\n`, `\\x1b`); a message's own line
    breaks stay when `keep_newlines` (a list of problems is laid out over lines on purpose)."""

    def sub(m: re.Match[str]) -> str:
        c = m.group()
        if c == "\n" and keep_newlines:
            return c
        return _NAMED.get(c, f"\\x{ord(c):02x}")

    return _CONTROL.sub(sub, text)


class UserError(Exception):
    """Bad input, bad config or a missing file. `where` names the file and, when known, the field."""

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(escape_controls(self.path))
        if self.field:
            where.append(f"field '{escape_controls(self.field)}'")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        return f"{prefix}{escape_controls(self.message, keep_newlines=True)}"


def first_line(e: BaseException) -> str:
    """The first sentence of an exception's message, for a one-paragraph error (torch's run to a paragraph)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split(". ")[0].rstrip(".")
