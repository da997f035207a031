"""One exception type for mistakes a user can fix; the CLI turns it into a message and exit code 2."""

from __future__ import annotations

from pathlib import Path


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
            where.append(self.path)
        if self.field:
            where.append(f"field '{self.field}'")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        return f"{prefix}{self.message}"


def first_line(e: BaseException) -> str:
    """The first sentence of an exception's message, for a one-paragraph error (torch's run to a paragraph)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split(". ")[0].rstrip(".")
