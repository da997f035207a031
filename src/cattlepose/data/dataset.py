"""Top-down training data: affine crop -> appearance augmentation, and the one image normalisation.

The crop region is the annotation box grown by 1.25 (COCO-style data) or the whole image (ADK crops, whose
`Sample.bbox` is None: the reader's `data.bbox: auto` drops placeholder boxes), at the input's aspect ratio.
Training jitters it (scale, rotation, shift, horizontal mirror with left/right label swap, half-body crops);
all of that is one affine matrix, so the image is resampled once and the keypoints move exactly as the pixels
do. Items stay uint8 and carry keypoints, not heatmaps: normalisation (`network_input`) and the heatmap targets
(`HeatmapCodec.encode_batch`) are computed per batch where the network runs, a quarter of the bytes to move.

Randomness: item i of epoch e draws from `np.random.default_rng((seed, e, i))` (split into a geometry and an
appearance stream), so results do not depend on worker count or order, and a resumed run sees the same crops.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cattlepose.core.config import Config
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.augment import Augmenter, PatchBank
from cattlepose.data.images import load_image
from cattlepose.data.records import Sample, animal_region
from cattlepose.data.transforms import BOX_PADDING, apply_affine, box_to_center_scale, get_affine, warp

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
HALF_BODY_PADDING = 1.5
HALF_BODY_MIN = 3  # labelled keypoints a half needs before it can be cropped alone
ROTATION_PROB = 0.6  # HRNet's convention: a share of crops stay upright

# the one input normalisation, (x - mean) / std of x / 255 as x * INPUT_SCALE + INPUT_SHIFT; (1, 3, 1, 1) float32
# (the exported ONNX graph applies the same two constants to its uint8 input)
INPUT_SCALE = torch.from_numpy(1.0 / (IMAGENET_STD * 255.0)).view(1, 3, 1, 1)
INPUT_SHIFT = torch.from_numpy(-IMAGENET_MEAN / IMAGENET_STD).view(1, 3, 1, 1)


def network_input(
    crops: torch.Tensor,
    device: torch.device,
    channels_last: bool,
    flip: bool = False,
    reuse: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB crops -> the network batch (N, 3, H, W) float32, ImageNet-normalised, followed by
    the N mirrors when `flip`. The bytes go to the device first and are normalised there. NHWC bytes already
    are channels_last, so that layout costs no conversion.

    `reuse`: an earlier batch to write into when it is large enough (its first rows are used): on CPU a fresh
    batch every step makes the next forward pass slower, its heap pages faulting in anew under the network."""
    x = crops.to(device, non_blocking=True).permute(0, 3, 1, 2)
    n = x.shape[0]
    rows = 2 * n if flip else n
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    fits = (
        reuse is not None
        and reuse.shape[0] >= rows
        and reuse.shape[1:] == x.shape[1:]
        and reuse.device == x.device
        and reuse.is_contiguous(memory_format=fmt)
    )
    out = reuse[:rows] if fits else torch.empty((rows, *x.shape[1:]), device=device, memory_format=fmt)
    # (x - mean) / std as one pass: x * (1 / std) + (-mean / std)
    torch.addcmul(INPUT_SHIFT.to(device), x, INPUT_SCALE.to(device), out=out[:n])
    if flip:
        out[n:] = out[:n].flip(3)
    return out


def decode_all(samples: list[Sample]) -> dict[Path, np.ndarray]:
    """Every image of `samples`, decoded once (the optional in-memory cache of small training sets)."""
    return {s.image: load_image(s.image) for s in {s.image: s for s in samples}.values()}


