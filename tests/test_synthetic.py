"""The synthetic cattle renderer and `synthesize`: geometry, visibility from the label map, flip consistency,
the ADK layout round trip, determinism and the default occlusion mix."""

from __future__ import annotations

import csv
import dataclasses
import filecmp
import json

import cv2
import numpy as np
import pytest

from cattlepose.core.schema import load_schema
from cattlepose.data.formats import read_samples
from cattlepose.data.synth import parts
from cattlepose.data.synth.render import ADK17, render, render_animal, sample_scene
from cattlepose.data.synth.scene import FARMS
from cattlepose.data.synthetic import render_preview, synthesize

SEEDS = range(40)
LEFT = [i for i, n in enumerate(ADK17) if "_left_" in n]
RIGHT = [i for i, n in enumerate(ADK17) if "_right_" in n]


@pytest.fixture(scope="module")
def schema():
    return load_schema("adk17")


@pytest.fixture(scope="module")
def renders():
    return [render_animal(s) for s in SEEDS]


def _under(r, xy):
    h, w = r.labels.shape
    xi = np.clip(np.floor(xy[:, 0] + 0.5).astype(int), 0, w - 1)
    yi = np.clip(np.floor(xy[:, 1] + 0.5).astype(int), 0, h - 1)
    return r.labels[yi, xi]


def test_schema_order_matches_renderer(schema):
    assert tuple(schema.keypoints) == ADK17


def test_keypoints_lie_inside_the_crop_and_sizes_are_competition_like(renders):
    sizes = []
    for r in renders:
        h, w = r.labels.shape
        assert r.image.shape == (h, w, 3) and r.image.dtype == np.uint8
        x, y = r.keypoints[:, 0], r.keypoints[:, 1]
        # stated margin: half a pixel (the crop spans -0.5 .. W-0.5 in pixel-centre coordinates)
        assert x.min() >= -0.5 and x.max() <= w - 0.5 and y.min() >= -0.5 and y.max() <= h - 0.5
        assert min(h, w) >= 50 and max(h, w) <= 480
        sizes.append(max(h, w))
        # the animal fills most of the crop: its joints span most of both sides
        assert np.ptp(x) > 0.6 * w and np.ptp(y) > 0.6 * h
    assert 150 <= np.median(sizes) <= 400


def test_v1_exactly_where_a_covering_part_is_under_the_joint(renders):
    for r in renders:
        under = _under(r, r.keypoints[:, :2])
        for k, (u, d) in enumerate(zip(under, r.depth, strict=True)):
            covered = int(u) in parts.cover_ids(d)
            assert r.keypoints[k, 2] == (1 if covered else 2), (r.scene.seed, ADK17[k], int(u), d)


def test_occluder_masks_explain_every_object_occlusion():
    """Rendering the same scene without foreground objects: the joints do not move, and each joint that became
    hidden is covered by an occluder id in the full render's mask (and vice versa)."""
    n_obj = 0
    for seed in SEEDS:
        scene = sample_scene(np.random.default_rng(seed), occlusion=2.0)
        full = render(scene, effects=False)
        bare = render(dataclasses.replace(scene, occluder_kinds=()), effects=False)
        np.testing.assert_allclose(full.keypoints[:, :2], bare.keypoints[:, :2])
        assert not np.isin(bare.labels, parts.OCCLUDERS).any()
        hidden_by_object = np.isin(_under(full, full.keypoints), parts.OCCLUDERS)
        assert np.all(full.keypoints[hidden_by_object, 2] == 1)
        changed = (bare.keypoints[:, 2] == 2) & (full.keypoints[:, 2] == 1)
        assert np.all(hidden_by_object[changed])
        # the mask of the occluders alone, drawn from the label map, covers exactly those joints
        mask = np.isin(full.labels, parts.OCCLUDERS)
        xy = np.floor(full.keypoints[:, :2] + 0.5).astype(int)
        np.testing.assert_array_equal(mask[xy[:, 1], xy[:, 0]], hidden_by_object)
        n_obj += int(hidden_by_object.sum())
    assert n_obj > 20  # the scenes really had objects in front of joints


def test_far_shoulders_hide_behind_the_body_and_near_joints_never_self_occlude():
    far_hidden, near_self = [], 0
    for seed in SEEDS:
        scene = dataclasses.replace(sample_scene(np.random.default_rng(seed)), occluder_kinds=())
        r = render(scene, effects=False)
        far = [k for k, d in enumerate(r.depth) if d == "far"]
        near = [k for k, d in enumerate(r.depth) if d == "near"]
        far_sh = [k for k in far if "shoulder" in ADK17[k]]
        far_hidden += list(r.keypoints[far_sh, 2] == 1)
        near_self += int((r.keypoints[near, 2] == 1).sum())
        assert len(far) == 6 and len(near) == 6
    assert np.mean(far_hidden) > 0.95
    assert near_self == 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_flipped_sample_with_swapped_labels_matches_mirrored_render(seed, schema):
    scene = sample_scene(np.random.default_rng(seed), occlusion=1.5)
    r = render(scene, effects=False)
    m = render(scene, mirror=True, effects=False)
    h, w = r.labels.shape
    assert m.labels.shape == (h, w)
    flipped = r.keypoints[list(schema.flip_index)].copy()
    flipped[:, 0] = (w - 1) - flipped[:, 0]
    np.testing.assert_allclose(m.keypoints[:, :2], flipped[:, :2], atol=1e-9)
    assert np.mean(m.keypoints[:, 2] == flipped[:, 2]) >= 15 / 17  # rasterisation at a part edge may differ
    assert np.mean(m.labels == r.labels[:, ::-1]) > 0.99
    assert np.mean(np.abs(m.image.astype(int) - r.image[:, ::-1].astype(int))) < 3.0
    assert m.near != r.near
    # with the camera effects too (noise and light are mirrored with the scene)
    re, me = render(scene), render(scene, mirror=True)
    assert np.mean(np.abs(me.image.astype(int) - re.image[:, ::-1].astype(int))) < 3.0


