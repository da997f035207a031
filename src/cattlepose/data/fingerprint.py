"""A fingerprint of a training set, and what changed between two of them.

A run records its data's fingerprint (`runs/rundir.py` keeps it as `data.json`) so that a resumed run or a later
`--collect` notices a data set edited or regenerated under it. The fingerprint holds:

- the annotation files, with their sizes and modification times (to name which files changed);
- each animal as read (image, keypoints, box, size, group, metadata) as a digest, and one hash over them all;
- each image with its size, modification time and a digest of its bytes, and a hash of the image list;
- the animals' categories, name -> the id the data gives it (what a detector's boxes are checked against when
  the run predicts on whole photographs; absent in records written before it, and empty when the data names
  no category).

It stays cheap: nothing is decoded, files are only stat'ed, and an image's bytes are hashed once, at the run's
first start (which decodes every image anyway, at several times the cost: docs/BENCHMARKS.md), and afterwards
only when its size or modification time has changed, so a copied data set with new times is still the same
data. An edit that keeps both an image's size and its time is not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cattlepose.core.errors import UserError
from cattlepose.data.photos import photos, relative_to, resolve_all
from cattlepose.data.records import Sample

VERSION = 1
SHOWN = 5  # names listed per kind of change; the count covers all


@dataclass
class DataFingerprint:
    root: str  # the folder every annotation file and image lies under; names below are relative to it
    files: dict[str, list[int]]  # annotation file -> [size, mtime_ns]
    animals: dict[str, str]  # sample key -> digest of the animal as read
    annotations: str  # one hash over every animal
    images: dict[str, list[Any]]  # image -> [size, mtime_ns, digest of its bytes]
    image_list: str  # one hash over the sorted image names
    accepted: list[dict[str, Any]] = field(default_factory=list)  # changes accepted with --accept-data-change
    categories: dict[str, Any] | None = None  # category name -> its id in the data; None: not recorded (older run)

    def to_dict(self) -> dict[str, Any]:
        doc = {"version": VERSION, "root": self.root, "annotations": self.annotations,
               "image_list": self.image_list, "accepted": self.accepted, "files": self.files,
               "images": self.images, "animals": self.animals}  # fmt: skip
        return doc if self.categories is None else {**doc, "categories": self.categories}

    @classmethod
    def from_dict(cls, doc: Any, source: str | Path) -> DataFingerprint:
        keys = ("root", "files", "animals", "annotations", "images", "image_list")
        if not isinstance(doc, dict) or doc.get("version") != VERSION or any(k not in doc for k in keys):
            raise UserError("not a data fingerprint this version of cattlepose wrote", path=source)
        categories = doc.get("categories")
        if categories is not None and not isinstance(categories, dict):
            raise UserError("'categories' must map category names to ids", path=source)
        return cls(**{k: doc[k] for k in keys}, accepted=list(doc.get("accepted") or []), categories=categories)


def take(samples: Sequence[Sample], previous: DataFingerprint | None = None) -> DataFingerprint:
    """The fingerprint of `samples` as read. An image whose size and time match `previous` keeps its digest
    from there; every other image's bytes are hashed."""
    files = sorted(set(resolve_all(s.origin.file for s in samples if s.origin is not None).values()))
    found = photos(samples)
    image_files = sorted({p.file for p in found})
    root = os.path.commonpath([str(p.parent) for p in [*files, *image_files]]) if samples else ""
    name = {p: relative_to(p, root) for p in [*files, *image_files]}
    old = previous.images if previous is not None else {}  # names are relative: a moved data set keeps them
    images: dict[str, list[Any]] = {}
    for p in image_files:
        size, mtime = _stat(p)
        kept = old.get(name[p])
        same = kept is not None and kept[:2] == [size, mtime]
        images[name[p]] = [size, mtime, kept[2] if same else _digest_file(p)]
    animals = {s.key: _animal_digest(s, name[photo.file], photo.frame) for s, photo in zip(samples, found, strict=True)}
    return DataFingerprint(
        root=root,
        files={name[p]: list(_stat(p)) for p in files},
        animals=animals,
        annotations=_hash(f"{k}\t{v}" for k, v in sorted(animals.items())),
        images=images,
        image_list=_hash(sorted(images)),
        categories=categories_of(samples),
    )


def categories_of(samples: Sequence[Sample]) -> dict[str, Any]:
    """The categories the animals belong to, name -> id (`meta["category_id"]`, None when the data gives
    none), sorted by name; empty when no animal names its category."""
    found: dict[str, Any] = {}
    for s in samples:
        if s.category is not None:
            cid = s.meta.get("category_id")
            found.setdefault(s.category, cid if cid is None or isinstance(cid, (int, str)) else str(cid))
    return dict(sorted(found.items()))


@dataclass
class Change:
    """One aspect of the data that differs: what, and the names it concerns (all of them)."""

    aspect: str
    names: list[str]
    acceptable: bool = True  # False: the run's folds cannot take it, whatever the user accepts

    def __str__(self) -> str:
        more = len(self.names) - SHOWN
        listed = ", ".join(self.names[:SHOWN]) + (f", ... {more} more" if more > 0 else "")
        return f"{self.aspect} ({len(self.names)}): {listed}"


def changes(old: DataFingerprint, new: DataFingerprint) -> list[Change]:
    """What differs from `old` to `new`: animals added or removed, animals read differently (and the annotation
    files changed since), images added or removed, image bytes changed. An annotation file or an image that was
    only touched (same animals, same bytes) is no change."""
    found = []
    added = sorted(set(new.animals) - set(old.animals))
    removed = sorted(set(old.animals) - set(new.animals))
    if added:
        found.append(Change("animals added", added, acceptable=False))
    if removed:
        found.append(Change("animals removed", removed, acceptable=False))
    edited = sorted(k for k in set(old.animals) & set(new.animals) if old.animals[k] != new.animals[k])
    if edited:
        found.append(Change("animals with other keypoints, box, image, size, group or metadata", edited))
    if old.annotations != new.annotations:
        touched = sorted(f for f in set(old.files) | set(new.files) if old.files.get(f) != new.files.get(f))
        if touched:
            found.append(Change("annotation files changed, added or removed", touched))
    if old.image_list != new.image_list:
        if gone := sorted(set(old.images) - set(new.images)):
            found.append(Change("images no longer used", gone))
        if extra := sorted(set(new.images) - set(old.images)):
            found.append(Change("images newly used", extra))
    rewritten = sorted(n for n in set(old.images) & set(new.images) if old.images[n][2] != new.images[n][2])
    if rewritten:
        found.append(Change("images with other bytes", rewritten))
    return found


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as e:
        raise UserError(f"cannot read the file's size and time ({e.strerror})", path=path) from None
    return st.st_size, st.st_mtime_ns


def _digest_file(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()[:16]
    except OSError as e:
        raise UserError(f"cannot read the image ({e.strerror})", path=path) from None


def _animal_digest(s: Sample, image: str, frame: int | None) -> str:
    h = hashlib.sha256()
    meta = json.dumps(s.meta, sort_keys=True, default=str)
    h.update(f"{image}\t{frame}\t{s.width}x{s.height}\t{s.group}\t{meta}\t".encode())
    h.update(s.keypoints.astype("<f8").tobytes())
    h.update(b"none" if s.bbox is None else s.bbox.astype("<f8").tobytes())
    return h.hexdigest()[:16]


def _hash(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode() + b"\n")
    return h.hexdigest()
