"""What `cattlepose predict` writes: the same bytes as before the instance refactor (issue 36), in every format,
and every animal of an image, however its box was found (given, the whole image, a detector).

tests/data/golden/ holds what `predict` wrote, through the command line, before the refactor. The inputs are
made here from formulas (PNG images whose pixels are a function of x, y and channel, a sample-submission
template, COCO files of boxes) and the network is replaced by an exact function of each crop's pixels, so
the bytes depend only on the code under test: listing and reading the inputs, cropping, mapping keypoints
back to the image, and the writers.

Two changes are meant: COCO results gained a `bbox` per animal, the region its keypoints were predicted in (issue
36); without it, they are the bytes of before, the boxes themselves checked against the inputs. And the COCO
results of a folder of images name each image by `file_name` too (issue 39: `evaluate` finds images without a
COCO id by it), recorded again in folder.coco.json: each detection gained that key and nothing else changed.

To record them again (only when an output is meant to change, and say why in the commit):
    CATTLEPOSE_RECORD_GOLDEN=1 pytest tests/test_predict_outputs.py -k bytes
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.schema import load_schema

GOLDEN = Path(__file__).parent / "data" / "golden"
RECORD = os.environ.get("CATTLEPOSE_RECORD_GOLDEN") == "1"
runner = CliRunner()
K = 17
SIZES = {"cow_a.png": (80, 60), "cow_b.png": (64, 96), "cow_c.png": (100, 70)}
# COCO boxes: image cow_a holds two animals, cow_b one; cow_c is not listed
BOXES = {
    7: ("cow_a.png", [[3.5, 4.0, 40.0, 30.5], [30.0, 20.25, 45.0, 38.0]]),
    9: ("cow_b.png", [[5.0, 10.0, 50.0, 70.0]]),
}


def _image(w: int, h: int, seed: int) -> np.ndarray:
    y, x, c = np.mgrid[0:h, 0:w, 0:3]
    return ((x * (3 + seed) + y * 7 + c * 50 + seed * 31) % 256).astype(np.uint8)


def _fake_network(crops) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and scores as an exact function of each crop's pixels (integer sums): any change in what is
    cropped, or where it is mapped back to, changes the output."""
    pixels = crops.numpy().astype(np.int64)
    h, w = pixels.shape[1:3]
    total = pixels.sum(axis=(1, 2, 3))
    rows = pixels[:, :, :, 0].sum(axis=2)  # (N, H)
    k = np.arange(K)
    x = (total[:, None] % 37 + 3.25 * k[None, :]) % (w - 1)
    y = (rows[:, (5 * k) % h] % 41 + 1.5 * k[None, :]) % (h - 1)
    scores = ((total[:, None] + 13 * k[None, :]) % 100) / 100.0
    return np.stack([x, y], axis=-1).astype(np.float32), scores.astype(np.float32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    import torch
    import yaml

    from cattlepose.core.config import dump_config, load_config
    from cattlepose.core.schema import load_schema
    from cattlepose.models.build import build_model

    root = tmp_path_factory.mktemp("golden")
    images = root / "images"
    images.mkdir()
    for seed, (name, (w, h)) in enumerate(SIZES.items()):
        Image.fromarray(_image(w, h, seed)).save(images / name)
    schema = load_schema("adk17")
    cfg = load_config(None, ["model.input_size=[64,96]", "model.psa=none", "train.folds=2", "infer.batch_size=2"])
    run = root / "run"
    (run / "fold0").mkdir(parents=True)
    model = build_model(cfg.model.model_copy(update={"pretrained": None}), schema.num_keypoints)
    meta = {"config": json.loads(json.dumps(cfg.model_dump(mode="json", by_alias=True))), "schema": schema.to_dict()}
    torch.save({"model": model.state_dict(), **meta}, run / "fold0" / "best.pt")
    (run / "fold1").mkdir()
    torch.save({"model": model.state_dict(), **meta}, run / "fold1" / "best.pt")
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict(), sort_keys=False))
    # a template: its own column order (y before x, keypoints reversed), rows in another order, stems only
    columns = ["image"] + [f"{n}_{c}" for n in reversed(schema.keypoints) for c in ("y", "x")]
    rows = [",".join(columns)] + [",".join([stem] + ["0"] * (len(columns) - 1)) for stem in ("cow_c", "cow_a", "cow_b")]
    (root / "template.csv").write_text("\n".join(rows) + "\n")
    for name, boxes in (("boxes", BOXES), ("boxes_single", {i: (f, b[:1]) for i, (f, b) in BOXES.items()})):
        anns = [{"id": 100 * image_id + j, "image_id": image_id, "category_id": 1, "bbox": box}
                for image_id, (_, bs) in boxes.items() for j, box in enumerate(bs)]  # fmt: skip
        doc = {
            "images": [{"id": i, "file_name": f, "width": SIZES[f][0], "height": SIZES[f][1]}
                       for i, (f, _) in boxes.items()],
            "annotations": anns,
            "categories": [{"id": 1, "name": "cow"}],
        }  # fmt: skip
        (images / f"{name}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def fake_network(monkeypatch):
    from cattlepose.engine import infer

    monkeypatch.setattr(infer, "torch_batch_fn", lambda ens, flip, *args, **kw: _fake_network)


# (golden file, input, format, extra arguments)
CASES = [
    ("folder.csv", "images", "csv", []),
    ("folder_template.csv", "images", "csv", ["--template", "{root}/template.csv"]),
    ("folder.adk.json", "images", "adk-json", []),
    ("folder.coco.json", "images", "coco", []),
    ("boxes.coco.json", "images/boxes.json", "coco", []),
    ("boxes_single.csv", "images/boxes_single.json", "csv", []),
    ("boxes_single.adk.json", "images/boxes_single.json", "adk-json", []),
    ("boxes_single.coco.json", "images/boxes_single.json", "coco", []),
]


def _given_boxes(golden: str) -> list[list[float]]:
    return [b for _, bs in BOXES.values() for b in (bs[:1] if golden.startswith("boxes_single") else bs)]


def _stable(text: str, root: Path) -> str:
    """The output without what differs between runs: the temporary folder and the measured latency."""
    text = text.replace(str(root), "{root}")
    return re.sub(r'"latency": [0-9.e+-]+', '"latency": 0', text)


@pytest.mark.parametrize("golden, source, fmt, extra", CASES, ids=[c[0] for c in CASES])
def test_predict_writes_the_bytes_it_wrote_before(inputs, fake_network, tmp_path, golden, source, fmt, extra):
    out = tmp_path / golden
    args = ["predict", str(inputs / "run"), str(inputs / source), "-o", str(out), "-f", fmt, "-q", "--workers", "0"]
    r = runner.invoke(app, args + [a.format(root=inputs) for a in extra])
    assert r.exit_code == 0, r.output
    got = _stable(out.read_text(encoding="utf-8"), inputs)
    if fmt == "coco":
        boxes = [d.pop("bbox") for d in json.loads(got)]
        want = [[0, 0, *SIZES[f]] for f in SIZES] if source == "images" else _given_boxes(golden)
        assert boxes == want
        got = re.sub(r', "bbox": \[[^\]]*\]', "", got)
    if RECORD:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / golden).write_text(got, encoding="utf-8")
    assert got == (GOLDEN / golden).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- instances
