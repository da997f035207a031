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


def test_the_cache_outlives_the_process(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compiling.compile_cache_dir() == tmp_path / "cattlepose" / "torch-compile"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compiling.compile_cache_dir() == tmp_path / "mine"  # the user's own setting wins


def test_alike_blocks_share_one_graph(monkeypatch):
    """hrnet_w18_small_v2 + PSA: 8 regions (2 Bottlenecks, 6 multi-resolution modules holding the 38 PSA blocks)
    compile to 6 graphs: stage 3's three alike modules share one, and nothing falls back to eager. (hrnet_w32's
    12 regions compile to 6 the same way; docs/BENCHMARKS.md has its compile times.)"""
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    cfg = load_config(None, ["model.backbone=hrnet_w18_small_v2", "model.pretrained=null", "model.input_size=[32,32]"])
    model = build_model(cfg.model, 17).eval()
    names = compiling.compile_regions(model)
    assert len(names) == 8 and sum(n.startswith("backbone.stage3.") for n in names) == 3
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
