"""Top-down dataset: pixels and labels move together through crop, jitter, flip and half-body crops; the stored
matrix maps back; augmentation is reproducible; inference crops match evaluation crops; batches become the
network input and heatmap targets on the device."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cattlepose.core.config import Config, load_config
from cattlepose.core.schema import load_schema
from cattlepose.data.dataset import KeypointDataset, crop_for_inference, network_input
from cattlepose.data.images import load_image
from cattlepose.data.records import Sample
from cattlepose.data.transforms import apply_affine, invert_affine
from cattlepose.engine.loader import DeviceBatch
from cattlepose.models.codec import HeatmapCodec

SCHEMA = load_schema("adk17")
K = SCHEMA.num_keypoints
# one clearly different colour per keypoint (hues around the circle at full saturation)
COLOURS = cv2.cvtColor(
    np.stack([np.arange(K) * 180 // K, np.full(K, 255), np.full(K, 255)], 1)[None].astype(np.uint8), cv2.COLOR_HSV2RGB
)[0].astype(np.int64)


def _dot_samples(tmp_path: Path, n: int = 4, boxes: bool = False) -> list[Sample]:
    """Images with a coloured disc at each keypoint, keypoints on jittered grids (far enough apart that discs
    never touch), every fifth keypoint occluded (v=1)."""
    rng = np.random.default_rng(11)
    samples = []
    for i in range(n):
        w, h = int(rng.integers(200, 260)), int(rng.integers(170, 220))
        # upper-body keypoints on a 3 x 3 grid on the left, lower-body ones on the right, as an animal facing left
        gx, gy = np.meshgrid(np.linspace(0.1, 0.38, 3), np.linspace(0.2, 0.8, 3))
        grid = np.stack([gx.ravel(), gy.ravel()], 1)
        xy = np.zeros((K, 2))
        xy[list(SCHEMA.upper)] = grid[rng.permutation(9)[: len(SCHEMA.upper)]]
        xy[list(SCHEMA.lower)] = grid[rng.permutation(9)[: len(SCHEMA.lower)]] + [0.52, 0]
        xy = xy * [w, h] + rng.uniform(-3, 3, (K, 2))
        img = np.full((h, w, 3), 40, np.uint8)
        for k, (x, y) in enumerate(xy):
            cv2.circle(img, (round(x * 8), round(y * 8)), 7 * 8, COLOURS[k].tolist(), -1, cv2.LINE_AA, shift=3)
        path = tmp_path / f"dots_{i}.png"
        cv2.imwrite(str(path), img[..., ::-1])
        v = np.full((K, 1), 2.0)
        v[::5] = 1.0
        box = None
        if boxes:
            x0, y0 = xy.min(0) - 8
            x1, y1 = xy.max(0) + 8
            box = np.array([x0, y0, x1 - x0, y1 - y0])
        samples.append(Sample(image=path, keypoints=np.concatenate([xy, v], 1), bbox=box, width=w, height=h))
    return samples


def _cfg(*overrides: str) -> Config:
    return load_config(None, ["model.input_size=[128,128]", *overrides])


def _dataset(samples: list[Sample], cfg: Config, train: bool = True, seed: int = 0) -> KeypointDataset:
    return KeypointDataset(samples, SCHEMA, cfg, train=train, seed=seed)


def _targets(item: dict, cfg: Config) -> tuple[torch.Tensor, np.ndarray]:
    """The item's heatmaps (K, Hh, Wh) and weights (K,), as training renders them from its keypoints."""
    heat, weights = HeatmapCodec.from_config(cfg).encode_batch(item["keypoints"][None])
    return heat[0], weights[0].numpy()


GEOMETRY_ONLY = ("augment.level=light", "augment.photometric=0")


