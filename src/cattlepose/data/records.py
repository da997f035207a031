"""The in-memory records: an animal to predict (`Instance`: where its pixels come from and its box), a labelled
animal (`Sample`: an instance with its ground-truth keypoints, what every reader produces) and a predicted one
(`Pose`: an instance with its predicted keypoints and score, what every writer takes).

An image can hold several animals: instances of one image share its `ImageSource` and differ in box and
`ann_id`. Box sources (`data/boxes.py`) make instances from images; readers make samples from annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Origin:
    """Where a sample was read: its annotation file and, in a file of several animals, the entry
    (`annotations[3]`, `row 7`)."""

    file: Path
    entry: str | None = None

    def __str__(self) -> str:
        return str(self.file) if self.entry is None else f"{self.file}, {self.entry}"


@dataclass(frozen=True)
class ImageSource:
    """One image: its file, the id outputs name it by, and its size when known. `frame` is kept for a video
    source (the image is then that frame of the file: `cattlepose video` sets it), else None."""

    path: Path
    image_id: str
    width: int | None = None
    height: int | None = None
    frame: int | None = None

    @classmethod
    def of(cls, path: str | Path, width: int | None = None, height: int | None = None) -> ImageSource:
        """An image file named by its stem."""
        return cls(Path(path), Path(path).stem, width, height)


@dataclass
class Instance:
    """One animal to predict: an image and the region of it the animal is in.

    bbox: x, y, w, h in pixels, or None when the whole image is the animal. ann_id: the animal's id within its
    image (an annotation id, or a detection's number), None when the image holds just this one. score: the box
    source's confidence in the box (a detector's), None for given boxes and whole images. frame and track are
    kept for video (a frame index, set by `cattlepose video`; a track id over frames, which the tracks' own
    records carry, so nothing sets it yet).
    """

    image: Path
    bbox: np.ndarray | None = None
    image_id: str = ""
    width: int | None = None
    height: int | None = None
    ann_id: str | None = None
    score: float | None = None
    frame: int | None = None
    track: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = Path(self.image)
        if self.bbox is not None:
            self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(4)
        if not self.image_id:
            self.image_id = self.image.stem

    @classmethod
    def in_image(cls, source: ImageSource, bbox: np.ndarray | None = None, **kw: Any) -> Instance:
        """An instance of `source`: the whole image when `bbox` is None."""
        return cls(source.path, bbox, source.image_id, source.width, source.height, frame=source.frame, **kw)

    @property
    def source(self) -> ImageSource:
        """The image this animal is in: instances of one image share it."""
        return ImageSource(self.image, self.image_id, self.width, self.height, self.frame)

    @property
    def key(self) -> str:
        """Unique id of the animal: the image id, plus the annotation id when an image holds several animals."""
        return self.image_id if self.ann_id is None else f"{self.image_id}#{self.ann_id}"

    @property
    def category(self) -> str | None:
        """The animal's category name, when its annotation or its detector gave one (held in `meta`, where the
        readers keep what an annotation says of its animal)."""
        name = self.meta.get("category")
        return None if name is None else str(name)

    def crop_box(self, image_wh: tuple[int, int] | None = None) -> np.ndarray:
        """The region to crop (`animal_region`); `image_wh`: the decoded image's size, when at hand."""
        w, h = image_wh or (self.width, self.height)
        region = animal_region(self.bbox, w, h)
        if region is None:
            raise ValueError(f"{self.image}: no box and no image size")
        return region


@dataclass
class Sample(Instance):
    """One labelled animal in one image.

    keypoints: (K, 3) float64 array of x, y, v in original image pixels; v 0 = unlabelled, 1 = labelled but
    occluded, 2 = visible. group: what keeps animals together in one fold (a farm, an image).
    """

    keypoints: np.ndarray = field(kw_only=True)
    group: str | None = None
    # where the reader found it, for messages that name both places of a duplicate; not part of the animal
    origin: Origin | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(-1, 3)

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class Pose:
    """One predicted animal: its instance, keypoints as (K, 3) x, y, score (or (K, 2) x, y, read from a file
    that holds no scores) in original image pixels, and the animal's score."""

    instance: Instance
    keypoints: np.ndarray
    score: float

    @classmethod
    def predicted(cls, instance: Instance, keypoints: np.ndarray) -> Pose:
        """The animal's score is its mean keypoint score, times its box's score where a detector gave one (the
        rescoring of top-down pose estimation: a sure pose in an unsure box is ranked down)."""
        score = float(keypoints[:, 2].mean()) if keypoints.shape[1] == 3 else 1.0
        return cls(instance, keypoints, score if instance.score is None else score * float(instance.score))


def animal_region(bbox: np.ndarray | None, width: float | None, height: float | None) -> np.ndarray | None:
    """Where an animal is: its box (x, y, w, h), or the whole image when it has none (a crop of one animal, as
    ADK2021's images are); None when neither a box nor the image size is known. Cropping, the box normaliser
    of PCK and the OKS area all take the region from here."""
    if bbox is not None:
        return np.asarray(bbox, dtype=np.float64).copy()
    if width and height:
        return np.array([0.0, 0.0, float(width), float(height)])
    return None
