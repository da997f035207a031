"""Metrics against hand-computed values: perfect predictions, known offsets, normaliser fallbacks, OKS AP."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema, schema_from_dict
from cattlepose.data.records import Sample
from cattlepose.metrics.keypoints import evaluate

SCHEMA = load_schema("adk17")
K = SCHEMA.num_keypoints
FORE, REAR = SCHEMA.pck_pair  # fore_spine, rear_spine


def cow(key: str, bbox=(0, 0, 200, 100), width=400, height=300, occluded=()) -> Sample:
    """17 labelled keypoints with a torso of exactly 100 px (fore_spine (100, 50), rear_spine (200, 50))."""
    rng = np.random.default_rng(len(key))
    kps = np.concatenate([rng.uniform(0, 200, (K, 1)), rng.uniform(0, 100, (K, 1)), np.full((K, 1), 2.0)], axis=1)
    kps[FORE, :2] = (100, 50)
    kps[REAR, :2] = (200, 50)
    kps[list(occluded), 2] = 1
    return Sample(image=f"/x/{key}.jpg", keypoints=kps, bbox=None if bbox is None else bbox, width=width, height=height)


def shifted(s: Sample, dx) -> np.ndarray:
    """Predictions moved right by dx (a number or one per keypoint)."""
    p = s.keypoints[:, :2].copy()
    p[:, 0] += np.broadcast_to(dx, (K,))
    return p


def test_perfect_predictions_score_one_and_zero_error():
    samples = [cow("a"), cow("b", occluded=(3, 4))]
    r = evaluate({s.key: s.keypoints[:, :2] for s in samples}, samples, SCHEMA)
    o = r["overall"]
    for name in ("pck_torso@0.35", "pck_torso@0.1", "pck_bbox@0.1", "pck_bbox@0.2", "oks_ap", "oks_ap50", "oks_ar"):
        assert o[name] == pytest.approx(1.0), name
    assert o["rmse"] == 0 and o["median_error"] == 0 and o["mean_error"] == 0
    assert r["n_samples"] == 2 and r["n_keypoints"] == 2 * K
    assert r["by_visibility"]["occluded"]["n"] == 2 and r["by_visibility"]["visible"]["n"] == 2 * K - 2
    json.dumps(r, allow_nan=False)  # plain JSON
    assert list(o) == ["pck_torso@0.35", "pck_torso@0.1", "pck_bbox@0.1", "pck_bbox@0.2", "oks_ap", "oks_ap50",
                       "oks_ap75", "oks_ar", "rmse", "median_error", "mean_error"]  # fmt: skip


def test_known_offsets_give_known_pck_and_errors():
    # torso 100 px: thresholds 35 (@0.35) and 10 (@0.1); box max(200, 100) = 200: thresholds 20 and 40
    s = cow("a")
    dx = np.where(np.arange(K) < 5, 30.0, 5.0)  # 5 keypoints 30 px off, 12 keypoints 5 px off
    r = evaluate({s.key: shifted(s, dx)}, [s], SCHEMA)
    o = r["overall"]
    assert o["pck_torso@0.35"] == 1.0
    assert o["pck_torso@0.1"] == pytest.approx(12 / 17)
    assert o["pck_bbox@0.1"] == pytest.approx(12 / 17)
    assert o["pck_bbox@0.2"] == 1.0
    assert o["rmse"] == pytest.approx(math.sqrt((5 * 900 + 12 * 25) / 17))
    assert o["median_error"] == 5.0 and o["mean_error"] == pytest.approx((5 * 30 + 12 * 5) / 17)
    pk = r["per_keypoint"]
    assert pk["fore_head"]["pck_torso@0.1"] == 0.0 and pk["fore_head"]["rmse"] == pytest.approx(30)
    assert pk["hip"]["pck_torso@0.1"] == 1.0 and pk["hip"]["n"] == 1


def test_visibility_split_and_custom_thresholds():
    s = cow("a", occluded=(0, 1, 2))
    dx = np.where(np.arange(K) < 3, 50.0, 0.0)  # only the occluded keypoints are wrong
    r = evaluate({s.key: shifted(s, dx)}, [s], SCHEMA, pck_torso=(0.6, 0.2), pck_bbox=(0.3,))
    vis, occ = r["by_visibility"]["visible"], r["by_visibility"]["occluded"]
    assert occ["n"] == 3 and vis["n"] == 14
    assert occ["pck_torso@0.6"] == 1.0 and occ["pck_torso@0.2"] == 0.0 and occ["pck_bbox@0.3"] == 1.0
    assert occ["rmse"] == pytest.approx(50) and vis["rmse"] == 0
    assert vis["pck_torso@0.2"] == 1.0
    assert set(r["overall"]) >= {"pck_torso@0.6", "pck_torso@0.2", "pck_bbox@0.3"}


def test_no_occluded_keypoints_gives_none_not_nan():
    s = cow("a")
    occ = evaluate({s.key: shifted(s, 1.0)}, [s], SCHEMA)["by_visibility"]["occluded"]
    assert occ["n"] == 0 and occ["rmse"] is None and occ["pck_bbox@0.1"] is None


def test_box_normaliser_falls_back_to_the_image_then_the_keypoints():
    # offset 25 px: the box 200 px (@0.1 = 20) misses; a 300x260 image (@0.1 = 30) hits
    s_box, s_img = cow("a"), cow("b", bbox=None, width=300, height=260)
    preds = {s_box.key: shifted(s_box, 25), s_img.key: shifted(s_img, 25)}
    pk = evaluate(preds, [s_box, s_img], SCHEMA)["overall"]["pck_bbox@0.1"]
    assert pk == pytest.approx(0.5)
    # no box, no size: the labelled keypoints span x 0..240 -> normaliser 240, threshold 24
    s = cow("c", bbox=None, width=None, height=None)
    s.keypoints[0, :2] = (0, 0)
    s.keypoints[1, :2] = (240, 0)
    o = evaluate({s.key: shifted(s, 23)}, [s], SCHEMA)["overall"]
    assert o["pck_bbox@0.1"] == 1.0
    o = evaluate({s.key: shifted(s, 25)}, [s], SCHEMA)["overall"]
    assert o["pck_bbox@0.1"] == 0.0


def test_samples_without_a_torso_length_are_left_out_of_torso_pck():
    good, bad = cow("a"), cow("b")
    bad.keypoints[REAR] = 0  # rear_spine unlabelled: no torso length
    preds = {good.key: shifted(good, 5), bad.key: shifted(bad, 50)}
    r = evaluate(preds, [good, bad], SCHEMA)
    assert r["torso_unavailable"] == 1
    assert r["overall"]["pck_torso@0.1"] == 1.0  # only the good sample counts
    assert r["overall"]["pck_bbox@0.2"] == pytest.approx(17 / 33)  # box PCK still sees both (16 labelled in b)
    assert r["n_keypoints"] == 33


def test_unlabelled_keypoints_are_ignored():
    s = cow("a")
    s.keypoints[5] = 0
    p = shifted(s, 0.0)
    p[5] = (1e4, 1e4)  # wild, but unlabelled
    r = evaluate({s.key: p}, [s], SCHEMA)
    assert r["overall"]["rmse"] == 0 and r["per_keypoint"][SCHEMA.keypoints[5]]["n"] == 0
    assert r["per_keypoint"][SCHEMA.keypoints[5]]["rmse"] is None


def test_schema_without_pck_pair_has_no_torso_keys():
    schema = schema_from_dict({"name": "tiny", "keypoints": ["a", "b"]})
    s = Sample(image="/x/t.jpg", keypoints=[[0, 0, 2], [10, 0, 2]], bbox=[0, 0, 10, 10])
    r = evaluate({"t": np.array([[0.5, 0], [10, 0]])}, [s], schema)
    assert not any(k.startswith("pck_torso") for k in r["overall"])
    assert r["overall"]["pck_bbox@0.1"] == 1.0 and r["torso_unavailable"] is None


def test_missing_or_malformed_predictions_are_user_errors():
    samples = [cow("a"), cow("b"), cow("c")]
    with pytest.raises(UserError, match=r"no prediction for 2 of 3 .*b, c"):
        evaluate({"a": samples[0].keypoints[:, :2]}, samples, SCHEMA)
    with pytest.raises(UserError, match="shape"):
        evaluate({"a": np.zeros((3, 2))}, samples[:1], SCHEMA)
    bad = samples[0].keypoints[:, :2].copy()
    bad[2, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        evaluate({"a": bad}, samples[:1], SCHEMA)


def oks_offsets(s: Sample, oks: float) -> np.ndarray:
    """Per-keypoint x offsets that make every keypoint's OKS term, and so the OKS, exactly `oks`:
    exp(-d² / (2 area (2 sigma)²)) = oks  <=>  d = 2 sigma sqrt(-2 area ln oks)."""
    area = s.bbox[2] * s.bbox[3]
    return 2 * np.asarray(SCHEMA.sigmas) * math.sqrt(-2 * area * math.log(oks))


def test_oks_ap_on_two_animals_matches_the_hand_computed_value():
    """Animal A is predicted with OKS 0.97, B with OKS 0.62. At thresholds 0.50, 0.55, 0.60 both are true
    positives (AP 1, recall 1); from 0.65 to 0.95 only A is. With A scored higher, the precision is 1 up
    to recall 0.5: 51 of COCO's 101 recall points -> AP 51/101, recall 0.5. Scored lower, B's false positive
    comes first and the precision is 0.5 there."""
    a, b = cow("a"), cow("b", bbox=(10, 20, 150, 120))
    preds = {
        a.key: np.concatenate([shifted(a, oks_offsets(a, 0.97)), np.full((K, 1), 0.9)], axis=1),
        b.key: np.concatenate([shifted(b, oks_offsets(b, 0.62)), np.full((K, 1), 0.4)], axis=1),
    }
    o = evaluate(preds, [a, b], SCHEMA)["overall"]
    assert o["oks_ap50"] == pytest.approx(1.0)
    assert o["oks_ap75"] == pytest.approx(51 / 101)
    assert o["oks_ap"] == pytest.approx((3 + 7 * 51 / 101) / 10)
    assert o["oks_ar"] == pytest.approx((3 + 7 * 0.5) / 10)
    # swap the scores: the wrong animal ranks first
    preds[a.key][:, 2], preds[b.key][:, 2] = 0.4, 0.9
    o = evaluate(preds, [a, b], SCHEMA)["overall"]
    assert o["oks_ap75"] == pytest.approx(0.5 * 51 / 101)
    assert o["oks_ap"] == pytest.approx((3 + 7 * 0.5 * 51 / 101) / 10)
    assert o["oks_ar"] == pytest.approx(0.65)  # recall does not depend on the ranking


def test_oks_uses_the_image_area_for_whole_image_crops():
    """With bbox None the object area is width * height: the same offsets that give OKS 0.62 for a
    200x100 box give OKS 0.62^(1/6) = 0.92 for a 400x300 image (the exponent scales with 1/area)."""
    boxed = cow("a")
    d = oks_offsets(boxed, 0.62)
    whole = cow("a", bbox=None, width=400, height=300)
    o = evaluate({whole.key: shifted(whole, d)}, [whole], SCHEMA)["overall"]
    assert 0.62 ** (1 / 6) > 0.9
    assert o["oks_ap"] == pytest.approx(0.9)  # 0.92 clears every threshold up to 0.90 ...
    o_boxed = evaluate({boxed.key: shifted(boxed, d)}, [boxed], SCHEMA)["overall"]
    assert o_boxed["oks_ap"] == pytest.approx(0.3)  # ... while 0.62 clears 0.50, 0.55, 0.60 only


def _two_species():
    """Six animals, three 'sheep' and three 'horse', predicted with different offsets and scores, one horse
    without a torso length and one sheep keypoint occluded; predictions as (K, 3) with scores."""
    samples, preds = [], {}
    for i in range(6):
        s = cow(f"animal{i}", bbox=(0, 0, 200 + 20 * i, 100), occluded=(3,) if i == 1 else ())
        s.meta["category"] = "sheep" if i % 2 == 0 else "horse"
        if i == 3:
            s.keypoints[REAR, 2] = 0
        dx = np.linspace(0, 12 * (i + 1), K)
        score = np.full((K, 1), 0.9 - 0.1 * i)
        samples.append(s)
        preds[s.key] = np.concatenate([shifted(s, dx), score], axis=1)
    return samples, preds


def test_by_category_equals_evaluating_each_category_alone():
    samples, preds = _two_species()
    r = evaluate(preds, samples, SCHEMA, pck_torso=(0.35, 0.2), pck_bbox=(0.1,))
    assert list(r["by_category"]) == ["sheep", "horse"]  # in order of first appearance
    for name in ("sheep", "horse"):
        alone = evaluate(
            preds, [s for s in samples if s.meta["category"] == name], SCHEMA, pck_torso=(0.35, 0.2), pck_bbox=(0.1,)
        )
        part = r["by_category"][name]
        assert set(part) == {"n_samples", "n_keypoints", "torso_unavailable", "overall"}
        for key in part:
            assert part[key] == alone[key], (name, key)
        assert "by_category" not in alone
    assert r["by_category"]["sheep"]["n_samples"] == 3 and r["by_category"]["horse"]["torso_unavailable"] == 1
    # the split is a real one: the categories differ from each other
    assert r["by_category"]["sheep"]["overall"]["mean_error"] < r["by_category"]["horse"]["overall"]["mean_error"]
    json.dumps(r, allow_nan=False)


def test_by_category_leaves_the_rest_of_the_result_unchanged():
    samples, preds = _two_species()
    split = evaluate(preds, samples, SCHEMA)
    for s in samples:
        del s.meta["category"]
    plain = evaluate(preds, samples, SCHEMA)
    assert "by_category" not in plain
    assert {k: v for k, v in split.items() if k != "by_category"} == plain
    assert list(split)[:-1] == list(plain)  # same keys in the same order, by_category last


def test_one_category_gives_no_split():
    samples, preds = _two_species()
    for s in samples:
        s.meta["category"] = "cow"
    assert "by_category" not in evaluate(preds, samples, SCHEMA)


def test_a_left_right_pair_on_one_point_is_counted_as_merged():
    """Both fore hooves predicted on the left one: merged for every animal whose two hooves are apart; a pair
    whose truth is close is not counted (it may rightly be one point), and correct predictions merge nothing."""
    from cattlepose.metrics.keypoints import merged_pairs

    right, left = SCHEMA.index("fore_right_foot"), SCHEMA.index("fore_left_foot")
    samples = [cow(f"c{i}") for i in range(12)]
    for i, s in enumerate(samples):
        s.keypoints[right, :2] = (60, 95)
        s.keypoints[left, :2] = (90, 95) if i < 10 else (65, 95)  # two of them 5 px apart: under 0.1 of 200 px
    merged = {}
    for s in samples:
        p = s.keypoints[:, :2].copy()
        p[right] = p[left] + 0.5
        merged[s.key] = p
    pair = "fore_right_foot / fore_left_foot"
    r = evaluate(merged, samples, SCHEMA)
    assert r["left_right"][pair] == {"n": 10, "merged": 1.0}
    assert r["left_right"]["rear_right_foot / rear_left_foot"]["merged"] == 0.0
    assert len(r["left_right"]) == len(SCHEMA.pairs)
    (line,) = merged_pairs(r)
    assert line.startswith(f"{pair}: both predictions on one point in 100% of 10 animals")
    assert merged_pairs(r, min_n=11) == []
    perfect = evaluate({s.key: s.keypoints[:, :2] for s in samples}, samples, SCHEMA)
    assert perfect["left_right"][pair] == {"n": 10, "merged": 0.0} and merged_pairs(perfect) == []
    json.dumps(r, allow_nan=False)
