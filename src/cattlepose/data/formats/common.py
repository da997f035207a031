"""Checks shared by every reader: keypoint arrays, paths that must stay inside the data root, duplicates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cattlepose.data.images import IMAGE_SUFFIXES
from cattlepose.data.records import Sample
from cattlepose.errors import UserError


def resolve_inside(root: Path, name: str, source: str | Path, field: str) -> Path:
    """`root/name`, refusing absolute names and names that climb out of the data root with `..`."""
    p = Path(name)
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UserError(
            f"absolute path '{name}' is not allowed; names are relative to {root}", path=source, field=field
        )
    full = (root / p).resolve()
    if not full.is_relative_to(root.resolve()):
        raise UserError(f"'{name}' escapes the data root {root}", path=source, field=field)
    return root / p


def find_by_stem(folder: Path, stem: str) -> Path | None:
    for suffix in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", *sorted(IMAGE_SUFFIXES)):
        cand = folder / f"{stem}{suffix}"
        if cand.is_file():
            return cand
    return None


def check_keypoints(raw: Any, num_keypoints: int | None, source: str | Path, field: str) -> np.ndarray:
    """A flat [x, y, v] * K list as a (K, 3) array, with count, finiteness and visibility checked."""
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise UserError("keypoints must be a flat list [x, y, v, ...]", path=source, field=field)
    try:
        arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError("keypoints must be numbers", path=source, field=field) from None
    if arr.size % 3:
        raise UserError(f"{arr.size} values is not a multiple of 3 (x, y, v)", path=source, field=field)
    kps = arr.reshape(-1, 3)
    if num_keypoints is not None and kps.shape[0] != num_keypoints:
        raise UserError(f"has {kps.shape[0]} keypoints, the schema has {num_keypoints}", path=source, field=field)
    if not np.all(np.isfinite(kps)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(kps), axis=1))[0])
        raise UserError(f"keypoint {bad} has a NaN or infinite value", path=source, field=field)
    vis = kps[:, 2]
    if not np.all(np.isin(vis, (0, 1, 2))):
        bad = int(np.flatnonzero(~np.isin(vis, (0, 1, 2)))[0])
        raise UserError(f"keypoint {bad} has visibility {vis[bad]:g}; must be 0, 1 or 2", path=source, field=field)
    return kps


def validate_samples(samples: Sequence[Sample], source: str | Path, num_keypoints: int | None = None) -> None:
    if not samples:
        raise UserError("the data set is empty", path=source)
    counts = Counter(s.key for s in samples)
    dups = [k for k, n in counts.items() if n > 1]
    if dups:
        raise UserError(f"duplicate image/sample ids: {', '.join(sorted(dups)[:5])}", path=source, field="image id")
    if num_keypoints is not None:
        for s in samples:
            if s.num_keypoints != num_keypoints:
                raise UserError(f"{s.key}: {s.num_keypoints} keypoints, the schema has {num_keypoints}", path=source)
