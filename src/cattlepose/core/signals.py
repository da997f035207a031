"""SIGINT and SIGTERM as an exception, so an interrupted command unwinds like a failed one: every `finally` runs
(temporary files removed, locks released, loader workers stopped) and the CLI says how to resume.

Python's own SIGTERM action ends the process at once, skipping all of that: a checkpoint being saved left its
hidden temporary file behind. A second signal while the first is being unwound takes the system's default
action at once, so a stuck clean-up never holds the process. A few statements that must not be cut (a
temporary file created and recorded for removal, a model and its sidecar renamed) run in `held()`: a signal
then waits for the end of the block. (Blocking the signal with pthread_sigmask would not do: the kernel hands a
process's signal to any thread that does not block it, torch's and rich's included, and Python runs the
handler in the main thread at once.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM. A KeyboardInterrupt, so code that lets Ctrl-C through (a loader worker's loop, say)
    treats SIGTERM the same way."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(self.name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process that a signal ended (130, 143)."""
        return 128 + self.signum


def exit_code(e: KeyboardInterrupt) -> int:
    return e.exit_code if isinstance(e, Interrupted) else 128 + signal.SIGINT


def signal_name(e: KeyboardInterrupt) -> str:
    return e.name if isinstance(e, Interrupted) else "SIGINT"


_held = 0  # depth of `held()` blocks in the main thread
_pending: int | None = None  # a signal that came while held


def _raise(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _held:
        _pending = signum
        return
    for s in SIGNALS:  # the next one is not caught: the default action ends the process
        signal.signal(s, signal.SIG_DFL)
    raise Interrupted(signum)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """A SIGINT or SIGTERM that comes during the block is raised when it ends (in the main thread; elsewhere,
    where no handler runs, nothing changes)."""
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
    if not _held and _pending is not None:
        signum, _pending = _pending, None
        _raise(signum, None)


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """For the block, SIGINT and SIGTERM raise `Interrupted` in the main thread; the previous handlers come
    back after it. Outside the main thread (where Python allows no handler) nothing changes."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        _pending = None
        for s, handler in old.items():
            signal.signal(s, handler)
