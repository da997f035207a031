"""Every kind of bad input data is a user error: exit code 2 from the CLI, a message naming the file (and the
field), and no output written. One data set per defect, each built valid and then broken in one place."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.errors import UserError
from cattlepose.data.formats import read_samples

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # rich tables wrap long paths at 80 columns


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))  # json writes NaN/Infinity literals, which Python's json also reads


def _adk_ann(doc: dict) -> dict:
    return doc["label_info"]["annotations"][0]


def _set_kp(doc: dict, index: int, value: float) -> None:
    _adk_ann(doc)["keypoints"][index] = value


# ---------------------------------------------------------------------------------------------------- ADK
# Each case breaks the data set under root and returns (file the message must name, field or None).
def adk_missing_image(root: Path) -> tuple[str, str | None]:
    (root / "images" / "adk_001.jpg").unlink()  # no file_name match and no image with the JSON's stem
    return "adk_001.json", "label_info.image.file_name"


def adk_unreadable_image(root: Path) -> tuple[str, str | None]:
    (root / "images" / "adk_001.jpg").write_text("this is not a JPEG")
    return "adk_001.jpg", None


def adk_truncated_image(root: Path) -> tuple[str, str | None]:
    img = root / "images" / "adk_001.jpg"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])  # header intact, pixels cut off
    return "adk_001.jpg", None


def adk_wrong_keypoint_count(root: Path) -> tuple[str, str | None]:
    _edit_json(
        root / "annotations" / "adk_001.json", lambda d: _adk_ann(d).update(keypoints=_adk_ann(d)["keypoints"][:-3])
    )
    return "adk_001.json", "label_info.annotations[0].keypoints"


def adk_nan_coordinate(root: Path) -> tuple[str, str | None]:
    _edit_json(root / "annotations" / "adk_001.json", lambda d: _set_kp(d, 3, math.nan))
    return "adk_001.json", "label_info.annotations[0].keypoints"


def adk_inf_coordinate(root: Path) -> tuple[str, str | None]:
    _edit_json(root / "annotations" / "adk_001.json", lambda d: _set_kp(d, 4, math.inf))
    return "adk_001.json", "label_info.annotations[0].keypoints"


def adk_bad_visibility(root: Path) -> tuple[str, str | None]:
    _edit_json(root / "annotations" / "adk_001.json", lambda d: _set_kp(d, 5, 3))
    return "adk_001.json", "label_info.annotations[0].keypoints"


def adk_duplicate_image(root: Path) -> tuple[str, str | None]:
    # a second annotation file for the same image: the same animal twice, straddling folds
    (root / "annotations" / "adk_009.json").write_text((root / "annotations" / "adk_001.json").read_text())
    return "adk_009.json", "label_info.image.file_name"


def adk_zero_area_box(root: Path) -> tuple[str, str | None]:
    _edit_json(root / "annotations" / "adk_001.json", lambda d: _adk_ann(d).update(bbox=[10, 10, 0, 5]))
    return "adk_001.json", "label_info.annotations[0].bbox"


def adk_empty(root: Path) -> tuple[str, str | None]:
    for f in (root / "annotations").glob("*.json"):
        f.unlink()
    return "annotations", None


def adk_escaping_file_name(root: Path) -> tuple[str, str | None]:
    (root.parent / "secret.jpg").write_bytes((root / "images" / "adk_000.jpg").read_bytes())
    _edit_json(
        root / "annotations" / "adk_001.json", lambda d: d["label_info"]["image"].update(file_name="../../secret.jpg")
    )
    return "adk_001.json", "label_info.image.file_name"


def adk_absolute_file_name(root: Path) -> tuple[str, str | None]:
    target = str((root / "images" / "adk_000.jpg").resolve())  # exists, but absolute names are refused
    _edit_json(root / "annotations" / "adk_001.json", lambda d: d["label_info"]["image"].update(file_name=target))
    return "adk_001.json", "label_info.image.file_name"


def adk_invalid_json(root: Path) -> tuple[str, str | None]:
    (root / "annotations" / "adk_001.json").write_text('{"label_info": ')
    return "adk_001.json", None


ADK_CASES = [
    adk_missing_image,
    adk_unreadable_image,
    adk_truncated_image,
    adk_wrong_keypoint_count,
    adk_nan_coordinate,
    adk_inf_coordinate,
    adk_bad_visibility,
    adk_duplicate_image,
    adk_zero_area_box,
    adk_empty,
    adk_escaping_file_name,
    adk_absolute_file_name,
    adk_invalid_json,
]


@pytest.mark.parametrize("case", ADK_CASES, ids=lambda f: f.__name__)
def test_bad_adk_data_exits_2_naming_the_file(case, make_adk):
    root = make_adk(n=3)
    name, field = case(root)
    result = runner.invoke(app, ["data", "check", str(root)], env=WIDE)
    assert result.exit_code == 2, result.output
    assert name in result.output
    if field:
        assert field in result.output
    if case is adk_truncated_image:  # the readers see headers only; `data check` decodes
        assert len(read_samples("adk", root, "adk17")[0]) == 3
        return
    with pytest.raises(UserError) as e:
        read_samples("adk", root, "adk17")
    assert name in str(e.value)


# ---------------------------------------------------------------------------------------------------- COCO
def coco_missing_image(path: Path) -> tuple[str, str | None]:
    (path.parent / "img_1.png").unlink()
    return "data.json", "images[1].file_name"


def coco_unreadable_image(path: Path) -> tuple[str, str | None]:
    (path.parent / "img_1.png").write_bytes(b"\x89PNG but nothing else")
    return "img_1.png", "images[1].file_name"


def coco_truncated_image(path: Path) -> tuple[str, str | None]:
    img = path.parent / "img_1.png"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])
    return "img_1.png", None


def coco_wrong_keypoint_count(path: Path) -> tuple[str, str | None]:
    _edit_json(path, lambda d: d["annotations"][2].update(keypoints=d["annotations"][2]["keypoints"][:-3]))
    return "data.json", "annotations[2].keypoints"


def coco_nan_coordinate(path: Path) -> tuple[str, str | None]:
    _edit_json(path, lambda d: d["annotations"][1]["keypoints"].__setitem__(0, math.nan))
    return "data.json", "annotations[1].keypoints"


def coco_bad_visibility(path: Path) -> tuple[str, str | None]:
    _edit_json(path, lambda d: d["annotations"][1]["keypoints"].__setitem__(2, -1))
    return "data.json", "annotations[1].keypoints"


def coco_duplicate_image_id(path: Path) -> tuple[str, str | None]:
    _edit_json(path, lambda d: d["images"][1].update(id=d["images"][0]["id"]))
    return "data.json", "images[1].id"


def coco_zero_area_box(path: Path) -> tuple[str, str | None]:
    _edit_json(path, lambda d: d["annotations"][0].update(bbox=[5, 5, 12, 0]))
    return "data.json", "annotations[0].bbox"


def coco_empty(path: Path) -> tuple[str, str | None]:
    _edit_json(path, lambda d: d.update(annotations=[]))
    return "data.json", None


def coco_escaping_file_name(path: Path) -> tuple[str, str | None]:
    _edit_json(path, lambda d: d["images"][0].update(file_name="../coco/img_0.png"))
    return "data.json", "images[0].file_name"


COCO_CASES = [
    coco_missing_image,
    coco_unreadable_image,
    coco_truncated_image,
    coco_wrong_keypoint_count,
    coco_nan_coordinate,
    coco_bad_visibility,
    coco_duplicate_image_id,
    coco_zero_area_box,
    coco_empty,
    coco_escaping_file_name,
]


@pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")
@pytest.mark.parametrize("case", COCO_CASES, ids=lambda f: f.__name__)
def test_bad_coco_data_exits_2_naming_the_file(case, make_coco):
    path = make_coco(n_images=2, animals=2)
    name, field = case(path)
    result = runner.invoke(app, ["data", "check", str(path), "--schema", "from_data"], env=WIDE)
    assert result.exit_code == 2, result.output
    assert name in result.output
    if field:
        assert field in result.output
    if case is coco_truncated_image:
        assert len(read_samples("coco", path, "from_data")[0]) == 4
        return
    with pytest.raises(UserError) as e:
        read_samples("coco", path, "from_data")
    assert name in str(e.value)


def test_good_data_exits_0(make_adk, make_coco):
    assert runner.invoke(app, ["data", "check", str(make_adk())], env=WIDE).exit_code == 0
    result = runner.invoke(app, ["data", "check", str(make_coco()), "--schema", "from_data"], env=WIDE)
    assert result.exit_code == 0, result.output


def test_missing_data_path_exits_2(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nowhere")], env=WIDE)
    assert result.exit_code == 2 and "nowhere" in result.output


def test_training_on_bad_data_writes_nothing(make_adk, tmp_path):
    pytest.importorskip("cattlepose.engine.kfold", reason="the training engine is not in this checkout")
    root = make_adk(n=3)
    adk_nan_coordinate(root)
    runs = tmp_path / "runs"
    args = ["train", "-s", f"data.train={root}", "-s", "train.epochs=1", "--runs-dir", str(runs), "--name", "x"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 2, result.output
    assert "adk_001.json" in result.output
    assert not runs.exists() or not any(runs.rglob("*"))


# ---------------------------------------------------------------------------------------------------- runs
# A run directory as training leaves it (random weights: only the files matter), then damaged in one place.
RUN_SETS = ["model.input_size=[64,64]", "model.psa=none", "train.folds=2", "infer.batch_size=4"]


@pytest.fixture
def run_and_images(tmp_path) -> tuple[Path, Path]:
    import torch
    import yaml

    from cattlepose.core.config import dump_config, load_config
    from cattlepose.core.schema import load_schema
    from cattlepose.models.build import build_model
    from conftest import draw_animal, random_keypoints

    cfg, schema = load_config(None, RUN_SETS), load_schema("adk17")
    run = tmp_path / "runs" / "r"
    for k in range(2):
        (run / f"fold{k}").mkdir(parents=True)
        torch.manual_seed(k)
        model = build_model(cfg.model, schema.num_keypoints)
        meta = {
            "config": json.loads(json.dumps(cfg.model_dump(mode="json", by_alias=True))),
            "schema": schema.to_dict(),
        }
        torch.save({"model": model.state_dict(), **meta}, run / f"fold{k}" / "best.pt")
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict(), sort_keys=False))
    images = tmp_path / "images"
    images.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    for i in range(3):
        draw_animal(images / f"cow_{i}.jpg", (80, 60), random_keypoints(rng, 17, 80, 60))
    return run, images


def _predict(run: Path, images: Path, out: Path, *extra: str):
    return runner.invoke(app, ["predict", str(run), str(images), "-o", str(out), "-q", *extra], env=WIDE)


def test_predict_on_a_good_run_works(run_and_images, tmp_path):
    run, images = run_and_images
    r = _predict(run, images, tmp_path / "sub.csv")
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 4


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def run_truncated_checkpoint(run: Path, images: Path) -> tuple[str, str]:
    _truncate(run / "fold1" / "best.pt")
    return "fold1/best.pt", "--folds"


def run_garbage_checkpoint(run: Path, images: Path) -> tuple[str, str]:
    (run / "fold0" / "best.pt").write_text("not a checkpoint")
    return "fold0/best.pt", "--resume"


def run_without_config(run: Path, images: Path) -> tuple[str, str]:
    (run / "config.yaml").unlink()
    return "runs/r", "config.yaml"


def run_without_schema(run: Path, images: Path) -> tuple[str, str]:
    (run / "schema.yaml").unlink()
    return "schema.yaml", "--resume"


def run_missing_fold(run: Path, images: Path) -> tuple[str, str]:
    import shutil

    shutil.rmtree(run / "fold1")
    return "fold1/best.pt", "--folds 0"


def run_checkpoint_of_other_keypoints(run: Path, images: Path) -> tuple[str, str]:
    import torch

    ckpt = torch.load(run / "fold0" / "best.pt", weights_only=True)
    ckpt["schema"]["keypoints"] = [f"kp{i}" for i in range(17)]
    torch.save(ckpt, run / "fold0" / "best.pt")
    return "fold0/best.pt", "schema.keypoints"


def run_checkpoint_of_other_backbone(run: Path, images: Path) -> tuple[str, str]:
    text = (run / "config.yaml").read_text().replace("backbone: hrnet_w18_small", "backbone: hrnet_w32")
    (run / "config.yaml").write_text(text)
    return "fold0/best.pt", "model.backbone"


def run_config_no_longer_valid(run: Path, images: Path) -> tuple[str, str]:
    text = (run / "config.yaml").read_text().replace("input_size:\n  - 64\n  - 64", "input_size:\n  - 64\n  - 65")
    assert "65" in text
    (run / "config.yaml").write_text(text)
    return "config.yaml", "model.input_size"


def run_no_images(run: Path, images: Path) -> tuple[str, str]:
    for p in images.iterdir():
        p.unlink()
    return "images", "no images"


RUN_CASES = [
    run_truncated_checkpoint,
    run_garbage_checkpoint,
    run_without_config,
    run_without_schema,
    run_missing_fold,
    run_checkpoint_of_other_keypoints,
    run_checkpoint_of_other_backbone,
    run_config_no_longer_valid,
    run_no_images,
]


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.__name__ for c in RUN_CASES])
def test_damaged_runs_exit_2_naming_the_file_and_what_to_do(case, run_and_images, tmp_path):
    run, images = run_and_images
    named, hint = case(run, images)
    out = tmp_path / "sub.csv"
    r = _predict(run, images, out)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert named in r.output and hint in r.output, r.output
    assert not out.exists() and not list(tmp_path.glob(".sub.csv*"))


def test_a_damaged_fold_can_be_left_out(run_and_images, tmp_path):
    run, images = run_and_images
    _truncate(run / "fold1" / "best.pt")
    r = _predict(run, images, tmp_path / "sub.csv", "--folds", "0")
    assert r.exit_code == 0, r.output


def test_report_and_collect_of_damaged_runs_exit_2(run_and_images, tmp_path):
    run, _ = run_and_images
    r = runner.invoke(app, ["report", str(run), "-q"], env=WIDE)
    assert r.exit_code == 2 and "oof.csv" in r.output, r.output
    r = runner.invoke(app, ["train", "--name", "r", "--runs-dir", str(run.parent), "--collect", "-q"], env=WIDE)
    assert r.exit_code == 2 and "have not finished" in r.output, r.output
    assert f"--runs-dir {run.parent} --resume --folds 0,1" in r.output.replace("\n", ""), r.output
    r = runner.invoke(app, ["report", str(tmp_path / "nowhere")], env=WIDE)
    assert r.exit_code == 2 and "nowhere" in r.output, r.output
