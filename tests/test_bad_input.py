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


def test_a_wide_csv_of_an_image_with_several_animals_is_refused_naming_it(
    run_and_images, make_coco, tmp_path, monkeypatch
):
    from cattlepose.commands import predict

    run, _ = run_and_images
    coco = make_coco(n_images=2, animals=2)
    monkeypatch.setattr(predict, "predict_samples", lambda *a, **k: pytest.fail("predicted first"))
    out = tmp_path / "sub.csv"
    _fails(["predict", str(run), str(coco), "-o", str(out), "-f", "csv"], "img_0.png", "holds 2 animals",
           "(and 1 more image(s))", "--format long-csv or coco", unchanged=(run, coco.parent))  # fmt: skip
    assert not out.exists()


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


# ------------------------------------------------------------------------------------------ the catalogue
# Issue #26: every mistake a user makes ends in exit 2, a message naming the file or key, no traceback, and no
# file that existed before changed. One tiny trained run (2 folds, 1 epoch) is shared and copied per case.
import hashlib  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402

TINY = [
    "model.input_size=[64,64]", "train.folds=2", "train.epochs=1", "train.batch_size=4", "train.workers=0",
    "train.threads=2", "augment.level=none", "infer.batch_size=8", "train.compile=off",
]  # fmt: skip


