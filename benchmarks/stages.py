"""One training item's stages timed in this process: decode, crop (the affine warp), augment, the whole item.

Shared by bench_loader.py and bench_gpu.py (each run as a script, so this folder is on the path).
"""

from __future__ import annotations

import time

import numpy as np

from cattlepose.data.augment import covered
from cattlepose.data.dataset import KeypointDataset
from cattlepose.data.images import load_image
from cattlepose.data.transforms import warp


def stage_times(dataset: KeypointDataset, items: int = 64) -> dict[str, float]:
    """Milliseconds per item of each stage of a training item, in this process: decode, crop (the affine warp),
    augment (occluders and photometric), and the whole item as the loader gets it."""
    stages = dict.fromkeys(("decode", "crop", "augment", "item"), 0.0)
    n = min(items, len(dataset))
    h, w = dataset.input_size
    for i in range(n):
        s = dataset.samples[i]
        t0 = time.perf_counter()
        image = load_image(s.image)
        t1 = time.perf_counter()
        crop = warp(image, dataset.eval_affine(s, image), (w, h))
        t2 = time.perf_counter()
        if dataset.augmenter is not None:
            _, occluded = dataset.augmenter.augment(crop, s.keypoints, np.random.default_rng(i))
            covered(occluded, s.keypoints)
        t3 = time.perf_counter()
        dataset[i]
        t4 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[key] += dt * 1000 / n
    return stages
