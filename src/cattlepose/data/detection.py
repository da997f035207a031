"""The detector's data: the labelled animals (samples, read exactly as keypoint training reads them) grouped into
photographs, each with its boxes, categories and ignore flags; the letterbox that maps a photograph into the
network's square; and the training dataset (flip, scale, translation, photometric changes).

A box is the annotation's, or the labelled keypoints' extent plus `detect.box_margin` of it on every side
(`detect.box`). An animal with fewer than `detect.min_keypoints` labelled keypoints, or whose box is made from
fewer than two keypoints, is an ignore region: no loss in training, and COCO's `iscrowd` in the AP
(metrics/boxes.py): the goal is stated for animals with at least that many labelled keypoints.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from torch.utils.data import Dataset

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError
from cattlepose.data.images import load_image
from cattlepose.data.photos import photos
from cattlepose.data.records import ImageSource, Sample

PAD_VALUE = 114  # the letterbox's grey (YOLO's), a colour no encoder input statistics single out
DEFAULT_CATEGORY = "animal"  # the category of an animal whose annotation names none


@dataclass
class DetImage:
    """One photograph and its animals: boxes (n, 4) x, y, w, h in its pixels, category indices (n,), ignore
    flags (n,), and the keys of the samples they came from (n,)."""

    source: ImageSource
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    keys: list[str]

    @property
    def path(self) -> Path:
        return self.source.path


def category_names(samples: Sequence[Sample]) -> list[str]:
    """The data's categories, sorted by name (the detector's output channels, in this order)."""
    return sorted({sample_category(s) for s in samples})


def sample_category(s: Sample) -> str:
    return s.category or DEFAULT_CATEGORY


def animal_box(s: Sample, cfg: Config) -> tuple[np.ndarray | None, bool]:
    """A sample's box for detection (x, y, w, h, clipped to its image) and whether it is an ignore region.
    None: no box can be made (no annotation box and fewer than two labelled keypoints)."""
    d = cfg.detect
    labelled = s.keypoints[s.keypoints[:, 2] > 0, :2]
    ignore = len(labelled) < d.min_keypoints
    box = s.bbox
    if d.box == "keypoints" or (box is None and d.box == "auto"):
        if len(labelled) < 2:
            box = None if s.bbox is None else s.bbox
            ignore = True
        else:
            lo, hi = labelled.min(0), labelled.max(0)
            m = d.box_margin * (hi - lo)
            box = np.array([lo[0] - m[0], lo[1] - m[1], hi[0] - lo[0] + 2 * m[0], hi[1] - lo[1] + 2 * m[1]])
    if box is None and s.width and s.height:  # the annotation's box is the whole image (data.bbox)
        box = np.array([0.0, 0.0, float(s.width), float(s.height)])
    if box is None:
        return None, True
    return _checked(np.asarray(box, np.float64), s, cfg), ignore


def _checked(box: np.ndarray, s: Sample, cfg: Config) -> np.ndarray:
    """A box of positive size that lies in its image up to `data.outside_margin` of the image's size, clipped to
    the image; else a UserError naming the file and the annotation."""
    where = s.origin.file if s.origin else s.image
    field = f"{s.origin.entry}.bbox" if s.origin and s.origin.entry else "bbox"
    x, y, w, h = box
    if not np.all(np.isfinite(box)) or w <= 0 or h <= 0:
        raise UserError(f"box {box.round(2).tolist()} has no area; a detector cannot learn it", path=where,
                        field=field)  # fmt: skip
    if not (s.width and s.height):
        return box
    mx, my = cfg.data.outside_margin * s.width, cfg.data.outside_margin * s.height
    if x < -mx or y < -my or x + w > s.width + mx or y + h > s.height + my:
        raise UserError(
            f"box {box.round(2).tolist()} reaches outside the {s.width}x{s.height} image by more than "
            f"data.outside_margin ({cfg.data.outside_margin}) of its size; fix the annotation",
            path=where,
            field=field,
        )
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(s.width)), min(y + h, float(s.height))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise UserError(f"box {box.round(2).tolist()} lies outside the {s.width}x{s.height} image", path=where,
                        field=field)  # fmt: skip
    return np.array([x0, y0, x1 - x0, y1 - y0])


def group_images(samples: Sequence[Sample], cfg: Config, categories: Sequence[str]) -> tuple[list[DetImage], list[int]]:
    """The photographs of `samples` (first-seen order) with their animals, and for each sample the index of its
    photograph. Boxes are checked here, before any training."""
    index = {c: i for i, c in enumerate(categories)}
    order: dict[object, int] = {}
    parts: list[list[tuple[Sample, np.ndarray, bool]]] = []
    of_sample = []
    for s, photo in zip(samples, photos(samples), strict=True):
        box, ignore = animal_box(s, cfg)
        if photo not in order:
            order[photo] = len(parts)
            parts.append([])
        of_sample.append(order[photo])
        if box is not None:
            parts[order[photo]].append((s, box, ignore))
    images = []
    for members, first in zip(parts, _firsts(samples, of_sample), strict=True):
        src = ImageSource(first.image, first.image_id, first.width, first.height)
        images.append(DetImage(
            src,
            np.array([b for _, b, _ in members], np.float64).reshape(-1, 4),
            np.array([index[sample_category(s)] for s, _, _ in members], np.int64),
            np.array([ig for _, _, ig in members], bool),
            [s.key for s, _, _ in members],
        ))  # fmt: skip
    return images, of_sample


def _firsts(samples: Sequence[Sample], of_sample: list[int]) -> list[Sample]:
    first: dict[int, Sample] = {}
    for s, i in zip(samples, of_sample, strict=True):
        first.setdefault(i, s)
    return [first[i] for i in range(len(first))]


def image_folds(of_sample: Sequence[int], assignment: Sequence[int], images: Sequence[DetImage]) -> list[int]:
    """Each photograph's fold, from its animals' (folds.csv); animals of one photograph in two folds (only
    `data.group_by: null` allows it) cannot be detected in one fold and held out in another."""
    fold: dict[int, int] = {}
    for i, f in zip(of_sample, assignment, strict=True):
        if fold.setdefault(i, f) != f:
            raise UserError(
                f"the animals of {images[i].path} fall into different folds (data.group_by: null splits a "
                "photograph's animals); a detector learns whole photographs: set data.group_by to image",
                field="data.group_by",
            )
    return [fold[i] for i in range(len(images))]


# ---------------------------------------------------------------------------------------------- letterbox
def letterbox_scale(width: int, height: int, input_size: tuple[int, int]) -> float:
    """The scale that fits a width x height image into input_size (H, W), aspect kept."""
    return min(input_size[1] / width, input_size[0] / height)


def letterbox(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The image scaled into the top-left of an input_size (H, W) canvas of PAD_VALUE; and its scale, so
    original = input / scale (the top-left placement needs no offset)."""
    h, w = image.shape[:2]
    s = letterbox_scale(w, h, input_size)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.full((*input_size, 3), PAD_VALUE, np.uint8)
    out[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out, s


# ---------------------------------------------------------------------------------------------- training set
class DetectionDataset(Dataset):
    """Training photographs, augmented: the letterbox scaled by a random factor in 1 +- `augment.scale`,
    shifted by up to `augment.shift` of the input (one affine warp), mirrored with `augment.flip`, and photometric
    changes (`augment.photometric`). Draws come from a generator seeded by (seed, epoch, index): a resumed run
    sees the same items. Items: uint8 (H, W, 3) input, boxes (MAX, 4) in input pixels, labels, ignore, count."""

    MAX_BOXES = 64

    def __init__(self, images: Sequence[DetImage], cfg: Config, train: bool, seed: int = 0,
                 cache: dict[Path, np.ndarray] | None = None):  # fmt: skip
        self.images, self.cfg, self.train, self.seed, self.cache = list(images), cfg, train, seed, cache
        self.epoch = 0
        a = cfg.augment
        self.colour = A.Compose([
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.5),
            A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=10, p=0.3),
            A.GaussianBlur(blur_limit=(3, 5), p=0.1),
            A.ToGray(num_output_channels=3, p=0.05),
        ], p=a.photometric if a.level != "none" else 0.0, seed=0)  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, item: DetImage) -> np.ndarray:
        if self.cache is not None and item.path in self.cache:
            return self.cache[item.path]
        return load_image(item.path)

    def __getitem__(self, i: int) -> dict:
        item = self.images[i]
        image = self._image(item)
        h, w = image.shape[:2]
        size = self.cfg.model.input_size
        s = letterbox_scale(w, h, size)
        a = self.cfg.augment
        rng = np.random.default_rng([self.seed, self.epoch, i])
        dx = dy = 0.0
        mirror = False
        if self.train and a.level != "none":
            s *= float(rng.uniform(1 - a.scale, 1 + a.scale))
            # the shift keeps the scaled image overlapping the canvas: a centred image moved by up to a fraction
            free_x, free_y = size[1] - w * s, size[0] - h * s
            dx = float(rng.uniform(min(0.0, free_x), max(0.0, free_x))) * 0.5 + rng.uniform(-1, 1) * a.shift * size[1]
            dy = float(rng.uniform(min(0.0, free_y), max(0.0, free_y))) * 0.5 + rng.uniform(-1, 1) * a.shift * size[0]
            mirror = bool(rng.random() < a.flip)
        m = np.array([[s, 0, dx], [0, s, dy]], np.float64)
        out = cv2.warpAffine(image, m, (size[1], size[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(PAD_VALUE,) * 3)  # fmt: skip
        boxes = item.boxes.copy()
        boxes[:, :2] = boxes[:, :2] * s + [dx, dy]
        boxes[:, 2:] *= s
        ignore = item.ignore.copy()
        if len(boxes):  # clipped to the canvas; an animal mostly cut off becomes an ignore region
            x0 = np.clip(boxes[:, 0], 0, size[1])
            y0 = np.clip(boxes[:, 1], 0, size[0])
            x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, size[1])
            y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, size[0])
            area = (x1 - x0) * (y1 - y0)
            ignore |= area < 0.4 * boxes[:, 2] * boxes[:, 3]
            boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
            keep = area > 0
            boxes, labels, ignore = boxes[keep], item.labels[keep], ignore[keep]
        else:
            labels = item.labels
        if mirror:
            out = out[:, ::-1]
            boxes[:, 0] = size[1] - boxes[:, 0] - boxes[:, 2]
        if self.train:
            seed = int(rng.integers(2**31 - 1))
            self.colour.set_random_state(np.random.default_rng(seed), random.Random(seed))
            out = self.colour(image=np.ascontiguousarray(out))["image"]
        n = min(len(boxes), self.MAX_BOXES)
        pad_boxes = np.zeros((self.MAX_BOXES, 4), np.float32)
        pad_labels = np.zeros(self.MAX_BOXES, np.int64)
        pad_ignore = np.ones(self.MAX_BOXES, bool)
        pad_boxes[:n], pad_labels[:n], pad_ignore[:n] = boxes[:n], labels[:n], ignore[:n]
        return {"image": np.ascontiguousarray(out), "boxes": pad_boxes, "labels": pad_labels, "ignore": pad_ignore,
                "count": n}  # fmt: skip
