"""End-to-end training on tiny synthetic data: artefacts, group folds, exact resume after SIGKILL, predict."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.config import load_config
from cattlepose.engine.kfold import run_training
from conftest import csv_rows, history_numbers, kill_after_rows, synth_set

TINY = [
    "model.input_size=[64,64]",
    "model.backbone=hrnet_w18_small",
    "train.folds=2",
    "train.epochs=2",
    "train.batch_size=8",
    "train.workers=0",
    "train.val_every=1",
    "train.threads=2",
    "augment.level=heavy",
    "infer.batch_size=16",
]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return synth_set(tmp_path_factory, n_train=40, n_test=6, seed=0)


def _overrides(root: Path, *extra: str) -> list[str]:
    return [f"data.train={root / 'train'}", "data.format=adk", *TINY, *extra]


def test_two_fold_run_writes_every_artefact(synth_root, tmp_path):
    cfg = load_config(None, _overrides(synth_root))
    run_dir = tmp_path / "runs" / "tiny"
    start = time.perf_counter()
    report = run_training(cfg, run_dir)
    assert time.perf_counter() - start < 120
    for name in ("config.yaml", "schema.yaml", "folds.csv", "oof.csv", "cv.json"):
        assert (run_dir / name).is_file(), name
    for k in (0, 1):
        for name in ("best.pt", "last.pt", "history.csv", "oof.csv", "done.json"):
            assert (run_dir / f"fold{k}" / name).is_file(), (k, name)
        assert len(csv_rows(run_dir / f"fold{k}" / "history.csv")) == 2
        done = json.loads((run_dir / f"fold{k}" / "done.json").read_text())
        best = torch.load(run_dir / f"fold{k}" / "best.pt", weights_only=True)
        assert best["epoch"] == done["best_epoch"] and best["metric"] == done["best_metric"]
    # every training sample is predicted exactly once, out of fold
    oof = csv_rows(run_dir / "oof.csv")
    folds = csv_rows(run_dir / "folds.csv")
    assert sorted(r["key"] for r in oof) == sorted(r["key"] for r in folds) and len(oof) == 40
    # no farm in two folds
    fold_of: dict[str, set[str]] = {}
    for r in folds:
        fold_of.setdefault(r["group"], set()).add(r["fold"])
    assert all(len(v) == 1 for v in fold_of.values())
    cv = json.loads((run_dir / "cv.json").read_text())
    assert cv == report
    assert set(cv["folds"]) == {"0", "1"}
    assert 0.0 <= cv["overall"]["pck_torso@0.35"] <= 1.0
    assert {"visible", "occluded"} <= set(cv["by_visibility"])
    # no temporary files left behind
    assert not list(run_dir.rglob("*.tmp"))


def _train_cmd(root: Path, runs: Path, epochs: int, *extra: str) -> list[str]:
    sets = [a for s in _overrides(root, f"train.epochs={epochs}") for a in ("-s", s)]
    return [sys.executable, "-m", "cattlepose", "train", *sets, "--name", "r", "--runs-dir", str(runs),
            "--folds", "0", "-q", *extra]  # fmt: skip


def test_sigkill_then_resume_matches_uninterrupted_run(synth_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    epochs = 4
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(synth_root, straight, epochs), check=True, env=env, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(synth_root, killed, epochs), env=env)
    history = killed / "r" / "fold0" / "history.csv"
    kill_after_rows(proc, history, 2, lambda: os.kill(proc.pid, signal.SIGKILL))
    assert len(csv_rows(history)) < epochs

    subprocess.run(_train_cmd(synth_root, killed, epochs, "--resume"), check=True, env=env, timeout=300)
    assert history_numbers(history) == history_numbers(straight / "r" / "fold0" / "history.csv")


def test_cli_train_resume_skips_finished_fold_and_predict_writes_valid_submission(synth_root, tmp_path):
    runner = CliRunner()
    runs = tmp_path / "runs"
    sets = [a for s in _overrides(synth_root, "train.epochs=1") for a in ("-s", s)]
    base = ["train", *sets, "--name", "cli", "--runs-dir", str(runs), "-q"]
    r = runner.invoke(app, [*base, "--folds", "1"])
    assert r.exit_code == 0, r.output
    assert (runs / "cli" / "fold1" / "done.json").is_file() and not (runs / "cli" / "cv.json").exists()
    # a second process-style call without --resume on a started fold is refused, nothing changes
    r = runner.invoke(app, [*base, "--folds", "1"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, [*base, "--resume"])
    assert r.exit_code == 0, r.output
    assert "fold 1 is finished" in r.output or (runs / "cli" / "cv.json").is_file()
    assert (runs / "cli" / "cv.json").is_file()

    sub = tmp_path / "sub.csv"
    template = synth_root / "sample_submission.csv"
    r = runner.invoke(
        app, ["predict", str(runs / "cli"), str(synth_root / "test" / "images"), "-o", str(sub),
              "--template", str(template), "--workers", "0", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["validate", str(sub), "--template", str(template)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", str(sub), str(synth_root / "test"), "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_samples"] == 6


def test_the_advice_for_a_truncated_checkpoint_retrains_the_fold(synth_root, tmp_path):
    """predict names the damaged fold and a command; that command, run as given, makes the run usable again."""
    import re
    import shlex
    import shutil

    runner = CliRunner()
    runs = tmp_path / "elsewhere"
    sets = [a for s in _overrides(synth_root, "train.epochs=1") for a in ("-s", s)]
    r = runner.invoke(app, ["train", *sets, "--name", "r", "--runs-dir", str(runs), "--folds", "0", "-q"])
    assert r.exit_code == 0, r.output
    best = runs / "r" / "fold0" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    predict = ["predict", str(runs / "r"), str(synth_root / "test" / "images"), "-o", str(tmp_path / "s.csv")]
    r = runner.invoke(app, [*predict, "--folds", "0", "-q"], env={"COLUMNS": "400"})
    assert r.exit_code == 2 and str(best) in r.output, r.output
    advice = re.search(r"`rm -r (\S+) && cattlepose (train [^`]+)`", r.output)
    assert advice, r.output
    shutil.rmtree(advice.group(1))
    r = runner.invoke(app, [*shlex.split(advice.group(2)), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*predict, "--folds", "0", "-q"])
    assert r.exit_code == 0 and (tmp_path / "s.csv").is_file(), r.output


# ---------------------------------------------------------------------------------------------- the step loop
def _fold_setup(synth_root: Path, tmp_path: Path, *extra: str):
    from cattlepose.core.ui import Log
    from cattlepose.data.source import load_training_data
    from cattlepose.engine.fit import setup_fold

    cfg = load_config(None, _overrides(synth_root, "train.ema=null", *extra))
    samples, schema = load_training_data(cfg, Log(quiet=True))
    return setup_fold(cfg, schema, samples, tmp_path / "fold0", torch.device("cpu"), Log(quiet=True))


def test_losses_are_read_every_few_steps_not_every_step(synth_root, tmp_path, monkeypatch):
    from cattlepose.engine import fit

    reads = []
    real = fit.check_losses
    monkeypatch.setattr(fit, "LOSS_READ_EVERY", 2)
    monkeypatch.setattr(
        fit, "check_losses", lambda losses, a, b, *rest: reads.append((a, b)) or real(losses, a, b, *rest)
    )
    fold, state = _fold_setup(synth_root, tmp_path)  # 40 samples, batch 8: 5 steps
    row = fit.train_one_epoch(fold, state, 0)
    assert reads == [(0, 2), (2, 4), (4, 5)]
    assert math.isfinite(row["train_loss"]) and row["train_loss"] > 0


def test_a_non_finite_loss_stops_the_run_and_names_the_step(synth_root, tmp_path, monkeypatch):
    from cattlepose.engine import fit
    from cattlepose.models.codec import HeatmapCodec

    calls = []
    real = HeatmapCodec.loss

    def loss(self, *args):
        calls.append(1)
        value = real(self, *args)
        return value * float("nan") if len(calls) == 3 else value

    monkeypatch.setattr(HeatmapCodec, "loss", loss)
    fold, state = _fold_setup(synth_root, tmp_path)
    with pytest.raises(fit.TrainingDiverged, match=r"epoch 1, step 3;.*train\.lr"):
        fit.train_one_epoch(fold, state, 0)


def test_compiled_training_matches_eager(synth_root, tmp_path, monkeypatch):
    """train.compile=on compiles the network's regions in place (aot_eager: the compiled path without C++ code
    generation) and trains to the same numbers; the log says what was compiled and how long it took."""
    from cattlepose.core.ui import Log
    from cattlepose.engine import compiling, fit

    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    compiled = []
    real = compiling.compile_regions
    monkeypatch.setattr(compiling, "compile_regions", lambda model: compiled.append(model) or real(model))
    rows, logs = {}, {}
    for mode in ("off", "on"):
        fold, state = _fold_setup(synth_root, tmp_path / mode, f"train.compile={mode}")
        lines: list[str] = []
        fold.log = Log(quiet=False)
        monkeypatch.setattr(fold.log, "info", lines.append)
        rows[mode] = [fit.train_one_epoch(fold, state, e)["train_loss"] for e in range(2)]
        logs[mode] = lines
    assert len(compiled) == 1  # the "on" run only
    regions = compiled[0].compile_regions()
    assert len(regions) >= 4 and all(getattr(m, "_compiled_call_impl", None) is not None for _, m in regions)
    assert sum(line.startswith("compiled the network: ") for line in logs["on"]) == 1  # once, at the first step
    assert not any("compil" in line for line in logs["off"])
    # the same numbers up to float32 rounding (decomposed ops round differently; 2 epochs of AdamW drift)
    assert rows["on"][0] == pytest.approx(rows["off"][0], rel=1e-5)
    assert rows["on"][1] == pytest.approx(rows["off"][1], rel=1e-3)


def test_best_metric_auto_and_impossible_metrics_fail_before_training(synth_root, tmp_path):
    from cattlepose.core.errors import UserError
    from cattlepose.core.schema import load_schema
    from cattlepose.metrics.names import selection_metric

    cfg = load_config(None, _overrides(synth_root))
    adk17 = load_schema("adk17")
    assert selection_metric(cfg, adk17) == "pck_torso@0.35"
    no_torso = dataclasses.replace(adk17, pck_pair=None)
    assert selection_metric(cfg, no_torso) == "oks_ap"
    bad = load_config(None, _overrides(synth_root, "train.best_metric=pck_torso@0.35", "eval.pck_torso=[0.1]"))
    with pytest.raises(UserError, match="not a validation metric"):
        selection_metric(bad, adk17)
    run_dir = tmp_path / "runs" / "bad"
    with pytest.raises(UserError, match=r"train\.best_metric"):
        run_training(bad, run_dir)
    assert not run_dir.exists()  # nothing written: the check ran before the run folder was made