def test_a_sample_is_an_instance_and_a_pose_is_scored_by_its_keypoints_and_its_box():
    from cattlepose.data.records import ImageSource, Instance, Pose, Sample

    source = ImageSource.of("/data/pen/cows.jpg", 640, 480)
    whole = Instance.in_image(source)
    assert whole.key == "cows" and whole.bbox is None and list(whole.crop_box()) == [0, 0, 640, 480]
    found = Instance.in_image(source, np.array([10, 20, 100, 50]), ann_id="1", score=0.5, meta={"category": "cow"})
    assert found.key == "cows#1" and found.source == source and found.category == "cow"
    kps = np.array([[1.0, 2.0, 0.4], [3.0, 4.0, 0.8]])
    assert Pose.predicted(whole, kps).score == pytest.approx(0.6)
    assert Pose.predicted(found, kps).score == pytest.approx(0.3)  # an unsure box ranks its pose down
    sample = Sample(image="/data/a.jpg", keypoints=np.zeros((2, 3)), bbox=[1, 2, 3, 4], ann_id="7", group="farm")
    assert isinstance(sample, Instance) and sample.key == "a#7" and sample.num_keypoints == 2


# a detector's answer for the images of `inputs`: two animals in cow_a, one in cow_b, none in cow_c
FOUND = {
    "cow_a.png": [([2.0, 3.0, 40.0, 30.0], 0.9, "cow"), ([35.0, 20.0, 40.0, 35.0], 0.5, "calf")],
    "cow_b.png": [([5.0, 10.0, 50.0, 70.0], 0.8, "cow")],
}


