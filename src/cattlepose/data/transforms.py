"""Top-down affine geometry: crop regions, the original -> input affine, warping and point mapping.

Pixel-centre convention everywhere: pixel i has coordinate i and covers [i - 0.5, i + 0.5]. A region of
width w centred at c covers [c - w/2, c + w/2]; it maps onto the input's full extent [-0.5, W - 0.5], so its
centre goes to (W - 1) / 2. With this convention a whole-image crop at the image's own size is the identity,
cv2.warpAffine (which samples at integer pixel indices) agrees with the points, and a horizontal mirror is
x -> W - 1 - x exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

BOX_PADDING = 1.25  # around annotation boxes; whole-image crops use 1.0 (the image is already the crop)


def box_to_center_scale(box: np.ndarray, aspect: float, padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and size (w, h) of the crop region for an x, y, w, h box (pixel-edge extent, as COCO and
    ADK store it): grown to the input's aspect ratio (W / H) on its short side, then by `padding`."""
    x, y, w, h = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    center = np.array([x + w / 2 - 0.5, y + h / 2 - 0.5])  # edges -> pixel-centre coordinates
    w, h = max(w, 1.0), max(h, 1.0)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h]) * padding


def get_affine(
    center: np.ndarray,
    size: np.ndarray | tuple[float, float],
    rot_deg: float,
    out_size: tuple[int, int],
    flip: bool = False,
) -> np.ndarray:
    """(2, 3) float64 matrix mapping original pixels to input pixels.

    The region (`center`, `size` = w, h in original pixels) is rotated by `rot_deg` (counter-clockwise on
    screen: image y points down) and scaled onto `out_size` = (W, H); with `flip` the result is mirrored as
    x -> W - 1 - x, the same mirror the heatmap codec and flip test-time augmentation use.
    """
    out_w, out_h = out_size
    sx, sy = out_w / float(size[0]), out_h / float(size[1])
    a = math.radians(rot_deg)
    cos, sin = math.cos(a), math.sin(a)
    # y points down, so a counter-clockwise turn on screen is [[cos, sin], [-sin, cos]] in these axes
    lin = np.array([[sx * cos, sx * sin], [-sy * sin, sy * cos]])
    c = np.asarray(center, dtype=np.float64).reshape(2)
    t = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0]) - lin @ c
    m = np.concatenate([lin, t[:, None]], axis=1)
    if flip:
        m[0] = -m[0]
        m[0, 2] += out_w - 1
    return m


def warp(image: np.ndarray, trans: np.ndarray, out_size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """The input crop: `image` resampled through `trans` (bilinear, black outside the image); written into
    `out` when given (an (H, W, channels) array of image's dtype, e.g. one row of a batch)."""
    return cv2.warpAffine(
        image,
        np.asarray(trans, dtype=np.float64),
        (int(out_size[0]), int(out_size[1])),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def apply_affine(points: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(N, 2) points through a (2, 3) affine."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(trans, dtype=np.float64)
    return p @ t[:, :2].T + t[:, 2]


def invert_affine(trans: np.ndarray) -> np.ndarray:
    """The (2, 3) inverse of a (2, 3) affine, or (..., 2, 3) of a stack of them: input pixels back to original."""
    t = np.asarray(trans, dtype=np.float64)
    lin_inv = np.linalg.inv(t[..., :2])
    return np.concatenate([lin_inv, -lin_inv @ t[..., 2:]], axis=-1)
