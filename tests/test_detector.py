"""The detector cattlepose trains (task: detect): box AP known answers, target encode/decode round trip, a tiny
run (artefacts, history, resume), folds equal to a keypoint run's, the ONNX export against PyTorch, the run-kind
swap error, bad boxes, and (slow) a short training that finds the animals of its scenes.

The tiny run is the session's one detector run, `detector_run` of tests/conftest.py (on `detector_herd`: cattle
and calves), which tests/test_whole_image.py predicts with too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.config import load_config
from cattlepose.core.errors import UserError
from cattlepose.core.ui import Log
from cattlepose.data.detection import DetImage, category_names, group_images
from cattlepose.data.records import ImageSource
from cattlepose.data.source import load_training_data
from cattlepose.data.synth.herd import synthesize_herd
from cattlepose.engine import detfit
from cattlepose.engine.detect import DetectOptions, load_detector, postprocess
from cattlepose.metrics.boxes import Detections, box_ap
from cattlepose.models.detector import decode_tensors, encode_targets
from cattlepose.runs.rundir import RunDir
from conftest import CALF_ID, DETECTOR_TINY


def _sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("-s", o)]


TINY = DETECTOR_TINY


def _image(boxes, labels=None, ignore=None) -> DetImage:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    labels = np.zeros(n, np.int64) if labels is None else np.asarray(labels)
    ignore = np.zeros(n, bool) if ignore is None else np.asarray(ignore)
    return DetImage(ImageSource.of("x.jpg", 200, 200), boxes, labels, ignore, [""] * n)


def _dets(boxes, scores, labels=None) -> Detections:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return Detections(boxes, np.asarray(scores, np.float64), np.zeros(len(boxes), np.int64) if labels is None
                      else np.asarray(labels))  # fmt: skip


# ---------------------------------------------------------------------------------------------- metric
def test_box_ap_known_answers():
    truth = [_image([[10, 10, 50, 50], [100, 100, 40, 80]]), _image([[0, 0, 30, 30]])]
    perfect = [_dets([[10, 10, 50, 50], [100, 100, 40, 80]], [0.9, 0.8]), _dets([[0, 0, 30, 30]], [0.7])]
    r = box_ap(truth, perfect, ["cow"])
    assert r["bbox_ap"] == pytest.approx(1.0) and r["bbox_ap50"] == pytest.approx(1.0) and r["animals"] == 3
    # one animal, its box shifted so IoU = 0.62: a hit at IoU 0.50, 0.55, 0.60 (3 of COCO's 10 thresholds)
    one = [_image([[0, 0, 100, 100]])]
    shift = 100 * (1 - 0.62) / (1 + 0.62)  # IoU of two 100-squares shifted by d along x: (100-d)/(100+d)
    r = box_ap(one, [_dets([[shift, 0, 100, 100]], [0.9])], ["cow"])
    assert r["bbox_ap50"] == pytest.approx(1.0) and r["bbox_ap75"] == pytest.approx(0.0)
    assert r["bbox_ap"] == pytest.approx(0.3)
    # a false positive ranked above the hit: precision 1/2 at full recall
    r = box_ap(one, [_dets([[150, 150, 30, 30], [0, 0, 100, 100]], [0.9, 0.5])], ["cow"])
    assert r["bbox_ap"] == pytest.approx(0.5, abs=0.01)
    # ranked below the hit it costs nothing
    r = box_ap(one, [_dets([[150, 150, 30, 30], [0, 0, 100, 100]], [0.4, 0.5])], ["cow"])
    assert r["bbox_ap"] == pytest.approx(1.0)
    # a detection on an ignore region (iscrowd) counts neither way; a missed ignored animal costs nothing
    crowd = [_image([[0, 0, 100, 100], [150, 150, 30, 30]], ignore=[False, True])]
    r = box_ap(crowd, [_dets([[150, 150, 30, 30], [0, 0, 100, 100]], [0.9, 0.5])], ["cow"])
    assert r["bbox_ap"] == pytest.approx(1.0) and r["animals"] == 1
    # per category; nothing detected is 0
    two = [_image([[0, 0, 100, 100], [120, 120, 50, 50]], labels=[0, 1])]
    r = box_ap(two, [_dets([[0, 0, 100, 100]], [0.9], labels=[0])], ["horse", "sheep"])
    assert r["by_category"]["horse"]["bbox_ap"] == pytest.approx(1.0)
    assert r["by_category"]["sheep"]["bbox_ap"] == pytest.approx(0.0)
    assert box_ap(one, [Detections.empty()], ["cow"])["bbox_ap"] == 0.0


# ---------------------------------------------------------------------------------------------- codec
@pytest.mark.parametrize("stride", [4, 8])
def test_targets_decode_back_to_their_boxes(stride):
    boxes = np.array([[10.0, 20.0, 60.0, 30.0], [70.0, 64.0, 41.0, 50.0]])
    t = encode_targets(boxes, np.array([0, 1]), np.array([False, False]), 2, (128 // stride, 128 // stride), stride)
    heat = torch.from_numpy(t["heat"])[None]
    size = torch.zeros(1, 2, *heat.shape[-2:])
    offset = torch.zeros_like(size)
    w = heat.shape[-1]
    for i in range(2):
        cy, cx = divmod(int(t["index"][i]), w)
        size[0, :, cy, cx] = torch.from_numpy(t["size"][i])
        offset[0, :, cy, cx] = torch.from_numpy(t["offset"][i])
    b, s, c = decode_tensors(heat, size, offset, stride, top_k=2)
    order = np.argsort(c[0].numpy())
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    np.testing.assert_allclose(b[0].numpy()[order], xyxy, atol=1e-4)
    np.testing.assert_allclose(s[0].numpy(), [1.0, 1.0])
    # postprocess: back to original pixels (scale 0.5), NMS per category, threshold, max_animals
    d = postprocess(b[0].numpy(), s[0].numpy(), c[0].numpy(), 0.5, (400, 400), DetectOptions(max_animals=1))
    assert len(d.boxes) == 1 and np.allclose(d.boxes[0], boxes[int(d.labels[0])] * 2)


def test_postprocess_keeps_peaks_with_area_whatever_the_options():
    """A score of 0 is a cell that is no peak (top-K fills with them) and a box without area (a peak in the
    letterbox's padding, clipped to the image) is no animal: neither is kept at threshold 0 and min_size 0."""
    boxes = np.array([[10, 10, 30, 40], [50, 50, 70, 60], [110, 10, 130, 40], [150, 10, 170, 30]], np.float64)
    scores = np.array([0.4, 0.2, 0.1, 0.0])  # the third lies right of the 100 px wide image: clipped to no width
    d = postprocess(boxes, scores, np.zeros(4), 1.0, (100, 100), DetectOptions(score_threshold=0.0, min_size=0.0))
    np.testing.assert_allclose(d.boxes, [[10, 10, 20, 30], [50, 50, 20, 10]])
    np.testing.assert_allclose(d.scores, [0.4, 0.2])
    d = postprocess(boxes, scores, np.zeros(4), 1.0, (100, 100), DetectOptions(score_threshold=0.0, min_size=15.0))
    np.testing.assert_allclose(d.scores, [0.4])  # the second is 10 px high


def test_a_new_detector_gives_boxes_with_area():
    """The size head ends in a ReLU; it starts at SIZE_PRIOR cells, so an untrained network's boxes have a size
    (a random bias below zero gave every box of some seeds none, and the size loss no gradient there)."""
    from cattlepose.models.detector import SIZE_PRIOR, CenterNet

    for seed in range(3):
        torch.manual_seed(seed)
        model = CenterNet("tf_efficientnet_lite0", 2, 8).eval()
        with torch.no_grad():
            _, size, _ = model(torch.randn(1, 3, 64, 64))
        assert size.min() > 0.5 * SIZE_PRIOR, seed


def test_ignored_boxes_mask_the_loss_but_not_a_kept_animal():
    t = encode_targets(np.array([[0, 0, 64, 64], [8, 8, 16, 16]]), np.array([0, 0]), np.array([True, False]), 1,
                       (16, 16), 4)  # fmt: skip
    assert t["mask"].sum() == 1 and t["ignore"][:16, :16].sum() > 0
    assert t["ignore"][4, 4] == 0  # the kept animal's centre is supervised


# ---------------------------------------------------------------------------------------------- runs
def test_a_detector_run_trains_and_resumes(detector_run, detector_herd):
    run = RunDir.open(detector_run)
    assert run.task == "detect"
    for k in (0, 1):
        fold = detector_run / f"fold{k}"
        assert (fold / "history.csv").is_file() and (fold / "best.pt").is_file()
        state = torch.load(detector_run / f"fold{k}" / "best.pt", weights_only=True)
        assert state["categories"] == ["calf", "cattle"] and state["task"] == "detect"  # sorted by name
    cv = json.loads((detector_run / "cv.json").read_text())
    assert cv["task"] == "detect" and set(cv["folds"]) == {"0", "1"} and "bbox_ap50" in cv
    by = cv["by_category"]
    assert by["calf"]["animals"] > 0 and by["cattle"]["animals"] > 0
    assert by["calf"]["animals"] + by["cattle"]["animals"] == cv["animals"]
    # the run records the data's COCO ids of its categories (data.json), which predict's COCO results carry
    assert run.categories() == {"calf": CALF_ID, "cattle": 1}
    det = json.loads((detector_run / "detections.json").read_text())
    assert len(det["images"]) == cv["images"]
    # resume after the run finished: nothing left to train, the same report
    r = CliRunner().invoke(app, ["train", "--name", "det", "--runs-dir", str(detector_run.parent), "--resume", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((detector_run / "cv.json").read_text())["folds"] == cv["folds"]


def test_exact_resume_of_an_interrupted_fold(detector_herd, tmp_path, monkeypatch):
    cfg = load_config("configs/detector.yaml", [f"data.train={detector_herd}", *TINY, "train.epochs=2"])
    samples, schema = load_training_data(cfg, Log(quiet=True))
    names = category_names(samples)
    images = group_images(samples, cfg, names)[0][:4]  # one step per epoch
    whole = detfit.train_detector_fold(cfg, schema, names, images, [], tmp_path / "a", torch.device("cpu"))
    real = detfit.train_one_epoch

    def stop_at_second(fold, state, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(fold, state, epoch)

    monkeypatch.setattr(detfit, "train_one_epoch", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        detfit.train_detector_fold(cfg, schema, names, images, [], tmp_path / "b", torch.device("cpu"))
    monkeypatch.setattr(detfit, "train_one_epoch", real)
    resumed = detfit.train_detector_fold(cfg, schema, names, images, [], tmp_path / "b", torch.device("cpu"),
                                         resume=True)  # fmt: skip
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


def test_folds_equal_a_keypoint_runs(detector_run, detector_herd, tmp_path):
    """Same data file, folds, seed, group_by: every photograph is held out in the same fold by both runs."""
    kp = load_config("configs/real_small_cpu.yaml", [f"data.train={detector_herd}", "data.schema=adk17",
                                                     "train.folds=2", "data.group_by=image"])  # fmt: skip
    samples, schema = load_training_data(kp, Log(quiet=True))
    _, kp_folds = RunDir.prepare(tmp_path / "kp", kp, schema, samples, [0], resume=False)
    det = RunDir.open(detector_run)
    assert det.assignment(samples) == kp_folds
    assert (tmp_path / "kp" / "folds.csv").read_text() == (detector_run / "folds.csv").read_text()


def test_export_boxes_equal_pytorchs(detector_run, detector_herd, detector_onnx):
    out = detector_onnx  # `cattlepose export` of the run (tests/conftest.py)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["task"] == "detect" and info["categories"] == ["calf", "cattle"]
    assert info["format"] == "cattlepose-onnx/3"
    images = [ImageSource.of(p) for p in sorted((detector_herd.parent / "images").glob("*.jpg"))[:4]]
    options = DetectOptions(score_threshold=0.0, min_size=0.0)
    torch_dets = load_detector(detector_run, options=options).detect(images)
    onnx_dets = load_detector(detector_run, options=options, backend="onnx", onnx=out).detect(images)
    compared = 0
    for a, b in zip(torch_dets, onnx_dets, strict=True):
        assert a and b
        for inst in a[:5]:  # the best of each image: the ranks below can swap on equal scores
            near = min(b, key=lambda o: np.abs(o.bbox - inst.bbox).max())
            assert np.abs(near.bbox - inst.bbox).max() < 0.05 and abs(near.score - inst.score) < 1e-4
            assert near.meta["category"] == inst.meta["category"] and inst.ann_id is not None
            compared += 1
    assert compared >= 4


def test_a_keypoint_run_is_not_a_detector(detector_herd, tmp_path):
    kp = load_config(None, [f"data.train={detector_herd}", "data.format=coco", "data.schema=adk17", "train.folds=2",
                            "data.group_by=image"])  # fmt: skip
    samples, schema = load_training_data(kp, Log(quiet=True))
    RunDir.prepare(tmp_path / "kp", kp, schema, samples, [0], resume=False)
    with pytest.raises(UserError) as e:
        load_detector(tmp_path / "kp")
    assert "--detector needs a detector run" in str(e.value) and e.value.field == "--detector"


def test_a_box_far_outside_its_image_is_named(detector_herd, tmp_path):
    doc = json.loads(detector_herd.read_text())
    first = doc["annotations"][0]
    width = next(i["width"] for i in doc["images"] if i["id"] == first["image_id"])
    first["bbox"] = [width * 0.5, 0, width * 1.5, 20]
    bad = detector_herd.parent / "bad.json"
    bad.write_text(json.dumps(doc))
    r = CliRunner().invoke(app, ["train", "-c", "configs/detector.yaml", "-s", f"data.train={bad}",
                                 *_sets(TINY), "--runs-dir", str(tmp_path), "-q"])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "bad.json" in r.output and "annotations[0].bbox" in r.output and "outside" in r.output
    assert not (tmp_path / "detector" / "fold0").exists()


@pytest.mark.slow
def test_a_short_training_finds_the_animals_of_its_scenes(tmp_path):
    """Three scenes of one to three animals, 40 steps at 128 px without augmentation: the detector must find most of
    the animals it saw."""
    root = tmp_path / "herd"
    synthesize_herd(root, n_train=12, n_test=0, seed=0)
    cfg = load_config("configs/detector.yaml", [f"data.train={root / 'train' / 'annotations.json'}",
                      "data.schema=adk17", "train.epochs=40", "train.lr=0.005", "model.input_size=[128,128]",
                      "detect.stride=4", "train.batch_size=3", "augment.level=none", "train.ema=null",
                      "train.warmup_epochs=0", "train.threads=2", "train.workers=0"])  # fmt: skip
    samples, schema = load_training_data(cfg, Log(quiet=True))
    images = [i for i in group_images(samples, cfg, ["cattle"])[0] if 1 <= len(i.boxes) <= 3][:3]
    assert len(images) == 3
    detfit.train_detector_fold(cfg, schema, ["cattle"], images, [], tmp_path / "fold", torch.device("cpu"))
    from cattlepose.engine.detect import load_fold_detector  # noqa: F401  (the same loader predict uses)
    from cattlepose.models.detector import CenterNet

    model = CenterNet(cfg.model.backbone, 1, 4)
    model.load_state_dict(torch.load(tmp_path / "fold" / "best.pt", weights_only=True)["model"])
    result = box_ap(images, detfit.detect_with(cfg, ["cattle"], [model], images, torch.device("cpu")), ["cattle"])
    # measured: AP50 1.0, AP 0.56 on these 7 animals (an untrained network: 0); with the size head's random start
    # (before SIZE_PRIOR) 0.85 and 0.33, and none found at train.seed=1 (docs/BENCHMARKS.md)
    assert result["bbox_ap50"] >= 0.75 and result["bbox_ap"] >= 0.2, result


def test_info_and_report_of_a_detector_run(detector_run):
    r = CliRunner().invoke(app, ["info", "model", str(detector_run)])
    assert r.exit_code == 0, r.output
    assert "detect" in r.output and "cattle" in r.output and "cross-validated bbox_ap50" in r.output
    r = CliRunner().invoke(app, ["report", str(detector_run), "--worst", "2", "-q"])
    assert r.exit_code == 0, r.output
    page = (detector_run / "report" / "index.html").read_text()
    assert "Detector report" in page and "cattle" in page and "detections_00.jpg" in page
    assert (detector_run / "report" / "detections_00.jpg").is_file()


def test_collect_and_int8_export_of_a_detector_run(detector_run, detector_herd, tmp_path):
    cv = json.loads((detector_run / "cv.json").read_text())
    r = CliRunner().invoke(app, ["train", "--name", "det", "--runs-dir", str(detector_run.parent), "--collect", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((detector_run / "cv.json").read_text())["folds"] == cv["folds"]
    out = tmp_path / "int8.onnx"
    r = CliRunner().invoke(app, ["export", str(detector_run), "-o", str(out), "--int8", "--calibration", "4", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["int8"] is True
    images = [ImageSource.of(p) for p in sorted((detector_herd.parent / "images").glob("*.jpg"))[:2]]
    options = DetectOptions(score_threshold=0.0, min_size=0.0)
    ref = load_detector(detector_run, options=options).detect(images)
    q = load_detector(detector_run, options=options, backend="onnx", onnx=out).detect(images)
    for a, b in zip(ref, q, strict=True):  # int8 moves scores a little, never wholesale
        assert abs(a[0].score - b[0].score) < 0.05
