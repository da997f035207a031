"""`Sample`: the one in-memory record every reader produces and every consumer reads; `Detection`: one animal of
a results file, before it is paired with a `Sample`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Sample:
    """One animal in one image.

    keypoints: (K, 3) float64 array of x, y, v in original image pixels; v 0 = unlabelled, 1 = labelled but
    occluded, 2 = visible. bbox: x, y, w, h in pixels, or None when the whole image is the crop.
    """

    image: Path
    keypoints: np.ndarray
    bbox: np.ndarray | None = None
    image_id: str = ""
    group: str | None = None
    width: int | None = None
    height: int | None = None
    ann_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = Path(self.image)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(-1, 3)
        if self.bbox is not None:
            self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(4)
        if not self.image_id:
            self.image_id = self.image.stem

    @property
    def key(self) -> str:
        """Unique id of the sample: the image id, plus the annotation id when an image holds several animals."""
        return self.image_id if self.ann_id is None else f"{self.image_id}#{self.ann_id}"

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[0])

    def crop_box(self, image_wh: tuple[int, int] | None = None) -> np.ndarray:
        """The region to crop (`animal_region`); `image_wh`: the decoded image's size, when at hand."""
        w, h = image_wh or (self.width, self.height)
        region = animal_region(self.bbox, w, h)
        if region is None:
            raise ValueError(f"{self.image}: no box and no image size")
        return region


def animal_region(bbox: np.ndarray | None, width: float | None, height: float | None) -> np.ndarray | None:
    """Where an animal is: its box (x, y, w, h), or the whole image when it has none (a crop of one animal, as
    ADK2021's images are); None when neither a box nor the image size is known. Cropping, the box normaliser
    of PCK and the OKS area all take the region from here."""
    if bbox is not None:
        return np.asarray(bbox, dtype=np.float64).copy()
    if width and height:
        return np.array([0.0, 0.0, float(width), float(height)])
    return None


@dataclass
class Detection:
    """One animal of a keypoint results file (COCO results): found in an image, scored, not yet paired.

    image: the image as the file names it (its COCO image id, as text), and, once matched, the ground truth's
    `Sample.image_id`; keypoints: (K, 3) x, y, keypoint score in original pixels; score: the detection's
    confidence, which ranks it against the others; index: its position in the file, for messages.
    """

    image: str
    keypoints: np.ndarray
    score: float
    category_id: Any = None
    file_name: str | None = None
    index: int = 0

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(-1, 3)
