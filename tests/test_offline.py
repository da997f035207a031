"""No network at run time: `train` and `predict` on tiny data, in processes where every DNS lookup and every
internet socket connection is recorded and refused (tests/offline/sitecustomize.py), with loader workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import synth_set

OFFLINE = Path(__file__).parent / "offline"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return synth_set(tmp_path_factory, n_train=16, n_test=4, seed=3)


def _offline_env(log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}  # the package must set it
    env["PYTHONPATH"] = os.pathsep.join([str(OFFLINE), *filter(None, [env.get("PYTHONPATH")])])
    env["CATTLEPOSE_NET_LOG"] = str(log)
    return env


def test_the_blocker_catches_a_lookup(tmp_path):
    """The harness itself: a process that does resolve a name is caught (so a silent pass below means something)."""
    log = tmp_path / "net.log"
    code = "import socket\ntry:\n    socket.getaddrinfo('pypi.org', 443)\nexcept OSError:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], env=_offline_env(log), check=True, timeout=60)
    assert "getaddrinfo" in log.read_text()


def test_train_and_predict_open_no_connection(synth_root, tmp_path):
    log = tmp_path / "net.log"
    env = _offline_env(log)
    run = tmp_path / "runs" / "offline"
    sets = [f"data.train={synth_root / 'train'}", "data.format=adk", "model.input_size=[64,64]",
            "model.backbone=hrnet_w18_small", "train.folds=2", "train.epochs=1", "train.batch_size=8",
            "train.workers=2", "train.threads=1", "infer.batch_size=8"]  # fmt: skip
    cli = [sys.executable, "-m", "cattlepose"]
    train = subprocess.run([*cli, "train", "--runs-dir", str(run.parent), "--name", run.name,
                            *(a for s in sets for a in ("-s", s))],
                           env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    out = tmp_path / "pred.csv"
    predict = subprocess.run([*cli, "predict", str(run), str(synth_root / "test" / "images"), "-o", str(out),
                              "--template", str(synth_root / "sample_submission.csv")],
                             env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert out.is_file()
    assert not log.exists(), log.read_text()[:3000]
    for proc in (train, predict):
        text = proc.stdout + proc.stderr
        assert "version info" not in text and "urlopen" not in text and "network" not in text.lower(), text[-2000:]
