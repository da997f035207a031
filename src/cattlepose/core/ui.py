"""The one way code below the CLI talks to a person: a log object with messages, tables and progress bars.

The engine takes a `Log`; the CLI builds a rich one, tests and library users get `Log(quiet=True)`.
Every console is built by `make_console`: on a terminal rich's usual layout; in a log file or a pipe nothing is
wrapped, so each message, problem and table row stays on one line that `grep` finds whole.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cattlepose.core.errors import escape_controls

# Width of a console writing to a file or a pipe: wide enough that no table ever needs to wrap a cell (paths
# included), so rows are laid out at their natural width. Nothing pads to it (tables do not expand).
PLAIN_WIDTH = 100_000


def is_terminal(stderr: bool = False) -> bool:
    """True when stdout (or stderr) is a terminal; False for files, pipes and test runners."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr) as it is now: rich's terminal layout on a terminal; otherwise one that
    never wraps text or table cells (colours follow rich's usual rules either way)."""
    console = Console(stderr=stderr, highlight=False)
    if is_terminal(stderr) or console.is_jupyter:  # a notebook lays out its own output
        return console
    return Console(stderr=stderr, highlight=False, width=PLAIN_WIDTH, soft_wrap=True)


def plain(console: Console) -> bool:
    """Whether `console` writes to a file or a pipe: then problems are printed one per line, not as a table."""
    try:
        return not console.file.isatty()
    except (AttributeError, ValueError):
        return True


def print_error(message: str, console: Console | None = None) -> None:
    """`error: message` as one paragraph on stderr (never wrapped by us; a terminal wraps it on screen)."""
    text = escape(escape_controls(message, keep_newlines=True))
    (console or make_console(stderr=True)).print(f"[bold red]error:[/] {text}", soft_wrap=True)


class Task:
    """A handle on one progress bar; `update(advance, **fields)` moves it and sets its status text."""

    def __init__(self, progress: Progress | None, task_id: Any):
        self._progress = progress
        self._id = task_id

    def update(self, advance: float = 0, status: str | None = None) -> None:
        if self._progress is None:
            return
        kwargs: dict[str, Any] = {"advance": advance}
        if status is not None:
            kwargs["status"] = status
        self._progress.update(self._id, **kwargs)


class Log:
    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or make_console()
        self._progress: Progress | None = None

    def info(self, message: str) -> None:
        """A line of text; taken literally (square brackets in paths are not rich markup)."""
        if not self.quiet:
            self.console.print(escape(escape_controls(message, keep_newlines=True)))

    def warn(self, message: str) -> None:
        # warnings are shown even in quiet mode: they say something is off
        text = escape(escape_controls(message, keep_newlines=True))
        make_console(stderr=True).print(f"[yellow]warning:[/] {text}")

    def show(self, renderable: Any) -> None:
        if not self.quiet:
            self.console.print(renderable)

    @contextlib.contextmanager
    def task(self, description: str, total: float | None) -> Iterator[Task]:
        """A progress bar with rate and ETA; nested tasks share one live display."""
        if self.quiet:
            yield Task(None, None)
            return
        owner = self._progress is None
        if owner:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        progress = self._progress
        task_id = progress.add_task(description, total=total, status="")
        try:
            yield Task(progress, task_id)
        finally:
            if owner:
                progress.stop()
                self._progress = None
            else:
                progress.remove_task(task_id)