def _detector(found: dict):
    from cattlepose.data.records import Instance

    def detect(images):
        return [Instance.in_image(src, np.array(box), ann_id=str(n), score=score, meta={"category": category})
                for src in images for n, (box, score, category) in enumerate(found.get(src.path.name, []))]  # fmt: skip

    return detect


def _predict(inputs: Path, source: str, out: Path, fmt: str, **kw):
    from cattlepose.commands.predict import run_predict

    return run_predict(inputs / "run", inputs / source, out, fmt=fmt, workers=0, **kw)


def test_a_detector_plugs_in_as_a_box_source_and_every_format_holds_its_animals(inputs, fake_network, tmp_path):
    from cattlepose.data.formats.submission import detect_prediction_format, read_predictions
    from cattlepose.data.records import Pose

    out = {"long-csv": tmp_path / "p.csv", "coco": tmp_path / "coco.json", "adk-json": tmp_path / "adk.json"}
    for fmt, path in out.items():
        summary = _predict(inputs, "images", path, fmt, boxes=_detector(FOUND))
        # every image of the folder counts; cow_c, where nothing was found, is an empty result
        assert (summary["images"], summary["animals"], summary["images_without_animals"]) == (3, 3, 1)
    boxes = [b for found in FOUND.values() for b, _, _ in found]
    box_scores = [s for found in FOUND.values() for _, s, _ in found]

    with open(out["long-csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["instance"], r["category"]) for r in rows] == [
        ("cow_a.png", "0", "cow"), ("cow_a.png", "1", "calf"), ("cow_b.png", "0", "cow")]  # fmt: skip
    assert [[float(r[c]) for c in ("box_x", "box_y", "box_w", "box_h")] for r in rows] == boxes
    assert detect_prediction_format(out["long-csv"]) == "long-csv"
    long = read_predictions(out["long-csv"], load_schema("adk17"))
    for r, pose, box_score in zip(rows, long, box_scores, strict=True):
        assert pose.keypoints.shape == (K, 3) and float(r["score"]) == pose.score
        assert pose.score == pytest.approx(pose.keypoints[:, 2].mean() * box_score, abs=1e-4)

    coco = json.loads(out["coco"].read_text())
    assert [d["image_id"] for d in coco] == [0, 0, 1] and [d["bbox"] for d in coco] == boxes
    for d, pose in zip(coco, long, strict=True):  # the same animals, the same numbers, in both files
        np.testing.assert_allclose(np.reshape(d["keypoints"], (K, 3)), pose.keypoints, atol=1e-3)
        assert d["score"] == pytest.approx(pose.score, abs=1e-4)

    adk = json.loads(out["adk-json"].read_text())["annotations"]
    assert [Path(a["img_path"]).name for a in adk] == ["cow_a.png", "cow_a.png", "cow_b.png"]
    assert [a["ID"] for a in adk] == [1, 2, 3]
    back = read_predictions(out["adk-json"], load_schema("adk17"))  # named by the whole img_path
    assert [(Path(p.instance.image_id).name, p.instance.ann_id) for p in back] == [
        ("cow_a.png", "0"), ("cow_a.png", "1"), ("cow_b.png", "0")]  # fmt: skip
    assert all(isinstance(p, Pose) for p in back)


def test_the_wide_csv_refuses_an_image_with_several_animals_before_predicting(inputs, monkeypatch, tmp_path):
    from cattlepose.core.errors import UserError
    from cattlepose.engine import infer

    monkeypatch.setattr(infer, "torch_batch_fn", lambda *a, **kw: pytest.fail("predicted first"))
    with pytest.raises(UserError) as e:
        _predict(inputs, "images", tmp_path / "p.csv", "csv", boxes=_detector(FOUND))
    assert "image 'cow_a.png' holds 2 animals" in e.value.message and "long-csv" in e.value.message
    assert not (tmp_path / "p.csv").exists()


def test_an_image_with_no_animal_is_an_empty_result_not_an_error(inputs, fake_network, tmp_path):
    for fmt, empty in (("long-csv", 1), ("coco", "[]\n"), ("adk-json", [])):
        path = tmp_path / f"none_{fmt}.{'csv' if fmt == 'long-csv' else 'json'}"
        summary = _predict(inputs, "images", path, fmt, boxes=_detector({}))
        assert (summary["animals"], summary["images_without_animals"]) == (0, 3)
        text = path.read_text()
        if fmt == "long-csv":
            assert len(text.splitlines()) == empty and text.startswith("image,instance,category,score,box_x")
        elif fmt == "coco":
            assert text == empty
        else:
            assert json.loads(text)["annotations"] == empty


def test_the_long_csv_holds_what_coco_results_hold_for_given_boxes(inputs, fake_network, tmp_path):
    from cattlepose.data.formats.submission import read_predictions

    out = tmp_path / "boxes.csv"
    _predict(inputs, "images/boxes.json", out, "long-csv")
    long = read_predictions(out, load_schema("adk17"))
    assert [(p.instance.image_id, p.instance.ann_id, p.instance.category) for p in long] == [
        ("cow_a.png", "700", "cow"), ("cow_a.png", "701", "cow"), ("cow_b.png", "900", "cow")]  # fmt: skip
    assert [list(p.instance.bbox) for p in long] == _given_boxes("boxes")
    golden = json.loads((GOLDEN / "boxes.coco.json").read_text())
    for d, pose in zip(golden, long, strict=True):
        np.testing.assert_allclose(np.reshape(d["keypoints"], (K, 3)), pose.keypoints, atol=1e-3)
        assert pose.score == pytest.approx(d["score"], abs=1e-4)


def test_an_adk_folder_gives_its_boxes(inputs, fake_network, make_adk, tmp_path):
    from cattlepose.data.formats import adk

    root = make_adk(n=3)
    out = tmp_path / "adk.csv"
    summary = _predict(inputs, str(root), out, "long-csv")
    assert (summary["images"], summary["animals"]) == (3, 3)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    truth = adk.read(root, K)
    assert [r["image"] for r in rows] == [s.image.name for s in truth]
    assert [[float(r[c]) for c in ("box_x", "box_y", "box_w", "box_h")] for r in rows] == [
        list(s.bbox) for s in truth]  # fmt: skip


def test_a_broken_image_with_several_animals_is_named_once_and_decoded_once(inputs, fake_network, tmp_path):
    import shutil

    import torch

    from cattlepose.data.boxes import given_boxes
    from cattlepose.engine import infer

    images = tmp_path / "images"
    shutil.copytree(inputs / "images", images)
    decoded = []
    real = infer.load_image

    def counting(path):
        decoded.append(Path(path).name)
        return real(path)

    instances = given_boxes(images / "boxes.json", K)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(infer, "load_image", counting)
        infer.predict_batches(instances, (96, 64), K, _fake_network, 2, torch.device("cpu"), workers=0)
    assert decoded == ["cow_a.png", "cow_b.png"]  # three animals, two images, two decodes

    (images / "cow_a.png").write_bytes((images / "cow_a.png").read_bytes()[:100])
    r = runner.invoke(app, ["predict", str(inputs / "run"), str(images / "boxes.json"), "-o",
                            str(tmp_path / "p.json"), "-f", "coco", "-q", "--workers", "0"])  # fmt: skip
    assert r.exit_code == 2 and "1 image(s) could not be read" in r.output, r.output
    assert r.output.count("cow_a.png") == 1 and not (tmp_path / "p.json").exists()
