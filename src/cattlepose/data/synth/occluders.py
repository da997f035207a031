"""Foreground objects between the camera and the animal: fences, gates, posts, troughs, other cattle, people, grass.

Each maker returns `Shape`s in crop pixels (x right, y down) for a W x H crop; the renderer fills colours and the
label map from them (and mirrors them for the flip test). Sizes are fractions of the crop, which the animal
fills, so an object covers a similar share of the animal at any crop size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cattlepose.data.synth import parts
from cattlepose.data.synth.geometry import ellipse, stroke

RGB = tuple[float, float, float]


@dataclass
class Shape:
    polys: list[np.ndarray]  # each (N, 2) pixel coordinates
    color: RGB
    label: int


def _jit(rng: np.random.Generator, c: tuple[float, ...], amount: float = 0.12) -> RGB:
    f = rng.uniform(1 - amount, 1 + amount, 3)
    return tuple(float(np.clip(v * k, 0, 255)) for v, k in zip(c, f, strict=True))  # type: ignore[return-value]


def _bar(p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    return stroke(np.array([p0, p1]), [width, width], smooth=0)


def fence(rng: np.random.Generator, w: int, h: int, rail: RGB, coat: RGB) -> list[Shape]:
    """One to three rails across the whole crop, with a post or two."""
    shapes = []
    n = int(rng.integers(1, 4))
    t = h * rng.uniform(0.025, 0.06)
    ys = np.sort(rng.uniform(0.2, 0.88, n)) * h
    tilt = rng.normal(0, 0.04) * w
    color = _jit(rng, rail)
    shapes.append(Shape([_bar((-8, y - tilt), (w + 8, y + tilt), t) for y in ys], color, parts.FENCE))
    posts = [_bar((x, -8), (x + rng.normal(0, 0.02) * h, h + 8), w * rng.uniform(0.035, 0.07))
             for x in rng.uniform(0, w, int(rng.integers(0, 3)))]  # fmt: skip
    if posts:
        shapes.append(Shape(posts, _jit(rng, rail, 0.2), parts.POST))
    return shapes


def gate(rng: np.random.Generator, w: int, h: int, rail: RGB, coat: RGB) -> list[Shape]:
    """A tubular gate over part of the crop: horizontal pipes, uprights and sometimes a brace."""
    x0 = rng.uniform(-0.3, 0.4) * w
    x1 = x0 + rng.uniform(0.5, 1.2) * w
    t = max(2.0, h * rng.uniform(0.015, 0.03))
    n = int(rng.integers(3, 6))
    ys = np.linspace(rng.uniform(0.1, 0.3), rng.uniform(0.75, 0.95), n) * h
    polys = [_bar((x0, y), (x1, y), t) for y in ys]
    polys += [_bar((x, ys[0]), (x, ys[-1]), t) for x in (x0, x1, *rng.uniform(x0, x1, int(rng.integers(0, 3))))]
    if rng.random() < 0.5:
        polys.append(_bar((x0, ys[-1]), (x1, ys[0]), t))
    return [Shape(polys, _jit(rng, rail), parts.GATE)]


def post(rng: np.random.Generator, w: int, h: int, rail: RGB, coat: RGB) -> list[Shape]:
    x = rng.uniform(0.1, 0.9) * w
    top = -8 if rng.random() < 0.7 else rng.uniform(0.0, 0.4) * h
    pw = w * rng.uniform(0.05, 0.12)
    return [Shape([_bar((x, top), (x + rng.normal(0, 0.03) * h, h + 8), pw)], _jit(rng, rail, 0.25), parts.POST)]


def trough(rng: np.random.Generator, w: int, h: int, rail: RGB, coat: RGB) -> list[Shape]:
    """A feed trough along the bottom: hides feet, often knees."""
    top = rng.uniform(0.6, 0.85) * h
    cx, half = rng.uniform(0.1, 0.9) * w, rng.uniform(0.2, 0.5) * w
    lean = rng.uniform(0.0, 0.06) * w
    body = np.array([[cx - half, top], [cx + half, top], [cx + half - lean, h + 8], [cx - half + lean, h + 8]])
    kind = rng.integers(0, 3)
    color = ((150, 150, 145), (60, 90, 150), (110, 110, 115))[kind]
    rim = _bar((cx - half - 2, top), (cx + half + 2, top), max(2.0, 0.03 * h))
    return [Shape([body], _jit(rng, color), parts.TROUGH), Shape([rim], _jit(rng, color, 0.05), parts.TROUGH)]


def cattle(rng: np.random.Generator, w: int, h: int, rail: RGB, coat: RGB) -> list[Shape]:
    """Part of another animal in front, entering from one side (its body, two legs, maybe its head)."""
    side = 1 if rng.random() < 0.5 else -1
    cx = (0.5 + side * rng.uniform(0.45, 0.75)) * w
    cy = rng.uniform(0.45, 0.8) * h
    rx, ry = rng.uniform(0.25, 0.45) * w, rng.uniform(0.18, 0.3) * h
    polys = [ellipse((cx, cy), rx, ry, rng.normal(0, 0.1), 24)]
    lw = 0.35 * ry
    for fx in (0.55, 0.75) if rng.random() < 0.5 else (-0.55, -0.75):
        x = cx + fx * rx
        polys.append(_bar((x, cy), (x + rng.normal(0, 0.05) * h, h + 8), lw))
    if rng.random() < 0.5:  # its head, toward the crop centre
        hx, hy = cx - side * rx * 1.05, cy - ry * rng.uniform(0.2, 0.8)
        polys.append(ellipse((hx, hy), 0.45 * ry, 0.75 * ry, rng.uniform(-0.5, 0.5), 16))
    c = coat if rng.random() < 0.4 else _jit(rng, (rng.uniform(30, 220),) * 3, 0.3)
    return [Shape(polys, _jit(rng, c), parts.CATTLE)]


def person(rng: np.random.Generator, w: int, h: int, rail: RGB, coat: RGB) -> list[Shape]:
    """A standing farm worker in front of the animal, at one side of the crop."""
    x = rng.uniform(0.05, 0.95) * w
    feet = rng.uniform(0.95, 1.25) * h
    tall = rng.uniform(0.8, 1.3) * h
    s = tall / 8.0  # head height unit
    hip_y, sh_y = feet - 4 * s, feet - 6.6 * s
    legs = [
        stroke(np.array([[x + dx * s, hip_y], [x + dx * 1.3 * s, feet]]), [1.1 * s, 0.8 * s], 0) for dx in (-0.5, 0.5)
    ]
    torso = stroke(np.array([[x, hip_y], [x, sh_y]]), [2.0 * s, 2.3 * s], 0)
    arms = [stroke(np.array([[x + dx * s, sh_y], [x + dx * 1.6 * s, hip_y + 0.3 * s]]), [0.7 * s, 0.6 * s], 0)
            for dx in (-1.1, 1.1)]  # fmt: skip
    head = ellipse((x, sh_y - 0.9 * s), 0.5 * s, 0.65 * s, 0.0, 14)
    shirt = _jit(rng, (rng.uniform(40, 220), rng.uniform(40, 220), rng.uniform(40, 220)), 0.1)
    trousers = _jit(rng, (50, 60, 90), 0.3)
    return [
        Shape(legs, trousers, parts.PERSON),
        Shape([torso, *arms], shirt, parts.PERSON),
        Shape([head], _jit(rng, (200, 160, 130), 0.15), parts.PERSON),
    ]


def grass(rng: np.random.Generator, w: int, h: int, rail: RGB, coat: RGB) -> list[Shape]:
    """Tall grass or weeds along the bottom edge: blades that hide hooves."""
    n = int(rng.integers(12, 40))
    base_x = rng.uniform(-0.05, 1.05, n) * w
    heights = rng.uniform(0.06, 0.28, n) * h
    widths = rng.uniform(0.01, 0.03, n) * w + 1.5
    lean = rng.normal(0, 0.3, n) * heights
    polys = [np.array([[x - bw, h + 4], [x + bw, h + 4], [x + ln, h - ht]])
             for x, bw, ht, ln in zip(base_x, widths, heights, lean, strict=True)]  # fmt: skip
    green = (rng.uniform(60, 110), rng.uniform(100, 150), rng.uniform(40, 70))
    return [Shape(polys, green, parts.GRASS)]


MAKERS: dict[str, Callable[..., list[Shape]]] = {
    "fence": fence,
    "gate": gate,
    "post": post,
    "trough": trough,
    "cattle": cattle,
    "person": person,
    "grass": grass,
}


# Farm weights are relative frequencies; this rate calibrates level 1 to the default mix (about a
# quarter of the keypoints occluded, self-occlusion included; measured by benchmarks/bench_synth.py).
RATE = 0.6


def choose(rng: np.random.Generator, weights: dict[str, float], level: float) -> list[str]:
    """The occluder kinds in this image: each kind appears with its farm probability times RATE times `level`
    (0 = none; the probability saturates at 0.95). Drawn in a fixed order so the rng stream is stable."""
    chosen = []
    for name in MAKERS:
        p = min(0.95, weights.get(name, 0.0) * RATE * level)
        if rng.random() < p:
            chosen.append(name)
    return chosen
