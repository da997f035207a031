"""The benchmark scripts, run on the CPU at a tiny size: they must work when someone runs `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_says_so_and_exits_0_without_cuda():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    assert out.returncode == 0 and "no CUDA device" in out.stdout


@pytest.mark.slow
def test_bench_gpu_script_runs_end_to_end_on_cpu(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--config",
           str(ROOT / "configs" / "default.yaml"), "--images", "48", "--steps", "1", "--epochs", "2", "--folds", "2",
           "-s", "train.batch_size=8", "-s", "model.input_size=[64,64]", "-s", "train.threads=2",
           "--compile-backend", "aot_eager"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[1:]]
    for wanted in ("network step, PSA parallel, compile on", "training loader alone", "one item: augment",
                   "cattlepose train (default.yaml, synthetic)", "predict, 2 folds + flip"):  # fmt: skip
        assert wanted in names, names
    values = {n: line.split("|")[2].strip() for n, line in zip(names, table[1:], strict=True)}
    assert float(values["training loader alone"].replace(",", "")) > 0


CPU_BENCHMARKS = {
    "bench_predict.py": (["--images", "16", "--rounds", "1"], "pipeline / bare"),
    "bench_model.py": (["--rounds", "1"], "goals (train"),
    "bench_loader.py": (["--images", "40", "--steps", "1"], "ratio loader / train"),
    "bench_synth.py": (["--n-train", "8", "--n-test", "8"], "mean pose"),
}


@pytest.mark.parametrize("script", sorted(CPU_BENCHMARKS))
def test_make_bench_scripts_run_at_a_tiny_size(script, tmp_path):
    """`make bench` runs every benchmarks/bench_*.py; each must finish and print its ratio line."""
    args, wanted = CPU_BENCHMARKS[script]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "2"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert wanted in out.stdout, out.stdout[-3000:]
