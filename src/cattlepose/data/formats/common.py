"""Checks shared by every reader: keypoint arrays, boxes, paths that must stay inside the data root, duplicates.

Readers raise `UserError` on the first bad item by default. Given an `on_error` callback they report each bad
item to it and skip that item instead, which is how `data check` lists every problem of a data set at once.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.data.images import IMAGE_SUFFIXES
from cattlepose.data.photos import duplicate_animals
from cattlepose.data.records import Sample

ErrorSink = Callable[[UserError], None]


def report_or_raise(error: UserError, on_error: ErrorSink | None) -> None:
    """Raise `error`, or hand it to `on_error` (collect mode) and return so the caller can skip the item."""
    if on_error is None:
        raise error
    on_error(error)


def resolve_inside(root: Path, name: str, source: str | Path, field: str) -> Path:
    """`root/name`, refusing absolute names and names that climb out of the data root with `..`.

    The check is lexical on purpose: an images folder whose files are symlinks into a shared store is fine,
    while an annotation that names `../../etc/passwd` or `/home/x.jpg` is not.
    """
    if not isinstance(name, str) or not name.strip():
        raise UserError("file name must be a non-empty string", path=source, field=field)
    # Files labelled on Windows may use backslashes; they are separators there, and `..\\x` escapes just the same.
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UserError(
            f"absolute path '{name}' is not allowed; names are relative to {root}", path=source, field=field
        )
    norm = posixpath.normpath(posix)
    if norm == ".." or norm.startswith("../"):
        raise UserError(f"'{name}' escapes the data root {root}", path=source, field=field)
    return Path(root) / norm


def find_by_stem(folder: Path, stem: str) -> Path | None:
    """An image in `folder` named `stem` with any known suffix (common spellings first)."""
    for suffix in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", *sorted(IMAGE_SUFFIXES)):
        cand = folder / f"{stem}{suffix}"
        if cand.is_file():
            return cand
    return None


def check_keypoints(raw: Any, num_keypoints: int | None, source: str | Path, field: str) -> np.ndarray:
    """A flat [x, y, v] * K list as a (K, 3) array, with count, finiteness and visibility checked."""
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise UserError("keypoints must be a flat list [x, y, v, ...]", path=source, field=field)
    _numbers_only(raw, "keypoints", source, field)
    try:
        arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError("keypoints must be numbers", path=source, field=field) from None
    if arr.size % 3:
        raise UserError(f"{arr.size} values is not a multiple of 3 (x, y, v)", path=source, field=field)
    kps = arr.reshape(-1, 3)
    if num_keypoints is not None and kps.shape[0] != num_keypoints:
        raise UserError(f"has {kps.shape[0]} keypoints, the schema has {num_keypoints}", path=source, field=field)
    finite = np.all(np.isfinite(kps), axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise UserError(f"keypoint {bad} has a NaN or infinite value", path=source, field=field)
    vis = kps[:, 2]
    ok = np.isin(vis, (0, 1, 2))
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise UserError(f"keypoint {bad} has visibility {vis[bad]:g}; must be 0, 1 or 2", path=source, field=field)
    return kps


def check_box(raw: Any, source: str | Path, field: str) -> np.ndarray:
    """[x, y, w, h] as a float array: four finite numbers with a positive width and height."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise UserError(f"bbox must be [x, y, w, h], got {raw!r}", path=source, field=field)
    _numbers_only(raw, "bbox", source, field)
    try:
        box = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"bbox must be four numbers, got {raw!r}", path=source, field=field) from None
    if not np.all(np.isfinite(box)):
        raise UserError("bbox has NaN or infinite values", path=source, field=field)
    if box[2] <= 0 or box[3] <= 0:
        kind = "negative-size" if min(box[2], box[3]) < 0 else "zero-area"
        raise UserError(f"{kind} bbox {list(raw)}: width and height must be > 0", path=source, field=field)
    return box