@pytest.mark.parametrize(
    "extra",
    [(), ("augment.flip=1",), ("augment.half_body=1",), ("augment.flip=1", "augment.half_body=1")],
    ids=["jitter", "flip", "half-body", "flip+half-body"],
)
@pytest.mark.parametrize("boxes", [False, True], ids=["whole-image", "box"])
def test_each_dot_lands_under_its_heatmap_peak(tmp_path, extra, boxes):
    samples = _dot_samples(tmp_path, boxes=boxes)
    cfg = _cfg(*GEOMETRY_ONLY, "augment.rotation=40", *extra)
    ds = _dataset(samples, cfg)
    codec = HeatmapCodec.from_config(cfg)
    checked, flips = 0, 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i, s in enumerate(samples):
            item = ds[i]
            img = item["image"].numpy().astype(np.int64)
            trans = item["trans"].numpy()
            flipped = np.linalg.det(trans[:, :2]) < 0
            flips += int(flipped)
            source = np.asarray(SCHEMA.flip_index) if flipped else np.arange(K)
            kps = item["keypoints"].numpy().astype(np.float64)
            # back-projection through the stored matrix returns the original coordinates
            back = apply_affine(kps[:, :2], invert_affine(trans))
            assert np.abs(back - s.keypoints[source, :2]).max() < 0.5
            assert np.array_equal(kps[:, 2], s.keypoints[source, 2])
            heatmaps, weights = _targets(item, cfg)
            xy, _ = codec.decode(codec.to_probs(torch.log(heatmaps[None] + 1e-12)).numpy())
            for k in np.flatnonzero(weights > 0):
                assert np.abs(xy[0, k] - kps[k, :2]).max() < 0.1  # the peak is at the keypoint
                x, y = np.round(xy[0, k]).astype(int)
                if not (2 <= x < 126 and 2 <= y < 126):
                    continue
                # ... and the dot under the peak has keypoint k's colour (after the label swap of a mirror)
                nearest = np.argmin(np.abs(COLOURS - img[y, x]).sum(1))
                assert nearest == source[k], (k, source[k], nearest)
                checked += 1
    assert checked > 100
    if "augment.flip=1" in extra:
        assert flips == 3 * len(samples)


def test_half_body_crops_zoom_in(tmp_path):
    samples = _dot_samples(tmp_path)
    cfg_plain = _cfg(*GEOMETRY_ONLY, "augment.half_body=0", "augment.scale=0", "augment.rotation=0")
    cfg_half = _cfg(*GEOMETRY_ONLY, "augment.half_body=1", "augment.scale=0", "augment.rotation=0")
    plain, half = _dataset(samples, cfg_plain), _dataset(samples, cfg_half)
    for i in range(len(samples)):
        a, b = plain[i]["trans"].numpy(), half[i]["trans"].numpy()
        assert abs(np.linalg.det(b[:, :2])) > 1.2 * abs(np.linalg.det(a[:, :2]))
        # fewer keypoints remain supervised: the other half falls out of the crop
        assert _targets(half[i], cfg_half)[1].sum() < _targets(plain[i], cfg_plain)[1].sum()


def test_eval_items_match_inference_crops(tmp_path):
    for boxes in (False, True):
        (tmp_path / str(boxes)).mkdir()
        samples = _dot_samples(tmp_path / str(boxes), n=2, boxes=boxes)
        ds = _dataset(samples, _cfg(), train=False)
        for i, s in enumerate(samples):
            item = ds[i]
            crop, trans = crop_for_inference(load_image(s.image), s.bbox, (128, 128))
            assert crop.dtype == np.uint8 and np.array_equal(crop, item["image"].numpy())
            assert np.array_equal(trans, item["trans"].numpy())
            assert item["hidden"].sum() == 0


def test_whole_image_crop_centres_the_image_and_box_crop_pads(tmp_path):
    samples = _dot_samples(tmp_path, n=1, boxes=True)
    s = samples[0]
    _, trans = crop_for_inference(load_image(s.image), None, (128, 128))
    c = apply_affine(np.array([[(s.width - 1) / 2, (s.height - 1) / 2]]), trans)[0]
    assert np.allclose(c, [63.5, 63.5])
    assert trans[0, 0] == pytest.approx(128 / max(s.width, s.height))
    _, trans = crop_for_inference(load_image(s.image), s.bbox, (128, 128), padding=1.25)
    assert trans[0, 0] == pytest.approx(128 / (1.25 * max(s.bbox[2:])))


def test_items_have_the_documented_types(tmp_path):
    samples = _dot_samples(tmp_path, n=2)
    item = _dataset(samples, _cfg())[1]
    assert item["image"].shape == (128, 128, 3) and item["image"].dtype == torch.uint8
    assert item["trans"].shape == (2, 3) and item["trans"].dtype == torch.float64
    assert item["keypoints"].shape == (K, 3) and item["keypoints"].dtype == torch.float32
    assert item["hidden"].shape == (K,) and item["hidden"].dtype == torch.bool
    assert item["index"] == 1


def test_level_none_is_the_eval_crop(tmp_path):
    samples = _dot_samples(tmp_path, n=2)
    a = _dataset(samples, _cfg("augment.level=none"), train=True)[0]
    b = _dataset(samples, _cfg(), train=False)[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["trans"], b["trans"])


