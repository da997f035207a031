"""`cattlepose predict --detector` on whole photographs and `cattlepose evaluate` of what it writes, end to end.

The photographs are synthetic scenes: two or three synthetic cattle images pasted side by side on one canvas, so
every animal's box and keypoints are known (`scene`). The keypoint run is a real one, trained one epoch on
tiny synthetic data (`keypoint_run`); its data.json records its categories (`cattle` 1, `nuptial` 2, `calf` 3).

The detector is real: the session's one detector run (`detector_run` of tests/conftest.py, trained by `cattlepose
train -c configs/detector.yaml` for two optimizer steps a fold on a synthetic herd of cattle and calves), loaded
by `engine.detect.load_detector` as predict loads it. Barely trained, it finds nothing a test could foretell, so
tests that need animals ask for every peak (`--score-threshold 0`) and a number of them (`--max-animals N`), and
assert what holds of any box: N animals per image in every writer, boxes inside their images and at least the
run's `min_size`, categories and their ids, keypoints inside their crops, PyTorch equal to ONNX Runtime. What a
test must know of the boxes it takes from the same detector (`engine.detect`) directly. Known answers of the
scoring are tests of `evaluate` on exact results (`_results`); finding the animals is tests/test_detector.py's
slow test.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.data.records import ImageSource
from cattlepose.data.transforms import BOX_PADDING
from cattlepose.engine.detect import DetectOptions, load_detector
from cattlepose.runs.rundir import RunDir
from conftest import CALF_ID, csv_rows, synth_set

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
K = 17
EVERY_PEAK = ("--score-threshold", "0")  # an untrained detector's peaks score about its 0.1 prior
IDS = {"cattle": 1, "calf": CALF_ID}  # the COCO ids of the detector's data (and of the keypoint run's)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return synth_set(tmp_path_factory, n_train=12, n_test=0, seed=5)


@pytest.fixture(scope="module")
def keypoint_run(synth_root, tmp_path_factory) -> Path:
    """A keypoint run trained one epoch (fold 0 of 2) on the tiny synthetic set: predict with `--folds 0`."""
    from cattlepose.core.config import load_config
    from cattlepose.engine.kfold import run_training

    cfg = load_config(None, [f"data.train={synth_root / 'train'}", "data.format=adk", "model.input_size=[64,64]",
                             "model.backbone=hrnet_w18_small", "train.folds=2", "train.epochs=1", "train.batch_size=4",
                             "train.workers=0", "train.threads=1", "infer.batch_size=8"])  # fmt: skip
    run = tmp_path_factory.mktemp("runs") / "kp"
    run_training(cfg, run, folds=[0])
    return run


@dataclasses.dataclass
class Scene:
    photos: Path  # the folder of photographs (no annotations in it)
    gt: Path  # their COCO keypoints file, beside the folder
    boxes: dict[str, list[list[float]]]  # file name -> every animal's box, in order


@pytest.fixture(scope="module")
def scene(synth_root, tmp_path_factory) -> Scene:
    """Three photographs of 2, 3 and 2 animals (synthetic cattle pasted side by side, 10 px apart, on a grey
    canvas) and one of none; gt.json holds every animal with its box and keypoints, category cattle (id 1)."""
    from cattlepose.core.schema import load_schema
    from cattlepose.data.formats import adk

    samples = adk.read(synth_root / "train", K)
    root = tmp_path_factory.mktemp("scene")
    photos = root / "images"  # where a COCO file finds its images by default
    photos.mkdir()
    schema = load_schema("adk17")
    images, annotations, boxes = [], [], {}
    groups = [samples[0:2], samples[2:5], samples[5:7], []]
    for i, group in enumerate(groups):
        crops = [Image.open(s.image).convert("RGB") for s in group]
        w = sum(c.width for c in crops) + 10 * (len(crops) + 1) if crops else 120
        h = max((c.height for c in crops), default=80) + 20
        canvas = Image.new("RGB", (w, h), (128, 128, 128))
        name = f"photo_{i}.jpg"
        boxes[name] = []
        x = 10
        for s, crop in zip(group, crops, strict=True):
            canvas.paste(crop, (x, 10))
            region = s.crop_box((crop.width, crop.height))
            box = [float(x + region[0]), float(10 + region[1]), float(region[2]), float(region[3])]
            kps = s.keypoints.copy()
            kps[kps[:, 2] > 0, :2] += (x, 10)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0, "num_keypoints": int((kps[:, 2] > 0).sum()),
                                "keypoints": [float(v) for v in kps.reshape(-1)]})  # fmt: skip
            boxes[name].append(box)
            x += crop.width + 10
        canvas.save(photos / name, quality=95)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    category = {"id": 1, "name": "cattle", "keypoints": list(schema.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton]}  # fmt: skip
    gt = root / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [category]}))
    return Scene(photos, gt, boxes)


@dataclasses.dataclass
class Detector:
    """The detector run predict is given, and every `engine.detect.load_detector` call predict made (the real
    one runs): whether the detector was loaded at all, and with what."""

    run: Path
    calls: list[dict]


@pytest.fixture
def detector(detector_run, monkeypatch) -> Detector:
    from cattlepose.engine import detect

    calls: list[dict] = []
    real = detect.load_detector

    def recorded(run_dir, **kwargs):
        calls.append({"run_dir": Path(run_dir), **kwargs})
        return real(run_dir, **kwargs)

    monkeypatch.setattr(detect, "load_detector", recorded)
    return Detector(detector_run, calls)


def _predict(keypoint_run: Path, scene: Scene, detector: Detector | Path, out: Path, fmt: str, *extra: str):
    run = detector.run if isinstance(detector, Detector) else detector
    args = ["predict", str(keypoint_run), str(scene.photos), "--detector", str(run), "-o", str(out), "-f", fmt,
            "--folds", "0", "--workers", "0", "--device", "cpu", *extra]  # fmt: skip
    return runner.invoke(app, args, env=WIDE)


def _photos(scene: Scene) -> list[ImageSource]:
    return [ImageSource.of(scene.photos / name) for name in sorted(scene.boxes)]


def _per_image(results: list[dict], scene: Scene) -> list[int]:
    names = [d["file_name"] for d in results]
    return [names.count(name) for name in sorted(scene.boxes)]


def _copy_run(run: Path, to: Path, config: dict | None = None, categories: dict | bool | None = False) -> Path:
    """A copy of a run folder, its fold folders linked (the weights are not copied); `config`: sections of its
    config.yaml to update; `categories`: its data.json record replaced by this one (None: removed, as in a run
    from before it)."""
    to.mkdir()
    for item in run.iterdir():
        if item.is_dir() and item.name.startswith("fold"):
            (to / item.name).symlink_to(item)
        elif item.is_file():
            shutil.copy2(item, to / item.name)
    if config:
        cfg = yaml.safe_load((to / "config.yaml").read_text())
        for section, values in config.items():
            cfg[section].update(values)
        (to / "config.yaml").write_text(yaml.safe_dump(cfg))
    if categories is not False:
        record = json.loads((to / "data.json").read_text())
        if categories is None:
            del record["categories"]
        else:
            record["categories"] = categories
        (to / "data.json").write_text(json.dumps(record))
    return to


# ---------------------------------------------------------------------------------------------- predict
def test_every_animal_of_every_photograph_is_written_with_its_box_category_and_keypoints(
    keypoint_run, scene, detector, tmp_path
):
    out = tmp_path / "pred.json"
    r = _predict(keypoint_run, scene, detector, out, "coco", *EVERY_PEAK, "--max-animals", "2")
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "4 images (8 animals)" in r.output and "had no animal" not in r.output
    assert "detection" in r.output and "keypoints" in r.output and "end to end" in r.output
    assert [(c["run_dir"], c["backend"], c["onnx"], c["flip"]) for c in detector.calls] == [
        (detector.run, "torch", None, True)]  # fmt: skip
    results = json.loads(out.read_text())
    names = sorted(scene.boxes)
    assert [d["file_name"] for d in results] == [name for name in names for _ in range(2)]
    sizes = {name: Image.open(scene.photos / name).size for name in names}
    for d in results:
        kps = np.reshape(d["keypoints"], (K, 3))
        x, y, w, h = d["bbox"]
        width, height = sizes[d["file_name"]]
        assert np.all(np.isfinite(kps)) and 0 < d["score"] <= 1
        # inside its photograph, and at least the run's detect.min_size (4 px) on each side
        assert x >= 0 and y >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3 and min(w, h) >= 4, d
        assert d["category_id"] in IDS.values()
        # top-down: every keypoint lies in its animal's crop (the box grown to the 64x64 input's aspect, then by
        # transforms.BOX_PADDING), not elsewhere in the photograph; give or take a heatmap pixel (a 16th of the crop
        # at stride 4), where the decode's sub-pixel step may take a keypoint at the crop's edge
        side = max(w, h) * BOX_PADDING
        assert np.all(np.abs(kps[:, :2] - (x + w / 2, y + h / 2)) <= side / 2 + side / 16), d

    long = tmp_path / "pred.csv"
    assert _predict(keypoint_run, scene, detector, long, "long-csv", *EVERY_PEAK, "--max-animals", "2").exit_code == 0
    rows = csv_rows(long)
    assert [(r["image"], r["instance"]) for r in rows] == [(name, str(j)) for name in names for j in range(2)]
    for row, d in zip(rows, results, strict=True):  # the same animals with the same numbers in both files
        assert IDS[row["category"]] == d["category_id"]
        assert [float(row[c]) for c in ("box_x", "box_y", "box_w", "box_h")] == pytest.approx(d["bbox"], abs=1e-3)
        assert float(row["score"]) == pytest.approx(d["score"], abs=1e-4)

    adk = tmp_path / "pred.adk.json"
    assert _predict(keypoint_run, scene, detector, adk, "adk-json", *EVERY_PEAK, "--max-animals", "2").exit_code == 0
    anns = json.loads(adk.read_text())["annotations"]
    assert [Path(a["img_path"]).name for a in anns] == [d["file_name"] for d in results]


def test_the_run_predict_returns_detection_and_keypoint_times_apart(keypoint_run, scene, detector, tmp_path):
    from cattlepose.commands.predict import run_predict

    s = run_predict(keypoint_run, scene.photos, tmp_path / "p.json", fmt="coco", folds="0", workers=0,
                    device="cpu", detector=detector.run,
                    detect_options={"score_threshold": 0.0, "max_animals": 3})  # fmt: skip
    assert (s["images"], s["animals"], s["images_without_animals"]) == (4, 12, 0)
    assert s["seconds"] == pytest.approx(s["detect_seconds"] + s["keypoint_seconds"])
    assert s["images_per_s"] == pytest.approx(4 / s["seconds"])
    assert s["detect_images_per_s"] > s["images_per_s"] and s["keypoint_images_per_s"] > s["images_per_s"]
    assert s["other_categories"] == 0


def test_detector_options_override_the_runs_own_and_reach_it(keypoint_run, scene, detector, tmp_path):
    from cattlepose.commands import detector_source

    # a detector run whose detect: settings are not the defaults: what is not given stays the run's
    run = _copy_run(detector.run, tmp_path / "det", config={"detect": {"nms_iou": 0.6, "min_size": 2.0}})
    source = detector_source.load(run, RunDir.open(keypoint_run), overrides={"score_threshold": 0.75, "max_animals": 1})
    assert source.detector.options == DetectOptions(score_threshold=0.75, nms_iou=0.6, max_animals=1, min_size=2.0)
    assert detector_source.load(run, RunDir.open(keypoint_run)).detector.options == DetectOptions(0.3, 0.6, 20, 2.0)

    # the score threshold: predict keeps each photograph's animals the detector scores at least that
    photos = _photos(scene)
    every = load_detector(detector.run, options=DetectOptions(score_threshold=0.0, max_animals=100)).detect(photos)
    scores = sorted({i.score for found in every for i in found}, reverse=True)
    threshold = (scores[5] + scores[6]) / 2  # a few animals over it, not in every photograph alike
    want = [min(20, sum(i.score >= threshold for i in found)) for found in every]
    assert 0 < sum(want) < sum(map(len, every))
    out = tmp_path / "p.json"
    r = _predict(keypoint_run, scene, detector, out, "coco", "--score-threshold", f"{threshold!r}")
    assert r.exit_code == 0, r.output
    assert _per_image(json.loads(out.read_text()), scene) == want

    # --max-animals: the surest of each photograph, and the wide CSV can be written (one animal per image)
    r = _predict(keypoint_run, scene, detector, out, "coco", *EVERY_PEAK, "--max-animals", "1")
    assert r.exit_code == 0, r.output
    results = json.loads(out.read_text())
    assert _per_image(results, scene) == [1, 1, 1, 1]
    for d, found in zip(results, every, strict=True):
        assert d["bbox"] == pytest.approx(found[0].bbox, abs=1e-3)
    wide = tmp_path / "p.csv"
    r = _predict(keypoint_run, scene, detector, wide, "csv", *EVERY_PEAK, "--max-animals", "1")
    assert r.exit_code == 0, r.output
    assert len(wide.read_text().splitlines()) == 1 + 4

    # --no-flip reaches the detector: its boxes are those of the detector without its mirrored pass
    r = _predict(keypoint_run, scene, detector, out, "coco", *EVERY_PEAK, "--max-animals", "3", "--no-flip")
    assert r.exit_code == 0, r.output
    assert detector.calls[-1]["flip"] is False
    plain = load_detector(detector.run, flip=False, options=DetectOptions(score_threshold=0.0, max_animals=3))
    np.testing.assert_allclose([d["bbox"] for d in json.loads(out.read_text())],
                               [i.bbox for found in plain.detect(photos) for i in found], atol=1e-3)  # fmt: skip


def test_the_detectors_onnx_export_finds_what_pytorch_finds(keypoint_run, scene, detector, detector_onnx, tmp_path):
    torch_out, onnx_out = tmp_path / "t.csv", tmp_path / "o.csv"
    args = (*EVERY_PEAK, "--max-animals", "2")
    assert _predict(keypoint_run, scene, detector, torch_out, "long-csv", *args).exit_code == 0
    r = _predict(keypoint_run, scene, detector, onnx_out, "long-csv", *args, "--detector-onnx", str(detector_onnx))
    assert r.exit_code == 0, r.output
    assert (detector.calls[-1]["backend"], detector.calls[-1]["onnx"]) == ("onnx", detector_onnx)
    assert detector.calls[-1]["flip"] is None  # the export's own mirror pass (one made --no-flip runs as it is)

    # each photograph's animals in place order: the empty photograph is mirror-symmetric, so its peaks come in
    # pairs of equal scores that either backend may rank either way (two animals: the same pair in both)
    def placed(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return sorted(rows, key=lambda row: (row["image"], float(row["box_x"]), float(row["box_y"])))

    a, b = placed(csv_rows(torch_out)), placed(csv_rows(onnx_out))
    assert len(a) == len(b) == 8
    for x, y in zip(a, b, strict=True):
        assert (x["image"], x["category"]) == (y["image"], y["category"])
        box = [float(x[c]) - float(y[c]) for c in ("box_x", "box_y", "box_w", "box_h")]
        assert np.abs(box).max() < 0.05 and abs(float(x["score"]) - float(y["score"])) < 1e-3, (x, y)


def test_the_keypoints_can_run_on_onnx_runtime_behind_the_detector(keypoint_run, scene, detector, tmp_path):
    torch_out, onnx_out = tmp_path / "t.json", tmp_path / "o.json"
    args = (*EVERY_PEAK, "--max-animals", "2")
    assert _predict(keypoint_run, scene, detector, torch_out, "coco", *args).exit_code == 0
    r = _predict(keypoint_run, scene, detector, onnx_out, "coco", *args, "--backend", "onnx")
    assert r.exit_code == 0, r.output
    a, b = json.loads(torch_out.read_text()), json.loads(onnx_out.read_text())
    assert len(a) == 8 and [d["bbox"] for d in a] == [d["bbox"] for d in b]
    np.testing.assert_allclose([d["keypoints"] for d in a], [d["keypoints"] for d in b], atol=0.05)


def test_a_photograph_without_animals_everywhere_is_an_empty_result_in_every_format(
    keypoint_run, scene, detector, tmp_path
):
    # a score threshold of 1: the detector finds nothing anywhere (its peaks score about 0.1)
    for fmt, suffix in (("coco", "json"), ("long-csv", "csv"), ("adk-json", "json")):
        out = tmp_path / f"none.{fmt}.{suffix}"
        r = _predict(keypoint_run, scene, detector, out, fmt, "--score-threshold", "1")
        assert r.exit_code == 0, r.output
        assert "4 of 4 images had no animal" in r.output
        text = out.read_text()
        if fmt == "coco":
            assert json.loads(text) == []
        elif fmt == "adk-json":
            assert json.loads(text)["annotations"] == []
        else:
            assert (
                text.splitlines()[0].startswith("image,instance,category,score,box_x") and len(text.splitlines()) == 1
            )


# ---------------------------------------------------------------------------------------------- categories
def test_category_keeps_the_animals_of_one_category(keypoint_run, scene, detector, tmp_path):
    args = (*EVERY_PEAK, "--max-animals", "6")
    r = _predict(keypoint_run, scene, detector, tmp_path / "all.csv", "long-csv", *args)  # both: the run knows calves
    assert r.exit_code == 0, r.output
    every = csv_rows(tmp_path / "all.csv")
    calves = sum(row["category"] == "calf" for row in every)
    assert 0 < calves < len(every)  # the detector's peaks are of both categories
    out = tmp_path / "p.csv"
    r = _predict(keypoint_run, scene, detector, out, "long-csv", *args, "--category", "Cattle")  # any case
    assert r.exit_code == 0, r.output
    assert f"{calves} animal(s) of other categories than --category left out" in r.output
    rows = csv_rows(out)
    assert [(row["image"], row["box_x"]) for row in rows] == [
        (row["image"], row["box_x"]) for row in every if row["category"] == "cattle"]  # fmt: skip
    assert {row["category"] for row in rows} == {"cattle"}


def test_coco_results_carry_the_data_sets_category_ids_not_the_detectors_places(
    keypoint_run, scene, detector, tmp_path
):
    """The detector's categories are sorted (calf 1st, cattle 2nd); COCO results carry the ids of the data the
    runs were trained on (cattle 1, calf 3): the keypoint run's data.json, else the detector run's."""
    assert RunDir.open(detector.run).categories() == {"calf": CALF_ID, "cattle": 1}
    assert RunDir.open(keypoint_run).categories()["calf"] == CALF_ID
    without = _copy_run(keypoint_run, tmp_path / "kp_old", categories=None)  # a keypoint run before the record
    old_detector = _copy_run(detector.run, tmp_path / "det_old", categories=None)
    args = (*EVERY_PEAK, "--max-animals", "3")
    long = tmp_path / "p.csv"  # the animals' category names (the same detector weights in each case below)
    assert _predict(keypoint_run, scene, detector, long, "long-csv", *args).exit_code == 0
    names = [row["category"] for row in csv_rows(long)]
    for n, (kp, det, ids) in enumerate([(keypoint_run, detector.run, IDS), (without, detector.run, IDS),
                                        (without, old_detector, {"calf": 1, "cattle": 2})]):  # fmt: skip
        coco = tmp_path / f"p{n}.json"
        r = _predict(kp, scene, det, coco, "coco", *args)
        assert r.exit_code == 0, r.output
        pairs = set(zip(names, [d["category_id"] for d in json.loads(coco.read_text())], strict=True))
        assert pairs == set(ids.items()), (kp, det)  # neither run records them: the detector's places, from 1


def test_a_category_the_detector_does_not_know_is_refused_listing_those_it_knows(
    keypoint_run, scene, detector, tmp_path
):
    out = tmp_path / "p.json"
    r = _predict(keypoint_run, scene, detector, out, "coco", "--category", "sheep")
    assert r.exit_code == 2
    assert "'sheep'" in r.output and "it knows calf, cattle" in r.output and "--category" in r.output
    assert str(detector.run) in r.output and not out.exists()


def test_a_detector_of_other_animals_than_the_keypoint_run_is_refused_naming_both(
    keypoint_run, scene, detector, tmp_path
):
    # the keypoint run's record says dog and cat (a copy of the run; the detector finds calf and cattle)
    dogs = _copy_run(keypoint_run, tmp_path / "kp_dogs", categories={"dog": 1, "cat": 2})
    out = tmp_path / "p.json"
    r = _predict(dogs, scene, detector, out, "coco")
    assert r.exit_code == 2, r.output
    assert "finds calf, cattle" in r.output and "no category in common" in r.output
    assert str(detector.run) in r.output and str(dogs) in r.output and "dog, cat" in r.output
    assert not out.exists()
    # the same animals under other names: the user says so
    r = _predict(dogs, scene, detector, out, "coco", "--skip-category-check")
    assert r.exit_code == 0, r.output


def test_a_detector_finding_more_categories_than_the_run_knows_is_told_which_to_keep(
    keypoint_run, scene, detector, tmp_path
):
    cattle = _copy_run(keypoint_run, tmp_path / "kp_cattle", categories={"cattle": 1})
    r = _predict(cattle, scene, detector, tmp_path / "p.json", "coco")
    assert r.exit_code == 2
    assert "not trained on calf" in r.output and "--category cattle" in r.output
    assert _predict(cattle, scene, detector, tmp_path / "p.json", "coco", "--category", "cattle").exit_code == 0


def test_a_keypoint_run_without_a_record_of_its_categories_is_not_checked_but_warned_about(
    keypoint_run, scene, detector, tmp_path
):
    old = _copy_run(keypoint_run, tmp_path / "old_run", categories=None)
    r = _predict(old, scene, detector, tmp_path / "p.json", "coco")
    assert r.exit_code == 0, r.output
    assert "no record of the categories it was trained on" in r.output


def test_the_keypoint_run_records_the_categories_of_its_training_data(keypoint_run):
    assert RunDir.open(keypoint_run).categories() == {"calf": 3, "cattle": 1, "nuptial": 2}


# ---------------------------------------------------------------------------------------------- run mix-ups
def test_a_detector_run_where_a_keypoint_run_belongs_is_named(keypoint_run, scene, detector, tmp_path):
    out = tmp_path / "p.json"
    # export and report take both kinds of run (tests/test_detector.py)
    for args in (["predict", str(detector.run), str(scene.photos), "-o", str(out), "-f", "coco"],):
        r = runner.invoke(app, args, env=WIDE)
        assert r.exit_code == 2, (args, r.output)
        assert str(detector.run) in r.output and "needs a keypoint run, and this is a detector run" in r.output
    assert not out.exists() and not (tmp_path / "m.onnx").exists()


def test_a_keypoint_run_given_as_the_detector_is_named(keypoint_run, scene, detector, tmp_path):
    out = tmp_path / "p.json"
    args = ["predict", str(keypoint_run), str(scene.photos), "--detector", str(keypoint_run), "-o", str(out), "-f",
            "coco"]  # fmt: skip
    r = runner.invoke(app, args, env=WIDE)
    assert r.exit_code == 2
    assert str(keypoint_run) in r.output and "--detector needs a detector run, and this is a keypoint run" in r.output
    assert not out.exists() and detector.calls == []


def test_a_detector_is_refused_an_input_that_holds_boxes_and_the_wide_csv(keypoint_run, scene, detector, tmp_path):
    out = tmp_path / "p.json"
    args = ["predict", str(keypoint_run), str(scene.gt), "--detector", str(detector.run), "-o", str(out), "-f",
            "coco"]  # fmt: skip
    r = runner.invoke(app, args, env=WIDE)
    assert r.exit_code == 2 and "holds boxes already" in r.output and "give the folder of its images" in r.output
    assert str(scene.gt) in r.output
    r = _predict(keypoint_run, scene, detector, tmp_path / "p.csv", "csv")
    assert r.exit_code == 2 and "the wide CSV holds one animal per image" in r.output and "--max-animals 1" in r.output
    assert detector.calls == [] and not out.exists() and not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--category", "cattle"], "--category"),
        (["--detector-onnx", "det.onnx"], "--detector-onnx"),
        (["--max-animals", "2"], "--max-animals"),
    ],
)
def test_detector_options_without_a_detector_are_refused(keypoint_run, scene, tmp_path, extra, field):
    out = tmp_path / "p.json"
    args = ["predict", str(keypoint_run), str(scene.photos), "-o", str(out), "-f", "coco", *extra]
    r = runner.invoke(app, args, env=WIDE)
    assert r.exit_code == 2 and f"{field} is for the animals a detector finds; add --detector" in r.output
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--score-threshold", "1.5"), ("--max-animals", "0"), ("--nms-iou", "-1")])
def test_out_of_range_detector_options_are_refused(keypoint_run, scene, detector, tmp_path, option, value):
    r = _predict(keypoint_run, scene, detector, tmp_path / "p.json", "coco", option, value)
    assert r.exit_code == 2 and option in r.output and detector.calls == []


def test_check_options_names_the_option_of_a_bad_value():
    from cattlepose.commands.detector_source import check_options
    from cattlepose.core.errors import UserError

    assert check_options({"score_threshold": 0.5, "max_animals": None}) == {"score_threshold": 0.5}
    with pytest.raises(UserError) as e:
        check_options({"max_animals": 2.5})
    assert e.value.field == "--max-animals"
    with pytest.raises(UserError) as e:
        check_options({"nms_iou": 0.0})
    assert e.value.field == "--nms-iou"


# ---------------------------------------------------------------------------------------------- evaluate
def _results(scene: Scene) -> list[dict]:
    """Perfect COCO results of `scene`: every animal's own keypoints and box, score 1."""
    doc = json.loads(scene.gt.read_text())
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0,
             "bbox": a["bbox"]} for a in doc["annotations"]]  # fmt: skip


