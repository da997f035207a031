"""Safe file writing: every file goes to a temporary name first, then is renamed; and a lock between processes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from cattlepose.core.errors import UserError, first_line
from cattlepose.core.signals import held

_MIN_FREE = 1 << 20  # bytes a submission needs at least
# torch.save reports a failed write (a full disk, a file-size limit) as a RuntimeError of its zip writer, the
# operating system's reason lost: these words in its message mean the file could not be written
_TORCH_WRITER = ("PytorchStreamWriter", "inline_container", "file write failed")


def write_failure(e: BaseException, path: str | Path | None = None) -> str | None:
    """Why writing `path` failed, in words, when `e` (or an exception it came from) is the system refusing the
    write: any OSError (a full disk, a quota, a read-only or vanished folder, a file-size limit), or torch's zip
    writer failing. None for anything else (a bug, which keeps its traceback). A file other than `path` and its
    temporary names (a scratch file on another disk) is named."""
    seen: set[int] = set()
    chain: BaseException | None = e
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError):
            why = chain.strerror or str(chain) or type(chain).__name__
            other = chain.filename
            if other is not None and path is not None:
                mine = Path(path)
                name = Path(os.fsdecode(other))
                if name == mine or (name.parent == mine.parent and name.name.startswith(f".{mine.name}.")):
                    other = None
            return why if other is None else f"{why}: {os.fsdecode(other)}"
        chain = chain.__cause__ or chain.__context__
    if isinstance(e, RuntimeError) and any(w in str(e) for w in _TORCH_WRITER):
        return f"the writer stopped: {first_line(e)}"
    return None


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Blame a failure to write, inside the block, on `path` as a UserError (exit 2) that says the previous file
    is unchanged; other errors pass through."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        why = write_failure(e, path)
        if why is None:
            raise
        raise UserError(f"cannot write the file ({why}{_free_space(Path(path))}); nothing was written to it (an "
                        "earlier version stays whole) and no temporary file remains", path=path) from None  # fmt: skip


def _free_space(path: Path) -> str:
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f"; {free / 2**20:.1f} MiB free on its disk" if free < 64 * 2**20 else ""


@contextlib.contextmanager
def staged(*paths: str | Path) -> Iterator[list[Path]]:
    """Temporary names beside each of `paths` (hidden: `.NAME.*.tmp`); when the block finishes cleanly, each
    replaces its path, all renamed together at the end; on any error or interrupt every temporary file is
    removed and the old files stay whole. The block blames its write failures on a file with `writing`."""
    finals = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in finals:
            with writing(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                with held():
                    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                    tmps.append(Path(tmp))
                    os.close(fd)
                # mkstemp's 0600 would outlive the rename: modes as open() gives them
                tmps[-1].chmod(0o666 & ~_umask())
        yield list(tmps)
        with held():  # a pair (a model and its sidecar) is renamed whole or not at all
            for tmp, path in zip(tmps, finals, strict=True):
                with writing(path):
                    os.replace(tmp, path)
    finally:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error (or an interrupt) it is
    removed. A failed write (a full disk, torch's writer failing) is a UserError naming `path`."""
    with staged(path) as (tmp,), writing(path):
        yield tmp


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex (about 1 GB/s)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing that becomes `path` only when the block finishes cleanly."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the block: processes sharing a run take turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_lock(path: str | Path) -> Iterator[bool]:
    """Try to hold an exclusive lock on `path` for the block without waiting; yields whether it was taken. The
    operating system releases it when the process ends, however it ends: a killed run leaves nothing stuck."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def unreadable(path: str | Path, what: str = "file") -> str:
    """Why `path` cannot be opened as a file, in words: a symlink loop, a dangling link, a folder, or absent."""
    path = Path(path)
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{what} is a symlink loop (a link that points back to itself)"
        if path.is_symlink():
            return f"{what} is a broken symlink (its target {os.readlink(path)} does not exist)"
        if e.errno == errno.EACCES:
            return f"{what} cannot be read (permission denied)"
        return f"{what} not found"
    if path.is_dir():
        return f"{what} is a folder, not a file"
    return f"{what} is not a regular file"


Input = str | Path | None | tuple[str, str | Path | None]  # a path, or (what it is, path)


def check_output(path: str | Path, protect: Sequence[Input] = (), keep_out: Sequence[Input] = ()) -> None:
    """Before the work: `path` can be written (not a folder, not under a file, a writable folder with room),
    overwrites none of the inputs in `protect` (`refuse_inputs`) and lies in none of the folders in `keep_out`."""
    path = Path(path)
    if path.is_dir():
        raise UserError("is a folder; give a file name, e.g. -o submissions/submission.csv", path=path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent and not folder.is_symlink():
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot be written: {folder} is not a folder (a file, or a broken link)", path=path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot be written: the folder {folder} is read-only", path=path)
    if shutil.disk_usage(folder).free < _MIN_FREE:
        raise UserError(f"cannot be written: no space left on the disk of {folder}", path=path)
    refuse_inputs(path, protect, keep_out)


def refuse_inputs(path: str | Path, protect: Sequence[Input] = (), keep_out: Sequence[Input] = ()) -> None:
    """A UserError naming `path` and the input, when writing `path` would replace an input file of `protect`
    (a file, the same file by another name or link, or any file under a folder of them), or would put a file
    into a folder of `keep_out` (a data set's folder, whose files a reader takes as data), new file or not.
    An input that cannot be resolved (a symlink loop) is left to its reader to name."""
    path = Path(path)
    target = _resolved(path)
    if target is None:
        return
    for label, p in map(_labelled, keep_out):
        q = None if p is None or p.is_file() else _resolved(p)
        if q is not None and target.is_relative_to(q):
            raise UserError(f"lies in an input folder, {label} {p}, where it would become part of the data; "
                            "choose another output file", path=path)  # fmt: skip
    if not path.exists():
        return
    for label, p in map(_labelled, protect):
        q = None if p is None or not p.exists() else _resolved(p)
        if q is not None and (
            (q.is_dir() and target.is_relative_to(q)) or (q.is_file() and os.path.samefile(target, q))
        ):
            raise UserError(f"would overwrite an input, {label} {p}; choose another output file", path=path)


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None


def _labelled(item: Input) -> tuple[str, Path | None]:
    if isinstance(item, tuple):
        label, p = item
        return label, None if p is None else Path(p)
    return "the input", None if item is None else Path(item)
