"""2-D shape helpers in plain numpy: smoothing, ellipses, tapered strokes, rotations, sub-pixel drawing."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

SHIFT = 4  # cv2 fixed-point bits: polygons are drawn with 1/16-pixel precision
_ONE = 1 << SHIFT


def direction(angle: float) -> np.ndarray:
    """Unit vector at `angle` radians (counter-clockwise from +x, y up)."""
    return np.array([np.cos(angle), np.sin(angle)])


def normal(v: np.ndarray) -> np.ndarray:
    """`v` turned 90 degrees counter-clockwise."""
    return np.array([-v[1], v[0]])


def chaikin(points: np.ndarray, iterations: int = 2, closed: bool = True) -> np.ndarray:
    """Corner-cutting smoothing: a polygon of straight control lines becomes a rounded outline."""
    p = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        a, b = (p, np.roll(p, -1, axis=0)) if closed else (p[:-1], p[1:])
        cut = np.empty((2 * len(a), p.shape[1]))
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        p = cut if closed else np.vstack([p[:1], cut, p[-1:]])
    return p


def ellipse(center: Sequence[float], rx: float, ry: float, angle: float = 0.0, n: int = 20) -> np.ndarray:
    """Polygon of an ellipse with half-axes rx, ry, the rx axis at `angle` radians."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)
    return rotate(pts, angle) + np.asarray(center, dtype=np.float64)


def leaf(base: np.ndarray, angle: float, length: float, width: float, n: int = 12) -> np.ndarray:
    """An ellipse that starts at `base` and points along `angle` (ears, tail switch, horn tips)."""
    return ellipse(base + 0.5 * length * direction(angle), 0.5 * length, 0.5 * width, angle, n)


def rotate(points: np.ndarray, angle: float, origin: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o = np.asarray(origin, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64) - o
    return np.stack([c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1]], axis=-1) + o


def stroke(points: np.ndarray, widths: Sequence[float], smooth: int = 2) -> np.ndarray:
    """Outline polygon of a tapered limb along `points` with `widths` at each point (legs, neck, tail).

    The centre line is smoothed first (widths are interpolated with it) so bent joints stay round; the offset
    uses the bisector at each point, widened by the miter factor (capped) so elbows keep their thickness.
    """
    pw = np.column_stack([np.asarray(points, dtype=np.float64), np.asarray(widths, dtype=np.float64)])
    pw = chaikin(pw, smooth, closed=False) if smooth and len(pw) > 2 else pw
    p, w = pw[:, :2], pw[:, 2]
    seg = np.diff(p, axis=0)
    seg /= np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)
    tang = np.vstack([seg[:1], seg[:-1] + seg[1:], seg[-1:]])
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    miter = np.ones(len(p))
    if len(seg) > 1:
        cos_half = np.einsum("ij,ij->i", tang[1:-1], seg[1:])
        miter[1:-1] = 1.0 / np.clip(cos_half, 0.66, 1.0)
    nrm = np.stack([-tang[:, 1], tang[:, 0]], axis=1) * (0.5 * w * miter)[:, None]
    return np.vstack([p + nrm, (p - nrm)[::-1]])


def fixed(poly: np.ndarray) -> np.ndarray:
    """Pixel coordinates (pixel centres at integers) as cv2's fixed-point int32 polygon."""
    return np.round(np.asarray(poly) * _ONE).astype(np.int32)


def fill(img: np.ndarray, polys: Sequence[np.ndarray], color: Sequence[float] | float, aa: bool = True) -> None:
    """Fill pixel-space polygons into `img` in place (anti-aliased colour, or hard edges for label maps).

    One call per polygon: cv2.fillPoly given several contours at once treats overlaps as holes (even-odd),
    while overlapping parts here (the two sides of the body, grass blades) must stay filled.
    """
    line = cv2.LINE_AA if aa else cv2.LINE_8
    for p in polys:
        cv2.fillPoly(img, [fixed(p)], color, line, SHIFT)
