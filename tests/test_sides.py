"""Left/right pairs followed through a track (tracks/sides.py) and split into their two peaks (HeatmapCodec.
split_pairs), against synthetic truth: true walking keypoints whose pairs are given in random order frame by
frame, as a model that cannot tell near legs from far ones gives them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cattlepose.core.schema import load_schema
from cattlepose.data.synth.render import ADK17
from cattlepose.models.codec import HeatmapCodec
from cattlepose.tracks.gait import KeypointTrack, gait_table
from cattlepose.tracks.sides import follow_pairs
from test_gait import FPS, lame_herd

NAMES = list(ADK17)
PAIRS = load_schema("adk17").pairs
HOOF_PAIRS = [(a, b) for a, b in PAIRS if NAMES[a].endswith("_foot")]


def scrambled(kp: np.ndarray, seed: int) -> np.ndarray:
    """Every pair of every frame in random order (the points themselves unchanged)."""
    rng = np.random.default_rng(seed)
    out = kp.copy()
    for a, b in PAIRS:
        swap = rng.random(len(kp)) < 0.5
        out[swap, a], out[swap, b] = kp[swap, b], kp[swap, a]
    return out


def legs_kept(fixed: np.ndarray, truth: np.ndarray, a: int, b: int) -> float:
    """Fraction of the frames (legs over 10 px apart) where keypoint a is on the same leg as in the truth, up
    to one swap of the names over the whole track."""
    apart = np.linalg.norm(truth[:, a, :2] - truth[:, b, :2], axis=1) > 10
    apart &= np.isfinite(fixed[:, a, :2]).all(axis=1)
    same = np.linalg.norm(fixed[apart, a, :2] - truth[apart, a, :2], axis=1) < 1e-9
    return max(same.mean(), 1 - same.mean())


@pytest.mark.parametrize("noise", [0.0, 3.0])
def test_hooves_given_in_random_order_are_put_back_on_their_legs(noise: float) -> None:
    herd = lame_herd(noise)
    for i, (_, track) in enumerate(herd):
        fixed = follow_pairs(scrambled(track.keypoints, i), PAIRS)
        # positions never move: each frame holds the same two points of each pair
        for a, b in PAIRS:
            got = np.sort(fixed[:, [a, b], 0], axis=1)
            assert np.array_equal(got, np.sort(track.keypoints[:, [a, b], 0], axis=1))
        for a, b in HOOF_PAIRS:
            assert legs_kept(fixed, track.keypoints, a, b) >= (0.99 if noise == 0 else 0.97), NAMES[a]


def test_strides_of_scrambled_hooves_come_back_within_5_percent() -> None:
    herd = lame_herd(3.0)
    mixed = [KeypointTrack(t.track, t.frames, scrambled(t.keypoints, i)) for i, (_, t) in enumerate(herd)]
    fixed = [KeypointTrack(t.track, t.frames, follow_pairs(t.keypoints, PAIRS)) for t in mixed]
    before = gait_table(mixed, ADK17, FPS)
    after = gait_table(fixed, ADK17, FPS)
    for (w, _), b, a in zip(herd, before, after, strict=True):
        assert a.summary["stride_duration_s"] == pytest.approx(w.period, rel=0.05)
        within = [np.mean([abs(r["duration_s"] / w.period - 1) <= 0.05 for r in g.strides] or [0.0]) for g in (b, a)]
        # scrambled, a hoof's footfalls are any peaks of whichever leg its name is on: most strides are wrong
        assert within[1] >= 0.9 and within[0] < 0.6, within


def test_a_model_that_knows_sides_keeps_them() -> None:
    """Clean sides in, the same sides out: the majority labelling is the model's own."""
    for _, track in lame_herd(3.0):
        fixed = follow_pairs(track.keypoints, PAIRS)
        for a, b in HOOF_PAIRS:
            apart = np.linalg.norm(track.keypoints[:, a, :2] - track.keypoints[:, b, :2], axis=1) > 10
            same = np.linalg.norm(fixed[apart, a, :2] - track.keypoints[apart, a, :2], axis=1) < 1e-9
            assert same.mean() >= 0.97


def test_missing_frames_and_short_tracks() -> None:
    _, track = lame_herd(0.0)[0]
    kp = scrambled(track.keypoints, 0)
    kp[40:70, HOOF_PAIRS[0][0], :2] = np.nan  # one hoof unseen for 30 frames: two runs, each followed
    kp[5] = np.nan  # a frame without the animal
    fixed = follow_pairs(kp, PAIRS, max_gap=10)
    assert np.isnan(fixed[5]).all() and np.isnan(fixed[40:70, HOOF_PAIRS[0][0], :2]).all()
    for seen in (slice(0, 40), slice(70, None)):  # a frame at a run's start, legs close, may go either way
        a, b = HOOF_PAIRS[0]
        assert legs_kept(fixed[seen], track.keypoints[seen], a, b) >= 0.95
    assert np.array_equal(follow_pairs(kp[:1], PAIRS), kp[:1], equal_nan=True)  # one frame: nothing to follow
    assert follow_pairs(np.full((0, 17, 3), np.nan), PAIRS).shape == (0, 17, 3)


