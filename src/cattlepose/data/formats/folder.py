"""A folder of images: each file one image (`images`), for a box source to find the animals in."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.data.images import image_size, list_images
from cattlepose.data.records import ImageSource, Sample


def images(folder: str | Path) -> list[ImageSource]:
    """Every image of the folder, sorted by name, sizes from the headers."""
    paths = list_images(folder)
    if not paths:
        raise UserError("no images (.jpg, .png, ...) in the folder", path=folder)
    return [ImageSource.of(p, *image_size(p)) for p in paths]


def read(folder: str | Path, num_keypoints: int) -> list[Sample]:
    """The folder as an unlabelled set of crops, one animal per image, keypoints unknown (zeros, v = 0): what
    benchmarks time prediction on."""
    return [Sample(image=s.path, keypoints=np.zeros((num_keypoints, 3)), width=s.width, height=s.height)
            for s in images(folder)]  # fmt: skip


def image_sizes(folder: str | Path) -> dict[str, tuple[int, int]]:
    """File name -> (width, height) of every image in a folder, from the headers."""
    return {p.name: image_size(p) for p in list_images(folder)}
