"""A folder of crops: each image is one animal and the whole image is its box (the ADK2021 test set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.data.images import image_size, list_images
from cattlepose.data.records import Sample


def read(folder: str | Path, num_keypoints: int) -> list[Sample]:
    """One Sample per image, keypoints unknown (zeros, v = 0), sizes from the headers."""
    paths = list_images(folder)
    if not paths:
        raise UserError("no images (.jpg, .png, ...) in the folder", path=folder)
    samples = []
    for p in paths:
        w, h = image_size(p)
        samples.append(Sample(image=p, keypoints=np.zeros((num_keypoints, 3)), width=w, height=h))
    return samples


def image_sizes(folder: str | Path) -> dict[str, tuple[int, int]]:
    """File name -> (width, height) of every image in a folder, from the headers."""
    return {p.name: image_size(p) for p in list_images(folder)}
