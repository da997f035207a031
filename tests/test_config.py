"""Config: YAML + `-s a.b=value` overrides, type checks, unknown keys named with the closest valid one."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cattlepose.core.config import Config, dump_config, load_config
from cattlepose.core.errors import UserError
from cattlepose.core.resources import configs_dir


@pytest.mark.parametrize("name", sorted(p.name for p in configs_dir().glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = load_config(configs_dir() / name)
    assert isinstance(cfg, Config)


IMAGENET_DEFAULT = "-s model.backbone=tf_efficientnet_lite0 -s model.pretrained=imagenet -s train.epochs=9"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_passes_set_to_the_training_and_the_readme_variant_is_a_valid_config():
    """README's `make predict NAME=lite0 SET='...'`: the overrides reach `cattlepose train` as they are."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["make", "-n", "-B", "train", "NAME=lite0", f"SET={IMAGENET_DEFAULT}"], cwd=root,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if " train -c " in x)
    assert line.endswith("--name lite0 --resume " + IMAGENET_DEFAULT)
    sets = shlex.split(IMAGENET_DEFAULT)[1::2]
    cfg = load_config(root / "configs" / "default.yaml", sets)
    assert (cfg.model.backbone, cfg.model.pretrained, cfg.train.epochs) == ("tf_efficientnet_lite0", "imagenet", 9)


def test_a_coco_config_without_its_file_fails_before_anything_runs(tmp_path):
    from cattlepose.core.ui import Log
    from cattlepose.data.source import load_training_data

    cfg = load_config(configs_dir() / "real_small_cpu.yaml", [f"data.synth_dir={tmp_path / 'synth'}"])
    with pytest.raises(UserError, match=r"data\.train"):
        load_training_data(cfg, Log(quiet=True))
    assert not (tmp_path / "synth").exists()


def test_overrides_are_parsed_as_yaml_values_and_type_checked():
    cfg = load_config(
        None,
        [
            "train.epochs=3",
            "train.lr=0.01",
            "infer.flip=false",
            "model.input_size=[192, 160]",
            "train.ema=null",
            "data.schema=ap10k17",
            "model.psa=sequential",
        ],
    )
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01 and cfg.infer.flip is False
    assert cfg.model.input_size == (192, 160) and cfg.train.ema is None
    assert cfg.data.schema_ == "ap10k17" and cfg.model.psa == "sequential"


def test_overrides_apply_on_top_of_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 7, "folds": 4}}))
    cfg = load_config(path, ["train.epochs=2"])
    assert cfg.train.epochs == 2 and cfg.train.folds == 4


@pytest.mark.parametrize(
    "override, key, closest",
    [
        ("train.epoch=3", "train.epoch", "train.epochs"),
        ("trian.epochs=3", "trian", "train"),
        ("data.schemaa=adk17", "data.schemaa", "data.schema"),
        ("augment.fence=0.5", "augment.fence", "augment.fences"),
    ],
)
def test_unknown_key_names_the_key_and_the_closest_valid_one(override, key, closest):
    with pytest.raises(UserError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert e.value.field == key
    assert f"unknown key '{key}'" in msg and f"did you mean '{closest}'?" in msg
    assert "?." not in msg and ".." not in msg


def test_unknown_key_without_a_close_match_lists_the_valid_keys():
    with pytest.raises(UserError) as e:
        load_config(None, ["infer.zzzzzz=1"])
    msg = str(e.value)
    assert "did you mean" not in msg and "unknown key 'infer.zzzzzz'." in msg
    assert "Valid keys here: flip, batch_size" in msg


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("train:\n  epocs: 3\n")
    with pytest.raises(UserError) as e:
        load_config(path)
    assert e.value.path == str(path) and "did you mean 'train.epochs'?" in str(e.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=abc", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
        ("model.psa=maybe", "model.psa"),
        ("model.input_size=[100, 128]", "model.input_size"),
        ("train.lr=-1", "train.lr"),
    ],
)
def test_type_and_range_errors_name_the_key_and_value(override, key):
    with pytest.raises(UserError) as e:
        load_config(None, [override])
    assert e.value.field == key
    assert repr(yaml.safe_load(override.split("=", 1)[1])) in str(e.value)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["train.epochs"], "section.key=value"),
        (["epochs=3"], "must name a section and a key"),
        (["train.epochs=3", "train.epochs.x=1"], "'epochs' is not a section"),
    ],
)
def test_malformed_overrides_are_user_errors(overrides, words):
    with pytest.raises(UserError, match=words):
        load_config(None, overrides)


def test_missing_or_malformed_config_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML") as e:
        load_config(bad)
    assert e.value.path == str(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("5\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(scalar)


def test_resolved_config_dumps_to_yaml_and_loads_back_equal(tmp_path: Path):
    cfg = load_config(None, ["train.epochs=4", "data.schema=animalpose20", "model.input_size=[160, 128]"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert "schema: animalpose20" in path.read_text()  # the alias, as users write it
    assert load_config(path) == cfg


def test_a_run_saved_with_the_retired_track_velocity_still_loads(tmp_path):
    """Runs saved before the tracker's motion became a fitted line carry `track.velocity` (the alpha-beta
    filter's gain) in their config.yaml: they load, the key has no effect, and a typo of a live key still fails."""
    cfg = yaml.safe_load(dump_config(Config()))
    cfg["track"]["velocity"] = 0.3
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    assert loaded.track.motion_window == Config().track.motion_window
    assert "velocity" not in dump_config(loaded)
    cfg["track"]["max_gapp"] = 3
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match="max_gapp"):
        load_config(path)