def _evaluate(pred: list[dict] | Path, scene: Scene, tmp_path: Path) -> tuple[int, dict, str]:
    path = pred if isinstance(pred, Path) else tmp_path / "res.json"
    if not isinstance(pred, Path):
        path.write_text(json.dumps(pred))
    out = tmp_path / "metrics.json"
    r = runner.invoke(app, ["evaluate", str(path), str(scene.gt), "--schema", "adk17", "--json", str(out)], env=WIDE)
    return r.exit_code, (json.loads(out.read_text()) if out.exists() else {}), r.output


def test_evaluate_counts_false_positives_and_misses_by_the_coco_protocol(scene, tmp_path):
    code, perfect, _ = _evaluate(_results(scene), scene, tmp_path)
    assert code == 0 and perfect["overall"]["oks_ap"] == pytest.approx(1.0)
    assert perfect["boxes"]["box_ap"] == pytest.approx(1.0) and perfect["images_without_prediction"] == []

    # a confident detection where no animal is: a false positive ranked first lowers AP, not recall
    stray = dict(_results(scene)[0], score=2.0)
    stray["keypoints"] = [v + 40 if i % 3 < 2 else v for i, v in enumerate(stray["keypoints"])]
    stray["bbox"] = [stray["bbox"][0] + 40, stray["bbox"][1] + 40, *stray["bbox"][2:]]
    code, fp, _ = _evaluate([stray, *_results(scene)], scene, tmp_path)
    assert code == 0 and fp["overall"]["oks_ap"] < perfect["overall"]["oks_ap"]
    assert fp["overall"]["oks_ar"] == pytest.approx(1.0) and fp["boxes"]["box_ap"] < 1.0
    assert fp["matching"]["detections_unpaired"] == 1

    # a photograph where nothing was found: its animals are misses, exit 0, and the image is named
    missed = [d for d in _results(scene) if d["image_id"] != 2]
    code, miss, out = _evaluate(missed, scene, tmp_path)
    assert code == 0, out
    assert miss["images_without_prediction"] == ["photo_1.jpg"]
    assert miss["matching"]["animals_unpaired"] == 3 and miss["overall"]["oks_ar"] == pytest.approx(4 / 7)
    assert "1 image(s) with animals have no prediction" in out and "photo_1.jpg" in out
    assert "COCO box AP" in out

    # nothing found anywhere is an empty result, scored as such
    code, none, out = _evaluate([], scene, tmp_path)
    assert code == 0, out
    assert none["overall"]["oks_ap"] == 0.0 and len(none["images_without_prediction"]) == 3