def check_box_overlaps(box: np.ndarray, width: int, height: int, source: str | Path, field: str) -> None:
    """A box with no pixel in its image (wholly left of, right of, above or below it): a box of another image, or
    x, y, w, h given as x0, y0, x1, y1 of a larger image. A box partly outside is kept (cropping pads it)."""
    x, y, w, h = box
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise UserError(f"bbox {[float(v) for v in box]} lies outside the {width}x{height} image", path=source,
                        field=field)  # fmt: skip


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _numbers_only(raw: Any, what: str, source: str | Path, field: str) -> None:
    """JSON numbers, not text that looks like one ("12.5") nor true/false: nothing is coerced silently."""
    if isinstance(raw, np.ndarray):
        return
    for i, v in enumerate(raw):
        if not _is_number(v):
            raise UserError(f"{what} must be numbers; value {i} is {v!r} ({type(v).__name__})", path=source,
                            field=field)  # fmt: skip


def check_image_size(entry: dict[str, Any], source: str | Path, field: str) -> None:
    """An image entry's width and height, when given, are positive numbers (not "abc", not "640")."""
    for key in ("width", "height"):
        v = entry.get(key)
        if v is not None and not (_is_number(v) and np.isfinite(v) and v > 0):
            raise UserError(f"{key} must be a positive number of pixels, got {v!r}", path=source,
                            field=f"{field}.{key}")  # fmt: skip


def box_fits(box: np.ndarray, width: int, height: int, tolerance: float = 1.0) -> bool:
    """Whether x, y, w, h lies inside the image, give or take `tolerance` pixels of annotation rounding."""
    x, y, w, h = box
    return bool(x >= -tolerance and y >= -tolerance and x + w <= width + tolerance and y + h <= height + tolerance)


def subsample(samples: list[Sample], max_samples: int | None) -> list[Sample]:
    """At most `max_samples`, spread evenly over the sorted list, so a quick run still sees every farm/source."""
    if max_samples is None or len(samples) <= max_samples:
        return samples
    idx = np.unique(np.linspace(0, len(samples) - 1, max_samples).round().astype(int))
    return [samples[i] for i in idx]


def validate_samples(samples: Sequence[Sample], source: str | Path, num_keypoints: int | None = None) -> None:
    """Data-set level checks: not empty, unique sample keys, one keypoint count."""
    if not samples:
        raise UserError("the data set is empty: no annotated animal was found", path=source)
    counts = Counter(s.key for s in samples)
    dups = [k for k, n in counts.items() if n > 1]
    if dups:
        places = [str(s.origin) for s in samples if s.key == sorted(dups)[0] and s.origin is not None]
        at = f" ({sorted(dups)[0]}: {' and '.join(places[:2])})" if places else ""
        raise UserError(f"duplicate image/sample ids: {', '.join(sorted(dups)[:5])}{at}", path=source,
                        field="image id")  # fmt: skip
    if num_keypoints is not None:
        for s in samples:
            if s.num_keypoints != num_keypoints:
                raise UserError(
                    f"{s.key}: {s.num_keypoints} keypoints, the schema has {num_keypoints}",
                    path=source,
                    field="keypoints",
                )


def drop_duplicate_animals(samples: list[Sample], on_error: ErrorSink | None = None) -> list[Sample]:
    """An animal annotated twice on one photograph (the same keypoints or the same box) is an error naming both
    places: it would train and validate on itself. With `on_error` each repeat is reported there and dropped."""
    found = duplicate_animals(samples)
    for first, again, what in found:
        where = again.origin
        error = UserError(
            f"the same animal is annotated twice on {again.image} (the same {what}): here and at "
            f"{first.origin or first.key}; remove one of them",
            path=where.file if where is not None else again.key,
            field=where.entry if where is not None else None,
        )
        report_or_raise(error, on_error)
    repeats = {id(again) for _, again, _ in found}
    return [s for s in samples if id(s) not in repeats]


