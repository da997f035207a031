"""Polarized self-attention: the pool-first computation against the paper's naive formulation (outputs and
gradients), finite differences, mixed precision, and the identity at initialisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cattlepose.models.psa import SEQUENTIAL_GAIN, PolarizedSelfAttention

LAYOUTS = ("parallel", "sequential")


# ---------------------------------------------------------------------------------------------- naive reference
# The paper's formulation, written as directly as possible: every projection is a 1x1 convolution producing a
# full (C/2)-channel (or 1-channel) map, attention is a softmax over the flattened map, pooling a matmul.
def _conv1x1(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight.reshape(*weight.shape, 1, 1))


def naive_channel_gate(m: PolarizedSelfAttention, x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    value = _conv1x1(x, m.ch_wv).reshape(n, c // 2, h * w)  # (N, C/2, HW)
    query = _conv1x1(x, m.ch_wq.reshape(1, c)).reshape(n, 1, h * w).softmax(dim=-1)  # (N, 1, HW)
    z = torch.matmul(value, query.transpose(1, 2)).reshape(n, c // 2, 1, 1)  # (N, C/2, 1, 1)
    z = _conv1x1(z, m.ch_wz).reshape(n, c)
    z = F.layer_norm(z, (c,), m.ch_ln.weight, m.ch_ln.bias, m.ch_ln.eps)
    return torch.sigmoid(z).reshape(n, c, 1, 1)


def naive_spatial_gate(m: PolarizedSelfAttention, x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    query = F.adaptive_avg_pool2d(_conv1x1(x, m.sp_wq), 1).reshape(n, 1, c // 2).softmax(dim=-1)  # (N, 1, C/2)
    value = _conv1x1(x, m.sp_wv).reshape(n, c // 2, h * w)  # (N, C/2, HW)
    return torch.sigmoid(torch.matmul(query, value)).reshape(n, 1, h, w)


def naive_psa(m: PolarizedSelfAttention, x: torch.Tensor) -> torch.Tensor:
    if m.layout == "parallel":
        return x * naive_channel_gate(m, x) + x * naive_spatial_gate(m, x)
    y = x * naive_channel_gate(m, x)
    return SEQUENTIAL_GAIN * y * naive_spatial_gate(m, y)


def randomised(channels: int, layout: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """A PSA module with every parameter random (the zero-initialised ones included), so no term vanishes."""
    torch.manual_seed(seed)
    m = PolarizedSelfAttention(channels, layout).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.5)
    return m


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (3, 18, 7, 5), (1, 7, 4, 6), (4, 64, 2, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_naive_reference(layout: str, shape: tuple, channels_last: bool) -> None:
    m = randomised(shape[1], layout)
    x = torch.randn(shape) * 2
    x_in = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    out = m(x_in)
    ref = naive_psa(m, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if channels_last and shape[2] * shape[3] > 1:
        assert out.is_contiguous(memory_format=torch.channels_last)
    if not channels_last:
        assert out.is_contiguous()  # the output keeps the input's memory format
    with torch.inference_mode():
        torch.testing.assert_close(m(x_in), out.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_equal_naive_autograd(layout: str, channels_last: bool) -> None:
    m = randomised(12, layout, torch.float64)
    x = torch.randn(3, 12, 5, 6, dtype=torch.float64)
    g = torch.randn_like(x)
    xa = (x.contiguous(memory_format=torch.channels_last) if channels_last else x.clone()).requires_grad_()
    m(xa).backward(g)
    ours = [xa.grad] + [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    xb = x.clone().requires_grad_()
    naive_psa(m, xb).backward(g)
    ref = [xb.grad] + [p.grad.clone() for p in m.parameters()]
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck(layout: str) -> None:
    m = randomised(6, layout, torch.float64)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in m.named_parameters()]

    def f(x, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *(p.detach().requires_grad_() for p in m.parameters())))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_identity_at_init(layout: str) -> None:
    torch.manual_seed(1)
    m = PolarizedSelfAttention(32, layout)
    x = torch.randn(4, 32, 9, 9) * 3
    assert torch.equal(m(x), x)  # exact: gates are sigmoid(0) = 1/2
    assert torch.equal(m(x.contiguous(memory_format=torch.channels_last)), x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_parameter_learns(layout: str) -> None:
    """At init the parameters behind a zero get a zero gradient; after one step every gradient is nonzero."""
    torch.manual_seed(2)
    m = PolarizedSelfAttention(8, layout)
    x = torch.randn(2, 8, 6, 6)
    target = torch.randn(2, 8, 6, 6)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        F.mse_loss(m(x), target).backward()
        grads = {n: p.grad for n, p in m.named_parameters()}
        assert all(g is not None for g in grads.values())
        opt.step()
    assert all(g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items() if g.abs().sum() == 0]


def test_inference_mode_and_bad_arguments() -> None:
    m = randomised(16, "parallel")
    x = torch.randn(2, 16, 4, 4)
    with torch.inference_mode():
        out = m(x)
    torch.testing.assert_close(out, naive_psa(m, x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="layout"):
        PolarizedSelfAttention(16, "serial")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        PolarizedSelfAttention(1)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gates_in_fp32_product_in_bf16_under_autocast(layout: str) -> None:
    m = randomised(16, layout)
    x = torch.randn(2, 16, 24, 24).contiguous(memory_format=torch.channels_last) * 4
    xb = x.to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(xb)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    # the gates of the bf16 input, computed in fp32 (a softmax over 576 pixels), then one bf16 rounding
    expected = naive_psa(m, xb.detach().float())
    torch.testing.assert_close(out.float(), expected, atol=0.02, rtol=0.01)
    out.float().sum().backward()
    assert xb.grad is not None and xb.grad.dtype == torch.bfloat16 and torch.isfinite(xb.grad).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_spelling_equals_naive_reference(layout: str, channels_last: bool) -> None:
    """`forward_fused` and `gates_fused` (what torch.compile traces) compute the same gates as `gates` and the
    same output as the naive form, values and gradients."""
    m = randomised(12, layout, torch.float64)
    x = torch.randn(3, 12, 5, 6, dtype=torch.float64)
    g = torch.randn_like(x)
    xa = (x.contiguous(memory_format=torch.channels_last) if channels_last else x.clone()).requires_grad_()
    pixels = xa.permute(0, 2, 3, 1).reshape(3, 30, 12)
    for a, b in zip(m.gates_fused(pixels), m.gates(pixels), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    m.forward = m.forward_fused  # the module as the compiler sees it
    m(xa).backward(g)
    ours = [xa.grad] + [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    xb = x.clone().requires_grad_()
    naive_psa(m, xb).backward(g)
    ref = [xb.grad] + [p.grad.clone() for p in m.parameters()]
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_compiled_equals_naive_reference(layout: str) -> None:
    """Through torch.compile (aot_eager: the traced graph without code generation) the block takes the fused
    spelling and still equals the naive form within 1e-5, output and input gradient."""
    torch._dynamo.reset()
    m = randomised(16, layout)
    x = (torch.randn(2, 16, 8, 7) * 2).contiguous(memory_format=torch.channels_last)
    calls = []
    fused = m.forward_fused
    m.forward_fused = lambda x: calls.append(1) or fused(x)
    xa = x.clone().requires_grad_()
    out = torch.compile(m, backend="aot_eager", fullgraph=True)(xa)
    assert calls, "the compiled module did not take forward_fused"
    xb = x.clone().requires_grad_()
    ref = naive_psa(m, xb)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
