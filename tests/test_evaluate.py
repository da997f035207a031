"""`evaluate` counts every prediction: images matched by their path under the data root, COCO results scored by
the COCO protocol exactly as pycocotools scores the same files, extra predictions reported by file."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.commands.evaluate import run_evaluate
from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema
from cattlepose.data.boxes import whole_image
from cattlepose.data.formats import folder, read_samples
from cattlepose.data.formats.matching import image_name, match_names
from cattlepose.data.formats.submission import write_predictions
from cattlepose.data.records import Pose
from conftest import draw_animal, random_keypoints

runner = CliRunner()
SCHEMA = load_schema("adk17")
K = SCHEMA.num_keypoints
SIZE = (96, 64)
pytestmark = pytest.mark.filterwarnings("ignore:.*(no OKS sigmas|skipped 1 crowd):UserWarning")


# ---------------------------------------------------------------------------------------------- names
def test_names_match_by_path_under_the_data_root():
    targets = ["farm A/photo_000.jpg", "farm B/photo_000.jpg", "farm A/photo_001.jpg", "cow.jpg"]
    found, unmatched = match_names(
        ["/data/test/images/farm B/photo_000.jpg", "farm A\\photo_000.jpg", "photo_001", "cow.jpg", "calf.jpg"],
        targets,
        "p.csv",
    )
    assert found == {
        "/data/test/images/farm B/photo_000.jpg": "farm B/photo_000.jpg",  # a longer path ends with the name
        "farm A\\photo_000.jpg": "farm A/photo_000.jpg",  # Windows separators
        "photo_001": "farm A/photo_001.jpg",  # a stem, unique
        "cow.jpg": "cow.jpg",
    }
    assert unmatched == ["calf.jpg"]
    # a name two images fit equally is an error naming both; so are two names for one image
    with pytest.raises(UserError, match=r"'photo_000\.jpg' fits 2 images.*farm A/photo_000\.jpg.*farm B/photo_000"):
        match_names(["photo_000.jpg"], targets, "p.csv")
    with pytest.raises(UserError, match=r"two predictions name the image 'cow\.jpg'"):
        match_names(["cow.jpg", "/x/cow.jpg"], targets, "p.csv")
    # another folder is another image, and another suffix another file
    assert match_names(["farm C/photo_000.jpg", "cow.png"], targets, "p.csv") == (
        {},
        ["farm C/photo_000.jpg", "cow.png"],
    )


def _two_farms(root: Path) -> Path:
    """A wide-CSV ground truth whose photographs share file names across two farm folders."""
    rng = np.random.default_rng(3)
    names = ["farm A/photo_000.jpg", "farm B/photo_000.jpg", "farm A/photo_001.jpg", "farm B/photo_001.jpg"]
    rows = []
    for i, name in enumerate(names):
        kps = random_keypoints(rng, K, *SIZE)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        draw_animal(root / name, SIZE, kps, seed=i)
        rows.append([name, *[f"{v:g}" for x, y, vis in kps for v in (x, y, vis)]])
    gt = root / "labels.csv"
    with open(gt, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *[f"{k}_{c}" for k in SCHEMA.keypoints for c in ("x", "y", "v")]])
        w.writerows(rows)
    return gt


def _csv_predictions(path: Path, rows: dict[str, np.ndarray]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *[f"{k}_{c}" for k in SCHEMA.keypoints for c in ("x", "y")]])
        for name, xy in rows.items():
            w.writerow([name, *xy.reshape(-1).tolist()])
    return path


def test_the_same_file_name_in_two_farms_is_two_photographs(tmp_path):
    gt = _two_farms(tmp_path / "data")
    samples, _ = read_samples("csv", gt, "adk17")
    assert [s.image_id for s in samples] == ["farm A/photo_000", "farm B/photo_000", "farm A/photo_001",
                                             "farm B/photo_001"]  # fmt: skip
    perfect = {image_name(s): s.keypoints[:, :2] for s in samples}
    r = run_evaluate(_csv_predictions(tmp_path / "p.csv", perfect), gt)
    assert r["overall"]["pck_bbox@0.1"] == 1.0 and r["overall"]["oks_ap"] == 1.0 and r["overall"]["rmse"] == 0
    assert r["matching"]["method"] == "image path" and r["matching"]["paired"] == 4 and r["extra_predictions"] == []
    # ADK JSON names images by their whole path, as predict writes it
    sub = tmp_path / "p.json"
    perfect = [Pose(s, s.keypoints[:, :2], 1.0) for s in samples]
    write_predictions("adk-json", sub, perfect, SCHEMA)
    assert json.loads(sub.read_text())["annotations"][1]["img_path"] == str(samples[1].image)
    assert run_evaluate(sub, gt)["overall"]["pck_bbox@0.1"] == 1.0
    # predict's CSV writer keeps the folders, so the two photo_000.jpg stay apart
    sub = tmp_path / "w.csv"
    write_predictions("csv", sub, perfect, SCHEMA)
    rows = list(csv.reader(sub.read_text().splitlines()))
    assert [r[0] for r in rows[1:3]] == ["farm A/photo_000.jpg", "farm B/photo_000.jpg"]
    assert run_evaluate(sub, gt)["overall"]["oks_ap"] == 1.0


def test_extra_predictions_are_scored_nowhere_and_named(tmp_path):
    gt = _two_farms(tmp_path / "data")
    samples, _ = read_samples("csv", gt, "adk17")
    rows = {image_name(s): s.keypoints[:, :2] for s in samples} | {"farm C/stray.jpg": np.zeros((K, 2))}
    pred = _csv_predictions(tmp_path / "p.csv", rows)
    out = tmp_path / "m.json"
    r = runner.invoke(app, ["evaluate", str(pred), str(gt), "--json", str(out)], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert "1 prediction(s) for images the ground truth does not hold" in r.output and "farm C/stray.jpg" in r.output
    assert "matching: one prediction per animal" in r.output
    result = json.loads(out.read_text())
    assert result["extra_predictions"] == ["farm C/stray.jpg"] and result["overall"]["pck_bbox@0.1"] == 1.0


# ---------------------------------------------------------------------------------------------- COCO protocol
def _coco_ground_truth(folder: Path, k: int = 17) -> Path:
    """Four images of two animals each in two categories, an image without animals, and a crowd region."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(4):
        image_id, all_kps = 10 * (i + 1), []
        for a in range(2):
            kps = random_keypoints(rng, k, 128, 96, occluded_every=0)
            kps[-1] = 0
            all_kps.append(kps)
            (x0, y0), (x1, y1) = kps[:-1, :2].min(axis=0), kps[:-1, :2].max(axis=0)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 2 if a and i % 2 else 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": 0.7 * (x1 - x0) * (y1 - y0), "iscrowd": 0,
                         "num_keypoints": k - 1, "keypoints": kps.reshape(-1).tolist()})  # fmt: skip
        draw_animal(folder / f"img_{i}.png", (128, 96), np.concatenate(all_kps), seed=i)
        images.append({"id": image_id, "file_name": f"img_{i}.png", "width": 128, "height": 96})
    images.append({"id": 99, "file_name": "no_animals.png", "width": 128, "height": 96})
    anns.append({"id": 100, "image_id": 20, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500.0, "iscrowd": 1,
                 "num_keypoints": 0, "keypoints": [0] * (3 * k)})  # fmt: skip
    cats = [{"id": c, "name": n, "keypoints": [f"kp{j}" for j in range(k)], "skeleton": []}
            for c, n in ((1, "cow"), (2, "sheep"))]  # fmt: skip
    path = folder / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _detections(gt: Path, wrong: bool, seed: int = 1) -> list[dict]:
    """A close detection of every animal; with `wrong`, confident detections of nothing as well: in annotated
    images, in the image without animals, and on the crowd region (which COCO ignores)."""
    rng = np.random.default_rng(seed)
    doc = json.loads(gt.read_text())
    out = []
    for a in doc["annotations"]:
        if a["iscrowd"]:
            continue
        kps = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
        kps[:, :2] += rng.normal(0, 2.5, (len(kps), 2))
        kps[:, 2] = 0.9
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": kps.reshape(-1).tolist(),
                    "score": float(rng.uniform(0.3, 0.9))})  # fmt: skip
    if wrong:
        for image_id, extent in ((10, 128), (30, 128), (99, 128), (20, 50)):
            kps = np.concatenate([rng.uniform(0, extent, (17, 2)) * [1, 0.75], np.full((17, 1), 0.5)], axis=1)
            out.append({"image_id": image_id, "category_id": 1, "keypoints": kps.reshape(-1).tolist(), "score": 0.95})
    return out


