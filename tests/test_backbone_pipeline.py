"""An ImageNet EfficientNet goes through the whole pipeline as the HRNets do: k-fold training, exact resume after
SIGKILL, the fold + flip ensemble's submission, the report and `info model` (tests/test_backbones.py covers the
network alone: training steps, batch-norm folding, transfer by keypoint name)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cattlepose.cli import app
from conftest import csv_rows, history_numbers, kill_after_rows, synth_set

LITE = [
    "model.backbone=tf_efficientnet_lite0",
    "model.pretrained=imagenet",
    "model.input_size=[64,64]",
    "train.folds=2",
    "train.batch_size=8",
    "train.workers=0",
    "train.val_every=1",
    "train.threads=2",
    "infer.batch_size=16",
]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return synth_set(tmp_path_factory, n_train=24, n_test=4, seed=3)


def _sets(root: Path, *extra: str) -> list[str]:
    return [a for s in [f"data.train={root / 'train'}", "data.format=adk", *LITE, *extra] for a in ("-s", s)]


def _train(root: Path, runs: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cattlepose", "train", *_sets(root, f"train.epochs={epochs}"), "--name", "r",
            "--runs-dir", str(runs), "--folds", "0", "-q", *extra]  # fmt: skip


def test_sigkill_then_resume_matches_uninterrupted_run(synth_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run(_train(synth_root, tmp_path / "straight", 3), check=True, env=env, timeout=300)
    proc = subprocess.Popen(_train(synth_root, tmp_path / "killed", 3), env=env)
    history = tmp_path / "killed" / "r" / "fold0" / "history.csv"
    kill_after_rows(proc, history, 1, lambda: os.kill(proc.pid, signal.SIGKILL))
    subprocess.run(_train(synth_root, tmp_path / "killed", 3, "--resume"), check=True, env=env, timeout=300)
    assert history_numbers(history) == history_numbers(tmp_path / "straight" / "r" / "fold0" / "history.csv")


def test_kfold_ensemble_report_and_info(synth_root, tmp_path):
    runner = CliRunner()
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["train", *_sets(synth_root, "train.epochs=1"), "--name", "lite", "--runs-dir",
                            str(runs), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    run = runs / "lite"
    cv = json.loads((run / "cv.json").read_text())
    assert set(cv["folds"]) == {"0", "1"} and 0.0 <= cv["overall"]["pck_torso@0.35"] <= 1.0

    sub, template = tmp_path / "sub.csv", synth_root / "sample_submission.csv"
    r = runner.invoke(app, ["predict", str(run), str(synth_root / "test" / "images"), "-o", str(sub),
                            "--template", str(template), "--workers", "0", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(csv_rows(sub)) == len(csv_rows(template)) == 4
    r = runner.invoke(app, ["validate", str(sub), "--template", str(template)])
    assert r.exit_code == 0, r.output

    r = runner.invoke(app, ["report", str(run), "-q"])
    assert r.exit_code == 0, r.output
    assert (run / "report" / "index.html").is_file()

    r = runner.invoke(app, ["info", "model", "-s", "model.backbone=tf_efficientnet_lite0"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "tf_efficientnet_lite0" in r.output and "psa MACs share" in r.output