def _sets(*items: str) -> list[str]:
    return [a for s in items for a in ("-s", s)]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from conftest import synth_set

    return synth_set(tmp_path_factory, n_train=12, n_test=3, seed=0)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("trained")
    r = runner.invoke(app, ["train", *_sets(*TINY, f"data.train={tiny_data / 'train'}"), "--name", "t",
                            "--runs-dir", str(runs), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return runs / "t"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run: tmp_path/runs/t."""
    dest = tmp_path / "runs" / "t"
    shutil.copytree(trained, dest)
    return dest


def _snapshot(*roots: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for root in roots:
        for p in sorted([root] if root.is_file() else root.rglob("*")):
            if p.is_file() and not p.name.endswith(".lock"):
                out[str(p)] = (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def _fails(args: list[str], *named: str, unchanged: tuple[Path, ...] = ()) -> str:
    """Run the CLI; assert exit 2, each of `named` in the message, no traceback, nothing under `unchanged`
    changed; return the output (newlines removed, so long lines wrapped by the console read whole)."""
    before = _snapshot(*unchanged)
    r = runner.invoke(app, args, env={"COLUMNS": "400"})
    text = r.output.replace("\n", "")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    for n in named:
        assert n in text, (n, r.output)
    assert _snapshot(*unchanged) == before
    return text


def _advice(text: str) -> list[str]:
    """The `cattlepose ...` command a message advises, as CLI arguments."""
    m = re.search(r"`cattlepose ([^`]+)`", text)
    assert m, text
    return shlex.split(m.group(1))


def _predict_args(run: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", str(run), str(data / "test" / "images"), "-o", str(out), "-q", *extra]


# --- silent wrong results
@pytest.mark.parametrize(
    ("old", "new", "key"),
    [("  - 64\n  - 64", "  - 96\n  - 96", "model.input_size"), ("kind: msra", "kind: udp", "codec.kind"),
     ("sigma: 1.5", "sigma: 2.0", "codec.sigma")],
)  # fmt: skip
def test_a_config_edited_against_its_checkpoints_is_refused(run, tiny_data, tmp_path, old, new, key):
    cfg = run / "config.yaml"
    assert old in cfg.read_text()
    cfg.write_text(cfg.read_text().replace(old, new, 1))
    out = tmp_path / "sub.csv"
    text = _fails(_predict_args(run, tiny_data, out), key, "fold0/best.pt", unchanged=(run,))
    assert not out.exists()
    if key == "model.input_size":
        assert "[64, 64]" in text and "[96, 96]" in text
    # resuming the run is refused the same way, naming last.pt
    _fails(["train", "--name", "t", "--runs-dir", str(run.parent), "--resume", "-q"], key, "last.pt",
           unchanged=(run,))  # fmt: skip


def test_changed_train_folds_refuses_to_resume_and_predict(run, tiny_data, tmp_path):
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("folds: 2", "folds: 3", 1))
    args = ["train", "--name", "t", "--runs-dir", str(run.parent), "--resume", "-q"]
    _fails(args, "train.folds", "folds: 2", "config.yaml", unchanged=(run,))
    _fails(_predict_args(run, tiny_data, tmp_path / "s.csv"), "train.folds", unchanged=(run,))


def test_resume_of_an_unknown_run_lists_the_runs(run):
    text = _fails(["train", "--name", "tt", "--runs-dir", str(run.parent), "--resume", "-q"], "tt", "t",
                  unchanged=(run.parent,))  # fmt: skip
    assert not (run.parent / "tt").exists()
    assert _advice(text) == ["train", "--name", "t", "--runs-dir", str(run.parent), "--resume"]
    _fails(["train", "--name", "tt", "--runs-dir", str(run.parent), "--collect", "-q"], "tt")


def test_a_second_training_of_the_same_fold_at_once_is_refused(run, tiny_data):
    from cattlepose.core.files import try_lock

    args = ["train", "--name", "t", "--runs-dir", str(run.parent), "--resume", "--folds", "0", "-q"]
    shutil.rmtree(run / "fold0")
    with try_lock(run / "fold0" / ".lock") as mine:  # another process holds fold 0
        assert mine
        _fails(args, "fold 0", "another process", unchanged=(run,))
    r = runner.invoke(app, args)  # released: a killed process leaves nothing stuck
    assert r.exit_code == 0, r.output


# --- advice that must work
def test_a_truncated_last_pt_on_resume_advises_a_working_command(run):
    last = run / "fold0" / "last.pt"
    (run / "fold0" / "done.json").unlink()  # a fold killed mid-training
    last.write_bytes(last.read_bytes()[:1000])
    text = _fails(["train", "--name", "t", "--runs-dir", str(run.parent), "--resume", "--folds", "0", "-q"],
                  "fold0/last.pt", "--resume", unchanged=(run,))  # fmt: skip
    m = re.search(r"`rm -r (\S+) && cattlepose (train [^`]+)`", text)
    assert m, text
    shutil.rmtree(m.group(1))
    r = runner.invoke(app, [*shlex.split(m.group(2)), "-q"])
    assert r.exit_code == 0, r.output
    assert (run / "fold0" / "done.json").is_file()


def test_collect_rederives_a_lost_fold_oof(run):
    (run / "fold1" / "oof.csv").unlink()
    (run / "cv.json").unlink()
    r = runner.invoke(app, ["train", "--name", "t", "--runs-dir", str(run.parent), "--collect", "-q"])
    assert r.exit_code == 0, r.output
    assert (run / "cv.json").is_file() and (run / "fold1" / "oof.csv").is_file()


def test_a_deleted_folds_csv_is_named_and_the_advice_works(run):
    (run / "folds.csv").unlink()
    (run / "cv.json").unlink()
    text = _fails(["train", "--name", "t", "--runs-dir", str(run.parent), "--collect", "-q"], "folds.csv",
                  "deleted", unchanged=(run,))  # fmt: skip
    assert "never started" not in text
    r = runner.invoke(app, [*_advice(text), "-q"])
    assert r.exit_code == 0, r.output
    assert (run / "folds.csv").is_file() and (run / "cv.json").is_file()


# --- slips on the command line and in YAML
def test_an_empty_set_value_is_an_error(tmp_path):
    runs = tmp_path / "runs"
    _fails(["train", "-s", "data.train=", "--runs-dir", str(runs), "--name", "x", "-q"], "data.train", "-s")
    assert not runs.exists()


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("train.epochs=yes", "train.epochs"),
        ("train.lr=.nan", "train.lr"),
        ("train.epochs='3'", "train.epochs"),
        ("codec.blur_kernel=4", "blur"),
    ],
)
def test_set_values_are_strict_and_blamed_on_the_option(item, key, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 2\n")
    runs = tmp_path / "runs"
    text = _fails(["train", "-c", str(cfg), "-s", item, "--runs-dir", str(runs), "-q"], key, f"-s {item}")
    assert str(cfg) not in text
    assert not runs.exists()


def test_empty_folds_is_an_error(run, tiny_data, tmp_path):
    _fails(["train", "--name", "t", "--runs-dir", str(run.parent), "--resume", "--folds", "", "-q"], "--folds",
           unchanged=(run,))  # fmt: skip
    _fails(_predict_args(run, tiny_data, tmp_path / "s.csv", "--folds", ""), "--folds")
    assert not (tmp_path / "s.csv").exists()


def test_yaml_with_a_key_twice_names_the_lines(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 2\nmodel:\n  psa: none\ntrain:\n  lr: 0.1\n")
    _fails(["info", "model", "-c", str(cfg)], "c.yaml", "'train' appears twice", "lines 1 and 5")
    cfg.write_text("train:\n  epochs: 2\n  epochs: 3\n")
    _fails(["info", "model", "-c", str(cfg)], "c.yaml", "'epochs'", "line 3")


def test_a_binary_config_and_a_symlink_loop(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00")
    _fails(["info", "model", "-c", str(cfg)], "c.yaml", "not a text file")
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    _fails(["info", "model", "-c", str(loop)], "loop.yaml", "symlink loop")


def test_errors_before_training_leave_a_folder_the_corrected_command_reuses(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    base = ["train", *_sets(*TINY, f"data.train={tiny_data / 'train'}"), "--runs-dir", str(runs), "--name", "r", "-q"]
    _fails([*base, "-s", "train.folds=50"], "train.folds")  # more folds than farms: found before writing
    assert not runs.exists()
    # a folder left by a failure before any fold trained is taken over by the corrected command
    (runs / "r").mkdir(parents=True, exist_ok=True)
    (runs / "r" / "config.yaml").write_text("train:\n  folds: 3\n")  # as a failed earlier attempt left it
    r = runner.invoke(app, [*base, "--folds", "0"])
    assert r.exit_code == 0, r.output


# --- annotations
def _far_keypoint(root: Path) -> None:
    _edit_json(root / "annotations" / "adk_001.json", lambda d: _set_kp(d, 3, 5000))  # in a 96-px image


def test_keypoints_far_outside_the_image_stop_training_and_are_counted(make_adk, tmp_path):
    root = make_adk(n=4)
    _far_keypoint(root)
    runs = tmp_path / "runs"
    args = ["train", *_sets(*TINY, f"data.train={root}"), "--runs-dir", str(runs), "--name", "r", "-q"]
    _fails(args, "adk_001.jpg", "keypoints[1]", "data.outside", unchanged=(root,))
    assert not runs.exists()
    _fails(["data", "check", str(root)], "adk_001.jpg", "keypoints[1]", "far outside")
    from cattlepose.core.config import load_config
    from cattlepose.core.ui import Log
    from cattlepose.data.source import load_training_data

    for policy, expect in (("drop", 0.0), ("clip", 95.0)):
        cfg = load_config(None, [f"data.train={root}", f"data.outside={policy}"])
        samples, _ = load_training_data(cfg, Log(quiet=True))
        s = next(s for s in samples if s.image.name == "adk_001.jpg")
        assert s.keypoints[1, 0] == expect


def test_coco_keypoints_far_outside_the_image(make_coco, tmp_path):
    path = make_coco(n_images=2, animals=2)
    _edit_json(path, lambda d: d["annotations"][1]["keypoints"].__setitem__(0, 1e6))
    runs = tmp_path / "runs"
    args = ["train", *_sets(*TINY, f"data.train={path}", "data.format=coco", "data.schema=from_data",
                            "data.group_by=image"), "--runs-dir", str(runs), "--name", "r", "-q"]  # fmt: skip
    _fails(args, "img_0.png", "keypoints[0]", unchanged=(path.parent,))
    assert not runs.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [(lambda d: _set_kp(d, 0, "12.5"), "keypoints"), (lambda d: _adk_ann(d).update(bbox=[1, 2, "30", 4]), "bbox"),
     (lambda d: d["label_info"]["image"].update(width="abc"), "label_info.image.width"),
     (lambda d: _set_kp(d, 2, True), "keypoints")],
)  # fmt: skip
def test_numbers_given_as_text_in_annotations_are_errors(make_adk, change, field):
    root = make_adk(n=3)
    _edit_json(root / "annotations" / "adk_001.json", change)
    _fails(["data", "check", str(root)], "adk_001.json", field)
    with pytest.raises(UserError, match=r"adk_001\.json"):
        read_samples("adk", root, "adk17")


def test_coco_width_as_text_is_an_error(make_coco):
    path = make_coco()
    _edit_json(path, lambda d: d["images"][0].update(width="abc"))
    _fails(["data", "check", str(path), "--schema", "from_data"], "data.json", "images[0].width")


# --- outputs
def _out_cases(run: Path, data: Path, tmp_path: Path) -> dict[str, tuple[Path, list[str], str]]:
    template = data / "sample_submission.csv"
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    return {
        "template": (template, ["--template", str(template)], "would overwrite an input"),
        "checkpoint": (run / "fold0" / "best.pt", [], "would overwrite an input"),
        "config": (run / "config.yaml", [], "would overwrite an input"),
        "folder": (tmp_path / "adir", [], "is a folder"),
        "under a file": (tmp_path / "afile" / "sub.csv", [], "not a folder"),
    }


@pytest.mark.parametrize("case", ["template", "checkpoint", "config", "folder", "under a file"])
def test_predict_refuses_an_output_it_cannot_or_must_not_write(run, tiny_data, tmp_path, monkeypatch, case):
    out, extra, words = _out_cases(run, tiny_data, tmp_path)[case]
    from cattlepose.commands import predict

    def never(*a, **k):
        raise AssertionError("predicted before checking the output")

    monkeypatch.setattr(predict, "predict_samples", never)
    _fails(_predict_args(run, tiny_data, out, *extra), str(out), words, unchanged=(run, tiny_data, tmp_path))


def test_a_write_error_at_the_end_is_exit_2_and_leaves_nothing_half_written(run, tiny_data, tmp_path, monkeypatch):
    import errno
    import os

    out = tmp_path / "sub.csv"
    out.write_text("the previous submission\n")
    real = os.replace

    def full(src, dst):
        if str(dst) == str(out):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full)
    _fails(_predict_args(run, tiny_data, out), "sub.csv", "No space left", unchanged=(run, tmp_path))
    assert out.read_text() == "the previous submission\n" and not list(tmp_path.glob(".sub.csv*"))


# --- images
def test_a_truncated_training_image_is_named_before_the_run_folder_is_written(tiny_data, tmp_path):
    data = tmp_path / "train"
    shutil.copytree(tiny_data / "train", data)
    img = sorted((data / "images").glob("*.jpg"))[3]
    good = img.read_bytes()
    img.write_bytes(good[: len(good) // 2])
    runs = tmp_path / "runs"
    args = ["train", *_sets(*TINY, f"data.train={data}", "train.workers=1"), "--runs-dir", str(runs), "--name", "r"]
    _fails([*args, "-q"], img.name, "cannot be decoded", unchanged=(data,))
    assert not runs.exists()


class _Broken:
    """A data set whose every item fails as an unreadable image does."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        raise UserError("cannot read image (truncated)", path="/data/cow_7.jpg")


def test_a_user_error_in_a_loader_worker_arrives_without_the_worker_traceback():
    from cattlepose.engine.loader import _Loader

    with pytest.raises(UserError) as e:
        next(iter(_Loader(_Broken(), batch_size=2, num_workers=1)))
    assert str(e.value) == "/data/cow_7.jpg: cannot read image (truncated)"


# --- paths and arguments
def test_symlink_loops_are_named_as_such(run, tiny_data, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    _fails(["data", "check", str(loop)], "loop", "symlink loop")
    _fails(["predict", str(run), str(loop), "-o", str(tmp_path / "s.csv")],
           "symlink loop")  # fmt: skip
    _fails(["predict", str(loop), str(tiny_data / "test" / "images")], "run directory is a symlink loop")
    _fails(["evaluate", str(loop), str(tiny_data / "test")], "symlink loop")


def test_swapped_evaluate_arguments_are_detected_and_the_advice_works(run, tiny_data, tmp_path):
    sub = tmp_path / "sub.csv"
    r = runner.invoke(app, _predict_args(run, tiny_data, sub))
    assert r.exit_code == 0, r.output
    text = _fails(["evaluate", str(tiny_data / "test"), str(sub)], "swapped", unchanged=(sub,))
    r = runner.invoke(app, _advice(text))
    assert r.exit_code == 0, r.output
    coco = tmp_path / "results.json"
    coco.write_text("[]")
    _fails(["evaluate", str(sub), str(coco)], "GT holds predictions", "swapped")


def test_a_full_disk_is_found_before_predicting(run, tiny_data, tmp_path, monkeypatch):
    import collections
    import shutil as sh

    from cattlepose.commands import predict

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    monkeypatch.setattr(predict, "predict_samples", lambda *a, **k: pytest.fail("predicted first"))
    _fails(_predict_args(run, tiny_data, tmp_path / "s.csv"), "s.csv", "no space left", unchanged=(run, tmp_path))


def test_a_read_only_output_folder_is_found_before_predicting(run, tiny_data, tmp_path, monkeypatch):
    """Root may write anywhere, so the folder's permission bits cannot be tested as root; the check asks
    os.access, which is what is made to say no here."""
    import os

    from cattlepose.commands import predict
    from cattlepose.core import files

    out = tmp_path / "locked" / "s.csv"
    out.parent.mkdir()
    real = os.access
    monkeypatch.setattr(files.os, "access", lambda p, mode: Path(p) != out.parent and real(p, mode))
    monkeypatch.setattr(predict, "predict_samples", lambda *a, **k: pytest.fail("predicted first"))
    _fails(_predict_args(run, tiny_data, out), "s.csv", "read-only", unchanged=(run, tmp_path))


def test_a_broken_image_read_by_a_predict_worker_is_named_and_nothing_is_written(run, tiny_data, tmp_path):
    images = tmp_path / "crops"
    shutil.copytree(tiny_data / "test" / "images", images)
    broken = sorted(images.iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:200])
    out = tmp_path / "s.csv"
    args = ["predict", str(run), str(images), "-o", str(out), "-q", "--workers", "1"]
    _fails(args, broken.name, "cannot read image", unchanged=(run,))
    assert not out.exists()


# --- issue 39: evaluate counts every prediction
def _wide_predictions(path: Path, names: list[str], coco: bool = False) -> Path:
    """A wide CSV of predictions (every coordinate 10) for `names`: adk17 columns, or make_coco's kp0..kp16."""
    from cattlepose.core.schema import load_schema

    kps = [f"kp{j}" for j in range(17)] if coco else load_schema("adk17").keypoints
    rows = [",".join(["image", *[f"{n}_{c}" for n in kps for c in ("x", "y")]])]
    rows += [",".join([name, *["10"] * (2 * len(kps))]) for name in names]
    path.write_text("\n".join(rows) + "\n")
    return path


def _farms(root: Path) -> Path:
    """A CSV ground truth whose two farms each hold a photo_000.jpg."""
    import numpy as np

    from conftest import draw_animal, random_keypoints

    names = ["farm A/photo_000.jpg", "farm B/photo_000.jpg"]
    rng = np.random.default_rng(0)
    lines = []
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        kps = random_keypoints(rng, 17, 96, 64)
        draw_animal(root / name, (96, 64), kps)
        lines.append(",".join([name, *[f"{v:g}" for v in kps[:, :2].reshape(-1)]]))
    gt = _wide_predictions(root / "labels.csv", [])
    gt.write_text(gt.read_text() + "\n".join(lines) + "\n")
    return gt


def test_evaluate_refuses_a_name_two_farms_share(tmp_path):
    gt = _farms(tmp_path / "data")
    pred = _wide_predictions(tmp_path / "p.csv", ["photo_000.jpg"])
    _fails(["evaluate", str(pred), str(gt)], "p.csv", "'photo_000.jpg' fits 2 images", "farm A/photo_000.jpg",
           "farm B/photo_000.jpg", unchanged=(tmp_path,))  # fmt: skip


def test_evaluate_refuses_one_row_for_a_photo_of_several_animals(make_coco, tmp_path):
    gt = make_coco(n_images=2, animals=2)
    pred = _wide_predictions(tmp_path / "p.csv", ["img_0.png", "img_1.png"], coco=True)
    _fails(["evaluate", str(pred), str(gt), "--schema", "from_data"], "p.csv", "2 animals in 'img_0.png'",
           "--format coco", unchanged=(tmp_path,))  # fmt: skip


def test_evaluate_names_the_images_without_a_prediction(make_adk, tmp_path):
    root = make_adk(n=4)
    pred = _wide_predictions(tmp_path / "p.csv", ["adk_000.jpg", "adk_002.jpg"])
    _fails(["evaluate", str(pred), str(root)], "p.csv", "no prediction for 2 of 4", "adk_001.jpg", "adk_003.jpg",
           unchanged=(tmp_path,))  # fmt: skip


def test_evaluate_needs_file_names_to_place_coco_results_in_an_adk_set(make_adk, tmp_path):
    root = make_adk(n=2)
    pred = tmp_path / "res.json"
    pred.write_text(json.dumps([{"image_id": i, "category_id": 1, "keypoints": [1, 1, 1] * 17, "score": 1}
                                for i in range(2)]))  # fmt: skip
    _fails(["evaluate", str(pred), str(root)], "res.json", "[0].file_name", "not a COCO file", unchanged=(tmp_path,))


@pytest.mark.parametrize("target", ["predictions", "ground truth", "config", "inside the ground truth"])
def test_evaluate_json_never_overwrites_an_input(make_adk, tmp_path, target):
    root = make_adk(n=2)
    pred = _wide_predictions(tmp_path / "p.csv", ["adk_000.jpg", "adk_001.jpg"])
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("eval:\n  pck_bbox: [0.1]\n")
    gt_file = tmp_path / "gt.csv"  # the same set as a CSV, for a ground truth that is one file
    from cattlepose.data.formats import write_samples

    samples, schema = read_samples("adk", root, "adk17")
    write_samples("csv", samples, gt_file, schema)
    (tmp_path / "images").symlink_to(root / "images")
    gt, out, named = {
        "predictions": (root, pred, str(pred)),
        "ground truth": (gt_file, gt_file, str(gt_file)),
        "config": (root, cfg, str(cfg)),
        "inside the ground truth": (root, root / "annotations" / "metrics.json", str(root)),
    }[target]
    text = _fails(["evaluate", str(pred), str(gt), "-c", str(cfg), "--json", str(out)], str(out), named,
                  unchanged=(tmp_path,))  # fmt: skip
    assert "choose another output file" in text
    assert not (root / "annotations" / "metrics.json").exists()


# --- issue 39: predict reads what training reads, or names what it skips
def test_predict_reads_every_image_format_training_reads_and_names_the_rest(run_and_images, tmp_path):
    from PIL import Image

    run, images = run_and_images
    src = Image.open(images / "cow_0.jpg")
    src.convert("P").save(images / "cow_gif.gif")
    src.save(images / "cow_jfif.jfif", format="JPEG")
    (images / "more").mkdir()
    src.save(images / "more" / "cow_9.jpg")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "sub.csv"
    r = _predict(run, images, out)
    assert r.exit_code == 0, r.output
    text = r.output.replace("\n", "")
    assert "2 entries not predicted" in text and "more/ (a subfolder; not searched)" in text
    assert "notes.txt (not an image suffix)" in text
    names = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert names == ["cow_0.jpg", "cow_1.jpg", "cow_2.jpg", "cow_gif.gif", "cow_jfif.jfif"]


# --- issue 39: outputs never overwrite inputs
def test_predict_never_writes_over_or_into_the_runs_training_data(run, tiny_data, tmp_path, monkeypatch):
    from cattlepose.commands import predict

    monkeypatch.setattr(predict, "predict_samples", lambda *a, **k: pytest.fail("predicted first"))
    train = tiny_data / "train"
    annotation = sorted((train / "annotations").glob("*.json"))[0]
    _fails(_predict_args(run, tiny_data, annotation), str(annotation), "the run's training data (data.train)",
           str(train), unchanged=(run, tiny_data))  # fmt: skip
    _fails(_predict_args(run, tiny_data, train / "sub.csv"), "lies in an input folder", str(train),
           unchanged=(run, tiny_data))  # fmt: skip
    assert not (train / "sub.csv").exists()
    images = tiny_data / "test" / "images"
    for out in (sorted(images.iterdir())[0], images / "sub.csv"):  # an image, or a file joining them
        _fails(_predict_args(run, tiny_data, out), str(out), f"lies in an input folder, the input {images}",
               unchanged=(run, tiny_data))  # fmt: skip
    assert not (images / "sub.csv").exists()


def test_export_never_writes_over_or_into_the_runs_training_data(run, tiny_data, tmp_path):
    train = tiny_data / "train"
    onnx = train / "annotations" / "synth_train_000001.onnx"  # its sidecar would be an annotation file
    _fails(["export", str(run), "-o", str(onnx), "-q"], str(onnx), "lies in an input folder", str(train),
           unchanged=(run, tiny_data))  # fmt: skip
    # a run whose data.train is one file: the sidecar beside OUT.onnx would replace it
    data = tmp_path / "cows.json"
    samples, schema = read_samples("adk", train, "adk17")
    from cattlepose.data.formats import write_samples

    write_samples("coco", samples, data, schema)
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace(f"train: {train}", f"train: {data}", 1))
    assert str(data) in cfg.read_text()
    _fails(["export", str(run), "-o", str(tmp_path / "cows.onnx"), "-q"], "cows.json",
           "would overwrite an input, the run's training data (data.train)", unchanged=(run, tmp_path))  # fmt: skip
    assert not (tmp_path / "cows.onnx").exists()


@pytest.mark.parametrize("foreign", ["annotations/mine.json", "images/IMG_0001.jpg", "labels.csv"])
def test_synth_refuses_a_folder_holding_data_it_did_not_write(tmp_path, foreign):
    out = tmp_path / "data"
    r = runner.invoke(app, ["synth", str(out), "--n-train", "2", "--n-test", "1", "-q"])
    assert r.exit_code == 0, r.output
    path = out / "train" / foreign
    path.write_text("a user's file")
    _fails(["synth", str(out), "--n-train", "2", "--n-test", "1", "-q"], str(path), "did not write",
           unchanged=(tmp_path,))  # fmt: skip
    path.unlink()
    r = runner.invoke(app, ["synth", str(out), "--n-train", "2", "--n-test", "1", "-q"])  # its own files: rewritten
    assert r.exit_code == 0, r.output


def test_synth_keeps_a_users_sample_submission_and_data_folder(tmp_path):
    out = tmp_path / "comp"
    out.mkdir()
    (out / "sample_submission.csv").write_text("image,nose_x,nose_y\nIMG_1.jpg,0,0\n")
    (out / "images").mkdir()
    _fails(["synth", str(out), "--n-train", "2", "--n-test", "1", "-q"], "sample_submission.csv", "images/",
           unchanged=(tmp_path,))  # fmt: skip
    assert not (out / "train").exists()
    # a preview inside the data set it writes would become one of its files
    preview = tmp_path / "new" / "train" / "p.png"
    _fails(["synth", str(tmp_path / "new"), "--n-train", "2", "--n-test", "0", "--preview", str(preview)], "p.png",
           "lies in an input folder")  # fmt: skip


# ------------------------------------------------------------------ issue 39: photographs, keypoint names, data
def _train_args(runs: Path, *sets: str) -> list[str]:
    return ["train", *_sets(*TINY, *sets), "--runs-dir", str(runs), "--name", "r", "-q"]


def _coco_set(make_coco) -> Path:
    return make_coco(n_images=4, animals=2, k=5)


COCO_SETS = ("data.format=coco", "data.schema=from_data", "data.group_by=image")


def test_a_file_listed_twice_in_data_train_names_both_entries(make_coco, tmp_path):
    path = _coco_set(make_coco)
    runs = tmp_path / "runs"
    spelled = path.parent / ".." / path.parent.name / path.name  # the same file, written another way
    for second in (path, spelled):
        text = _fails(_train_args(runs, *COCO_SETS, f"data.train=[{path},{second}]"), "data.train[1]",
                      "entries 0 and 1", "data.json", unchanged=(path.parent,))  # fmt: skip
        assert not runs.exists()
    assert "are one file" in text
    _fails(["data", "check", str(path), str(spelled), "--schema", "from_data"], "PATH[1]", "entries 0 and 1")


def _copy_annotation(doc: dict, i: int, **change) -> None:
    """Annotation i again, as the next annotation of the file (a new id), with `change` applied."""
    doc["annotations"].append({**doc["annotations"][i], "id": 100 + i, **change})


def coco_animal_twice_on_one_image(path: Path) -> tuple[list[Path], str, str]:
    _edit_json(path, lambda d: _copy_annotation(d, 2))
    return [path], "annotations[8]", "annotations[2]"


def coco_animal_twice_under_two_image_ids(path: Path) -> tuple[list[Path], str, str]:
    def change(d: dict) -> None:
        d["images"].append({**d["images"][1], "id": 99})  # photo img_1.png again, under id 99
        _copy_annotation(d, 3, image_id=99)

    _edit_json(path, change)
    return [path], "annotations[8]", "annotations[3]"


def coco_same_box_other_keypoints(path: Path) -> tuple[list[Path], str, str]:
    def change(d: dict) -> None:
        kps = d["annotations"][0]["keypoints"]
        _copy_annotation(d, 0, keypoints=[v + 1 if i % 3 < 2 and kps[i - i % 3 + 2] else v for i, v in enumerate(kps)])

    _edit_json(path, change)
    return [path], "annotations[8]", "annotations[0]"


def coco_animal_in_two_files(path: Path) -> tuple[list[Path], str, str]:
    """A file and a copy of its first image's entry and animals: same file name and id, same animals."""
    doc = json.loads(path.read_text())
    part = {**doc, "images": doc["images"][:1], "annotations": doc["annotations"][:1]}
    (path.parent / "part.json").write_text(json.dumps(part))
    return [path, path.parent / "part.json"], "part.json", "data.json, annotations[0]"


TWICE_CASES = [coco_animal_twice_on_one_image, coco_animal_twice_under_two_image_ids, coco_same_box_other_keypoints,
               coco_animal_in_two_files]  # fmt: skip


@pytest.mark.parametrize("case", TWICE_CASES, ids=lambda f: f.__name__)
def test_an_animal_annotated_twice_is_refused_naming_both_places(case, make_coco, tmp_path):
    path = _coco_set(make_coco)
    files, here, there = case(path)
    runs = tmp_path / "runs"
    train = files[0] if len(files) == 1 else f"[{','.join(map(str, files))}]"
    _fails(_train_args(runs, *COCO_SETS, f"data.train={train}"), here, there, "the same animal",
           unchanged=(path.parent,))  # fmt: skip
    assert not runs.exists()
    _fails(["data", "check", *map(str, files), "--schema", "from_data"], here, there, "the same animal")


def test_an_animal_twice_in_a_csv_or_adk_set_through_a_linked_photo(make_adk, tmp_path):
    import dataclasses

    from cattlepose.core.schema import load_schema
    from cattlepose.data.formats import adk, wide_csv

    root = make_adk(n=3)
    link = root / "images" / "adk_link.jpg"
    link.symlink_to("adk_000.jpg")
    doc = json.loads((root / "annotations" / "adk_000.json").read_text())
    doc["label_info"]["image"]["file_name"] = "adk_link.jpg"
    (root / "annotations" / "adk_link.json").write_text(json.dumps(doc))  # the same photo and animal again
    runs = tmp_path / "runs"
    _fails(_train_args(runs, f"data.train={root}"), "adk_link.json", "adk_000.json", unchanged=(root,))
    (root / "annotations" / "adk_link.json").unlink()
    samples = adk.read(root, 17)
    samples.append(dataclasses.replace(samples[0], image=link, image_id="adk_link"))
    csv = root / "labels.csv"
    wide_csv.write(samples, csv, load_schema("adk17"))  # rows 2-4 and row 5: adk_000's animal on its link
    _fails(_train_args(runs, "data.format=csv", f"data.train={csv}"), "row 5", "row 2", "the same animal",
           unchanged=(root,))  # fmt: skip
    assert not runs.exists()


def test_keypoints_that_match_nothing_by_name_are_listed_not_read_by_position(make_coco, tmp_path):
    a = make_coco(name="a", n_images=2, animals=2, k=5)
    b = make_coco(name="b", n_images=2, animals=2, k=5, seed=4)
    _edit_json(b, lambda d: d["categories"][0].update(keypoints=["kp4", "kp3", "kp2", "kp1", "tailbase"]))
    runs = tmp_path / "runs"
    sets = (*COCO_SETS, f"data.train=[{a},{b}]")
    _fails(_train_args(runs, *sets), "b/data.json", "categories[].keypoints", "tailbase", "kp0", "by name",
           "data.keypoint_map", unchanged=(a.parent, b.parent))  # fmt: skip
    _fails(_train_args(runs, *sets, "data.keypoint_map={tailbase: tail}"), "data.keypoint_map", "'tail'")
    assert not runs.exists()
    _fails(["data", "check", str(a), str(b), "--schema", "from_data"], "b/data.json", "tailbase")
    r = runner.invoke(app, _train_args(runs, *sets, "data.keypoint_map={tailbase: kp0}"))
    assert r.exit_code == 0, r.output


# --- the data under a run (data.json)
@pytest.fixture
def run_on_copy(trained, tiny_data, tmp_path) -> tuple[Path, Path]:
    """A private copy of the trained run and of its training data (config.yaml pointed at the copy):
    (tmp_path/runs/t, tmp_path/data/train)."""
    data = tmp_path / "data" / "train"
    shutil.copytree(tiny_data / "train", data)
    run = tmp_path / "runs" / "t"
    shutil.copytree(trained, run)
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace(str(tiny_data / "train"), str(data)))
    assert str(data) in cfg.read_text()
    return run, data


