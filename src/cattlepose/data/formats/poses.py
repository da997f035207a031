"""What every prediction file shares: one animal's prediction checked, and the file name an image goes by in
the files that name images by file name (the wide and long CSV)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.data.records import Instance


def check_prediction(key: str, raw: Any, k: int | None) -> np.ndarray:
    """One animal's prediction as a (K, 2|3) float array, its shape and finiteness checked."""
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or (k is not None and arr.shape[0] != k):
        want = f"({k}, 2) or ({k}, 3)" if k is not None else "(K, 2) or (K, 3)"
        raise UserError(f"prediction for '{key}' has shape {arr.shape}; expected {want}")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"prediction for '{key}' holds NaN or infinite values")
    return arr


def file_names(instances: Sequence[Instance], fmt: str, one_per_image: bool) -> list[str]:
    """Each instance's image file name, refusing two images of one name (the file could not tell them apart)
    and, when `one_per_image`, an image with several animals; the message names the image."""
    first: dict[str, Instance] = {}
    count: dict[str, int] = {}
    for inst in instances:
        name = inst.image.name
        other = first.setdefault(name, inst)
        if (other.image, other.frame) != (inst.image, inst.frame):
            raise UserError(
                f"two images share the file name '{name}' ({other.image} and {inst.image}); '{fmt}' names "
                "images by file name: use --format coco, or rename one",
                field="--format",
            )
        count[name] = count.get(name, 0) + 1
    crowded = [name for name, n in count.items() if n > 1]
    if one_per_image and crowded:
        more = f" (and {len(crowded) - 1} more image(s))" if len(crowded) > 1 else ""
        raise UserError(
            f"image '{crowded[0]}' holds {count[crowded[0]]} animals{more}; '{fmt}' holds one animal per image: "
            "use --format long-csv or coco for several",
            path=first[crowded[0]].image,
            field="--format",
        )
    return [inst.image.name for inst in instances]
