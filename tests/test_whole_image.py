"""`cattlepose predict --detector` on whole photographs and `cattlepose evaluate` of what it writes, end to end.

The photographs are synthetic scenes: two or three synthetic cattle images pasted side by side on one canvas, so
every animal's box and keypoints are known (`scene`). The keypoint run is a real one, trained one epoch on
tiny synthetic data (`keypoint_run`); its data.json records its categories (`cattle`, ...).

The detector is the one fixture `detector` (a detector run folder, `task: detect`, and what it finds): until
the real `cattlepose.engine.detect` is merged, it installs a stand-in module under that name whose
`load_detector` keeps the contract (DetectOptions applied, categories, instances by descending score, a
keypoint run refused) and finds the boxes the test gives it (`detector.found`, by image file name). To run
these tests on the real detector, the fixture trains one on `scene`'s gt.json instead, and the assertions on
exact boxes (`EXACT_BOXES`) become assertions on box AP.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.data.transforms import BOX_PADDING
from conftest import synth_set

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
K = 17
EXACT_BOXES = True  # the stand-in detector gives back exactly the boxes it was told


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
                             "train.workers=0", "train.threads=2", "infer.batch_size=8"])  # fmt: skip
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
class FakeDetector:
    """What the stand-in `engine.detect` answers: the run folder, its categories, the boxes it finds per image
    file name ((box, score, category) each), and every `load_detector` call's arguments."""

    run: Path
    categories: list[str]
    found: dict[str, list[tuple[list[float], float, str]]]
    calls: list[dict] = dataclasses.field(default_factory=list)


def _stand_in_module(fake: FakeDetector) -> types.ModuleType:
    """`cattlepose.engine.detect` as its contract has it, answering from `fake`."""
    from cattlepose.data.records import ImageSource, Instance
    from cattlepose.runs.rundir import RunDir

    mod = types.ModuleType("cattlepose.engine.detect")

    @dataclasses.dataclass(frozen=True)
    class DetectOptions:
        score_threshold: float = 0.3
        nms_iou: float = 0.5
        max_animals: int = 20
        min_size: float = 4.0

    class Detector:
        def __init__(self, options: DetectOptions):
            self.categories = list(fake.categories)
            self.options = options

        def __call__(self, images: Sequence[ImageSource]) -> list[Instance]:
            o, out = self.options, []
            for src in images:
                found = sorted(fake.found.get(src.path.name, []), key=lambda f: -f[1])
                kept = [f for f in found if f[1] >= o.score_threshold and min(f[0][2:]) >= o.min_size]
                out += [Instance.in_image(src, np.array(box), ann_id=str(n), score=score, meta={"category": cat})
                        for n, (box, score, cat) in enumerate(kept[: o.max_animals])]  # fmt: skip
            return out

        def with_options(self, options: DetectOptions) -> Detector:
            fake.calls[-1]["options"] = options  # what the command applied over the run's own
            return Detector(options)

    def load_detector(run_dir, folds=None, device="auto", flip=True, options=None, backend="torch", onnx=None,
                      batch_size=None, log=None):  # fmt: skip
        RunDir.config_of(Path(run_dir), "detect", "--detector")
        fake.calls.append({"run_dir": Path(run_dir), "options": options, "backend": backend, "onnx": onnx,
                           "flip": flip})  # fmt: skip
        return Detector(options or DetectOptions())

    mod.DetectOptions, mod.Detector, mod.load_detector = DetectOptions, Detector, load_detector
    return mod


@pytest.fixture
def detector(scene, tmp_path, monkeypatch) -> FakeDetector:
    """The detector run (a folder whose config.yaml says task: detect) and, in place of the real
    `engine.detect`, a stand-in that finds every animal of `scene`, its box shifted by a pixel, cattle, scores
    0.9, 0.8, ...: the one place to change for the real detector."""
    from cattlepose.core.config import Config, dump_config

    run = tmp_path / "detector_run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(Config(task="detect")))
    found = {name: [([b[0] + 1, b[1] - 1, b[2], b[3]], 0.9 - 0.1 * j, "cattle") for j, b in enumerate(bs)]
             for name, bs in scene.boxes.items()}  # fmt: skip
    fake = FakeDetector(run, ["cattle"], found)
    import cattlepose.engine as engine

    module = _stand_in_module(fake)
    monkeypatch.setitem(sys.modules, "cattlepose.engine.detect", module)
    monkeypatch.setattr(engine, "detect", module, raising=False)
    return fake


def _predict(keypoint_run: Path, scene: Scene, detector: FakeDetector, out: Path, fmt: str, *extra: str):
    args = ["predict", str(keypoint_run), str(scene.photos), "--detector", str(detector.run), "-o", str(out), "-f",
            fmt, "--folds", "0", "--workers", "0", "--device", "cpu", *extra]  # fmt: skip
    return runner.invoke(app, args, env=WIDE)