def test_left_labels_sit_on_the_left_legs(renders):
    """Anatomy, not image side: the near (camera-side) legs are the right ones when the head points right.
    The camera looks down a little, so the near side is drawn lower: the right shoulders lie below the left
    ones exactly when the animal faces right. Visible left joints sit on the left legs' pixels."""
    agree = []
    for r in renders:
        k = r.keypoints
        faces_right = k[ADK17.index("fore_head"), 0] > k[ADK17.index("hip"), 0]
        assert r.near == ("right" if faces_right else "left")
        sh_r = k[[ADK17.index("fore_right_shoulder"), ADK17.index("rear_right_shoulder")], 1].mean()
        sh_l = k[[ADK17.index("fore_left_shoulder"), ADK17.index("rear_left_shoulder")], 1].mean()
        agree.append((sh_r > sh_l) == faces_right)
        under = _under(r, k[:, :2])
        near_ids = {"fore": parts.NEAR_FORE, "rear": parts.NEAR_HIND}
        far_ids = {"fore": parts.FAR_FORE, "rear": parts.FAR_HIND}
        for i in LEFT + RIGHT:
            if k[i, 2] != 2 or "shoulder" in ADK17[i]:
                continue  # hidden joints, and shoulders (on the body outline), say nothing about the leg
            limb, side, _ = ADK17[i].split("_")
            expected = near_ids[limb] if side == r.near else far_ids[limb]
            assert under[i] == expected, (r.scene.seed, ADK17[i], int(under[i]))
    assert np.mean(agree) > 0.95


def test_default_mix_and_occlusion_level():
    def stats(level, n=150):
        occ, obj = [], []
        for i in range(n):
            r = render(sample_scene(np.random.default_rng([7, i]), occlusion=level), effects=False)
            v = r.keypoints[:, 2]
            occ.append(np.mean(v == 1))
            obj.append(np.mean(np.isin(np.array(r.occluded_by), parts.OCCLUDERS) & (v == 1)))
        return np.array(occ), np.array(obj)

    occ1, obj1 = stats(1.0)
    assert 0.20 <= occ1.mean() <= 0.35
    assert np.mean(occ1 > 0) >= 0.5
    _, obj0 = stats(0.0, 60)
    assert obj0.max() == 0.0  # level 0: self-occlusion only
    _, obj2 = stats(2.0, 60)
    assert obj2.mean() > obj1.mean() > obj0.mean()


def test_variety_of_farms_categories_coats_and_facing():
    scenes = [sample_scene(np.random.default_rng(i)) for i in range(300)]
    assert {s.farm.name for s in scenes} == {f.name for f in FARMS}
    assert {s.anatomy.category for s in scenes} == {"calf", "cow", "bull"}
    assert {s.pose.facing for s in scenes} == {-1, 1}
    assert {s.pose.head for s in scenes} == {"up", "level", "down", "graze"}
    lum = [np.mean(s.coat.base) for s in scenes]
    assert min(lum) < 50 and max(lum) > 200  # black through white
    calves = [s.anatomy.length for s in scenes if s.anatomy.category == "calf"]
    bulls = [s.anatomy.length for s in scenes if s.anatomy.category == "bull"]
    assert np.mean(calves) < np.mean(bulls)