def test_reproducible_per_seed_epoch_index_and_worker_count(tmp_path):
    samples = _dot_samples(tmp_path, n=4)
    cfg = _cfg()
    ds = _dataset(samples, cfg, seed=3)
    ds.set_epoch(2)
    first = [ds[i] for i in range(4)]
    again = _dataset(samples, cfg, seed=3)
    again.set_epoch(2)
    assert all(torch.equal(first[i]["image"], again[i]["image"]) for i in range(4))
    again.set_epoch(3)
    assert not torch.equal(first[0]["image"], again[0]["image"])
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert torch.equal(batch["image"], torch.stack([f["image"] for f in first]))
    assert torch.equal(batch["keypoints"], torch.stack([f["keypoints"] for f in first]))


def test_appearance_augmentation_never_moves_keypoints(tmp_path):
    samples = _dot_samples(tmp_path, n=4)
    light = _dataset(samples, _cfg("augment.level=light"))
    heavy = _dataset(
        samples,
        _cfg(
            "augment.level=heavy",
            *(
                f"augment.{k}=1"
                for k in (
                    "coarse_dropout",
                    "erasing",
                    "fences",
                    "posts",
                    "polygons",
                    "animal_patches",
                    "keypoint_drop",
                    "photometric",
                )
            ),
        ),
    )
    for epoch in range(2):
        light.set_epoch(epoch)
        heavy.set_epoch(epoch)
        for i in range(len(samples)):
            a, b = light[i], heavy[i]
            for key in ("keypoints", "trans"):
                assert torch.equal(a[key], b[key]), key
            assert not torch.equal(a["image"], b["image"])


@pytest.mark.parametrize("policy", ["supervise", "ignore"])
def test_occlusion_policy_sets_weights_of_hidden_keypoints(tmp_path, policy):
    samples = _dot_samples(tmp_path, n=4)
    cfg = _cfg(f"augment.occlusion_policy={policy}", "augment.keypoint_drop=1", "augment.photometric=0")
    ds, codec = _dataset(samples, cfg), HeatmapCodec.from_config(cfg)
    loader = DataLoader(ds, batch_size=4)
    hidden_total = 0
    for epoch in range(2):
        ds.set_epoch(epoch)
        raw = next(iter(loader))
        batch = DeviceBatch.from_loader(raw, torch.device("cpu"), codec, True, ignore_hidden=policy == "ignore")
        hidden = raw["hidden"].numpy()
        _, expected = codec.encode_batch(raw["keypoints"])
        w, expected = batch.weights.numpy(), expected.numpy()
        hidden_total += int(hidden.sum())
        if policy == "ignore":
            assert np.all(w[hidden] == 0) and np.array_equal(w[~hidden], expected[~hidden])
        else:
            assert np.array_equal(w, expected)
        # the heatmaps are the codec's of exactly those weights, and the images the normalised crops
        assert torch.equal(batch.heatmaps[torch.from_numpy(w == 0)], torch.zeros_like(batch.heatmaps[w == 0]))
        assert torch.equal(batch.images, network_input(raw["image"], torch.device("cpu"), True))
    assert hidden_total > 0


def test_image_cache_gives_the_same_items(tmp_path):
    from cattlepose.data.dataset import decode_all

    samples = _dot_samples(tmp_path, n=3)
    cfg = _cfg()
    cached = KeypointDataset(samples, SCHEMA, cfg, train=True, seed=1, images=decode_all(samples))
    expected = [_dataset(samples, cfg, seed=1)[i] for i in range(3)]
    for p in {s.image for s in samples}:
        p.unlink()  # the cached dataset no longer reads the files
    for i in range(3):
        for key in ("image", "keypoints", "trans", "hidden"):
            assert torch.equal(cached[i][key], expected[i][key]), key


def test_preview_writes_a_grid(tmp_path):
    from cattlepose.report.preview import preview_augmentations

    samples = _dot_samples(tmp_path, n=3)
    out = tmp_path / "grid.png"
    preview_augmentations(_cfg(), samples, SCHEMA, 5, out)
    grid = cv2.imread(str(out))
    # 5 tiles -> 3 columns x 2 rows of 256 px tiles (128 px crops at 2x) with 4 px gaps
    assert grid.shape == (2 * 260 + 4, 3 * 260 + 4, 3)
    assert not list(tmp_path.glob(".grid.png.*"))