def _pycocotools(gt: Path, results: Path, sigmas) -> np.ndarray:
    """The stats pycocotools computes on the files themselves."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(results)), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_wrong_detections_lower_oks_ap_exactly_as_pycocotools_computes_it(tmp_path):
    gt = _coco_ground_truth(tmp_path / "coco")
    _, schema = read_samples("coco", gt, "from_data")
    scores = {}
    for wrong in (False, True):
        res = tmp_path / f"results_{wrong}.json"
        res.write_text(json.dumps(_detections(gt, wrong)))
        r = run_evaluate(res, gt, schema_spec="from_data")
        stats = _pycocotools(gt, res, schema.sigmas)
        o = r["overall"]
        assert [o["oks_ap"], o["oks_ap50"], o["oks_ap75"], o["oks_ar"]] == pytest.approx(stats[[0, 1, 2, 5]], abs=1e-12)
        m = r["matching"]
        assert m["method"] == "coco" and m["animals"] == 8 and m["paired"] == 8
        assert m["detections"] == 8 + 4 * wrong and m["detections_unpaired"] == 4 * wrong
        assert r["extra_predictions"] == [] and set(r["by_category"]) == {"cow", "sheep"}
        scores[wrong] = o
    assert scores[True]["oks_ap"] < scores[False]["oks_ap"] - 0.05  # the false positives count
    # a stray detection cannot take an animal from its own detection: PCK and pixel errors do not move
    assert (
        scores[True]["pck_bbox@0.1"] == scores[False]["pck_bbox@0.1"] and scores[True]["rmse"] == scores[False]["rmse"]
    )


def test_per_category_oks_ap_is_pycocotools_restricted_to_the_category(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = _coco_ground_truth(tmp_path / "coco")
    _, schema = read_samples("coco", gt, "from_data")
    res = tmp_path / "results.json"
    res.write_text(json.dumps(_detections(gt, wrong=True)))
    r = run_evaluate(res, gt, schema_spec="from_data")
    for cat_id, name in ((1, "cow"), (2, "sheep")):
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(str(gt))
            ev = COCOeval(coco_gt, coco_gt.loadRes(str(res)), iouType="keypoints")
            ev.params.kpt_oks_sigmas = np.asarray(schema.sigmas)
            ev.params.catIds = [cat_id]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert r["by_category"][name]["overall"]["oks_ap"] == pytest.approx(ev.stats[0], abs=1e-12)


def test_an_animal_without_a_fitting_detection_is_a_miss_in_pck_and_out_of_pixel_errors(tmp_path):
    gt = _coco_ground_truth(tmp_path / "coco")
    dets = _detections(gt, wrong=False)
    far = np.asarray(dets[0]["keypoints"]).reshape(-1, 3)
    far[:, :2] += 40  # no longer this animal (OKS well under 0.5), nor any other
    dets[0]["keypoints"] = far.reshape(-1).tolist()
    res = tmp_path / "results.json"
    res.write_text(json.dumps(dets))
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_detections(gt, wrong=False)))
    good, bad = (run_evaluate(p, gt, schema_spec="from_data") for p in (base, res))
    assert bad["matching"]["paired"] == 7 and bad["matching"]["animals_unpaired"] == 1
    assert bad["matching"]["detections_unpaired"] == 1
    # its 16 labelled keypoints count as misses among the 8 x 16
    hits = good["overall"]["pck_bbox@0.2"] * 128
    assert bad["overall"]["pck_bbox@0.2"] == pytest.approx((hits - 16) / 128)
    assert bad["overall"]["rmse"] < 40


def test_coco_results_find_their_images_by_file_name_against_adk_ground_truth(make_adk, tmp_path):
    """A folder of crops has no COCO ids: predict writes each detection's file_name, and evaluate matches it."""
    root = make_adk(n=3)
    samples, _ = read_samples("adk", root, "adk17")
    res = tmp_path / "res.json"
    by_name = {s.image.name: s for s in samples}
    crops = [Pose.predicted(c, np.concatenate([by_name[c.image.name].keypoints[:, :2], np.ones((K, 1))], axis=1))
             for c in whole_image(folder.images(root / "images"))]  # fmt: skip
    write_predictions("coco", res, crops, SCHEMA)
    doc = json.loads(res.read_text())
    assert [d["file_name"] for d in doc] == ["adk_000.jpg", "adk_001.jpg", "adk_002.jpg"]
    assert {d["category_id"] for d in doc} == {1}  # crops have no category: COCO's default, never null
    r = run_evaluate(res, root)
    assert r["overall"]["oks_ap"] == 1.0 and r["matching"]["paired"] == 3


