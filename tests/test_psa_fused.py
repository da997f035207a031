"""The fused CPU inference kernel (models/psa_fused.py) against eager PSA and the naive reference."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cattlepose.config import ModelConfig
from cattlepose.models import build_model, psa_fused
from cattlepose.models.psa import PolarizedSelfAttention
from test_psa import naive_psa, randomised

pytestmark = pytest.mark.skipif(not psa_fused.available(), reason="numba is not installed")

SHAPES = [(2, 16, 8, 8), (3, 18, 7, 5), (1, 7, 4, 6), (4, 64, 2, 3), (5, 128, 4, 4), (2, 32, 1, 1)]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_equals_naive_and_eager(layout: str, shape: tuple) -> None:
    # odd pixel counts exercise the loops' remainders (4 pixels per iteration), 7 and 18 channels odd halves
    m = randomised(shape[1], layout).eval()
    x = channels_last(torch.randn(shape) * 2)
    assert psa_fused.usable(x)
    with torch.inference_mode():
        fused = m(x)
        with psa_fused.enabled(False):
            eager = m(x)
    torch.testing.assert_close(fused, naive_psa(m, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)
    assert fused.is_contiguous(memory_format=torch.channels_last)
    assert fused.data_ptr() != x.data_ptr()  # not in place unless asked


def _grads(m: PolarizedSelfAttention, x: torch.Tensor, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    m.zero_grad(set_to_none=True)
    xg = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    (m(xg) * weight).sum().backward()
    return {"x": xg.grad, **{n: p.grad for n, p in m.named_parameters()}}


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (3, 18, 7, 5), (4, 64, 3, 3)])
@pytest.mark.parametrize("grad_channels_last", [True, False])
def test_fused_training_gradients(layout: str, shape: tuple, grad_channels_last: bool) -> None:
    # the training forward and both backward passes in the kernels, against the eager backward (float32) and
    # the naive reference under autograd in float64
    m = randomised(shape[1], layout)
    x = channels_last(torch.randn(shape))
    weight = torch.randn(shape)
    weight = channels_last(weight) if grad_channels_last else weight  # the gradient arriving in either format
    fused = _grads(m, x, weight)
    with psa_fused.enabled(False):
        eager = _grads(m, x, weight)
    m64 = copy.deepcopy(m).double()
    x64 = x.double().requires_grad_()
    (naive_psa(m64, x64) * weight.double()).sum().backward()
    reference = {"x": x64.grad, **{n: p.grad for n, p in m64.named_parameters()}}
    assert set(fused) == set(reference)
    for name, grad in fused.items():
        torch.testing.assert_close(grad, eager[name], atol=1e-4, rtol=1e-4, msg=name)
        torch.testing.assert_close(grad.double(), reference[name], atol=1e-4, rtol=1e-4, msg=name)
    assert fused["x"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
def test_inplace_overwrites_input_with_the_same_result(layout: str) -> None:
    m = randomised(16, layout).eval()
    x = channels_last(torch.randn(3, 16, 9, 7))
    with torch.inference_mode():
        expected = m(x)
        m.inplace = True
        y = x.clone(memory_format=torch.channels_last)
        out = m(y)
    assert out.data_ptr() == y.data_ptr()
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_other_inputs_take_the_eager_path() -> None:
    m = randomised(16, "parallel")
    x = torch.randn(2, 16, 6, 6)
    assert not psa_fused.usable(x)  # NCHW
    assert not psa_fused.usable(channels_last(x).double())
    with psa_fused.enabled(False):
        assert not psa_fused.usable(channels_last(x))
    assert psa_fused.usable(channels_last(x))  # restored after the block
    m.inplace = True
    xg = channels_last(x).requires_grad_()
    out = m(xg)  # autograd records: never fused, never in place
    assert out.grad_fn is not None and out.data_ptr() != xg.data_ptr()
    torch.testing.assert_close(out, naive_psa(m, x), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # requires grad but nothing records: fused
        torch.testing.assert_close(m(channels_last(x).requires_grad_()), out.detach(), atol=1e-5, rtol=1e-5)
    assert m(channels_last(torch.zeros(0, 16, 6, 6))).shape == (0, 16, 6, 6)


def test_parameter_changes_are_seen() -> None:
    m = randomised(16, "parallel").eval()
    x = channels_last(torch.randn(2, 16, 5, 5))
    with torch.inference_mode():
        before = m(x)
    with torch.no_grad():
        m.ch_wq.mul_(-2.0)  # in place: the packed copy must be rebuilt
        m.ch_ln.bias.add_(0.5)
    m.sp_wv = torch.nn.Parameter(torch.randn_like(m.sp_wv))  # replaced
    with torch.inference_mode():
        after = m(x)
    assert (after - before).abs().max() > 1e-2
    torch.testing.assert_close(after, naive_psa(m, x), atol=1e-5, rtol=1e-5)


def test_parameters_made_under_inference_mode() -> None:
    # inference tensors carry no version counter: packed afresh on every call instead of cached
    with torch.inference_mode():
        m = PolarizedSelfAttention(8, "sequential").eval()
        x = channels_last(torch.randn(2, 8, 3, 3))
        first = m(x)
        m.ch_ln.bias.add_(1.0)
        second = m(x)
        reference = naive_psa(m, x)
    assert (first - second).abs().max() > 1e-3
    torch.testing.assert_close(second, reference, atol=1e-5, rtol=1e-5)


def test_model_output_and_input_unchanged_by_the_fused_path() -> None:
    model = build_model(ModelConfig(backbone="hrnet_w18_small", psa="parallel", input_size=(64, 64)), 5).eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, PolarizedSelfAttention):
                for p in mod.parameters():
                    p.normal_(0.0, 0.3)  # away from the identity start, so PSA matters
    model = model.to(memory_format=torch.channels_last)
    x = channels_last(torch.randn(2, 3, 64, 64))
    x_copy = x.clone()
    with torch.inference_mode():
        fused = model(x)
        with psa_fused.enabled(False):
            eager = model(x)
    torch.testing.assert_close(x, x_copy, atol=0, rtol=0)  # in-place PSA only ever writes block temporaries
    torch.testing.assert_close(fused, eager, atol=1e-4, rtol=1e-4)


def test_fast_exp_is_accurate() -> None:
    v = np.linspace(-87.0, 87.0, 200_001, dtype=np.float32)  # k from -126 to 126
    out, scale = v.copy(), np.empty(v.shape, np.int32)
    psa_fused._exp_(out, scale)
    ref = np.exp(v.astype(np.float64))
    assert np.max(np.abs(out - ref) / ref) < 3e-7
    small = np.array([-200.0, 0.0, 200.0], np.float32)
    psa_fused._exp_(small, np.empty(3, np.int32))  # clamped, finite
    assert np.all(np.isfinite(small)) and small[1] == 1.0 and small[0] < 1e-37


def test_follows_torch_thread_count() -> None:
    import numba

    m = randomised(16, "parallel").eval()
    x = channels_last(torch.randn(4, 16, 6, 6))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            one = m(x)
        assert numba.get_num_threads() == 1
        torch.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        with torch.inference_mode():
            two = m(x)
        assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one, two, atol=0, rtol=0)  # samples are independent: same numbers


def test_background_warm_up_starts_once() -> None:
    psa_fused.warm_up_in_background()
    psa_fused.warm_up_in_background()
    assert len(psa_fused._background) == 1
    psa_fused._background[0].join(timeout=120)
    assert not psa_fused._background[0].is_alive()


def test_environment_switch_turns_the_kernel_off() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import torch; from cattlepose.models import psa_fused; "
        "print(psa_fused.usable(torch.zeros(1, 4, 2, 2).contiguous(memory_format=torch.channels_last)))"
    )
    for value, expected in (("0", "False"), ("1", "True")):
        env = {**os.environ, "CATTLEPOSE_FUSED_PSA": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
def test_a_failing_kernel_falls_back_to_eager(layout: str, monkeypatch) -> None:
    # numba failing to compile (an unexpected platform or array type) turns the kernels off with one warning;
    # the forward, the inference path and a backward already under way all finish in eager PyTorch
    def broken(*args):
        raise RuntimeError("no LLVM here")

    m = randomised(16, layout)
    x = channels_last(torch.randn(2, 16, 5, 5))
    weight = torch.randn(2, 16, 5, 5)
    with psa_fused.enabled(False):
        expected = _grads(m, x, weight)
    monkeypatch.setattr(psa_fused, "_enabled", [True])
    xg = x.clone().requires_grad_()
    out = m(xg)  # forward fused, then the backward kernel fails
    monkeypatch.setattr(psa_fused, "_psa_backward", broken)
    m.zero_grad(set_to_none=True)
    with pytest.warns(UserWarning, match="eager PyTorch"):
        (out * weight).sum().backward()
    assert not psa_fused.usable(x)
    torch.testing.assert_close(xg.grad, expected["x"], atol=1e-4, rtol=1e-4)
    for name, p in m.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-4, rtol=1e-4, msg=name)

    monkeypatch.setattr(psa_fused, "_enabled", [True])
    monkeypatch.setattr(psa_fused, "_psa_kernel", broken)
    with pytest.warns(UserWarning, match="eager PyTorch"), torch.inference_mode():
        torch.testing.assert_close(m(x), naive_psa(m, x), atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(psa_fused, "_enabled", [True])
    with pytest.warns(UserWarning, match="eager PyTorch"):
        torch.testing.assert_close(m(x.clone().requires_grad_()), naive_psa(m, x), atol=1e-5, rtol=1e-5)


def test_kernels_leave_torch_thread_count_alone() -> None:
    # starting numba's OpenMP workers used to set the process's OpenMP thread count (torch's too) to numba's
    # pool size: with OMP_NUM_THREADS=1 (as torchrun sets it) torch then ran on 2 threads after the first PSA
    # forward, which also changed the convolutions' summation order (a resumed run no longer matched)
    import os
    import subprocess
    import sys

    code = """
import torch
from cattlepose.config import ModelConfig
from cattlepose.models import build_model
torch.manual_seed(0)
m = build_model(ModelConfig(input_size=(64, 64)), 5).to(memory_format=torch.channels_last)
x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    first, second = m(x), m(x)
m(x).sum().backward()
assert torch.get_num_threads() == 1, torch.get_num_threads()
assert torch.equal(first, second)
print("ok")
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
