"""Appearance augmentation of input crops: occluders and photometric changes. Never geometry.

The competition's images are full of fences, posts and other cattle, so the heavy preset pastes such
occluders onto the crop (after the affine crop, so they are drawn at input resolution, which is cheap):
- fence rails and gates, posts, random textured polygons, patches of other training animals;
- keypoint-aware drops: a block of information removed around randomly chosen keypoints (AID);
- albumentations CoarseDropout and Erasing;
then photometric changes (brightness/contrast/gamma, hue, blur, noise, JPEG, low light, grayscale).

Nothing here moves a pixel of the animal, so keypoint coordinates pass through untouched (albumentations never
sees them; MotionBlur is built with `allow_shifted=False` for the same reason). What the augmenter reports is
which keypoints an occluder covers (`hidden`), from a mask of every pasted or dropped region; the dataset
turns that into target weights according to `occlusion_policy`.

Every random draw comes from the generator the caller passes (the dataset seeds it per item), so an item's
augmentation does not depend on worker count or order. Presets (`level`): none = nothing (the dataset also
skips geometry); light = mild photometric only; heavy = every occluder and the full photometric set, each with
the probability from the config and sizes scaled by `strength`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from cattlepose.core.config import AugmentConfig
from cattlepose.data.images import load_image
from cattlepose.data.records import Sample

PATCH_BANK_SIZE = 32  # other-animal patches cached per worker
PATCH_SIDE = 96  # longest side a cached patch is stored at (crops are 128-256 px)


# ---------------------------------------------------------------------------------------------- patch bank
@dataclass
class Patch:
    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) uint8, 1 on the animal's silhouette (hull of its keypoints)


class PatchBank:
    """Animal cut-outs from a fixed, seed-chosen subset of the training images, built on first use.

    The subset depends only on the seed and the sample list, so every worker builds the same bank and an
    item's augmentation stays independent of which worker made it. Patches are cut at the animal's box (or
    its keypoint extent) and masked by the convex hull of its keypoints, grown a little, so a pasted patch
    looks like another animal in front rather than a rectangle.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        seed: int = 0,
        size: int = PATCH_BANK_SIZE,
        images: Mapping[Path, np.ndarray] | None = None,
    ):
        self.samples = list(samples)
        self.seed = seed
        self.size = size
        self.images = images or {}
        self._patches: list[Patch] | None = None

    @property
    def patches(self) -> list[Patch]:
        if self._patches is None:
            self._patches = self._build()
        return self._patches

    def _build(self) -> list[Patch]:
        if not self.samples:
            return []
        rng = np.random.default_rng([self.seed, 0xBA4C])
        count = min(self.size, len(self.samples))
        chosen = rng.choice(len(self.samples), size=count, replace=False)
        out = []
        for i in sorted(int(c) for c in chosen):
            patch = cut_patch(self.samples[i], image=self.images.get(self.samples[i].image))
            if patch is not None:
                out.append(patch)
        return out