def _two_peaks(codec: HeatmapCodec, first: tuple[float, float], second: tuple[float, float], weak: float):
    """One map with a peak at `first` (height 1) and one at `second` (height `weak`), heatmap pixels."""
    h, w = codec.heatmap_size
    yy, xx = np.mgrid[0:h, 0:w]

    def bump(c):
        return np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * codec.sigma**2))

    return bump(first) + weak * bump(second)


def test_a_pair_on_one_point_is_split_into_its_two_peaks() -> None:
    codec = HeatmapCodec((128, 128), loss="mse")
    pairs = [(0, 1), (2, 3)]
    same = _two_peaks(codec, (10, 20), (22, 21), 0.6)
    apart_a, apart_b = _two_peaks(codec, (8, 8), (20, 8), 0.5), _two_peaks(codec, (20, 8), (8, 8), 0.5)
    maps = torch.tensor(np.stack([same, same * 0.98, apart_a, apart_b])[None], dtype=torch.float32)
    xy, scores = codec.decode(maps)
    assert np.allclose(xy[0, 0], xy[0, 1])  # both on the stronger peak
    split = codec.split_pairs(maps, pairs, 0.3)
    xy2, scores2 = codec.decode(split)
    uv = codec.to_heatmap(xy2[0])
    assert np.allclose(uv[0], (10, 20), atol=0.1) and np.allclose(uv[1], (22, 21), atol=0.1)
    # each scored by its map's height at both peaks (1 + 0.6), as one peak holding both would be
    assert scores[0, 0] == pytest.approx(1.0, abs=0.01) and scores2[0, 0] == pytest.approx(1.6, abs=0.02)
    assert scores2[0, 1] == pytest.approx(1.6 * 0.98, abs=0.02)
    # a pair already apart, a second peak under the ratio, and the ratio 0 change nothing
    assert torch.equal(split[:, 2:], maps[:, 2:])
    assert torch.equal(codec.split_pairs(maps, pairs, 0.7), maps)
    assert torch.equal(codec.split_pairs(maps, pairs, 0.0), maps)


def test_the_split_gives_each_keypoint_the_peak_its_map_prefers() -> None:
    codec = HeatmapCodec((64, 64), loss="mse")
    a = _two_peaks(codec, (4, 8), (12, 8), 0.8)  # a prefers (4, 8) a little more than b does
    b = _two_peaks(codec, (4, 8), (12, 8), 0.9)
    for order in ([a, b], [b, a]):
        maps = torch.tensor(np.stack(order)[None], dtype=torch.float32)
        uv = codec.to_heatmap(codec.decode(codec.split_pairs(maps, [(0, 1)], 0.3))[0][0])
        first = 0 if order[0] is a else 1  # the map with the weaker second peak keeps the first
        assert np.allclose(uv[first], (4, 8), atol=0.1) and np.allclose(uv[1 - first], (12, 8), atol=0.1)


def test_the_split_in_an_onnx_graph_matches_the_torch_path(tmp_path) -> None:
    """What `export --split-pairs` puts in the graph: split and decode traced, run by ONNX Runtime."""
    import onnxruntime as ort

    codec = HeatmapCodec((64, 64))  # ce, dark: the exported decode

    class Graph(torch.nn.Module):
        def forward(self, maps: torch.Tensor) -> torch.Tensor:
            return codec.decode_graph(codec.split_pairs(maps, [(0, 1), (2, 3)], 0.3))

    same = _two_peaks(codec, (4, 8), (11, 9), 0.7)
    apart_a, apart_b = _two_peaks(codec, (3, 3), (12, 3), 0.4), _two_peaks(codec, (12, 3), (3, 3), 0.4)
    one = np.stack([same, same * 0.97, apart_a, apart_b])
    maps = torch.tensor(np.stack([one, one[[1, 0, 3, 2]]]), dtype=torch.float32)
    maps = maps / maps.sum(dim=(2, 3), keepdim=True)  # probabilities, as a ce network's softmax gives
    path = tmp_path / "split.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings, as export.py
        warnings.simplefilter("ignore")
        torch.onnx.export(Graph(), (maps,), str(path), dynamo=False, opset_version=18, input_names=["maps"],
                          output_names=["kp"], dynamic_axes={"maps": {0: "n"}, "kp": {0: "n"}})  # fmt: skip
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"maps": maps.numpy()})[0]
    xy, scores = codec.decode(codec.split_pairs(maps, [(0, 1), (2, 3)], 0.3))
    assert np.allclose(got[..., :2], xy, atol=1e-3) and np.allclose(got[..., 2], scores, atol=1e-4)
    uv = codec.to_heatmap(xy[0])
    assert np.linalg.norm(uv[0] - uv[1]) > 5  # the merged pair was split, in both orders of the batch
    assert np.linalg.norm(codec.to_heatmap(xy[1])[0] - codec.to_heatmap(xy[1])[1]) > 5