def test_coco_results_need_a_score(tmp_path):
    gt = _coco_ground_truth(tmp_path / "coco")
    dets = _detections(gt, wrong=False)
    del dets[2]["score"]
    res = tmp_path / "results.json"
    res.write_text(json.dumps(dets))
    with pytest.raises(UserError, match=r"results\.json, field '\[2\]\.score'"):
        run_evaluate(res, gt, schema_spec="from_data")


# ---------------------------------------------------------------------------------------------- every format
def _noisy_poses(gt: Path, wrong: bool, seed: int = 5) -> list[Pose]:
    """A close pose of every animal of a COCO ground truth, scored, each instance the animal's own (so it keeps
    its COCO image id, file name and category); with `wrong`, a confident pose of nothing in two images."""
    rng = np.random.default_rng(seed)
    samples, _ = read_samples("coco", gt, "from_data")
    out = []
    for s in samples:
        kps = s.keypoints.copy()
        kps[:, :2] += rng.normal(0, 2.5, (len(kps), 2))
        kps[:, 2] = 0.9
        out.append(Pose(s, kps, float(rng.uniform(0.3, 0.9))))
    if wrong:
        for n, s in enumerate(samples[::3]):
            kps = np.concatenate([rng.uniform(0, 96, (len(s.keypoints), 2)), np.full((len(s.keypoints), 1), 0.5)], 1)
            out.append(Pose(dataclasses.replace(s, ann_id=f"stray{n}"), kps, 0.95))
    return out


