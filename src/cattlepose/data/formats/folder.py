"""A folder of images: each file one image (`images`), for a box source to find the animals in."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.data.images import IMAGE_SUFFIXES, image_size, list_images, scan_folder
from cattlepose.data.records import ImageSource, Sample


def images(folder: str | Path) -> list[ImageSource]:
    """Every image of the folder, sorted by name, sizes from the headers."""
    return scan(folder)[0]


def scan(folder: str | Path) -> tuple[list[ImageSource], list[str]]:
    """`images`, plus every entry of the folder that is not read, named with the reason (`images.scan_folder`).
    An image is named by its stem, unless two files share it (cow.jpg, cow.gif): then by its whole name."""
    paths, skipped = scan_folder(folder)
    if not paths:
        listed = f"; it holds {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}" if skipped else ""
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder{listed}", path=folder)
    stems = Counter(p.stem for p in paths)
    return [ImageSource(p, p.stem if stems[p.stem] == 1 else p.name, *image_size(p)) for p in paths], skipped


def read(folder: str | Path, num_keypoints: int) -> list[Sample]:
    """The folder as an unlabelled set of crops, one animal per image, keypoints unknown (zeros, v = 0): what
    benchmarks time prediction on."""
    return [Sample(image=s.path, keypoints=np.zeros((num_keypoints, 3)), image_id=s.image_id, width=s.width,
                   height=s.height) for s in images(folder)]  # fmt: skip


def image_sizes(folder: str | Path) -> dict[str, tuple[int, int]]:
    """File name -> (width, height) of every image in a folder, from the headers."""
    return {p.name: image_size(p) for p in list_images(folder)}
