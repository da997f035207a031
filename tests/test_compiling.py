"""Compilation that pays for itself: when `train.compile: auto` compiles, the regions it compiles (shared graphs
for alike blocks), the compiled network against eager, and inference padded to one batch shape."""

from __future__ import annotations

import pytest
import torch

from cattlepose.core.config import load_config
from cattlepose.engine import compiling
from cattlepose.models.build import build_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("setting", "device", "work", "kind", "expected"),
    [
        ("auto", CUDA, 300 * 5 * 2, "predict", False),  # the synthetic test set, 5 folds + flip: never compiled
        ("auto", CUDA, 9_000 * 5 * 2, "predict", False),  # a whole ADK test set is still quicker eager
        ("auto", CUDA, 50_000 * 5 * 2, "predict", True),
        ("auto", CUDA, 9_000 * 120, "train", True),  # the ADK2021 competition run: 120 epochs of ~9,000 crops
        ("auto", CUDA, 500 * 30, "train", False),  # a short run on a few hundred photographs
        ("auto", CPU, 9_000 * 120, "train", False),  # never on a CPU
        ("on", CPU, 10, "predict", True),
        ("off", CUDA, 10**9, "train", False),
    ],
)
def test_auto_decides_from_the_work(setting, device, work, kind, expected):
    decision = compiling.decide(setting, device, work, kind)
    assert decision.compile is expected
    assert decision.reason  # always says why (the log prints it)
    if setting == "auto" and device.type == "cuda" and not expected:
        assert f"{work:,}" in decision.reason


def test_the_cache_outlives_the_process(tmp_path):
    """The package points torch's compile cache at the user's cache folder before torch's compiler can set its
    /tmp default; a user's own TORCHINDUCTOR_CACHE_DIR wins."""
    import subprocess
    import sys

    code = "import cattlepose, torch._inductor.config, os; print(os.environ['TORCHINDUCTOR_CACHE_DIR'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "XDG_CACHE_HOME": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert out == str(tmp_path / "cattlepose" / "torch-compile")
    mine = str(tmp_path / "mine")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "TORCHINDUCTOR_CACHE_DIR": mine},
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert out == mine


def test_alike_blocks_share_one_graph(monkeypatch):
    """hrnet_w18_small_v2 + PSA: 40 regions (2 Bottlenecks, 38 BasicBlocks with PSA over four branch widths)
    compile to 6 graphs: alike blocks share one, and nothing falls back to eager. (hrnet_w32's 108 regions compile
    to 6 the same way; docs/BENCHMARKS.md has its compile times.)"""
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    cfg = load_config(None, ["model.backbone=hrnet_w18_small_v2", "model.pretrained=null", "model.input_size=[32,32]"])
    model = build_model(cfg.model, 17).eval()
    names = compiling.compile_regions(model)
    assert len(names) == 40 and sum(".branches." in n for n in names) == 38
    before, _ = compiling.compiled_graphs()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        after, seconds = compiling.compiled_graphs()
        assert after - before == 6
        assert seconds > 0
        model(torch.randn(2, 3, 32, 32))
    assert compiling.compiled_graphs()[0] == after  # the second batch compiles nothing


@pytest.mark.slow  # tests/test_train.py's compiled-vs-eager training covers the same in the default run
def test_compiled_regions_compute_what_eager_does(monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    cfg = load_config(None, ["model.pretrained=null", "model.input_size=[32,32]"])
    torch.manual_seed(0)
    eager = build_model(cfg.model, 17).train()
    compiled = build_model(cfg.model, 17).train()
    compiled.load_state_dict(eager.state_dict())
    compiling.compile_regions(compiled)
    x = torch.randn(2, 3, 32, 32)
    a, b = eager(x), compiled(x)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    a.square().mean().backward()
    b.square().mean().backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=name)
    with compiling.eager():  # validation of a compiled model runs it as plain code
        torch.testing.assert_close(compiled.eval()(x), eager.eval()(x), atol=1e-4, rtol=1e-4)