@pytest.mark.parametrize("wrong", [False, True])
def test_a_long_csv_scores_as_the_same_animals_in_coco_results(make_coco, tmp_path, wrong):
    """One reader, one protocol: the same predicted animals written as a long CSV (images by path) and as COCO
    results (images by id) give the same numbers, false positives included, as pycocotools computes them."""
    gt = make_coco(n_images=3, animals=2)
    _, schema = read_samples("coco", gt, "from_data")
    poses = _noisy_poses(gt, wrong)
    results = {}
    for fmt, name in (("long-csv", "p.csv"), ("coco", "p.json")):
        write_predictions(fmt, tmp_path / name, poses, schema)
        results[fmt] = run_evaluate(tmp_path / name, gt, schema_spec="from_data")
    long, coco = results["long-csv"], results["coco"]
    assert long["matching"]["method"] == coco["matching"]["method"] == "coco"
    assert long["matching"]["detections_unpaired"] == 2 * wrong
    assert long["overall"] == pytest.approx(coco["overall"], abs=1e-12)
    stats = _pycocotools(gt, tmp_path / "p.json", schema.sigmas)
    assert long["overall"]["oks_ap"] == pytest.approx(stats[0], abs=1e-12)


def test_several_animals_in_an_adk_json_rank_equal_and_a_stray_one_is_a_false_positive(make_coco, tmp_path):
    gt = make_coco(n_images=2, animals=2)
    samples, schema = read_samples("coco", gt, "from_data")
    perfect = [Pose(s, s.keypoints[:, :2], 1.0) for s in samples]
    stray = Pose(samples[0], np.full((len(samples[0].keypoints), 2), 3.0), 1.0)
    for poses, ap in ((perfect, 1.0), ([stray, *perfect], None)):
        write_predictions("adk-json", tmp_path / "p.json", poses, schema)
        r = run_evaluate(tmp_path / "p.json", gt, schema_spec="from_data")
        m = r["matching"]
        assert m["method"] == "coco" and "ADK JSON holds no scores" in m["description"] and m["paired"] == 4
        assert r["overall"]["pck_bbox@0.1"] == 1.0 and r["overall"]["rmse"] == 0
        if ap is not None:
            assert r["overall"]["oks_ap"] == ap
        else:  # ranked first in file order, the stray pose costs precision
            assert r["overall"]["oks_ap"] < 1.0 and m["detections_unpaired"] == 1


