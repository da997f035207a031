"""`Sample`: the one in-memory record every reader produces and every consumer reads."""

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

    def crop_box(self) -> np.ndarray:
        """The box to crop: the annotation box, or the whole image when there is none."""
        if self.bbox is not None:
            return self.bbox.copy()
        if self.width is None or self.height is None:
            raise ValueError(f"{self.image}: no box and no image size")
        return np.array([0.0, 0.0, float(self.width), float(self.height)])