def _resume(run: Path, *extra: str) -> list[str]:
    return ["train", "--name", "t", "--runs-dir", str(run.parent), "--resume", "-q", *extra]


def _collect(run: Path, *extra: str) -> list[str]:
    return ["train", "--name", "t", "--runs-dir", str(run.parent), "--collect", "-q", *extra]


def test_a_data_set_regenerated_under_a_run_is_refused_by_resume(run_on_copy, tmp_path):
    """The probe's case: an ADK set regenerated with another seed, same file names."""
    from cattlepose.data.synthetic import synthesize

    run, data = run_on_copy
    assert runner.invoke(app, _resume(run)).exit_code == 0  # the copy is the same data, moved
    synthesize(tmp_path / "other", n_train=12, n_test=3, seed=1)
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "other" / "train", data)
    text = _fails(_resume(run), "data.json", "animals with other keypoints", "(12)", "images with other bytes",
                  "synth_train_000001", "--accept-data-change", unchanged=(run, data))  # fmt: skip
    assert _advice(text) == ["train", "--name", "t", "--runs-dir", str(run.parent), "--resume", "--folds", "0,1",
                             "--accept-data-change"]  # fmt: skip


def test_keypoints_edited_before_collect_are_refused_and_the_accept_flag_records_them(run_on_copy):
    """The probe's case: cv.json would have been rescored against the new labels without a word."""
    run, data = run_on_copy
    cv = (run / "cv.json").read_text()
    ann = sorted((data / "annotations").glob("*.json"))[4]
    _edit_json(ann, lambda d: _set_kp(d, 0, _adk_ann(d)["keypoints"][0] + 7))
    text = _fails(_collect(run), "data.json", "animals with other keypoints", ann.stem, f"annotations/{ann.name}",
                  unchanged=(run, data))  # fmt: skip
    assert (run / "cv.json").read_text() == cv
    r = runner.invoke(app, [*_advice(text), "-q"])
    assert r.exit_code == 0, r.output
    accepted = json.loads((run / "data.json").read_text())["accepted"]
    assert len(accepted) == 1 and accepted[0]["command"] == "--collect" and ann.stem in accepted[0]["changes"][0]
    assert json.loads((run / "cv.json").read_text())["data_changes"] == accepted
    assert runner.invoke(app, _collect(run)).exit_code == 0  # the record now holds the edited data
    assert runner.invoke(app, _resume(run)).exit_code == 0


