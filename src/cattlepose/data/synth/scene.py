"""Farms: a consistent look per farm (background kind, palette, light, camera quality, typical occluders, herd).

Every farm's style is fixed (not drawn from the data set seed), so a farm means the same place in every set:
group k-fold by farm then asks a model to generalise to a place it has not seen. Per image, the style is
jittered a little (light, horizon, textures) so images of one farm are alike but not copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from cattlepose.data.synth.geometry import ellipse, fill

Color = tuple[int, int, int]  # RGB


@dataclass(frozen=True)
class Farm:
    name: str
    kind: str  # pasture | barn | dirt | night
    env: str  # "open" or "indoor", as ADK's farm_env
    sky: tuple[Color, Color]  # top, bottom (or wall colours for barns)
    ground: Color
    accent: Color  # trees / planks / distant structures
    gain: tuple[float, float]  # overall light
    tint: tuple[float, float, float]  # light colour (RGB multipliers)
    noise: tuple[float, float]  # sensor noise sigma (0-255 scale)
    jpeg: tuple[int, int]  # JPEG quality range
    blur: float  # probability of a blurred image (defocus or motion)
    occluders: dict[str, float] = field(default_factory=dict)  # per-image probability at occlusion level 1
    rail: Color = (120, 90, 60)  # fence / gate colour
    coats: dict[str, float] = field(default_factory=dict)  # coat family weights
    categories: dict[str, float] = field(default_factory=dict)

    @property
    def time(self) -> str:
        return "night" if self.kind == "night" else "daytime"


_WOOD = (125, 95, 62)
_PIPE = (150, 152, 150)
_HANWOO = {"tan": 0.6, "brown": 0.25, "dark": 0.1, "piebald": 0.05}
_DAIRY = {"piebald": 0.6, "black": 0.15, "white": 0.1, "brown": 0.15}
_MIXED = {"tan": 0.25, "brown": 0.25, "black": 0.2, "white": 0.1, "piebald": 0.2}

FARMS: tuple[Farm, ...] = (
    Farm("hillside", "pasture", "open", ((120, 165, 215), (200, 220, 235)), (95, 135, 60), (45, 80, 40),
         (0.95, 1.15), (1.03, 1.0, 0.95), (2, 5), (80, 95), 0.1,
         {"fence": 0.35, "post": 0.2, "grass": 0.35, "cattle": 0.2, "person": 0.05}, _WOOD, _HANWOO,
         {"cow": 0.6, "calf": 0.25, "bull": 0.15}),
    Farm("riverside", "pasture", "open", ((150, 180, 210), (215, 225, 230)), (110, 150, 70), (70, 100, 60),
         (0.9, 1.1), (0.97, 1.0, 1.04), (2, 6), (70, 92), 0.15,
         {"fence": 0.3, "post": 0.3, "grass": 0.4, "cattle": 0.25}, (90, 90, 85), _DAIRY,
         {"cow": 0.7, "calf": 0.2, "bull": 0.1}),
    Farm("redbarn", "barn", "indoor", ((150, 60, 45), (120, 50, 40)), (170, 150, 100), (90, 40, 30),
         (0.7, 0.95), (1.06, 0.98, 0.9), (4, 9), (60, 88), 0.2,
         {"gate": 0.45, "trough": 0.4, "post": 0.3, "person": 0.15, "cattle": 0.2}, _PIPE, _MIXED,
         {"cow": 0.55, "calf": 0.25, "bull": 0.2}),
    Farm("oakshed", "barn", "indoor", ((110, 85, 60), (90, 70, 50)), (120, 110, 95), (60, 45, 30),
         (0.6, 0.85), (1.05, 1.0, 0.88), (5, 10), (55, 85), 0.25,
         {"gate": 0.4, "trough": 0.45, "post": 0.35, "cattle": 0.3, "person": 0.1}, (80, 80, 80), _HANWOO,
         {"cow": 0.5, "calf": 0.2, "bull": 0.3}),
    Farm("dustyard", "dirt", "open", ((175, 190, 205), (210, 205, 195)), (150, 120, 85), (130, 125, 120),
         (0.95, 1.2), (1.05, 1.0, 0.92), (3, 6), (65, 92), 0.15,
         {"fence": 0.45, "trough": 0.3, "cattle": 0.35, "post": 0.2}, _PIPE, _MIXED,
         {"cow": 0.6, "calf": 0.15, "bull": 0.25}),
    Farm("mudlot", "dirt", "open", ((140, 150, 160), (175, 175, 170)), (95, 75, 55), (70, 65, 60),
         (0.75, 1.0), (1.0, 1.0, 1.0), (4, 8), (50, 85), 0.2,
         {"post": 0.35, "cattle": 0.4, "person": 0.15, "fence": 0.3, "trough": 0.2}, _WOOD, _HANWOO,
         {"cow": 0.6, "calf": 0.2, "bull": 0.2}),
    Farm("nightshed", "night", "indoor", ((70, 65, 60), (55, 50, 48)), (90, 85, 75), (40, 38, 35),
         (0.4, 0.6), (0.85, 0.95, 1.2), (8, 16), (45, 75), 0.35,
         {"gate": 0.45, "trough": 0.35, "post": 0.25, "cattle": 0.25}, (110, 110, 115), _DAIRY,
         {"cow": 0.65, "calf": 0.2, "bull": 0.15}),
    Farm("moonfield", "night", "open", ((25, 35, 60), (60, 70, 90)), (60, 80, 50), (20, 30, 25),
         (0.4, 0.65), (0.8, 0.9, 1.25), (8, 18), (45, 75), 0.35,
         {"fence": 0.4, "grass": 0.4, "post": 0.2, "cattle": 0.2}, _WOOD, _HANWOO,
         {"cow": 0.6, "calf": 0.25, "bull": 0.15}),
)  # fmt: skip


def texture(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    """Smooth random field (H, W) with unit-ish amplitude: a few cells of noise, upsampled (cheap)."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _vgrad(h: int, w: int, top: Color, bottom: Color) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(h, 1), dtype=np.float32)[:, None, None]
    row = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(row, (h, w, 3)).copy()