def cut_patch(sample: Sample, side: int = PATCH_SIDE, image: np.ndarray | None = None) -> Patch | None:
    """One animal of `sample` as a silhouette-masked patch whose longest side is at most `side`; `image`: the
    sample's image when it is already decoded."""
    if image is None:
        try:
            image = load_image(sample.image)
        except Exception:  # a broken image only costs the bank one patch; the dataset reports it on its own
            return None
    h, w = image.shape[:2]
    kps = sample.keypoints
    lab = kps[kps[:, 2] > 0, :2]
    if sample.bbox is not None:
        x0, y0, bw, bh = sample.bbox
        x1, y1 = x0 + bw, y0 + bh
    elif len(lab) >= 3:
        (x0, y0), (x1, y1) = lab.min(0), lab.max(0)
        mx, my = 0.1 * (x1 - x0) + 2, 0.1 * (y1 - y0) + 2
        x0, y0, x1, y1 = x0 - mx, y0 - my, x1 + mx, y1 + my
    else:
        x0, y0, x1, y1 = 0, 0, w, h
    x0, y0 = int(max(0, math.floor(x0))), int(max(0, math.floor(y0)))
    x1, y1 = int(min(w, math.ceil(x1))), int(min(h, math.ceil(y1)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop = image[y0:y1, x0:x1]
    f = min(1.0, side / max(crop.shape[:2]))
    ph, pw = max(2, round(crop.shape[0] * f)), max(2, round(crop.shape[1] * f))
    rgb = cv2.resize(crop, (pw, ph), interpolation=cv2.INTER_AREA)
    mask = np.zeros((ph, pw), np.uint8)
    inside = lab[(lab[:, 0] >= x0) & (lab[:, 0] < x1) & (lab[:, 1] >= y0) & (lab[:, 1] < y1)]
    if len(inside) >= 3:
        pts = np.round((inside - [x0, y0]) * f).astype(np.int32)
        cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1)
        grow = max(3, round(0.08 * max(ph, pw))) | 1
        mask = cv2.dilate(mask, np.ones((grow, grow), np.uint8))
    else:
        cv2.ellipse(mask, (pw // 2, ph // 2), (pw // 2, ph // 2), 0, 0, 360, 1, -1)
    return Patch(rgb, mask)


# ---------------------------------------------------------------------------------------------- occluders
_WOOD = [(110, 80, 50), (140, 105, 70), (90, 65, 40)]
_METAL = [(150, 150, 150), (190, 190, 185), (90, 95, 100), (60, 60, 60)]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    base = _WOOD if rng.random() < 0.5 else _METAL
    c = np.array(base[rng.integers(len(base))]) + rng.integers(-20, 21, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _texture(rng: np.random.Generator, h: int, w: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A random colour with low-frequency brightness noise: a cheap stand-in for real surfaces. The brightness
    field spans the (h, w) crop; `box` (x0, y0, x1, y1) returns only that part of it, so a small occluder pays
    for its own pixels, not the crop's (the per-pixel noise of a whole 256² crop was most of an item's time)."""
    x0, y0, x1, y1 = box or (0, 0, w, h)
    colour = rng.integers(0, 256, 3).astype(np.float32)
    noise = cv2.resize(rng.random((6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)[y0:y1, x0:x1]
    shade = 0.6 + 0.8 * noise[..., None]
    grain = rng.standard_normal((y1 - y0, x1 - x0, 3), dtype=np.float32) * 8
    return np.clip(colour * shade + grain, 0, 255).astype(np.uint8)


def _paint(image: np.ndarray, occ: np.ndarray, region: np.ndarray, fill: np.ndarray | tuple[int, int, int]) -> None:
    """Paint `fill` (a colour or an image-sized texture) where `region` is set, and record it in `occ`."""
    sel = region > 0
    if isinstance(fill, np.ndarray):
        image[sel] = fill[sel]
    else:
        image[sel] = fill
    occ |= region


def draw_fence(image: np.ndarray, occ: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """Two to four parallel rails across the crop, near horizontal; half the time a gate (rails bounded by
    two uprights, with a diagonal brace)."""
    h, w = image.shape[:2]
    region = np.zeros((h, w), np.uint8)
    n = int(rng.integers(2, 5))
    angle = math.radians(rng.uniform(-20, 20))
    spacing = rng.uniform(0.12, 0.28) * h
    thick = max(1, round(rng.uniform(0.015, 0.045) * h * strength))
    y0 = rng.uniform(0.1, 0.9) * h - spacing * (n - 1) / 2
    gate = rng.random() < 0.5
    xa, xb = sorted(rng.uniform(-0.2, 1.2, 2) * w) if gate else (-w, 2 * w)
    dy = math.tan(angle)
    for i in range(n):
        yc = y0 + i * spacing
        p0 = (int(xa), int(yc + dy * (xa - w / 2)))
        p1 = (int(xb), int(yc + dy * (xb - w / 2)))
        cv2.line(region, p0, p1, 1, thick)
    if gate:
        top, bottom = y0 - spacing / 2, y0 + (n - 1) * spacing + spacing / 2
        for x in (xa, xb):
            cv2.line(region, (int(x), int(top)), (int(x), int(bottom)), 1, thick + 1)
        cv2.line(region, (int(xa), int(bottom)), (int(xb), int(top)), 1, thick)
    _paint(image, occ, region, _colour(rng))


def draw_posts(image: np.ndarray, occ: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """One or two thick, slightly tilted vertical posts, shaded across their width like a round pole."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(1, 3))):
        region = np.zeros((h, w), np.uint8)
        pw = max(2.0, rng.uniform(0.04, 0.12) * w * strength)
        x = rng.uniform(0, w)
        tilt = math.tan(math.radians(rng.uniform(-8, 8))) * h
        top = 0 if rng.random() < 0.6 else rng.uniform(0, 0.5) * h
        pts = np.array([[x - pw / 2, top], [x + pw / 2, top], [x + pw / 2 + tilt, h], [x - pw / 2 + tilt, h]])
        cv2.fillConvexPoly(region, np.round(pts).astype(np.int32), 1)
        colour = np.array(_colour(rng), np.float32)
        # shaded across its width like a round pole (tilt ignored: a cheap hint of volume is enough)
        t = np.clip((np.arange(w) - (x - pw / 2)) / pw, 0, 1)
        shade = (0.6 + 0.6 * np.sin(math.pi * t))[None, :, None]
        _paint(image, occ, region, np.clip(colour * shade, 0, 255).astype(np.uint8).repeat(h, 0))


def draw_polygon(image: np.ndarray, occ: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """A random star-shaped polygon (3-8 vertices) filled with a random texture."""
    h, w = image.shape[:2]
    n = int(rng.integers(3, 9))
    r = rng.uniform(0.08, 0.22) * min(h, w) * strength
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = r * rng.uniform(0.5, 1.0, n)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    region = np.zeros((h, w), np.uint8)
    corners = np.round(pts).astype(np.int32)
    cv2.fillPoly(region, [corners], 1)
    x0, y0 = np.clip(corners.min(0), 0, [w, h])
    x1, y1 = np.clip(corners.max(0) + 1, 0, [w, h])
    if x1 <= x0 or y1 <= y0:  # entirely outside the crop
        return
    box = (int(x0), int(y0), int(x1), int(y1))
    _paint(image[y0:y1, x0:x1], occ[y0:y1, x0:x1], region[y0:y1, x0:x1], _texture(rng, h, w, box))


def paste_animal(
    image: np.ndarray, occ: np.ndarray, rng: np.random.Generator, strength: float, patches: list[Patch]
) -> None:
    """Another animal from the patch bank, resized, maybe mirrored, pasted at a random place (partly outside
    the crop is allowed), through its silhouette mask."""
    if not patches:
        return
    h, w = image.shape[:2]
    p = patches[int(rng.integers(len(patches)))]
    side = rng.uniform(0.35, 0.75) * max(h, w) * min(strength, 1.5)
    f = side / max(p.rgb.shape[:2])
    ph, pw = max(2, round(p.rgb.shape[0] * f)), max(2, round(p.rgb.shape[1] * f))
    rgb = cv2.resize(p.rgb, (pw, ph), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(p.mask, (pw, ph), interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    x0 = int(rng.integers(-pw // 3, max(1, w - 2 * pw // 3)))
    y0 = int(rng.integers(-ph // 3, max(1, h - 2 * ph // 3)))
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(w, x0 + pw), min(h, y0 + ph)
    if xe <= xs or ye <= ys:
        return
    sub_rgb = rgb[ys - y0 : ye - y0, xs - x0 : xe - x0]
    sub_mask = mask[ys - y0 : ye - y0, xs - x0 : xe - x0] > 0
    image[ys:ye, xs:xe][sub_mask] = sub_rgb[sub_mask]
    occ[ys:ye, xs:xe] |= sub_mask.astype(np.uint8)


def drop_keypoints(
    image: np.ndarray, occ: np.ndarray, rng: np.random.Generator, strength: float, kps: np.ndarray
) -> None:
    """Information dropping (AID): blank a block around one to three randomly chosen labelled keypoints so
    the network must infer them from context. Filled with the crop's mean colour, a random colour or noise."""
    h, w = image.shape[:2]
    ok = (kps[:, 2] > 0) & (kps[:, 0] >= 0) & (kps[:, 0] <= w - 1) & (kps[:, 1] >= 0) & (kps[:, 1] <= h - 1)
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return
    chosen = rng.choice(cand, size=min(len(cand), int(rng.integers(1, 4))), replace=False)
    for k in chosen:
        side = max(3.0, rng.uniform(0.08, 0.18) * min(h, w) * strength)
        cx = kps[k, 0] + rng.uniform(-0.25, 0.25) * side
        cy = kps[k, 1] + rng.uniform(-0.25, 0.25) * side
        x0, y0 = int(max(0, round(cx - side / 2))), int(max(0, round(cy - side / 2)))
        x1, y1 = int(min(w, round(cx + side / 2) + 1)), int(min(h, round(cy + side / 2) + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        mode = rng.random()
        if mode < 0.4:
            fill = np.array(cv2.mean(image)[:3])  # the crop's mean colour (numpy's mean is ~10x slower)
        elif mode < 0.7:
            fill = rng.integers(0, 256, 3)
        else:
            fill = rng.integers(0, 256, (y1 - y0, x1 - x0, 3))
        image[y0:y1, x0:x1] = np.asarray(fill, dtype=np.uint8) if np.ndim(fill) == 1 else fill.astype(np.uint8)
        occ[y0:y1, x0:x1] = 1


# ---------------------------------------------------------------------------------------------- albumentations
def _photometric(cfg: AugmentConfig, heavy: bool) -> list[A.BasicTransform]:
    """The photometric transforms of a preset. `strength` scales their intensities (within safe limits)."""
    s = min(cfg.strength, 2.0)
    if not heavy:  # light: mild brightness/contrast, colour and blur
        return [
            A.RandomBrightnessContrast(brightness_limit=0.15 * s, contrast_limit=0.15 * s, p=0.5, strict=True),
            A.HueSaturationValue(
                hue_shift_limit=5 * s, sat_shift_limit=10 * s, val_shift_limit=5 * s, p=0.3, strict=True
            ),
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.8), p=0.1, strict=True),
        ]
    return [
        A.RandomBrightnessContrast(brightness_limit=0.25 * s, contrast_limit=0.25 * s, p=0.5, strict=True),
        A.RandomGamma(gamma_limit=(100 - 25 * s, 100 + 25 * s), p=0.3, strict=True),
        A.HueSaturationValue(
            hue_shift_limit=10 * s, sat_shift_limit=20 * s, val_shift_limit=10 * s, p=0.3, strict=True
        ),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2 * s), p=1.0, strict=True),
                # allow_shifted=False: a shifted kernel would move the image under fixed keypoints
                A.MotionBlur(blur_limit=(3, 7), allow_shifted=False, p=1.0, strict=True),
            ],
            p=0.2,
        ),
        A.GaussNoise(std_range=(0.01, min(0.3, 0.06 * s)), p=0.2, strict=True),
        A.ImageCompression(quality_range=(max(5, int(70 - 30 * s)), 95), p=0.2, strict=True),
        # low light: a dark, flat, noisy image, as barn and night shots are
        A.Sequential(
            [
                A.RandomBrightnessContrast(
                    brightness_limit=(-0.45, -0.2), contrast_limit=(-0.3, -0.05), p=1.0, strict=True
                ),
                A.GaussNoise(std_range=(0.02, 0.06), p=1.0, strict=True),
            ],
            p=0.1,
        ),
        A.ToGray(num_output_channels=3, p=0.1, strict=True),
    ]


def _dropouts(cfg: AugmentConfig) -> list[A.BasicTransform]:
    """Cutout and random erasing; `fill_mask=1` marks their holes in the occlusion mask."""
    s = cfg.strength
    hi = min(0.45, 0.15 * s)
    return [
        A.CoarseDropout(
            num_holes_range=(1, 4),
            hole_height_range=(min(0.05, hi), hi),
            hole_width_range=(min(0.05, hi), hi),
            fill="random_uniform",
            fill_mask=1,
            p=cfg.coarse_dropout,
            strict=True,
        ),
        A.Erasing(
            scale=(0.02, min(0.4, 0.12 * s)),
            ratio=(0.3, 3.3),
            fill="random_uniform",
            fill_mask=1,
            p=cfg.erasing,
            strict=True,
        ),
    ]


# ---------------------------------------------------------------------------------------------- the augmenter
class Augmenter:
    """`aug(image, kps, rng) -> (image, hidden)`: appearance augmentation of one input crop.

    image: (H, W, 3) uint8 RGB crop; kps: (K, 3) x, y, v in crop pixels (only read: coordinates never change);
    hidden: (K,) bool, True where an occluder or drop covers a labelled keypoint inside the crop.
    """

    def __init__(self, cfg: AugmentConfig, patches: PatchBank | None = None):
        self.cfg = cfg
        self.patches = patches
        self.heavy = cfg.level == "heavy"
        self.enabled = cfg.level != "none"
        transforms: list[A.BasicTransform] = []
        if self.heavy:
            transforms += _dropouts(cfg)
        if self.enabled and cfg.photometric > 0:
            transforms.append(A.Sequential(_photometric(cfg, self.heavy), p=cfg.photometric))
        self.pipeline = A.Compose(transforms, strict=True, seed=0) if transforms else None

    def __call__(self, image: np.ndarray, kps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, occ = self.augment(image, kps, rng)
        return image, covered(occ, kps)

    def augment(self, image: np.ndarray, kps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(augmented image, (H, W) uint8 mask of every occluded pixel). The input image is not modified."""
        occ = np.zeros(image.shape[:2], np.uint8)
        if not self.enabled:
            return image, occ
        c = self.cfg
        image = np.ascontiguousarray(image).copy()
        if self.heavy:
            s = c.strength
            if rng.random() < c.fences:
                draw_fence(image, occ, rng, s)
            if rng.random() < c.posts:
                draw_posts(image, occ, rng, s)
            if rng.random() < c.polygons:
                draw_polygon(image, occ, rng, s)
            if rng.random() < c.animal_patches and self.patches is not None:
                paste_animal(image, occ, rng, s, self.patches.patches)
            if rng.random() < c.keypoint_drop:
                drop_keypoints(image, occ, rng, s, kps)
        if self.pipeline is not None:
            # one generator pair per item, shared by every transform: set_random_seed would build a pair per
            # transform (a quarter of a heavy item's time); the item's draws still follow from `rng` alone
            seed = int(rng.integers(2**31 - 1))
            self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
            out = self.pipeline(image=image, mask=occ)
            image, occ = out["image"], out["mask"]
        return image, occ


def covered(occ: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """(K,) bool: labelled keypoints inside the crop whose pixel the occlusion mask covers."""
    h, w = occ.shape[:2]
    xy = np.round(np.nan_to_num(kps[:, :2], nan=-1.0)).astype(np.int64)
    inside = (kps[:, 2] > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    hidden = np.zeros(len(kps), bool)
    hidden[inside] = occ[xy[inside, 1], xy[inside, 0]] > 0
    return hidden
