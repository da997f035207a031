"""Heatmap codec: round trips, flip rules, loss values and decoder behaviour with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cattlepose.core.config import load_config
from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema
from cattlepose.models.codec import HeatmapCodec, gaussian_blur_maps

SCHEMA = load_schema("adk17")


def _points(rng: np.random.Generator, n: int, size: int, margin: float) -> np.ndarray:
    xy = rng.uniform(margin, size - 1 - margin, (n, 2))
    return np.concatenate([xy, np.full((n, 1), 2.0)], axis=1)


@pytest.mark.parametrize("kind", ["msra", "udp"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_dark_round_trip_within_a_tenth_of_a_pixel(kind, loss):
    # sigma 2, 64 x 64 heatmaps (256 px input), random sub-pixel points, through to_probs as a network would
    codec = HeatmapCodec((256, 256), sigma=2.0, kind=kind, loss=loss, decode="dark")
    assert codec.heatmap_size == (64, 64)
    rng = np.random.default_rng(0)
    kps = _points(rng, 300, 256, margin=2.0)
    heat, weights = codec.encode(kps)
    assert weights.tolist() == [1.0] * 300
    log_heat = torch.from_numpy(np.log(heat.astype(np.float64) + 1e-12)).float()
    logits = log_heat if loss == "ce" else torch.from_numpy(heat)
    probs = codec.to_probs(logits[None]).numpy()
    xy, scores = codec.decode(probs)
    err = np.linalg.norm(xy[0] - kps[:, :2], axis=-1)
    assert err.max() < 0.1, err.max()
    peak = probs[0].reshape(300, -1).max(-1)
    if loss == "ce":  # a map like a training target scores about 1 (exactly 1 when centred on a pixel)
        assert np.allclose(scores[0], np.minimum(peak / codec.target_peak, 1.0))
        assert scores[0].min() > 0.75 and scores[0].max() <= 1.0
    else:
        assert np.allclose(scores[0], peak)


def test_ce_scores_are_on_the_mse_scale_and_rank_as_the_peaks():
    # a target centred on a pixel scores 1 under both losses; a flatter map scores less, in the peaks' order
    for sigma in (1.5, 2.0, 3.0):
        ce = HeatmapCodec((128, 128), sigma=sigma, loss="ce")
        kp = np.array([[*ce.to_input(np.array([16.0, 16.0])), 2.0]])  # on heatmap pixel (16, 16)
        heat, _ = ce.encode(kp)
        probs = heat / heat.sum()
        _, s = ce.decode(probs[None])
        assert s[0, 0] == pytest.approx(1.0, abs=1e-6)
        assert ce.target_peak == pytest.approx(1 / (2 * np.pi * sigma**2), rel=1e-3)
        flat = probs + 1.0 / probs.size
        flat /= flat.sum()
        _, s2 = ce.decode(np.stack([flat, np.full_like(probs, 1.0 / probs.size)]))
        assert 0 < s2[1, 0] < s2[0, 0] < 1.0


def test_argmax_decoder_is_within_the_quarter_pixel_rule():
    codec = HeatmapCodec((256, 256), sigma=2.0, decode="argmax", loss="mse")
    rng = np.random.default_rng(1)
    kps = _points(rng, 200, 256, margin=8.0)
    xy, _ = codec.decode(codec.encode(kps)[0][None])
    # the peak pixel is within half a heatmap pixel, the quarter shift then lands within 0.5 of it: 2 input px
    err = np.abs(xy[0] - kps[:, :2])
    assert err.max() <= 0.5 * codec.stride + 1e-9
    assert err.mean() < 0.3 * codec.stride


def test_exact_centres_encode_a_unit_peak_and_decode_exactly():
    codec = HeatmapCodec((128, 128), sigma=1.5, loss="mse")
    # msra: input x = 4u + 1.5 sits exactly on heatmap pixel u
    kps = np.array([[4 * 10 + 1.5, 4 * 7 + 1.5, 2.0]])
    heat, _ = codec.encode(kps)
    assert heat[0, 7, 10] == pytest.approx(1.0)
    assert heat[0, 7, 11] == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-6)
    for dec in ("dark", "argmax"):
        c = HeatmapCodec((128, 128), sigma=1.5, loss="mse", decode=dec)
        xy, score = c.decode(heat[None])
        assert np.allclose(xy[0, 0], kps[0, :2], atol=1e-6)
        assert score[0, 0] == pytest.approx(1.0)


def test_udp_maps_corners_to_corners():
    codec = HeatmapCodec((128, 96), kind="udp")
    hh, wh = codec.heatmap_size
    uv = codec.to_heatmap(np.array([[0.0, 0.0], [95.0, 127.0]]))
    assert np.allclose(uv, [[0, 0], [wh - 1, hh - 1]])
    assert np.allclose(codec.to_input(uv), [[0, 0], [95, 127]])


def test_weights_follow_visibility_and_the_heatmap_area():
    codec = HeatmapCodec((128, 128), sigma=1.5)
    kps = np.array(
        [[50, 50, 2], [50, 50, 1], [50, 50, 0], [-10, 50, 2], [50, 140, 2], [127.0, 0.0, 2], [np.nan, 3, 2]],
        dtype=np.float64,
    )
    heat, w = codec.encode(kps)
    assert w.tolist() == [1, 1, 0, 0, 0, 1, 0]
    assert heat.dtype == np.float32 and heat.shape == (7, 32, 32)
    assert np.all(heat[w == 0] == 0)
    assert np.isfinite(heat).all()


def test_flip_twice_is_identity_and_matches_encoding_the_mirror():
    codec = HeatmapCodec((128, 96), sigma=1.5)
    rng = np.random.default_rng(2)
    kps = np.concatenate([rng.uniform([5, 5], [90, 122], (17, 2)), np.full((17, 1), 2.0)], axis=1)
    heat, _ = codec.encode(kps)
    t = torch.from_numpy(heat)[None]
    twice = codec.flip_back(codec.flip_back(t, SCHEMA.flip_index), SCHEMA.flip_index)
    assert torch.equal(twice, t)
    # the mirror image's keypoints (x -> W - 1 - x, left/right swapped) encode to the flipped heatmaps
    mirrored = kps[list(SCHEMA.flip_index)].copy()
    mirrored[:, 0] = 95 - mirrored[:, 0]
    heat_m, _ = codec.encode(mirrored)
    back = codec.flip_back(torch.from_numpy(heat_m)[None], SCHEMA.flip_index)[0].numpy()
    assert np.abs(back - heat).max() < 1e-6
    # and the channels really moved: the right shoulder's map now holds the left shoulder's mirror
    r, left = SCHEMA.index("fore_right_shoulder"), SCHEMA.index("fore_left_shoulder")
    assert np.abs(heat_m[r] - heat[left][:, ::-1]).max() < 1e-6
    # numpy input takes the same path
    assert np.array_equal(codec.flip_back(heat[None], SCHEMA.flip_index)[0], heat[list(SCHEMA.flip_index), :, ::-1])


def test_udp_flip_is_exact_too():
    codec = HeatmapCodec((128, 128), sigma=2.0, kind="udp")
    kps = np.array([[10.3, 40.7, 2.0]] * 17)
    heat, _ = codec.encode(kps)
    m = kps.copy()
    m[:, 0] = 127 - m[:, 0]
    heat_m, _ = codec.encode(m)
    assert np.abs(heat_m[0] - heat[0][:, ::-1]).max() < 1e-6


def test_ce_loss_known_values():
    codec = HeatmapCodec((32, 32), sigma=1.0, loss="ce")
    kps = np.array([[10.0, 12.0, 2.0], [20.0, 5.0, 2.0]])
    heat, w = codec.encode(kps)
    target = torch.from_numpy(heat)[None]
    weight = torch.from_numpy(w)[None]
    # uniform logits: cross-entropy is log(H * W) whatever the target
    flat = torch.zeros(1, 2, 8, 8)
    assert codec.loss(flat, target, weight).item() == pytest.approx(np.log(64), rel=1e-6)
    # logits = log(target): the minimum, the entropy of the normalised target
    best = torch.log(target + 1e-12)
    t = heat.reshape(2, -1) / heat.reshape(2, -1).sum(-1, keepdims=True)
    entropy = -(t * np.log(t + 1e-30)).sum(-1).mean()
    assert codec.loss(best, target, weight).item() == pytest.approx(entropy, rel=1e-4)
    # a zero weight removes the keypoint from the mean
    only_first = codec.loss(best, target, torch.tensor([[1.0, 0.0]]))
    e0 = -(t[0] * np.log(t[0] + 1e-30)).sum()
    assert only_first.item() == pytest.approx(e0, rel=1e-4)
    assert codec.loss(best, target, torch.zeros(1, 2)).item() == 0.0


def test_mse_loss_known_value_and_probs():
    codec = HeatmapCodec((32, 32), sigma=1.0, loss="mse")
    target = torch.zeros(1, 2, 8, 8)
    pred = torch.full((1, 2, 8, 8), 2.0)
    assert codec.loss(pred, target, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(0.5 * 4)
    assert codec.loss(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.5 * 4 / 2)
    assert torch.equal(codec.to_probs(torch.tensor([[[[-1.0, 3.0]]]])), torch.tensor([[[[0.0, 3.0]]]]))


def test_ce_probs_are_distributions():
    codec = HeatmapCodec((64, 64), loss="ce")
    p = codec.to_probs(torch.randn(3, 4, 16, 16))
    assert torch.allclose(p.sum((-1, -2)), torch.ones(3, 4), atol=1e-5)


def test_blur_keeps_mass_and_symmetry():
    rng = np.random.default_rng(3)
    m = np.zeros((2, 15, 15))
    m[:, 7, 7] = 1.0
    b = gaussian_blur_maps(m, 5)
    assert b.sum() == pytest.approx(2.0)
    assert np.allclose(b, b[:, ::-1, :]) and np.allclose(b, b[:, :, ::-1])
    x = rng.random((3, 9, 11))
    assert np.array_equal(gaussian_blur_maps(x, 1), x)


def test_from_config_and_bad_settings():
    cfg = load_config(None, ["codec.kind=udp", "codec.sigma=2.5", "codec.loss=mse", "model.input_size=[192,128]"])
    codec = HeatmapCodec.from_config(cfg)
    assert (codec.kind, codec.sigma, codec.loss_kind, codec.heatmap_size) == ("udp", 2.5, "mse", (48, 32))
    with pytest.raises(UserError, match="blur_kernel"):
        HeatmapCodec((128, 128), blur_kernel=4)


@pytest.mark.parametrize("decoder", ["dark", "argmax"])
def test_decode_takes_tensors_and_arrays_alike(decoder):
    # predict hands the averaged probabilities over as a tensor (decoded where they are); tests and tools use
    # numpy: both must give the same coordinates and scores, including maps whose peak sits on the border
    codec = HeatmapCodec((128, 128), sigma=1.5, decode=decoder)
    rng = np.random.default_rng(7)
    kps = np.concatenate([rng.uniform(-2, 129, (40, 2)), np.full((40, 1), 2.0)], axis=1)
    heat, _ = codec.encode(kps)
    probs = codec.to_probs((torch.from_numpy(np.log(heat + 1e-6)) + 0.1 * torch.randn(40, 32, 32))[None])
    xy_t, s_t = codec.decode(probs)
    xy_n, s_n = codec.decode(probs.numpy())
    assert xy_t.shape == (1, 40, 2) and s_t.shape == (1, 40)
    assert np.array_equal(xy_t, xy_n) and np.array_equal(s_t, s_n)
    assert np.isfinite(xy_t).all()
