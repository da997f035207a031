"""Polarized Self-Attention (Liu et al. 2021, arXiv 2107.00782), computed pool-first.

PSA keeps full resolution along one axis while collapsing the other:

* channel-only branch: a 1-channel query W_q·x, softmax over all H·W positions, the resulting weights pool a
  C/2 value W_v·x into one C/2 vector, W_z lifts it back to C, LayerNorm, sigmoid -> one gate per channel;
* spatial-only branch: a C/2 query W_q·x, globally average-pooled, softmax over its C/2 channels, dotted with
  a C/2 value W_v·x at every pixel, sigmoid -> one gate per pixel.

Parallel layout: ``x·g_ch + x·g_sp``. Sequential layout: the spatial branch runs on the channel-gated ``x·g_ch``.

Why pool first
--------------
Every projection is a bias-free 1x1 convolution, i.e. linear, so it commutes with any weighted sum over pixels.
The naive form builds two (C/2)×H×W tensors per branch (C²·HW/2 MACs each); here

* channel branch: ``p = Σ_i softmax(w_q·x_i) x_i`` is a weighted pooling of x itself, then ``W_z W_v p`` is two
  tiny matvecs on an (N, C) matrix;
* spatial branch: ``mean(W_q x) = W_q mean(x)`` and ``s·(W_v x_i) = (W_vᵀ s)·x_i``, so the gate is one per-sample
  C-vector ``u = W_vᵀ softmax(W_q mean(x))`` dotted with x at every pixel.

What remains at full size is a handful of passes over x (two per-pixel dots, one weighted pooling, the mean,
the gated product). ``tests/test_psa.py`` checks all of it against the naive formulation to 1e-5.

Speed (hrnet_w18_small, 128², batch 32, channels_last, 2 CPU threads; ``benchmarks/bench_model.py``)
--------------------------------------------------------------------------------------------------
On CPU the cost of PSA is not arithmetic but passes over memory and per-operator overhead: 18 PSA blocks, each on
small tensors (32×16×32×32 down to 32×128×4×4), where an eager block is ~20 operator calls over the whole batch.

* On CPU (channels_last float32, numba installed) the forward and the backward run in fused kernels
  (``psa_fused.py``): per sample, in cache, three passes over x forward and three backward, with the per-sample
  vector math and its gradient in between. The autograd forward saves only the softmax weights and the spatial
  gate per pixel and the pooled vector and the mean per channel. Measured in the network, PSA's own time per
  training step went from 6.4 + 13.0 ms (forward + backward, eager) to 4.0 + 6.3 ms, and per folded inference
  forward from ~6 to ~3.5 ms.
* Elsewhere (CUDA, NCHW, float64, tracing) the eager form below runs. Forward and backward are written by hand
  (``_PSAFunction``): autograd would materialise five full-size gradients of x and add them; here d x is built
  in one buffer in place, and the small vector math has hand-written gradients too (autograd's bookkeeping cost
  more than that math: 16-17 ms per step for the 18 blocks against 33-41 ms under autograd, measured in
  isolation). Per-pixel dots run as a (1, C) x (C, HW) bmm per sample (2-3x faster than multiply-and-sum or an
  (HW, C) x (C, 1) bmm); the (N, HW, C) output gate is built from the two small gate vectors and multiplied
  into x once. torch.compile of the eager block bought 1-2 points (``benchmarks/psa_in_network.py --compile``).

Measured with interleaved runs on a shared 2-core machine (docs/BENCHMARKS.md): train step with PSA ÷ without
about 1.07, inference about 1.04-1.06 (fastest rounds), against 1.07-1.15 and 1.06-1.12 with the eager form.

Initialisation: the block starts out as the identity
----------------------------------------------------
PSA goes into pretrained HRNet blocks, so at init it must not change what the backbone computes. With sigmoid
gates ``x_out == x`` needs the gates to sum (parallel) or multiply (sequential) to one, and we make that exact:

* LayerNorm weight and bias of the channel branch start at 0, so ``g_ch = sigmoid(0) = 1/2`` for every input;
* the spatial value projection W_v starts at 0, so ``u = 0`` and ``g_sp = sigmoid(0) = 1/2`` for every input.

Parallel: ``x·(1/2 + 1/2) = x`` exactly. Sequential: ``x·g_ch·g_sp`` would start at ``x/4``; we multiply the
sequential output by the constant 4. That constant sits in front of the bias-free conv2 of the BasicBlock, so it
changes nothing the network can express (conv2 could absorb it), only the starting point, which becomes exactly
the identity. The alternative, ``x + s·(PSA(x) − x)`` with a per-channel ``s`` initialised to 0, gives the same
guarantee but costs extra full-size passes: measured in isolation, PSA's own cost per training step goes from
18.5 to 27.6 ms and per forward from 4.2 to 5.6 ms (about +3 % of the whole step); zero-initialised gate
parameters cost nothing.

As with any zero-initialised residual (ReZero, LayerScale), the parameters behind a zero get an exactly zero
gradient on the very first step (W_q, W_v, W_z of the channel branch behind the LayerNorm weight; W_q of the
spatial branch behind W_v); they are all connected to the loss and start moving on the second step.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from cattlepose.models import psa_fused

Layout = Literal["parallel", "sequential"]

# The sequential gates multiply; each starts at 1/2 (see module docstring).
SEQUENTIAL_GAIN = 4.0


def _kaiming_uniform(t: torch.Tensor, fan_in: int) -> None:
    # the default of nn.Linear / nn.Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(t, -bound, bound)


class PolarizedSelfAttention(nn.Module):
    """PSA on a (N, C, H, W) tensor, NCHW or channels_last; the output keeps the input's memory format.

    Parameters (the 1x1 convolution weights of the paper, stored as matrices):
      ch_wq (C,)        channel branch query, C -> 1
      ch_wv (C/2, C)    channel branch value, C -> C/2
      ch_wz (C, C/2)    channel branch up-projection, C/2 -> C
      ch_ln             LayerNorm over C (weight and bias start at 0: gate 1/2)
      sp_wq (C/2, C)    spatial branch query, C -> C/2
      sp_wv (C/2, C)    spatial branch value, C -> C/2 (starts at 0: gate 1/2)
    """

    def __init__(self, channels: int, layout: Layout = "parallel", eps: float = 1e-5):
        super().__init__()
        if layout not in ("parallel", "sequential"):
            raise ValueError(f"PSA layout must be parallel or sequential, not {layout!r}")
        if channels < 2:
            raise ValueError("PSA needs at least 2 channels")
        c, half = channels, channels // 2
        self.channels = c
        self.layout: Layout = layout
        self.ch_wq = nn.Parameter(torch.empty(c))
        self.ch_wv = nn.Parameter(torch.empty(half, c))
        self.ch_wz = nn.Parameter(torch.empty(c, half))
        self.ch_ln = nn.LayerNorm(c, eps=eps)
        self.sp_wq = nn.Parameter(torch.empty(half, c))
        self.sp_wv = nn.Parameter(torch.empty(half, c))
        # inference may overwrite x with the output (set by pose_hrnet, where x is a temporary of the block,
        # like the in-place ReLU before it); never when autograd records
        self.inplace = False
        self._packed_cache = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        c, half = self.channels, self.channels // 2
        _kaiming_uniform(self.ch_wq, c)
        _kaiming_uniform(self.ch_wv, c)
        _kaiming_uniform(self.ch_wz, half)
        _kaiming_uniform(self.sp_wq, c)
        # identity at init (module docstring)
        nn.init.zeros_(self.sp_wv)
        nn.init.zeros_(self.ch_ln.weight)
        nn.init.zeros_(self.ch_ln.bias)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, layout={self.layout}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = self._params()
        if psa_fused.usable(x) and not (torch.is_grad_enabled() and _records(x, params)):
            # inference on CPU: one fused kernel per block (psa_fused.py). Checked first and with as little
            # Python as possible: between two convolutions this code runs with cold caches, where each
            # attribute lookup and check costs several times what it costs in a loop.
            try:
                return psa_fused.psa_forward(
                    x, self._packed(params), self.layout == "sequential", self.ch_ln.eps, self.inplace
                )
            except psa_fused.KernelUnavailable:
                pass  # numba failed here: the eager form below, from now on
        if torch.is_autocast_enabled(x.device.type):
            # mixed precision: PSA runs in fp32 (softmax over thousands of pixels, LayerNorm of a few numbers);
            # the next conv casts back down. Its cost is in passes over memory, not in arithmetic.
            with torch.autocast(x.device.type, enabled=False):
                return self._compute(x.float(), params)
        return self._compute(x, params)

    def _compute(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if torch.is_grad_enabled() and _records(x, params):  # training: fused kernels on CPU, else eager
            return _PSAFunction.apply(x, *params, self.layout, self.ch_ln.eps)
        # inference elsewhere (CUDA, NCHW, no numba): the same computation without autograd.Function's bookkeeping
        return _psa_forward(x, *params, self.layout, self.ch_ln.eps)[0]

    def _params(self) -> tuple[torch.Tensor, ...]:
        # straight from the parameter dicts: nn.Module.__getattr__ costs ~0.5 µs a name
        own, ln = self._parameters, self._modules["ch_ln"]._parameters
        return own["ch_wq"], own["ch_wv"], own["ch_wz"], ln["weight"], ln["bias"], own["sp_wq"], own["sp_wv"]

    def _packed(self, params: tuple[torch.Tensor, ...]) -> np.ndarray:
        # repacked whenever a parameter is replaced or changed in place (optimizer step, load_state_dict, .to())
        if any(p.is_inference() for p in params):  # made under inference_mode: no version counter, no cache
            return psa_fused.pack(params)
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self._packed_cache is None or self._packed_cache[0] != key:
            self._packed_cache = (key, psa_fused.pack(params))
        return self._packed_cache[1]


def _records(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> bool:
    """Whether autograd would record PSA on x (the caller has checked that grad mode is on)."""
    return x.requires_grad or any(p.requires_grad for p in params)


# ------------------------------------------------------------------------------------------------------------------
# The computation, forward and backward by hand (see "Speed" in the module docstring). x is handled as an
# (N, HW, C) view; everything else is per-sample vectors (N, C) or per-pixel scalars (N, HW).


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, HW, C) view: contiguous for channels_last, a strided view for NCHW."""
    n, c, h, w = t.shape
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return t.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return t.reshape(n, c, h * w).transpose(1, 2)