# ---------------------------------------------------------------------------------------------- predict
def test_every_animal_of_every_photograph_is_written_with_its_box_category_and_keypoints(
    keypoint_run, scene, detector, tmp_path
):
    out = tmp_path / "pred.json"
    r = _predict(keypoint_run, scene, detector, out, "coco")
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "4 images (7 animals)" in r.output
    assert "1 of 4 images had no animal" in r.output
    assert "detection" in r.output and "keypoints" in r.output and "end to end" in r.output
    results = json.loads(out.read_text())
    want = [(name, [b[0] + 1, b[1] - 1, b[2], b[3]]) for name, bs in scene.boxes.items() for b in bs]
    assert [d["file_name"] for d in results] == [name for name, _ in want]
    if EXACT_BOXES:
        assert [d["bbox"] for d in results] == [box for _, box in want]
    assert {d["category_id"] for d in results} == {1}  # cattle's id in the keypoint run's data
    for d in results:
        kps = np.reshape(d["keypoints"], (K, 3))
        x, y, w, h = d["bbox"]
        assert np.all(np.isfinite(kps)) and 0 < d["score"] <= 1
        # top-down: every keypoint lies in its animal's crop (the box grown to the 64x64 input's aspect, then by
        # transforms.BOX_PADDING), not elsewhere in the photograph
        half = 0.5 * max(w, h) * BOX_PADDING + 1
        assert np.all(np.abs(kps[:, :2] - (x + w / 2, y + h / 2)) <= half), d
    assert detector.calls[0]["options"] is None and detector.calls[0]["backend"] == "torch"

    long = tmp_path / "pred.csv"
    assert _predict(keypoint_run, scene, detector, long, "long-csv").exit_code == 0
    with open(long, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["instance"], r["category"]) for r in rows] == [
        (name, str(j), "cattle") for name, bs in scene.boxes.items() for j in range(len(bs))]  # fmt: skip
    for row, d in zip(rows, results, strict=True):  # the same animals with the same numbers in both files
        assert [float(row[c]) for c in ("box_x", "box_y", "box_w", "box_h")] == pytest.approx(d["bbox"], abs=1e-3)
        assert float(row["score"]) == pytest.approx(d["score"], abs=1e-4)

    adk = tmp_path / "pred.adk.json"
    assert _predict(keypoint_run, scene, detector, adk, "adk-json").exit_code == 0
    anns = json.loads(adk.read_text())["annotations"]
    assert [Path(a["img_path"]).name for a in anns] == [name for name, _ in want]


def test_the_run_predict_returns_detection_and_keypoint_times_apart(keypoint_run, scene, detector, tmp_path):
    from cattlepose.commands.predict import run_predict

    s = run_predict(keypoint_run, scene.photos, tmp_path / "p.json", fmt="coco", folds="0", workers=0,
                    device="cpu", detector=detector.run)  # fmt: skip
    assert (s["images"], s["animals"], s["images_without_animals"]) == (4, 7, 1)
    assert s["seconds"] == pytest.approx(s["detect_seconds"] + s["keypoint_seconds"])
    assert s["images_per_s"] == pytest.approx(4 / s["seconds"])
    assert s["detect_images_per_s"] > s["images_per_s"] and s["keypoint_images_per_s"] > s["images_per_s"]


def test_detector_options_override_its_defaults_and_reach_it(keypoint_run, scene, detector, tmp_path):
    out = tmp_path / "p.json"
    r = _predict(keypoint_run, scene, detector, out, "coco", "--score-threshold", "0.75", "--max-animals", "1",
                 "--detector-onnx", str(tmp_path / "det.onnx"), "--no-flip")  # fmt: skip
    assert r.exit_code == 0, r.output
    call = detector.calls[-1]
    assert (call["options"].score_threshold, call["options"].max_animals) == (0.75, 1)
    assert (call["options"].nms_iou, call["options"].min_size) == (0.5, 4.0)  # the run's own, untouched
    assert (call["backend"], call["onnx"], call["flip"]) == ("onnx", tmp_path / "det.onnx", False)
    results = json.loads(out.read_text())
    assert [d["file_name"] for d in results] == ["photo_0.jpg", "photo_1.jpg", "photo_2.jpg"]  # the surest each
    # the wide CSV holds one animal per image: with --max-animals 1 it can be written
    wide = tmp_path / "p.csv"
    r = _predict(keypoint_run, scene, detector, wide, "csv", "--max-animals", "1")
    assert r.exit_code == 0, r.output
    assert len(wide.read_text().splitlines()) == 1 + 3


def test_the_keypoints_can_run_on_onnx_runtime_behind_the_detector(keypoint_run, scene, detector, tmp_path):
    torch_out, onnx_out = tmp_path / "t.json", tmp_path / "o.json"
    assert _predict(keypoint_run, scene, detector, torch_out, "coco").exit_code == 0
    r = _predict(keypoint_run, scene, detector, onnx_out, "coco", "--backend", "onnx")
    assert r.exit_code == 0, r.output
    a, b = json.loads(torch_out.read_text()), json.loads(onnx_out.read_text())
    assert [d["bbox"] for d in a] == [d["bbox"] for d in b]
    np.testing.assert_allclose([d["keypoints"] for d in a], [d["keypoints"] for d in b], atol=0.05)