def test_synthesize_writes_the_adk_layout_that_reads_back(tmp_path, schema):
    out = tmp_path / "synth"
    calls = []
    summary = synthesize(out, n_train=14, n_test=5, seed=3, preview=tmp_path / "p.png",
                         progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls == [(i, 19) for i in range(1, 20)]
    assert summary["images"] == 19 and summary["images_per_s"] > 0
    assert 0 < summary["keypoints_occluded"] < 1
    train, sch = read_samples("adk", out / "train", "adk17")
    test, _ = read_samples("adk", out / "test", "adk17")
    assert len(train) == 14 and len(test) == 5 and sch.keypoints == schema.keypoints
    farm_names = {f.name for f in FARMS}
    for s in train + test:
        assert s.group in farm_names and s.meta["farm_name"] == s.group
        assert s.meta["category_id"] in (1, 2, 3)
        assert s.meta["occluded_fraction"] == pytest.approx(np.mean(s.keypoints[:, 2] == 1), abs=1e-4)
        assert set(np.unique(s.keypoints[:, 2])) <= {1.0, 2.0}
        img = cv2.imread(str(s.image))
        assert img.shape[:2] == (s.height, s.width)
        assert s.bbox is None  # the whole image is the crop
    assert train[0].image.name == "synth_train_000001.jpg"
    with open(out / "sample_submission.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", *[f"{k}_{c}" for k in schema.keypoints for c in ("x", "y")]]
    assert [r[0] for r in rows[1:]] == [f"synth_test_{i:06d}.jpg" for i in range(1, 6)]
    assert all(float(v) == 0 for r in rows[1:] for v in r[1:])
    png = cv2.imread(str(tmp_path / "p.png"))
    assert png is not None and png.shape[0] >= 224 and png.std() > 10
    # rerunning smaller removes the files the larger run owned
    synthesize(out, n_train=3, n_test=1, seed=3)
    assert len(list((out / "train" / "annotations").glob("*.json"))) == 3
    assert len(list((out / "train" / "images").glob("*.jpg"))) == 3


def test_same_seed_same_files_different_seed_different_animals(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, seed in ((a, 5), (b, 5), (c, 6)):
        synthesize(d, n_train=6, n_test=2, seed=seed)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 6 * 2 + 2 * 2 + 1
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    ka = json.loads((a / "train/annotations/synth_train_000001.json").read_text())
    kc = json.loads((c / "train/annotations/synth_train_000001.json").read_text())
    assert ka["label_info"]["annotations"][0]["keypoints"] != kc["label_info"]["annotations"][0]["keypoints"]


def test_preview_from_a_folder(tmp_path):
    synthesize(tmp_path / "s", n_train=5, n_test=1, seed=1)
    out = render_preview(tmp_path / "s", tmp_path / "grid.png", n=4)
    img = cv2.imread(str(out))
    assert img.shape == (2 * 224, 2 * 224, 3)


def test_extreme_crop_sizes_render_for_many_seeds():
    """The layout's size rule: the long side is at most LONG_SIDE[1], but margins across it come on top, so a
    squarish animal with wide margins across gets a side of up to `max_crop_side()`: beyond the camera's noise
    bank (a 9,000-image set once died on such a crop). The smallest crops have MIN_CROP_SIDE on a side. Both
    extremes render, with camera effects, for many animals."""
    from cattlepose.data.synth.render import LONG_SIDE, MAX_MARGIN, MIN_CROP_SIDE, max_crop_side
    from cattlepose.data.synth.scene import NOISE_BANK_SIZE

    across = {"wide": (0.0, MAX_MARGIN, 0.0, MAX_MARGIN), "tall": (MAX_MARGIN, 0.0, MAX_MARGIN, 0.0)}
    largest, smallest = 0, 10**6
    for seed in range(24):
        scene = sample_scene(np.random.default_rng([99, seed]))
        cases = [(LONG_SIDE[1], across["wide"]), (LONG_SIDE[1], across["tall"]), (LONG_SIDE[0], (0.0,) * 4)]
        for long_side, margins in cases:
            r = render(dataclasses.replace(scene, long_side=long_side, margins=margins))
            h, w = r.image.shape[:2]
            assert r.image.dtype == np.uint8 and r.image.std() > 5
            assert min(h, w) >= MIN_CROP_SIDE and max(h, w) <= max_crop_side()
            largest, smallest = max(largest, h, w), min(smallest, h, w)
    assert largest > NOISE_BANK_SIZE  # the test really renders crops larger than the bank
    assert largest >= 0.98 * max_crop_side()  # ... and near the rule's bound
    assert smallest == MIN_CROP_SIDE


@pytest.mark.parametrize("size", [(1, 1), (50, 50), (544, 544), (545, 20), (578, 480), (700, 620)])
def test_camera_noise_works_for_any_size(size):
    from cattlepose.data.synth.scene import camera

    h, w = size
    for seed in range(10):
        img = np.full((h, w, 3), 128.0, np.float32)
        out = camera(np.random.default_rng(seed), FARMS[seed % len(FARMS)], img)
        assert out.shape == (h, w, 3) and out.dtype == np.uint8
        if h * w > 100:
            assert 1.0 < out.astype(np.float32).std() < 40.0  # grain of the farm's sigma, not a blank image


def test_crops_that_fit_take_their_noise_from_the_bank():
    """Fitting crops keep taking a window of the fixed bank (the default set's images depend on it); only larger
    crops draw fresh noise."""
    from cattlepose.data.synth.scene import NOISE_BANK_SIZE, _noise, _noise_bank

    lum, _ = _noise_bank()
    fit, _ = _noise(np.random.default_rng(3), NOISE_BANK_SIZE, 80)
    assert np.isin(fit, lum).all()
    big, _ = _noise(np.random.default_rng(3), NOISE_BANK_SIZE + 1, 80)
    assert big.shape == (NOISE_BANK_SIZE + 1, 80) and not np.isin(big, lum).all()
