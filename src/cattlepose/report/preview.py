"""`cattlepose preview-aug`: a PNG grid of augmented training crops with the keypoints they are trained on.

What you see is exactly what the network gets (the dataset item's crop) and what it is asked for (the item's
keypoints, weighted as the codec weights them): visible keypoints filled, occluded or augmentation-hidden ones
hollow, keypoints with zero weight left out, skeleton drawn. Left-side joints are blue, right-side red, the
midline green, so a wrong label swap after a mirror shows at a glance.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.dataset import KeypointDataset
from cattlepose.data.records import Sample
from cattlepose.models.codec import HeatmapCodec

UPSCALE = 2  # crops are 128-256 px; twice that keeps the markers legible
_LEFT, _RIGHT, _MID = (60, 140, 255), (255, 70, 60), (80, 220, 80)


def _side_colours(schema: KeypointSchema) -> list[tuple[int, int, int]]:
    out = []
    for name in schema.keypoints:
        n = name.lower()
        out.append(_LEFT if "left" in n else _RIGHT if "right" in n else _MID)
    return out


def render_item(item: dict, schema: KeypointSchema, codec: HeatmapCodec, ignore_hidden: bool = False) -> np.ndarray:
    """One dataset item as an RGB tile with its target keypoints and skeleton."""
    img = cv2.resize(item["image"].numpy(), None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_NEAREST)
    kps = item["keypoints"].numpy().astype(np.float64)
    hidden = item["hidden"].numpy() if "hidden" in item else np.zeros(len(kps), bool)
    supervised = kps.copy()
    if ignore_hidden:
        supervised[hidden, 2] = 0
    weights = codec.encode(supervised)[1]
    # marker centres: input pixel centre x sits at UPSCALE * x + (UPSCALE - 1) / 2 in the tile
    pts = kps[:, :2] * UPSCALE + (UPSCALE - 1) / 2
    shown = weights > 0
    colours = _side_colours(schema)
    for a, b in schema.skeleton:
        if shown[a] and shown[b]:
            pa, pb = np.round(pts[[a, b]] * 16).astype(int)
            cv2.line(img, tuple(pa), tuple(pb), (230, 230, 230), 1, cv2.LINE_AA, shift=4)
    for k in np.flatnonzero(shown):
        c = np.round(pts[k] * 16).astype(int)
        hollow = kps[k, 2] < 2 or hidden[k]
        cv2.circle(img, tuple(c), 3 * 16, colours[k], 1 if hollow else -1, cv2.LINE_AA, shift=4)
        if not hollow:
            cv2.circle(img, tuple(c), 3 * 16, (0, 0, 0), 1, cv2.LINE_AA, shift=4)
    return img


def preview_augmentations(cfg: Config, samples: list[Sample], schema: KeypointSchema, n: int, out: Path) -> None:
    """Write a PNG grid of `n` augmented training crops (samples spread over the set, seeded by train.seed)."""
    if not samples:
        raise UserError("no training samples to preview", field="data.train")
    if n < 1:
        raise UserError(f"need at least one crop, got {n}", field="-n")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError("the preview is written as PNG; give a .png file name", path=out)
    ds = KeypointDataset(samples, schema, cfg, train=True, seed=cfg.train.seed)
    codec, ignore_hidden = HeatmapCodec.from_config(cfg), cfg.augment.occlusion_policy == "ignore"
    rng = np.random.default_rng(cfg.train.seed)
    order = rng.permutation(len(samples))
    tiles = []
    for j in range(n):
        ds.set_epoch(j // len(samples))  # more crops than samples: later epochs give fresh draws
        tiles.append(render_item(ds[int(order[j % len(samples)])], schema, codec, ignore_hidden))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    th, tw = tiles[0].shape[:2]
    gap = 4
    grid = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 255, np.uint8)
    for j, tile in enumerate(tiles):
        r, c = divmod(j, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        grid[y : y + th, x : x + tw] = tile
    ok, buf = cv2.imencode(".png", grid[..., ::-1])
    if not ok:  # pragma: no cover - OpenCV only fails here on absurd sizes
        raise RuntimeError("PNG encoding failed")
    with atomic_open(out, "wb") as f:
        f.write(buf.tobytes())