def test_a_photograph_without_animals_everywhere_is_an_empty_result_in_every_format(
    keypoint_run, scene, detector, tmp_path
):
    detector.found = {}
    for fmt, suffix in (("coco", "json"), ("long-csv", "csv"), ("adk-json", "json")):
        out = tmp_path / f"none.{fmt}.{suffix}"
        r = _predict(keypoint_run, scene, detector, out, fmt)
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
    detector.categories = ["cattle", "calf"]
    detector.found["photo_1.jpg"][1] = (detector.found["photo_1.jpg"][1][0], 0.7, "calf")
    out = tmp_path / "p.csv"
    r = _predict(keypoint_run, scene, detector, out, "long-csv", "--category", "Cattle")  # any case
    assert r.exit_code == 0, r.output
    assert "1 animal(s) of other categories than --category left out" in r.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["category"] for r in rows} == {"cattle"}
    r = _predict(keypoint_run, scene, detector, tmp_path / "q.csv", "long-csv")  # both: the run knows calves too
    assert r.exit_code == 0, r.output
    with open(tmp_path / "q.csv", newline="") as f:
        assert "calf" in {row["category"] for row in csv.DictReader(f)}


def test_a_category_the_detector_does_not_know_is_refused_listing_those_it_knows(
    keypoint_run, scene, detector, tmp_path
):
    detector.categories = ["cattle", "calf"]
    out = tmp_path / "p.json"
    r = _predict(keypoint_run, scene, detector, out, "coco", "--category", "sheep")
    assert r.exit_code == 2
    assert "'sheep'" in r.output and "it knows cattle, calf" in r.output and "--category" in r.output
    assert str(detector.run) in r.output and not out.exists()


def test_a_detector_of_other_animals_than_the_keypoint_run_is_refused_naming_both(
    keypoint_run, scene, detector, tmp_path
):
    detector.categories = ["dog", "cat"]
    out = tmp_path / "p.json"
    r = _predict(keypoint_run, scene, detector, out, "coco")
    assert r.exit_code == 2, r.output
    assert "finds dog, cat" in r.output and "no category in common" in r.output
    assert str(detector.run) in r.output and str(keypoint_run) in r.output and "calf, cattle, nuptial" in r.output
    assert not out.exists()
    # the same animals under other names: the user says so
    r = _predict(keypoint_run, scene, detector, out, "coco", "--skip-category-check")
    assert r.exit_code == 0, r.output


def test_a_detector_finding_more_categories_than_the_run_knows_is_told_which_to_keep(
    keypoint_run, scene, detector, tmp_path
):
    detector.categories = ["cattle", "sheep"]
    r = _predict(keypoint_run, scene, detector, tmp_path / "p.json", "coco")
    assert r.exit_code == 2
    assert "not trained on sheep" in r.output and "--category cattle" in r.output
    assert _predict(keypoint_run, scene, detector, tmp_path / "p.json", "coco", "--category", "cattle").exit_code == 0


def test_a_keypoint_run_without_a_record_of_its_categories_is_not_checked_but_warned_about(
    keypoint_run, scene, detector, tmp_path
):
    import shutil

    old = tmp_path / "old_run"
    shutil.copytree(keypoint_run, old)
    record = json.loads((old / "data.json").read_text())
    del record["categories"]
    (old / "data.json").write_text(json.dumps(record))
    detector.categories = ["dog"]
    r = _predict(old, scene, detector, tmp_path / "p.json", "coco")
    assert r.exit_code == 0, r.output
    assert "no record of the categories it was trained on" in r.output


def test_the_keypoint_run_records_the_categories_of_its_training_data(keypoint_run):
    from cattlepose.runs.rundir import RunDir

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
    pred = tmp_path / "pred.json"
    assert _predict(keypoint_run, scene, detector, pred, "coco").exit_code == 0
    code, result, out = _evaluate(pred, scene, tmp_path)
    assert code == 0, out
    assert result["matching"]["method"] == "coco" and result["matching"]["detections"] == 7
    assert 0.0 <= result["overall"]["oks_ap"] <= 1.0
    # the boxes are the animals' own shifted by a pixel: box AP high, whatever the one-epoch keypoints are
    assert result["boxes"]["box_ap50"] == pytest.approx(1.0)
    long = tmp_path / "pred.csv"
    assert _predict(keypoint_run, scene, detector, long, "long-csv").exit_code == 0
    code, from_csv, out = _evaluate(long, scene, tmp_path)
    assert code == 0, out
    assert from_csv["overall"]["oks_ap"] == pytest.approx(result["overall"]["oks_ap"], abs=1e-3)


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
