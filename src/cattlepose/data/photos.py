"""Which photograph a sample shows, and the checks that follow from it.

The photograph is the image file itself, resolved (a symlink or `./` spelling names the same photo), and for a
video the frame (`Sample.meta["frame"]`, set by a video reader). Not the annotation's image id: one photograph
can appear under two ids in one COCO file, in two files of a multi-file set, or twice in `data.train`, and
whatever the ids say, it is one photograph: its animals share one fold, and one animal annotated twice is an
error rather than a sample that trains and validates on itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from cattlepose.data.records import Sample

FRAME = "frame"  # Sample.meta key: the frame index of a video file


class Photo(NamedTuple):
    file: Path  # resolved
    frame: int | None = None  # a video's frame; None for a still image


def photos(samples: Sequence[Sample]) -> list[Photo]:
    """Each sample's photograph (each distinct image path is resolved once)."""
    resolved: dict[Path, Path] = {}
    folders: dict[Path, Path] = {}
    out = []
    for s in samples:
        if s.image not in resolved:
            resolved[s.image] = _resolve(s.image, folders)
        frame = s.meta.get(FRAME)
        out.append(Photo(resolved[s.image], None if frame is None else int(frame)))
    return out


def resolve_all(paths: Iterable[Path]) -> dict[Path, Path]:
    """path -> path.resolve() for many files, each folder resolved once."""
    folders: dict[Path, Path] = {}
    return {p: _resolve(p, folders) for p in set(paths)}


def _resolve(path: Path, folders: dict[Path, Path]) -> Path:
    """`path.resolve()`, with each folder resolved once: Path.resolve checks every component of every path,
    which for thousands of images costs more than reading their annotations."""
    if path.name in ("", ".", "..") or os.path.islink(path):
        return path.resolve()
    if path.parent not in folders:
        folders[path.parent] = path.parent.resolve()
    return folders[path.parent] / path.name


def relative_to(path: Path, base: str) -> str:
    """`path` (resolved, inside `base`, a resolved folder) relative to `base`, in / form; by slicing the text,
    as os.path.relpath would normalise both paths again for each of thousands of files."""
    text = str(path)
    prefix = base if base.endswith(os.sep) else base + os.sep
    return (
        Path(text[len(prefix) :]).as_posix()
        if text.startswith(prefix)
        else Path(os.path.relpath(text, base)).as_posix()
    )


def photo_labels(samples: Sequence[Sample]) -> list[str]:
    """Each sample's photograph as a label that does not depend on where the data lies: its path relative to
    the folder every photograph lies under (`@frame` appended for a video frame)."""
    found = photos(samples)
    if not found:
        return []
    base = os.path.commonpath([str(p.file.parent) for p in found])
    return [relative_to(p.file, base) + ("" if p.frame is None else f"@{p.frame}") for p in found]


def duplicate_animals(samples: Sequence[Sample]) -> list[tuple[Sample, Sample, str]]:
    """(first, repeat, what they share) for each animal annotated again on the same photograph: the same
    keypoints, or the same box. A different animal of the photo has neither."""
    seen: dict[tuple[Photo, str, bytes], Sample] = {}
    found = []
    for s, photo in zip(samples, photos(samples), strict=True):
        keys = []
        if (s.keypoints[:, 2] > 0).any():
            keys.append(("keypoints", s.keypoints.tobytes()))
        if s.bbox is not None:
            keys.append(("box", s.bbox.tobytes()))
        for what, value in keys:
            first = seen.setdefault((photo, what, value), s)
            if first is not s:
                found.append((first, s, what))
                break
    return found


def several_ids(samples: Sequence[Sample]) -> list[tuple[str, list[str]]]:
    """(photograph label, its image ids) for each photograph that appears under more than one image id."""
    ids: dict[str, list[str]] = {}
    for s, label in zip(samples, photo_labels(samples), strict=True):
        held = ids.setdefault(label, [])
        if s.image_id not in held:
            held.append(s.image_id)
    return [(label, held) for label, held in sorted(ids.items()) if len(held) > 1]