def _unflat(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n, c, h, w = shape
    if t.is_contiguous():  # (N, HW, C) contiguous is channels_last
        return t.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return t.transpose(1, 2).reshape(n, c, h, w)


def _dot(flat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N, HW, C) · (N, C) -> (N, HW), as a (1, C) x (C, HW) product per sample.

    Measured on 2 CPU cores this form is 2-3x faster than multiply-and-sum and than the (HW, C) x (C, 1) bmm,
    and it needs no full-size temporary.
    """
    return torch.bmm(v.unsqueeze(1), flat.transpose(1, 2)).squeeze(1)


def _pool(weights: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """(N, HW) weights, (N, HW, C) -> (N, C) weighted sum over pixels (a long-K bmm, which is fast)."""
    return torch.bmm(weights.unsqueeze(1), flat).squeeze(1)


# ---- the per-sample vector math, forward and backward by hand (autograd's bookkeeping costs more than the math)
def _channel_gate(pooled, wv, wz, ln_w, ln_b, eps):
    """(N, C) pooled -> g_ch = sigmoid(LayerNorm(W_z W_v pooled)); returns g_ch and what backward needs."""
    z1 = pooled @ wv.t()
    z = z1 @ wz.t()
    y, mu, rstd = torch.native_layer_norm(z, (z.shape[1],), ln_w, ln_b, eps)
    return torch.sigmoid(y), (pooled, z1, z, mu, rstd)


def _channel_gate_backward(d_gch, g_ch, saved, wv, wz, ln_w):
    pooled, z1, z, mu, rstd = saved
    zn = (z - mu) * rstd
    dy = d_gch * g_ch * (1 - g_ch)
    d_lnw, d_lnb = (dy * zn).sum(dim=0), dy.sum(dim=0)
    dzn = dy * ln_w
    dz = rstd * (dzn - dzn.mean(dim=1, keepdim=True) - zn * (dzn * zn).mean(dim=1, keepdim=True))
    d_wz = dz.t() @ z1
    dz1 = dz @ wz
    return dz1 @ wv, dz1.t() @ pooled, d_wz, d_lnw, d_lnb  # d_pooled, d_wv, d_wz, d_lnw, d_lnb


def _spatial_vector(mean, wq, wv):
    """(N, C) mean -> u = W_v^T softmax(W_q mean), the vector whose dot with x_i is the spatial logit."""
    sm = torch.softmax(mean @ wq.t(), dim=1)
    return sm @ wv, sm


def _spatial_vector_backward(d_u, mean, sm, wq, wv):
    d_wv = sm.t() @ d_u
    ds = d_u @ wv.t()
    dt = sm * (ds - (sm * ds).sum(dim=1, keepdim=True))
    return dt @ wq, dt.t() @ mean, d_wv  # d_mean, d_wq, d_wv


def _full_gate(g_ch: torch.Tensor, g_sp: torch.Tensor, layout: Layout, like: torch.Tensor) -> torch.Tensor:
    """The (N, HW, C) factor that multiplies x: g_ch + g_sp (parallel) or 4·g_ch·g_sp (sequential), laid out
    in memory like `like` so the output keeps the input's format. Building it from the two small vectors and
    then multiplying x once is 20-25% faster than x·g_ch followed by an addcmul of x·g_sp (which reads x
    twice and the output twice)."""
    if like.is_contiguous():  # channels_last: C innermost
        a, b = g_ch.unsqueeze(1), g_sp.unsqueeze(2)
    else:  # NCHW: build it as (N, C, HW) and view it transposed
        a, b = g_ch.unsqueeze(2), g_sp.unsqueeze(1)
    gate = a + b if layout == "parallel" else (SEQUENTIAL_GAIN * a) * b
    return gate if like.is_contiguous() else gate.transpose(1, 2)


def _psa_forward(x, ch_wq, wv_ch, wz_ch, ln_w, ln_b, wq_sp, wv_sp, layout, eps):
    """PSA output and the tensors its backward needs; one full-size allocation (the output)."""
    flat = _flat(x)
    n, hw, c = flat.shape
    flat_t = flat.transpose(1, 2)  # (N, C, HW)
    mean = flat.sum(dim=1).mul_(1.0 / hw)
    attn3 = torch.softmax(torch.bmm(ch_wq.expand(n, 1, c), flat_t), dim=2)  # (N, 1, HW): softmax of w_q·x_i
    pooled = torch.bmm(attn3, flat).squeeze(1)  # (N, C)
    attn = attn3.squeeze(1)
    g_ch, ch_saved = _channel_gate(pooled, wv_ch, wz_ch, ln_w, ln_b, eps)
    if layout == "parallel":
        mean_sp = mean
        u, sm = _spatial_vector(mean_sp, wq_sp, wv_sp)
        v = u
    else:  # the spatial branch sees y = x·g_ch: mean(y) = g_ch·mean(x) and u·y_i = (u·g_ch)·x_i
        mean_sp = mean * g_ch
        u, sm = _spatial_vector(mean_sp, wq_sp, wv_sp)
        v = u * g_ch
    g_sp = torch.sigmoid(torch.bmm(v.unsqueeze(1), flat_t)).squeeze(1)  # (N, HW)
    out = _full_gate(g_ch, g_sp, layout, like=flat).mul_(flat)
    saved = (attn, g_ch, u, v, sm, g_sp, mean, mean_sp, *ch_saved)
    return _unflat(out, x.shape), saved


class _PSAFunction(torch.autograd.Function):
    """PSA with the gradient of x assembled in one buffer instead of five separate full-size gradients. On CPU
    (channels_last float32) the passes over x, forward and backward, run in psa_fused's kernels."""

    @staticmethod
    def forward(ctx, x, ch_wq, wv_ch, wz_ch, ln_w, ln_b, wq_sp, wv_sp, layout, eps):  # type: ignore[override]
        ctx.layout, ctx.eps, ctx.fused = layout, eps, psa_fused.usable(x)
        if ctx.fused:  # the packed parameters as of this forward go to the backward with the saved tensors
            ctx.packed = psa_fused.pack((ch_wq, wv_ch, wz_ch, ln_w, ln_b, wq_sp, wv_sp))
            try:
                out, saved = psa_fused.train_forward(x, ctx.packed, layout == "sequential", eps)
                ctx.save_for_backward(x, *saved)
                return out
            except psa_fused.KernelUnavailable:
                ctx.fused = False
        out, saved = _psa_forward(x, ch_wq, wv_ch, wz_ch, ln_w, ln_b, wq_sp, wv_sp, layout, eps)
        ctx.save_for_backward(x, ch_wq, wv_ch, wz_ch, ln_w, wq_sp, wv_sp, *saved)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        sequential = ctx.layout == "sequential"
        if ctx.fused:  # one kernel: both passes over x and the per-sample vector graph between them
            x, *saved = ctx.saved_tensors
            try:
                dx, d_params = psa_fused.backward(x, grad_out, ctx.packed, sequential, ctx.eps, tuple(saved))
                return dx, *psa_fused.unpack(d_params, x.shape[1]), None, None
            except psa_fused.KernelUnavailable:  # redo the forward eagerly for what the eager backward needs
                params = psa_fused.unpack(torch.from_numpy(ctx.packed), x.shape[1])
                _, eager = _psa_forward(x, *params, ctx.layout, ctx.eps)
                ch_wq, wv_ch, wz_ch, ln_w, _, wq_sp, wv_sp = params
                attn, g_ch, u, v, sm, g_sp, mean, mean_sp, *ch_saved = eager
        else:
            x, ch_wq, wv_ch, wz_ch, ln_w, wq_sp, wv_sp, attn, g_ch, u, v, sm, g_sp, mean, mean_sp, *ch_saved = (
                ctx.saved_tensors
            )
        d_gch, d_ls, d_v, d_flat = _backward_gates(x, grad_out, g_ch, g_sp, sequential)
        # the small per-sample graph
        if sequential:
            d_u = d_v * g_ch
            d_gch = d_gch + d_v * u
        else:
            d_u = d_v
        d_mean_sp, d_wq_sp, d_wv_sp = _spatial_vector_backward(d_u, mean_sp, sm, wq_sp, wv_sp)
        if sequential:
            d_mean = d_mean_sp * g_ch
            d_gch = d_gch + d_mean_sp * mean
        else:
            d_mean = d_mean_sp
        d_pooled, d_wv_ch, d_wz_ch, d_lnw, d_lnb = _channel_gate_backward(d_gch, g_ch, ch_saved, wv_ch, wz_ch, ln_w)
        dx, d_wq = _backward_input(x, d_flat, ch_wq, attn, d_ls, v, d_pooled, d_mean)
        return dx, d_wq, d_wv_ch, d_wz_ch, d_lnw, d_lnb, d_wq_sp, d_wv_sp, None, None


def _backward_gates(x, grad_out, g_ch, g_sp, sequential):
    """Through the gated product: d g_ch, the spatial logit's gradient d_ls, d v, and the direct term of d x
    (d_flat, the buffer the rest of d x is added into). Two full-size buffers: r = G·x, and d_flat."""
    flat, gflat = _flat(x), _flat(grad_out)
    r = gflat * flat
    if sequential:
        gch4 = SEQUENTIAL_GAIN * g_ch
        d_gch = SEQUENTIAL_GAIN * _pool(g_sp, r)
        d_gsp = _dot(r, gch4)
        d_flat = (gflat * gch4.unsqueeze(1)).mul_(g_sp.unsqueeze(2))
    else:
        d_gch = r.sum(dim=1)
        d_gsp = _dot(r, torch.ones_like(g_ch))
        d_flat = (gflat * g_ch.unsqueeze(1)).addcmul_(gflat, g_sp.unsqueeze(2))
    del r
    d_ls = d_gsp * g_sp * (1 - g_sp)  # (N, HW), the spatial logit is x_i·v
    return d_gch, d_ls, _pool(d_ls, flat), d_flat


def _backward_input(x, d_flat, ch_wq, attn, d_ls, v, d_pooled, d_mean):
    """The rest of d x, added into d_flat, and d w_q: pooled = attn^T x with attn = softmax(x·w_q)."""
    flat = _flat(x)
    d_attn = _dot(flat, d_pooled)
    d_lq = attn * (d_attn - (attn * d_attn).sum(dim=1, keepdim=True))
    d_wq = _pool(d_lq, flat).sum(dim=0)
    # the rank-1 terms of d x (in-place passes: a rank-4 bmm is far slower on CPU)
    d_flat.addcmul_(d_ls.unsqueeze(2), v.unsqueeze(1))
    d_flat.addcmul_(attn.unsqueeze(2), d_pooled.unsqueeze(1))
    d_flat.addcmul_(d_lq.unsqueeze(2), ch_wq)
    d_flat.add_(d_mean.unsqueeze(1), alpha=1.0 / flat.shape[1])
    return _unflat(d_flat, x.shape), d_wq