def test_one_scored_animal_per_image_is_paired_and_ranked_by_its_score(make_adk, tmp_path):
    """A long CSV of crops against one animal per image: each row paired with its image's animal, and the
    animal's score (not its mean keypoint score) ranks it in OKS AP."""
    root = make_adk(n=4)
    samples, _ = read_samples("adk", root, "adk17")
    rng = np.random.default_rng(2)
    poses = []
    for i, s in enumerate(samples):
        kps = np.concatenate([s.keypoints[:, :2] + rng.normal(0, 3 + 6 * i, (K, 2)), np.full((K, 1), 0.5)], 1)
        poses.append(Pose(s, kps, 0.1 * (i + 1)))  # the worst pose scored highest
    write_predictions("long-csv", tmp_path / "p.csv", poses, SCHEMA)
    r = run_evaluate(tmp_path / "p.csv", root)
    assert r["matching"]["method"] == "image path" and r["matching"]["paired"] == 4
    for p in poses:
        p.score = 1 - p.score  # the best pose scored highest
    write_predictions("long-csv", tmp_path / "q.csv", poses, SCHEMA)
    better = run_evaluate(tmp_path / "q.csv", root)
    assert better["overall"]["oks_ap"] > r["overall"]["oks_ap"]
    assert better["overall"]["rmse"] == r["overall"]["rmse"]


def test_evaluate_warns_when_left_and_right_fall_on_one_point(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "data"
    root.mkdir()
    right, left = SCHEMA.index("fore_right_foot"), SCHEMA.index("fore_left_foot")
    rows, preds = [], {}
    for i in range(12):
        name = f"cow_{i:02d}.jpg"
        kps = random_keypoints(rng, K, *SIZE, occluded_every=0)
        kps[right, :2], kps[left, :2] = (20, 60), (50, 60)
        draw_animal(root / name, SIZE, kps, seed=i)
        rows.append([name, *[f"{v:g}" for x, y, vis in kps for v in (x, y, vis)]])
        p = kps[:, :2].copy()
        p[right] = p[left]
        preds[name] = p
    gt = root / "labels.csv"
    with open(gt, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *[f"{k}_{c}" for k in SCHEMA.keypoints for c in ("x", "y", "v")]])
        w.writerows(rows)
    pred = _csv_predictions(tmp_path / "p.csv", preds)
    out = tmp_path / "m.json"
    r = runner.invoke(app, ["evaluate", str(pred), str(gt), "--json", str(out)], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "fore_right_foot / fore_left_foot: both predictions on one point in 100% of 12 animals" in text
    assert "does not tell left from right" in text
    assert json.loads(out.read_text())["left_right"]["fore_right_foot / fore_left_foot"] == {"n": 12, "merged": 1.0}
