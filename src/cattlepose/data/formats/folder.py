"""A folder of crops: each image is one animal and the whole image is its box (the ADK2021 test set)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.data.images import IMAGE_SUFFIXES, image_size, list_images, scan_folder
from cattlepose.data.records import Sample


def read(folder: str | Path, num_keypoints: int) -> list[Sample]:
    """One Sample per image, keypoints unknown (zeros, v = 0), sizes from the headers."""
    return read_detailed(folder, num_keypoints)[0]


def read_detailed(folder: str | Path, num_keypoints: int) -> tuple[list[Sample], list[str]]:
    """`read`, plus every entry of the folder that is not read, named with the reason (`images.scan_folder`)."""
    paths, skipped = scan_folder(folder)
    if not paths:
        listed = f"; it holds {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}" if skipped else ""
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder{listed}", path=folder)
    stems = Counter(p.stem for p in paths)
    samples = []
    for p in paths:
        w, h = image_size(p)
        # the stem names the image, unless two files share it (cow.jpg, cow.gif): then the whole name does
        image_id = p.stem if stems[p.stem] == 1 else p.name
        samples.append(Sample(image=p, keypoints=np.zeros((num_keypoints, 3)), image_id=image_id, width=w,
                              height=h, meta={"file_name": p.name}))  # fmt: skip
    return samples, skipped


def image_sizes(folder: str | Path) -> dict[str, tuple[int, int]]:
    """File name -> (width, height) of every image in a folder, from the headers."""
    return {p.name: image_size(p) for p in list_images(folder)}
