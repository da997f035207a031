"""The one way code below the CLI talks to a person: a log object with messages, tables and progress bars.

The engine takes a `Log`; the CLI builds a rich one, tests and library users get `Log(quiet=True)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


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
        self.console = console or Console(stderr=False, highlight=False, soft_wrap=False)
        self._progress: Progress | None = None

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        # warnings are shown even in quiet mode: they say something is off
        Console(stderr=True, highlight=False).print(f"[yellow]warning:[/] {message}")

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
