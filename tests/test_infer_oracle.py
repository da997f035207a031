"""The whole inference path with an oracle network that returns the encoded ground truth.

Whatever the crop, flip and back-projection do, an oracle's predictions must land on the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from cattlepose.core.config import load_config
from cattlepose.core.schema import load_schema
from cattlepose.data.dataset import crop_for_inference
from cattlepose.data.images import load_image
from cattlepose.data.records import Sample
from cattlepose.data.transforms import apply_affine
from cattlepose.engine.infer import Ensemble, predict_samples
from cattlepose.models.codec import HeatmapCodec

SCHEMA = load_schema("adk17")


class Oracle(nn.Module):
    """Answers each crop with log-heatmaps of the ground truth, in the order predict_samples sends crops.
    A batch holds crops then their mirrors, so the second half gets the mirrored, left/right-swapped truth."""

    def __init__(self, samples: list[Sample], codec: HeatmapCodec, input_size: tuple[int, int], flip: bool):
        super().__init__()
        self.samples, self.codec, self.input_size, self.flip = samples, codec, input_size, flip
        self.cursor = 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def _logits(self, kps: np.ndarray) -> torch.Tensor:
        heat, _ = self.codec.encode(kps)
        return torch.from_numpy(np.log(heat.astype(np.float64) + 1e-12)).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0] // 2 if self.flip else x.shape[0]
        batch = self.samples[self.cursor : self.cursor + n]
        self.cursor += n
        plain, mirrored = [], []
        w_in = self.input_size[1]
        for s in batch:
            _, trans = crop_for_inference(load_image(s.image), s.bbox, self.input_size, 1.25)
            kps = s.keypoints.copy()
            kps[:, :2] = apply_affine(kps[:, :2], trans)
            plain.append(self._logits(kps))
            m = kps[list(SCHEMA.flip_index)].copy()
            m[:, 0] = (w_in - 1) - m[:, 0]  # pixel centres mirror about (W - 1) / 2
            mirrored.append(self._logits(m))
        out = plain + (mirrored if self.flip else [])
        return torch.stack(out) + 0 * self.dummy


def _make_samples(tmp_path: Path, n: int, boxes: bool) -> list[Sample]:
    rng = np.random.default_rng(7)
    samples = []
    for i in range(n):
        w, h = int(rng.integers(60, 300)), int(rng.integers(60, 300))
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        path = tmp_path / f"img_{i:03d}.png"
        cv2.imwrite(str(path), img)
        if boxes:
            bw, bh = rng.uniform(0.4, 0.8) * w, rng.uniform(0.4, 0.8) * h
            bx, by = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = np.array([bx, by, bw, bh])
            lo, hi = np.array([bx, by]) + 0.08 * np.array([bw, bh]), np.array([bx, by]) + 0.92 * np.array([bw, bh])
        else:
            # joints right at the border have half a Gaussian, which no decoder recovers exactly
            box = None
            lo, hi = 0.08 * np.array([w, h]), 0.92 * np.array([w, h])
        xy = rng.uniform(lo, hi, size=(SCHEMA.num_keypoints, 2))
        kps = np.concatenate([xy, np.full((SCHEMA.num_keypoints, 1), 2.0)], axis=1)
        samples.append(Sample(image=path, keypoints=kps, bbox=box, width=w, height=h))
    return samples


def _predict(samples: list[Sample], flip: bool, batch_size: int = 4) -> np.ndarray:
    cfg = load_config(None, ["model.input_size=[128,128]", "model.channels_last=false"])
    codec = HeatmapCodec.from_config(cfg)
    oracle = Oracle(samples, codec, cfg.model.input_size, flip)
    ens = Ensemble([oracle], codec, SCHEMA, cfg, torch.device("cpu"))
    preds = predict_samples(ens, samples, flip=flip, batch_size=batch_size)
    return preds.coords


@pytest.mark.parametrize("boxes", [False, True], ids=["whole-image", "coco-boxes"])
def test_oracle_recovers_ground_truth_within_half_a_pixel(tmp_path, boxes):
    samples = _make_samples(tmp_path, 10, boxes)
    gt = np.stack([s.keypoints[:, :2] for s in samples])
    for flip in (False, True):
        err = np.linalg.norm(_predict(samples, flip) - gt, axis=-1)
        assert err.max() < 0.5, (flip, err.max())


def test_flipped_oracle_equals_unflipped(tmp_path):
    samples = _make_samples(tmp_path, 6, boxes=False)
    a, b = _predict(samples, flip=False), _predict(samples, flip=True)
    assert np.abs(a - b).max() < 0.25