def keypoints_inside(box: np.ndarray, keypoints: np.ndarray, margin: float = 0.1) -> bool:
    """Whether every labelled keypoint lies in the box grown by `margin` of its size on each side.

    Annotators draw tight boxes and feet or tails poke out a little; a box that misses the animal's keypoints
    by more than that is not this animal's box.
    """
    labelled = keypoints[keypoints[:, 2] > 0, :2]
    if labelled.size == 0:
        return True
    x, y, w, h = box
    mx, my = margin * w, margin * h
    inside = (
        (labelled[:, 0] >= x - mx)
        & (labelled[:, 0] <= x + w + mx)
        & (labelled[:, 1] >= y - my)
        & (labelled[:, 1] <= y + h + my)
    )
    return bool(inside.all())


def load_json(path: Path) -> Any:
    """Parse a JSON file; an unreadable or malformed file is a UserError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"not valid JSON ({e})", path=path) from None
    except OSError as e:
        raise UserError(f"cannot read file ({e.strerror})", path=path) from None


PROBE_IMAGES = 32  # image names tried against each candidate folder: one missing file does not decide it


def image_root(
    annotation_file: Path, images: str | Path | None, names: Sequence[str], candidates: Sequence[Path], default: Path
) -> Path:
    """The folder image names are relative to: `images` when given (it must exist), else the candidate that
    holds the most of the first `PROBE_IMAGES` names (the first such candidate on a tie), else `default`. One
    missing image then is reported alone, instead of moving every other image to a folder that lacks them."""
    if images is not None:
        root = Path(images)
        if not root.is_dir():
            raise UserError("image folder not found", path=root, field="images")
        return root
    probe = [n.strip().replace("\\", "/") for n in names[:PROBE_IMAGES] if isinstance(n, str) and n.strip()]
    best, found = default, 0
    for cand in candidates:
        n = sum((cand / name).is_file() for name in probe)
        if n > found:
            best, found = cand, n
    return best


def far_outside(sample: Sample, margin: float) -> np.ndarray:
    """Which labelled keypoints lie outside the image grown by `margin` of its width and height on each side:
    not an animal leaving the frame, but a typo or another image's coordinates (x=5000 in a 640-px image)."""
    if not sample.width or not sample.height:
        return np.zeros(sample.num_keypoints, dtype=bool)
    x, y, v = sample.keypoints.T
    mx, my = margin * sample.width, margin * sample.height
    out = (x < -mx) | (x > sample.width + mx) | (y < -my) | (y > sample.height + my)
    return out & (v > 0)


def outside_policy(samples: list[Sample], policy: str, margin: float, names: Sequence[str] = ()) -> int:
    """Apply `data.outside` to keypoints far outside their image: `error` (a UserError naming the image and the
    keypoint), `drop` (they become unlabelled) or `clip` (moved to the image border). Returns how many there were."""
    n = 0
    for s in samples:
        out = far_outside(s, margin)
        if not out.any():
            continue
        n += int(out.sum())
        i = int(np.flatnonzero(out)[0])
        if policy == "error":
            name = f" ({names[i]})" if i < len(names) else ""
            x, y = s.keypoints[i, :2]
            raise UserError(
                f"sample {s.key}: keypoint {i}{name} at ({x:g}, {y:g}) lies far outside the {s.width}x{s.height} "
                f"image (more than data.outside_margin={margin:g} of its size); fix the annotation, or set "
                "data.outside to drop (unlabel such keypoints) or clip (move them to the border)",
                path=s.image,
                field=f"keypoints[{i}]",
            )
        kps = s.keypoints.copy()
        if policy == "drop":
            kps[out] = 0.0
        else:
            kps[out, 0] = np.clip(kps[out, 0], 0, s.width - 1)
            kps[out, 1] = np.clip(kps[out, 1], 0, s.height - 1)
        s.keypoints = kps
    return n