def crop_region(
    box: np.ndarray | None, image_wh: tuple[int, int], input_size: tuple[int, int], padding: float = BOX_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and size of the crop: the animal's region (`animal_region`) at the input's aspect ratio, grown by
    `padding` around a box; a whole image is already the crop and is not grown."""
    h_in, w_in = input_size
    region = animal_region(box, *image_wh)
    return box_to_center_scale(region, w_in / h_in, padding if box is not None else 1.0)


def crop_for_inference(
    image: np.ndarray,
    box: np.ndarray | None,
    input_size: tuple[int, int],
    padding: float = BOX_PADDING,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The eval-mode crop of an RGB image: (H, W, 3) uint8 RGB, written into `out` when given, and the (2, 3)
    original -> input affine.
    `box` None means the whole image is the crop (no padding)."""
    h_in, w_in = input_size
    center, size = crop_region(box, (image.shape[1], image.shape[0]), input_size, padding)
    trans = get_affine(center, size, 0.0, (w_in, h_in))
    return warp(image, trans, (w_in, h_in), out), trans


class KeypointDataset(Dataset):
    """Training (`train=True`: jitter + augmentation) or evaluation crops of `samples` with heatmap targets.

    Items: image (H, W, 3) uint8 RGB; keypoints (K, 3) float32 x, y, v in input pixels (after the label swap of
    a mirror); hidden (K,) bool, keypoints an occluder covers; trans (2, 3) float64 original -> input (mirror
    included); index. `images`: decoded images by path, used instead of reading the files.
    """

    def __init__(
        self,
        samples: list[Sample],
        schema: KeypointSchema,
        cfg: Config,
        train: bool,
        seed: int = 0,
        images: Mapping[Path, np.ndarray] | None = None,
    ):
        self.samples = samples
        self.images = images or {}
        self.schema = schema
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.input_size = tuple(cfg.model.input_size)
        aug = cfg.augment
        self.geometry = train and aug.level != "none"
        self.augmenter: Augmenter | None = None
        if train and aug.level != "none":
            bank = (
                PatchBank(samples, seed, images=self.images)
                if aug.level == "heavy" and aug.animal_patches > 0
                else None
            )
            self.augmenter = Augmenter(aug, bank)
        self.flip_index = np.asarray(schema.flip_index, dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    # ------------------------------------------------------------------------------------------ geometry
    def _half_body(self, kps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        """Crop region around the upper or lower half's labelled keypoints, or None when neither has enough."""
        halves = [self.schema.upper, self.schema.lower]
        if rng.random() < 0.5:
            halves.reverse()
        for half in halves:
            pts = kps[list(half)] if half else kps[:0]
            pts = pts[pts[:, 2] > 0, :2]
            if len(pts) >= HALF_BODY_MIN:
                (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
                box = np.array([x0 + 0.5, y0 + 0.5, x1 - x0, y1 - y0])  # centre coords -> edge-style box
                return box_to_center_scale(box, self.input_size[1] / self.input_size[0], HALF_BODY_PADDING)
        return None

    def _affine(self, s: Sample, kps: np.ndarray, image_wh: tuple[int, int], rng: np.random.Generator | None):
        h_in, w_in = self.input_size
        center, size = crop_region(s.bbox, image_wh, self.input_size)
        rot, flip = 0.0, False
        if self.geometry and rng is not None:
            a = self.cfg.augment
            # every draw happens whatever the branch, so one option never shifts the others' random numbers
            u_half, u_rot_on, u_flip = rng.random(3)
            f_scale = rng.uniform(1 - a.scale, 1 + a.scale)
            r_rot = rng.uniform(-a.rotation, a.rotation)
            shift = rng.uniform(-a.shift, a.shift, 2)
            if u_half < a.half_body:
                half = self._half_body(kps, rng)
                if half is not None and half[1][0] < size[0]:  # only ever a zoom onto one half
                    center, size = half
            size = size * f_scale
            center = center + shift * size
            rot = r_rot if u_rot_on < ROTATION_PROB else 0.0
            flip = bool(u_flip < a.flip)
        return get_affine(center, size, rot, (w_in, h_in), flip), flip

    def eval_affine(self, s: Sample, image: np.ndarray) -> np.ndarray:
        """The (2, 3) original -> input affine of a sample without any jitter."""
        return self._affine(s, s.keypoints, (image.shape[1], image.shape[0]), None)[0]

    # ------------------------------------------------------------------------------------------ items
    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        image = self.images.get(s.image)
        if image is None:
            image = load_image(s.image)
        h_in, w_in = self.input_size
        base = np.random.default_rng((self.seed, self.epoch, i))
        geo_rng, app_rng = base.spawn(2)
        kps = s.keypoints.astype(np.float64).copy()
        trans, flip = self._affine(s, kps, (image.shape[1], image.shape[0]), geo_rng if self.train else None)
        crop = warp(image, trans, (w_in, h_in))
        out_kps = kps.copy()
        out_kps[:, :2] = apply_affine(kps[:, :2], trans)
        if flip:
            out_kps = out_kps[self.flip_index]
        hidden = np.zeros(len(out_kps), bool)
        if self.augmenter is not None:
            crop, hidden = self.augmenter(crop, out_kps, app_rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(crop)),
            "keypoints": torch.from_numpy(out_kps.astype(np.float32)),
            "hidden": torch.from_numpy(hidden),
            "trans": torch.from_numpy(trans),
            "index": i,
        }