def test_animals_removed_under_a_run_are_refused_even_when_accepted(run_on_copy):
    run, data = run_on_copy
    gone = sorted((data / "annotations").glob("*.json"))[0]
    gone.unlink()
    for args in (_resume(run), _resume(run, "--accept-data-change"), _collect(run, "--accept-data-change")):
        _fails(args, "data.json", "animals removed", gone.stem, "new run", unchanged=(run, data))


def test_touched_images_are_the_same_data(run_on_copy):
    import os

    run, data = run_on_copy
    for img in (data / "images").iterdir():
        os.utime(img, ns=(0, img.stat().st_mtime_ns + 10**9))
    r = runner.invoke(app, _resume(run))
    assert r.exit_code == 0, r.output
    assert json.loads((run / "data.json").read_text())["accepted"] == []


def test_a_run_from_before_data_json_records_its_data_and_a_damaged_record_is_named(run_on_copy):
    run, data = run_on_copy
    (run / "data.json").unlink()
    r = runner.invoke(app, _collect(run)[:-1])  # not quiet: the note is printed
    assert r.exit_code == 0, r.output
    assert "no record of its training data" in r.output.replace("\n", "")
    record = json.loads((run / "data.json").read_text())
    assert len(record["animals"]) == 12 and record["accepted"] == []
    (run / "data.json").write_text("{ not json")
    text = _fails(_resume(run), "data.json", "damaged", unchanged=(run, data))
    r = runner.invoke(app, [*_advice(text), "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "data.json").read_text())["animals"] == record["animals"]
