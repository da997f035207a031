"""Occlusion and photometric augmentation: presets, masks that account for every changed pixel, keypoints
untouched, reproducible draws, the other-animal patch bank."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cattlepose.core.config import AugmentConfig
from cattlepose.data.augment import Augmenter, PatchBank, covered, cut_patch
from cattlepose.data.records import Sample

OCCLUDERS = ("coarse_dropout", "erasing", "fences", "posts", "polygons", "animal_patches", "keypoint_drop")


def _crop(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (128, 128), interpolation=cv2.INTER_CUBIC)
    return img


def _kps(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(5, 122, (17, 2))
    v = np.full((17, 1), 2.0)
    v[3] = 0.0
    return np.concatenate([xy, v], 1)


def _bank(tmp_path: Path, n: int = 3) -> PatchBank:
    samples = []
    for i in range(n):
        img = np.full((90, 120, 3), 30 * i, np.uint8)
        cv2.ellipse(img, (60, 45), (40, 25), 0, 0, 360, (150, 100, 60), -1)
        path = tmp_path / f"animal_{i}.png"
        cv2.imwrite(str(path), img)
        kps = np.array([[25, 45, 2], [95, 45, 2], [60, 22, 2], [60, 68, 2], [0, 0, 0]], dtype=np.float64)
        samples.append(Sample(image=path, keypoints=kps, width=120, height=90))
    return PatchBank(samples, seed=0)


def _heavy(**kw: float) -> AugmentConfig:
    return AugmentConfig(level="heavy", **kw)


def test_level_none_changes_nothing():
    aug = Augmenter(AugmentConfig(level="none"))
    img, kps = _crop(), _kps()
    out, hidden = aug(img, kps, np.random.default_rng(0))
    assert np.array_equal(out, img) and not hidden.any()


def test_light_never_occludes_and_keeps_keypoints():
    aug = Augmenter(AugmentConfig(level="light", photometric=1.0))
    img, kps = _crop(), _kps()
    kps0 = kps.copy()
    changed = 0
    for seed in range(30):
        out, mask = aug.augment(img, kps, np.random.default_rng(seed))
        assert mask.sum() == 0 and out.shape == img.shape and out.dtype == np.uint8
        changed += int(not np.array_equal(out, img))
    assert changed > 10
    assert np.array_equal(kps, kps0)


@pytest.mark.parametrize("name", OCCLUDERS)
def test_every_changed_pixel_is_in_the_occlusion_mask(tmp_path, name):
    # each occluder alone, photometric off: the mask accounts for exactly what was painted
    cfg = _heavy(photometric=0.0, **{k: float(k == name) for k in OCCLUDERS})
    aug = Augmenter(cfg, _bank(tmp_path))
    img, kps = _crop(1), _kps(1)
    kps0 = kps.copy()
    painted = 0
    for seed in range(20):
        out, mask = aug.augment(img, kps, np.random.default_rng(seed))
        diff = np.any(out != img, axis=-1)
        assert not np.any(diff & (mask == 0)), name
        painted += int(mask.sum())
        hidden = aug(img, kps, np.random.default_rng(seed))[1]
        assert np.array_equal(hidden, covered(mask, kps))
    assert painted > 0, name
    assert np.array_equal(kps, kps0)  # coordinates are only read


def test_keypoint_drop_hides_chosen_keypoints():
    aug = Augmenter(_heavy(photometric=0.0, **{k: float(k == "keypoint_drop") for k in OCCLUDERS}))
    kps = _kps(2)
    counts = [aug(_crop(2), kps, np.random.default_rng(s))[1].sum() for s in range(20)]
    assert min(counts) >= 1  # at least the chosen keypoint (the block is centred within a quarter side of it)
    # unlabelled keypoints are never reported hidden
    assert not any(aug(_crop(2), kps, np.random.default_rng(s))[1][3] for s in range(20))


def test_photometric_never_hides_keypoints():
    aug = Augmenter(_heavy(photometric=1.0, **{k: 0.0 for k in OCCLUDERS}))
    for seed in range(20):
        _, hidden = aug(_crop(3), _kps(3), np.random.default_rng(seed))
        assert not hidden.any()


def test_strength_scales_occluder_size():
    def area(strength: float) -> float:
        cfg = _heavy(photometric=0.0, strength=strength, **{k: float(k in ("posts", "polygons")) for k in OCCLUDERS})
        aug = Augmenter(cfg)
        return float(np.mean([aug.augment(_crop(), _kps(), np.random.default_rng(s))[1].mean() for s in range(40)]))

    assert area(2.0) > 1.5 * area(0.5)


def test_same_generator_same_result(tmp_path):
    aug = Augmenter(_heavy(**{k: 0.7 for k in OCCLUDERS}), _bank(tmp_path))
    a = aug.augment(_crop(), _kps(), np.random.default_rng(5))
    b = aug.augment(_crop(), _kps(), np.random.default_rng(5))
    c = aug.augment(_crop(), _kps(), np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_patch_bank_is_deterministic_and_masked(tmp_path):
    a, b = _bank(tmp_path).patches, _bank(tmp_path).patches
    assert len(a) == 3
    for p, q in zip(a, b, strict=True):
        assert np.array_equal(p.rgb, q.rgb) and np.array_equal(p.mask, q.mask)
        assert max(p.rgb.shape[:2]) <= 96
        # the hull of the keypoints covers the body but not the patch corners
        assert p.mask[p.mask.shape[0] // 2, p.mask.shape[1] // 2] == 1 and p.mask[0, 0] == 0


def test_cut_patch_of_a_missing_image_is_none(tmp_path):
    s = Sample(image=tmp_path / "nope.png", keypoints=np.zeros((3, 3)), width=10, height=10)
    assert cut_patch(s) is None


def test_covered_known_answer():
    occ = np.zeros((10, 10), np.uint8)
    occ[2:5, 6:9] = 1
    kps = np.array([[7.2, 3.4, 2], [7.0, 3.0, 0], [1.0, 1.0, 2], [20.0, 3.0, 2], [6.4, 1.6, 1]])
    assert covered(occ, kps).tolist() == [True, False, False, False, True]