def test_evaluate_scores_what_predict_wrote_from_whole_photographs(keypoint_run, scene, detector, tmp_path):
    """End to end on the real detector's boxes: whatever they are, evaluate pairs and scores every animal predict
    wrote, the same from COCO results and from the long CSV (the known answers are the test above's)."""
    pred = tmp_path / "pred.json"
    args = (*EVERY_PEAK, "--max-animals", "3", "--category", "cattle")  # the ground truth's one category
    assert _predict(keypoint_run, scene, detector, pred, "coco", *args).exit_code == 0
    written = json.loads(pred.read_text())
    assert written and {d["category_id"] for d in written} == {1}
    code, result, out = _evaluate(pred, scene, tmp_path)
    assert code == 0, out
    assert result["matching"]["method"] == "coco" and result["matching"]["detections"] == len(written)
    assert 0.0 <= result["overall"]["oks_ap"] <= 1.0 and 0.0 <= result["boxes"]["box_ap"] <= 1.0
    assert "COCO box AP" in out
    long = tmp_path / "pred.csv"
    assert _predict(keypoint_run, scene, detector, long, "long-csv", *args).exit_code == 0
    code, from_csv, out = _evaluate(long, scene, tmp_path)
    assert code == 0, out
    assert from_csv["overall"]["oks_ap"] == pytest.approx(result["overall"]["oks_ap"], abs=1e-3)
    assert from_csv["boxes"]["box_ap"] == pytest.approx(result["boxes"]["box_ap"], abs=1e-3)


