"""Failure-analysis numbers on hand-made predictions with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cattlepose.core.schema import schema_from_dict
from cattlepose.data.records import Sample
from cattlepose.report import analysis

# A 4-keypoint toy animal: a torso pair 10 px apart and one left/right pair.
SCHEMA = schema_from_dict(
    {
        "name": "toy",
        "keypoints": ["front", "back", "left_leg", "right_leg"],
        "pairs": [["left_leg", "right_leg"]],
        "skeleton": [["front", "back"]],
        "pck_normalizer": ["front", "back"],
    }
)


def _sample(i: int, vis: tuple[int, int, int, int] = (2, 2, 2, 2), occluded_fraction: float | None = None) -> Sample:
    kps = np.array([[0, 0, 0], [10, 0, 0], [2, 10, 0], [8, 10, 0]], dtype=float)
    kps[:, 2] = vis
    meta = {} if occluded_fraction is None else {"occluded_fraction": occluded_fraction}
    return Sample(image=Path(f"{i}.jpg"), keypoints=kps, width=20, height=20, meta=meta)


def test_perfect_predictions_have_zero_error_no_swaps_and_pck_one():
    samples = [_sample(i) for i in range(3)]
    pred = np.stack([s.keypoints.copy() for s in samples])
    ne = analysis.normalised_errors(pred, samples, SCHEMA, "torso")
    assert np.nanmax(ne) == 0 and analysis.pck(ne, 0.1) == 1.0
    assert [r.rate for r in analysis.swap_rates(pred, samples, SCHEMA)] == [0.0]


def test_swap_rate_counts_predictions_closer_to_the_partner():
    samples = [_sample(i) for i in range(4)]
    pred = np.stack([s.keypoints.copy() for s in samples])
    # sample 0: both legs exchanged (2 swapped predictions); sample 1: left leg moved onto the right leg
    pred[0, [2, 3]] = pred[0, [3, 2]]
    pred[1, 2, :2] = [7.5, 10]
    (rate,) = analysis.swap_rates(pred, samples, SCHEMA)
    assert (rate.left, rate.right, rate.count) == ("left_leg", "right_leg", 8)
    assert rate.rate == pytest.approx(3 / 8)


def test_swap_rate_min_separation_drops_pairs_that_nearly_coincide():
    samples = [_sample(i) for i in range(2)]
    samples[1].keypoints[3, :2] = [2.5, 10]  # right leg 0.5 px from the left leg: no left/right signal
    pred = np.stack([s.keypoints.copy() for s in samples])
    pred[:, [2, 3]] = pred[:, [3, 2]]
    (everything,) = analysis.swap_rates(pred, samples, SCHEMA)
    (separated,) = analysis.swap_rates(pred, samples, SCHEMA, min_separation=np.array([1.0, 1.0]))
    assert (everything.count, everything.rate) == (4, 1.0)
    assert (separated.count, separated.rate) == (2, 1.0)


def test_swap_rate_ignores_pairs_with_an_unlabelled_partner():
    samples = [_sample(0, vis=(2, 2, 2, 0))]
    pred = np.stack([samples[0].keypoints.copy()])
    pred[0, 2, :2] = [8, 10]
    (rate,) = analysis.swap_rates(pred, samples, SCHEMA)
    assert rate.count == 0 and np.isnan(rate.rate)


def test_visibility_split_on_known_offsets():
    # torso 10 px: an offset of 3 px passes PCK@0.35 and fails PCK@0.1
    samples = [_sample(0, vis=(2, 2, 1, 1)), _sample(1, vis=(2, 2, 2, 1))]
    pred = np.stack([s.keypoints.copy() for s in samples])
    pred[:, 2, 0] += 3  # left leg off by 3 px in both samples (occluded in 0, visible in 1)
    pred[1, 3, 0] += 5  # right leg of sample 1 off by 5 px (occluded): fails both
    split = analysis.visibility_split(analysis.normalised_errors(pred, samples, SCHEMA, "torso"), samples, [0.35, 0.1])
    assert split["visible"]["count"] == 5 and split["occluded"]["count"] == 3
    assert split["visible"]["pck@0.35"] == 1.0
    assert split["visible"]["pck@0.1"] == pytest.approx(4 / 5)
    assert split["occluded"]["pck@0.35"] == pytest.approx(2 / 3)
    assert split["occluded"]["pck@0.1"] == pytest.approx(1 / 3)


def test_binned_pck_by_occluded_fraction_and_unlabelled_keypoints():
    samples = [_sample(0, occluded_fraction=0.0), _sample(1, occluded_fraction=0.5), _sample(2, vis=(2, 2, 1, 0))]
    pred = np.stack([s.keypoints.copy() for s in samples])
    pred[1, :, 0] += 5  # every keypoint of the heavily occluded image fails PCK@0.35
    ne = analysis.normalised_errors(pred, samples, SCHEMA, "torso")
    assert np.isnan(ne[2, 3])  # unlabelled keypoints carry no error
    occ = np.array([analysis.occluded_fraction(s) for s in samples])
    assert occ.tolist() == [0.0, 0.5, pytest.approx(1 / 3)]
    rows = analysis.binned_pck(ne, occ, [0, 0.25, 0.4, 1.0], 0.35)
    assert [r["images"] for r in rows] == [1, 1, 1]
    assert [r["pck"] for r in rows] == [1.0, 1.0, 0.0]
    assert analysis.worst_images(ne, 1).tolist() == [1]


@pytest.mark.parametrize("kind, alpha", [("torso", 0.35), ("bbox", 0.1)])
def test_the_report_pck_is_the_metrics_pck_when_an_animal_has_no_torso(kind, alpha):
    """An animal without both torso ends is left out of torso PCK by `evaluate`; the report must not measure it
    by another length (it once fell back to the crop's long side)."""
    from cattlepose.metrics.keypoints import evaluate

    samples = [_sample(i) for i in range(3)] + [_sample(3, vis=(0, 2, 2, 2))]
    pred = np.stack([s.keypoints.copy() for s in samples])
    pred[:, 2, 0] += 3.0  # 0.3 torso, 0.15 of the box side
    pred[3, 3, 0] += 1.0
    ne = analysis.normalised_errors(pred, samples, SCHEMA, kind)
    scores = evaluate({s.key: p for s, p in zip(samples, pred, strict=True)}, samples, SCHEMA, (0.35,), (0.1,))
    assert analysis.pck(ne, alpha) == pytest.approx(scores["overall"][f"pck_{kind}@{alpha:g}"], abs=1e-12)