def background(rng: np.random.Generator, farm: Farm, w: int, h: int) -> np.ndarray:
    """The farm's backdrop as an (H, W, 3) uint8 RGB image (nothing here occludes the animal)."""
    img = np.empty((h, w, 3), np.float32)
    ground = np.asarray(farm.ground, np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    tex = texture(rng, h, w, int(rng.integers(4, 10)))[..., None]
    fine = texture(rng, h, w, int(rng.integers(12, 24)))[..., None]
    if farm.kind == "barn" or (farm.kind == "night" and farm.env == "indoor"):
        floor = int(h * rng.uniform(0.55, 0.85))
        img[:floor] = _vgrad(floor, w, farm.sky[0], farm.sky[1])
        img[floor:] = ground * (1 + 0.12 * tex[floor:] + 0.06 * fine[floor:])
        out = np.clip(img, 0, 255).astype(np.uint8)
        step = max(4, int(w / rng.uniform(5, 14)))
        off = int(rng.integers(0, step))
        dark = tuple(int(c) for c in farm.accent)
        for x in range(off, w, step):
            cv2.line(out, (x, 0), (x, floor), dark, max(1, step // 10))
        if rng.random() < 0.6:  # a beam across the wall
            y = int(rng.uniform(0.05, 0.5) * floor)
            cv2.rectangle(out, (0, y), (w, y + max(2, h // 40)), dark, -1)
        return out
    horizon = int(h * rng.uniform(0.02, 0.45))
    img[:horizon] = _vgrad(horizon, w, farm.sky[0], farm.sky[1])
    depth = np.linspace(0.85, 1.1, h - horizon, dtype=np.float32)[:, None, None]
    img[horizon:] = ground * depth * (1 + 0.15 * tex[horizon:] + 0.08 * fine[horizon:])
    out = np.clip(img, 0, 255).astype(np.uint8)
    acc = np.asarray(farm.accent, np.float64)
    if farm.kind in ("pasture", "night") and horizon > 2:  # a tree line on the horizon
        for _ in range(int(rng.integers(2, 7))):
            cx, r = rng.uniform(0, w), rng.uniform(0.05, 0.2) * w
            col = tuple(float(c) for c in acc * rng.uniform(0.8, 1.2))
            fill(out, [ellipse((cx, horizon), r, r * rng.uniform(0.3, 0.8))], col)
    elif farm.kind == "dirt":  # distant sheds and a far fence line
        for _ in range(int(rng.integers(0, 3))):
            x0, bw = rng.uniform(0, w), rng.uniform(0.15, 0.5) * w
            bh = rng.uniform(0.05, 0.2) * h
            col = tuple(float(c) for c in acc * rng.uniform(0.8, 1.2))
            cv2.rectangle(out, (int(x0), int(horizon - bh)), (int(x0 + bw), horizon), col, -1)
        y = horizon + int(rng.uniform(0.0, 0.1) * h)
        cv2.line(out, (0, y), (w, y), tuple(int(c * 0.7) for c in farm.rail), 1)
    return out


def lighting(rng: np.random.Generator, farm: Farm, img: np.ndarray) -> np.ndarray:
    """Farm light (gain and colour) with a soft directional falloff across the frame; float32 out."""
    h, w = img.shape[:2]
    gain = rng.uniform(*farm.gain)
    tint = np.asarray(farm.tint, np.float32) * rng.uniform(0.97, 1.03, 3).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.35 if farm.kind != "night" else 0.6)
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    field_ = gain * (1.0 + strength * (np.cos(ang) * xs + np.sin(ang) * ys))
    return img * (field_[..., None] * tint)


def camera(rng: np.random.Generator, farm: Farm, img: np.ndarray) -> np.ndarray:
    """Blur (defocus or motion) and sensor noise; uint8 out. JPEG artefacts come from the farm's quality."""
    if rng.random() < farm.blur:
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.6))
        else:
            k = int(rng.integers(3, 8))
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (k, k))
            kernel /= max(float(kernel.sum()), 1e-6)
            img = cv2.filter2D(img, -1, kernel)
    sigma = rng.uniform(*farm.noise)
    nl, nc = _noise(rng, *img.shape[:2])
    img = img + (nl * sigma)[..., None]  # luminance grain
    img += nc * (0.4 * sigma)  # weaker colour noise
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def _noise(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit Gaussian noise for an h x w image: luminance (h, w) and colour (h, w, 3).

    Crops that fit take a random window of the bank (fast). A crop larger than the bank (rare: the layout can
    exceed `NOISE_BANK_SIZE`, see `render.max_crop_side`) draws fresh noise of the same statistics, so any size
    works and the images of crops that fit stay exactly as they were.
    """
    if h > NOISE_BANK_SIZE or w > NOISE_BANK_SIZE:
        return rng.standard_normal((h, w), dtype=np.float32), rng.standard_normal((h, w, 3), dtype=np.float32)
    lum, rgb = _noise_bank()
    oy, ox = int(rng.integers(0, NOISE_BANK_SIZE - h + 1)), int(rng.integers(0, NOISE_BANK_SIZE - w + 1))
    nl, nc = lum[oy : oy + h, ox : ox + w], rgb[oy : oy + h, ox : ox + w]
    if rng.random() < 0.5:
        nl, nc = nl[:, ::-1], nc[:, ::-1]
    return nl, nc


_BANK: list[tuple[np.ndarray, np.ndarray]] = []
# Covers nearly every crop (the long side is at most 480, but margins across it can add about a fifth); the
# few larger ones draw fresh noise in `_noise`. Changing this size would change every image of every set.
NOISE_BANK_SIZE = 544


def _noise_bank() -> tuple[np.ndarray, np.ndarray]:
    """Fixed fields of Gaussian noise (luminance (S, S), colour (S, S, 3)) that images take random windows of:
    drawing fresh per-pixel noise for every image was the renderer's largest cost."""
    if not _BANK:
        gen = np.random.default_rng(20210)
        s = NOISE_BANK_SIZE
        _BANK.append((gen.standard_normal((s, s), dtype=np.float32), gen.standard_normal((s, s, 3), dtype=np.float32)))
    return _BANK[0]