def test_a_wide_csv_missing_an_image_is_still_an_error(make_adk, tmp_path):
    root = make_adk(n=2)
    pred = tmp_path / "p.csv"
    from cattlepose.core.schema import load_schema

    names = load_schema("adk17").keypoints
    pred.write_text("image," + ",".join(f"{n}_{c}" for n in names for c in "xy") + "\nadk_000.jpg," +
                    ",".join(["1"] * 34) + "\n")  # fmt: skip
    r = runner.invoke(app, ["evaluate", str(pred), str(root)], env=WIDE)
    assert r.exit_code == 2 and "no prediction for 1 of 2" in r.output and "adk_001.jpg" in r.output


# ---------------------------------------------------------------------------------------------- bad boxes
def _coco_boxes(scene: Scene, tmp_path: Path, box: list) -> Path:
    doc = json.loads(scene.gt.read_text())
    doc["annotations"][0]["bbox"] = box
    path = scene.photos.parent / f"bad_{len(list(scene.photos.parent.glob('bad_*')))}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "box, message",
    [
        ([10, 10, 0, 30], "zero-area bbox"),
        ([10, 10, 30, -5], "negative-size bbox"),
        ([5000, 10, 30, 30], "lies outside the"),
        ([-100, 10, 50, 30], "lies outside the"),
        ([10, 10, 30], "bbox must be [x, y, w, h]"),
    ],
)
def test_bad_boxes_in_given_boxes_and_ground_truth_name_the_file_and_field(keypoint_run, scene, tmp_path, box, message):
    path = _coco_boxes(scene, tmp_path, box)
    out = tmp_path / "p.json"
    for args in (
        ["predict", str(keypoint_run), str(path), "-o", str(out), "-f", "coco", "--folds", "0"],
        ["evaluate", str(tmp_path / "res.json"), str(path), "--schema", "adk17"],
        ["data", "check", str(path), "--schema", "adk17"],
    ):
        (tmp_path / "res.json").write_text(json.dumps(_results(scene)))
        r = runner.invoke(app, args, env=WIDE)
        assert r.exit_code == 2, (args, r.output)
        assert path.name in r.output and "annotations[0].bbox" in r.output and message in r.output, (args, r.output)
    assert not out.exists()
    path.unlink()


@pytest.mark.parametrize("box, message", [([3, 3, 0, 10], "zero-area bbox"), ([3, 3, 10, -1], "negative-size")])
def test_a_bad_box_in_coco_results_is_named(scene, tmp_path, box, message):
    results = _results(scene)
    results[2]["bbox"] = box
    code, _, out = _evaluate(results, scene, tmp_path)
    assert code == 2 and "res.json" in out and "[2].bbox" in out and message in out


def test_an_adk_box_outside_its_image_is_an_error_when_boxes_are_taken_as_given(make_adk, tmp_path):
    root = make_adk(n=3)
    ann = root / "annotations" / "adk_001.json"
    doc = json.loads(ann.read_text())
    doc["label_info"]["annotations"][0]["bbox"] = [500, 500, 20, 20]
    ann.write_text(json.dumps(doc))
    pred = tmp_path / "p.csv"
    (pred).write_text("image\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"bbox": "annotation"}}))
    r = runner.invoke(app, ["evaluate", str(pred), str(root), "-c", str(cfg)], env=WIDE)
    assert r.exit_code == 2 and "adk_001.json" in r.output and "label_info.annotations[0].bbox" in r.output
    assert "lies outside the 96x64 image" in r.output
    # by default an ADK box that does not fit is a placeholder: the whole image is the animal (ADK2021's data)
    from cattlepose.data.formats import adk

    assert adk.read(root, K)[1].bbox is None


def test_the_categories_record_round_trips_and_is_empty_for_data_without_categories():
    from cattlepose.core.errors import UserError
    from cattlepose.data.fingerprint import DataFingerprint, categories_of
    from cattlepose.data.records import Sample

    def animal(meta: dict) -> Sample:
        return Sample(image="/x/a.jpg", keypoints=np.zeros((2, 3)), meta=meta)

    assert categories_of([animal({}), animal({})]) == {}
    found = categories_of([animal({"category": "sheep", "category_id": 7}), animal({"category": "dog"})])
    assert found == {"dog": None, "sheep": 7}
    fp = DataFingerprint("/x", {}, {}, "h", {}, "h", categories=found)
    assert DataFingerprint.from_dict(json.loads(json.dumps(fp.to_dict())), "data.json").categories == found
    old = {k: v for k, v in fp.to_dict().items() if k != "categories"}  # a record from before it
    assert DataFingerprint.from_dict(old, "data.json").categories is None
    with pytest.raises(UserError, match="'categories' must map"):
        DataFingerprint.from_dict({**old, "categories": ["dog"]}, "data.json")
