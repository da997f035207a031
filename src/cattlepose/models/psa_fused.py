"""PSA on CPU in fused kernels (numba), forward and backward, for channels_last float32 tensors.

Why: in eager PyTorch a PSA block is ~20 operator calls forward and more backward, each a pass over the whole
batch. These kernels take one sample at a time, whose tile (H·W pixels × C channels, tens to hundreds of KB)
stays in the core's cache, and make three passes over it there:

forward (``_psa_kernel``)
  1. per-pixel channel-query logits and the channel sums (for the mean);
  2. the softmax-weighted pooling of x (the channel branch's pooled vector);
  then the per-sample vector math of ``psa._channel_gate`` and ``psa._spatial_vector``;
  3. per-pixel spatial logits, then the gated output ``x_i·(g_ch + g_sp,i)`` (parallel) or
     ``4·x_i·g_ch·g_sp,i`` (sequential), written once. For training it also keeps the softmax weights and the
     spatial gate per pixel and the pooled vector and the mean per channel.

backward (``_psa_backward``), from those and the incoming gradient
  1. through the gated product: d g_ch, the spatial logits' gradient, d v;
  then the per-sample vector graph backwards (recomputed from the pooled vector and the mean) and each
  sample's parameter gradients;
  2. the softmax pooling's gradient; 3. d x, written once.

Samples run in parallel over numba's threads (as many as torch uses). What made them fast, measured per piece:

* the reductions over pixels take four pixels per iteration: with 16-channel rows a one-pixel loop body is too
  short for the compiler's vector loops (2-3x slower); the gated output is the exception (one pixel is faster);
* exp runs in a vectorisable float32 routine (``_exp_``): libm's scalar exp, two per pixel, cost more than all
  the passes over x together;
* in the network PSA writes its inference output over its input (``inplace``, set by ``pose_hrnet``) and reaches
  the kernel through as little Python as possible: between two convolutions the caches are cold and every
  attribute lookup costs several times its cost in a loop; the seven parameters travel as one packed array,
  and their gradients come back as one.

In hrnet_w18_small at batch 32 this took PSA's time per training step from 6.4 + 13.0 ms (forward + backward)
to 4.0 + 6.3 ms, and per folded inference forward from ~6 to ~3.5 ms (``benchmarks/psa_in_network.py``).

Equal to the eager form to float32 rounding, gradients included (``tests/test_psa_fused.py``). Compiled on first
use and cached next to this file (``cache=True``; ``make setup`` does it); where numba is missing or the tensor
is not a contiguous channels_last float32 CPU tensor, ``psa.py`` uses its eager form instead.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a declared dependency; eager PSA still works without it
    numba = None

# (numba's default error model stays: without its zero-division checks the sigmoid's divisions vectorise into
# approximate reciprocals, and PSA at initialisation would no longer be exactly the identity)
_JIT = {"fastmath": True, "boundscheck": False, "cache": True, "nogil": True}


def available() -> bool:
    return numba is not None


if numba is not None:

    @njit(**_JIT)
    def _logits_and_sums(xn, wq, logits, sums):
        """logits[i] = wq·x_i and sums[c] = Σ_i x_ic, returns max_i logits[i]."""
        hw, c = xn.shape
        h4 = hw - hw % 4
        sums[:] = 0.0
        for i in range(0, h4, 4):
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for k in range(c):
                a, b, d, e = xn[i, k], xn[i + 1, k], xn[i + 2, k], xn[i + 3, k]
                w = wq[k]
                s0 += w * a
                s1 += w * b
                s2 += w * d
                s3 += w * e
                sums[k] += (a + b) + (d + e)
            logits[i], logits[i + 1], logits[i + 2], logits[i + 3] = s0, s1, s2, s3
        for i in range(h4, hw):
            s = np.float32(0.0)
            for k in range(c):
                s += wq[k] * xn[i, k]
                sums[k] += xn[i, k]
            logits[i] = s
        m = logits[0]
        for i in range(1, hw):
            m = max(m, logits[i])
        return m

    @njit(**_JIT)
    def _weighted_pool(xn, weights, pooled):
        """pooled[c] = Σ_i weights[i]·x_ic."""
        hw, c = xn.shape
        h4 = hw - hw % 4
        pooled[:] = 0.0
        for i in range(0, h4, 4):
            w0, w1, w2, w3 = weights[i], weights[i + 1], weights[i + 2], weights[i + 3]
            for k in range(c):
                pooled[k] += (w0 * xn[i, k] + w1 * xn[i + 1, k]) + (w2 * xn[i + 2, k] + w3 * xn[i + 3, k])
        for i in range(h4, hw):
            w = weights[i]
            for k in range(c):
                pooled[k] += w * xn[i, k]

    @njit(**_JIT)
    def _dots(xn, v, out):
        """out[i] = v·x_i."""
        hw, c = xn.shape
        h4 = hw - hw % 4
        for i in range(0, h4, 4):
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for k in range(c):
                w = v[k]
                s0 += w * xn[i, k]
                s1 += w * xn[i + 1, k]
                s2 += w * xn[i + 2, k]
                s3 += w * xn[i + 3, k]
            out[i], out[i + 1], out[i + 2], out[i + 3] = s0, s1, s2, s3
        for i in range(h4, hw):
            s = np.float32(0.0)
            for k in range(c):
                s += v[k] * xn[i, k]
            out[i] = s

    @njit(**_JIT)
    def _gated(xn, on, g_ch, g_sp, sequential):
        """on[i, c] = x_ic·(g_ch[c] + g_sp[i]), or x_ic·g_ch[c]·g_sp[i] when sequential (g_ch carries the 4).
        One pixel per iteration: here the four-pixel body measured 2x slower."""
        for i in range(xn.shape[0]):
            g, xr, orow = g_sp[i], xn[i], on[i]
            if sequential:
                for k in range(xr.shape[0]):
                    orow[k] = xr[k] * (g_ch[k] * g)
            else:
                for k in range(xr.shape[0]):
                    orow[k] = xr[k] * (g_ch[k] + g)

    @njit(**_JIT)
    def _exp_(v, scale):
        """v = exp(v) in place, float32, in loops the compiler vectorises (libm's scalar exp was 15x slower and
        the largest cost of the kernel). exp(t) = 2^k · e^r with k = round(t / ln 2) and r = t - k·ln 2 taken
        in two parts (Cody-Waite, so r stays exact to float32 for large k), |r| <= ln 2 / 2; e^r by its Taylor
        series to degree 7 (truncation < 1e-8); 2^k built from its IEEE bits in `scale`, an int32 scratch array
        of v's length. Arguments are clamped to ±87 (float32's range). Relative error < 3e-7."""
        for i in range(v.shape[0]):
            t = min(max(v[i], np.float32(-87.0)), np.float32(87.0))
            k = np.floor(t * np.float32(1.4426950408889634) + np.float32(0.5))
            r = (t - k * np.float32(0.693359375)) + k * np.float32(2.12194440e-4)
            p = np.float32(1.0 / 5040.0)
            p = p * r + np.float32(1.0 / 720.0)
            p = p * r + np.float32(1.0 / 120.0)
            p = p * r + np.float32(1.0 / 24.0)
            p = p * r + np.float32(1.0 / 6.0)
            p = p * r + np.float32(0.5)
            p = p * r + np.float32(1.0)
            v[i] = p * r + np.float32(1.0)
            scale[i] = (np.int32(k) + np.int32(127)) << 23
        factor = scale.view(np.float32)
        for i in range(v.shape[0]):
            v[i] *= factor[i]

    @njit(**_JIT)
    def _sigmoid_(v, scale):
        """v = 1 / (1 + exp(-v)) in place."""
        for i in range(v.shape[0]):
            v[i] = -v[i]
        _exp_(v, scale)
        for i in range(v.shape[0]):
            v[i] = np.float32(1.0) / (np.float32(1.0) + v[i])

    @njit(**_JIT)
    def _matvec(a, v):
        """a @ v in float32 without BLAS (tiny: at most a few hundred × a few hundred)."""
        out = np.zeros(a.shape[0], np.float32)
        for r in range(a.shape[0]):
            s = np.float32(0.0)
            for k in range(a.shape[1]):
                s += a[r, k] * v[k]
            out[r] = s
        return out

    @njit(**_JIT)
    def _channel_gate(pooled, wv, wz, ln_w, ln_b, eps, g_ch):
        """g_ch = sigmoid(LayerNorm(W_z W_v pooled)), as psa._channel_gate; returns z1 = W_v pooled, the
        normalised zn and 1/std for the backward."""
        z1 = _matvec(wv, pooled)
        z = _matvec(wz, z1)
        c = z.shape[0]
        mu = z.sum() / c
        var = np.float32(0.0)
        for k in range(c):
            var += (z[k] - mu) * (z[k] - mu)
        rstd = np.float32(1.0 / math.sqrt(var / c + eps))
        for k in range(c):
            z[k] = (z[k] - mu) * rstd
            y = z[k] * ln_w[k] + ln_b[k]
            g_ch[k] = 1.0 / (1.0 + math.exp(-y))
        return z1, z, rstd

    @njit(**_JIT)
    def _spatial_vector(mean, wq, wv):
        """u = W_vᵀ softmax(W_q mean), as psa._spatial_vector; returns u and the softmax."""
        t = _matvec(wq, mean)
        t = np.exp(t - t.max())
        t /= t.sum()
        u = np.zeros(wv.shape[1], np.float32)
        for r in range(wv.shape[0]):
            for k in range(wv.shape[1]):
                u[k] += t[r] * wv[r, k]
        return u, t

    @njit(**_JIT)
    def _unpack(packed, c):
        """The seven parameter arrays from `pack`'s flat array, as views."""
        half = c // 2
        o = 0
        wq, o = packed[o : o + c], o + c
        wv, o = packed[o : o + half * c].reshape(half, c), o + half * c
        wz, o = packed[o : o + c * half].reshape(c, half), o + c * half
        ln_w, o = packed[o : o + c], o + c
        ln_b, o = packed[o : o + c], o + c
        wq_sp, o = packed[o : o + half * c].reshape(half, c), o + half * c
        return wq, wv, wz, ln_w, ln_b, wq_sp, packed[o : o + half * c].reshape(half, c)

    @njit(parallel=True, **_JIT)
    def _psa_kernel(x4, out4, packed, sequential, eps, save, attn, g_sp, pooled_out, mean_out):
        """The forward. With `save` (training) it also writes what the backward needs: the softmax weights
        attn and the spatial gate g_sp (N, HW), the pooled vector and the mean (N, C)."""
        n, h, w, c = x4.shape  # (N, H, W, C) C-contiguous: a channels_last tensor's memory
        hw = h * w
        x, out = x4.reshape(n, hw, c), out4.reshape(n, hw, c)
        wq, wv, wz, ln_w, ln_b, wq_sp, wv_sp = _unpack(packed, c)
        for s in prange(n):
            xn, on = x[s], out[s]
            a = attn[s] if save else np.empty(hw, np.float32)
            gs = g_sp[s] if save else a
            scale = np.empty(hw, np.int32)
            sums = np.empty(c, np.float32)
            m = _logits_and_sums(xn, wq, a, sums)
            a -= m  # softmax weights of the channel-query logits
            _exp_(a, scale)
            inv_total = np.float32(1.0) / a.sum()
            pooled = pooled_out[s] if save else np.empty(c, np.float32)
            _weighted_pool(xn, a, pooled)
            pooled *= inv_total
            mean = mean_out[s] if save else np.empty(c, np.float32)
            for k in range(c):
                mean[k] = sums[k] * np.float32(1.0 / hw)
            if save:
                a *= inv_total
            g_ch = np.empty(c, np.float32)
            _channel_gate(pooled, wv, wz, ln_w, ln_b, eps, g_ch)
            if sequential:  # the spatial branch sees x·g_ch (see psa._psa_forward)
                v = _spatial_vector(mean * g_ch, wq_sp, wv_sp)[0] * g_ch
                g_ch *= np.float32(4.0)
            else:
                v = _spatial_vector(mean, wq_sp, wv_sp)[0]
            _dots(xn, v, gs)
            _sigmoid_(gs, scale)
            _gated(xn, on, g_ch, gs, sequential)

    @njit(**_JIT)
    def _backward_gates(xn, dn, g_ch, gs, sequential, d_gch, d_ls, d_v):
        """Through the gated product, one sample: d_gch (C) = Σ_i dout_i·x_i (parallel) or
        4·Σ_i g_sp,i·dout_i·x_i (sequential); d_ls (HW) = d g_sp,i · g_sp,i (1 - g_sp,i), the spatial logit's
        gradient, with d g_sp,i = dout_i·x_i (parallel) or 4·Σ_c g_ch,c dout_ic x_ic (sequential); and
        d_v (C) = Σ_i d_ls,i x_i."""
        hw, c = xn.shape
        weight = np.empty(c, np.float32)  # what multiplies dout·x in the spatial gate's gradient
        for k in range(c):
            weight[k] = np.float32(4.0) * g_ch[k] if sequential else np.float32(1.0)
        d_gch[:] = 0.0
        for i in range(hw):
            xr, dr = xn[i], dn[i]
            t = np.float32(0.0)
            if sequential:
                gi = np.float32(4.0) * gs[i]
                for k in range(c):
                    r = dr[k] * xr[k]
                    d_gch[k] += gi * r
                    t += weight[k] * r
            else:
                for k in range(c):
                    r = dr[k] * xr[k]
                    d_gch[k] += r
                    t += r
            d_ls[i] = t * gs[i] * (np.float32(1.0) - gs[i])
        _weighted_pool(xn, d_ls, d_v)

    @njit(**_JIT)
    def _backward_vectors(d_gch, d_v, pooled, mean, packed, sequential, forward, dpar):
        """The per-sample vector graph between the two passes, as psa._spatial_vector_backward and
        psa._channel_gate_backward: writes this sample's parameter gradients (all but w_q's) into dpar, laid out
        as `pack` lays out the parameters, and returns d_pooled and d_mean. `forward` holds the sample's vectors
        from the forward (g_ch, u, sm, mean_sp, z1, zn, rstd)."""
        g_ch, u, sm, mean_sp, z1, zn, rstd = forward
        g = g_ch
        c, half = pooled.shape[0], sm.shape[0]
        _, wv, wz, ln_w, _, wq_sp, wv_sp = _unpack(packed, c)
        _, dwv, dwz, dlnw, dlnb, dwq_sp, dwv_sp = _unpack(dpar, c)
        d_u = d_v * g_ch if sequential else d_v.copy()
        if sequential:
            for k in range(c):
                d_gch[k] += d_v[k] * u[k]
        # spatial branch: u = W_vᵀ sm, sm = softmax(W_q mean_sp)
        ds = _matvec(wv_sp, d_u)
        dot = np.float32(0.0)
        for h in range(half):
            dot += sm[h] * ds[h]
        for h in range(half):
            dt = sm[h] * (ds[h] - dot)
            for k in range(c):
                dwv_sp[h, k] = sm[h] * d_u[k]
                dwq_sp[h, k] = dt * mean_sp[k]
            ds[h] = dt
        d_mean = np.zeros(c, np.float32)
        for h in range(half):
            for k in range(c):
                d_mean[k] += ds[h] * wq_sp[h, k]
        if sequential:  # mean_sp = mean·g_ch
            for k in range(c):
                d_gch[k] += d_mean[k] * mean[k]
                d_mean[k] *= g_ch[k]
        # channel branch: g_ch = sigmoid(LayerNorm(W_z W_v pooled))
        dzn = np.empty(c, np.float32)
        m1 = np.float32(0.0)
        m2 = np.float32(0.0)
        for k in range(c):
            dy = d_gch[k] * g[k] * (np.float32(1.0) - g[k])
            dlnw[k] = dy * zn[k]
            dlnb[k] = dy
            dzn[k] = dy * ln_w[k]
            m1 += dzn[k]
            m2 += dzn[k] * zn[k]
        m1 /= c
        m2 /= c
        dz1 = np.zeros(half, np.float32)
        for k in range(c):
            dz = rstd * (dzn[k] - m1 - zn[k] * m2)
            for h in range(half):
                dwz[k, h] = dz * z1[h]
                dz1[h] += dz * wz[k, h]
        d_pooled = np.zeros(c, np.float32)
        for h in range(half):
            for k in range(c):
                dwv[h, k] = dz1[h] * pooled[k]
                d_pooled[k] += dz1[h] * wv[h, k]
        return d_pooled, d_mean

    @njit(**_JIT)
    def _backward_input(xn, dn, dxn, wq, gate, gs, a, dl, v, d_pooled, d_mean, sequential, dwq):
        """The gradient of x for one sample, and d w_q. pooled = Σ_i a_i x_i with a = softmax(w_q·x):
        d a_i = d_pooled·x_i, the logit's gradient d_lq,i = a_i (d a_i - Σ_j a_j d a_j), d w_q = Σ_i d_lq,i x_i,
        and dx_i = dout_i·G_i + d_ls,i v + a_i d_pooled + d_lq,i w_q + d_mean / HW, where G_i, the output gate,
        is gate + g_sp,i (parallel) or gate·g_sp,i (sequential; gate = 4·g_ch)."""
        hw, c = xn.shape
        d_lq = np.empty(hw, np.float32)
        _dots(xn, d_pooled, d_lq)  # d a
        total = np.float32(0.0)
        for i in range(hw):
            total += a[i] * d_lq[i]
        for i in range(hw):
            d_lq[i] = a[i] * (d_lq[i] - total)
        _weighted_pool(xn, d_lq, dwq)
        const = d_mean * np.float32(1.0 / hw)
        for i in range(hw):
            gi, li, ai, qi = gs[i], dl[i], a[i], d_lq[i]
            dr, orow = dn[i], dxn[i]
            if sequential:
                for k in range(c):
                    orow[k] = dr[k] * (gate[k] * gi) + li * v[k] + ai * d_pooled[k] + qi * wq[k] + const[k]
            else:
                for k in range(c):
                    orow[k] = dr[k] * (gate[k] + gi) + li * v[k] + ai * d_pooled[k] + qi * wq[k] + const[k]

    @njit(parallel=True, **_JIT)
    def _psa_backward(x4, d4, dx4, packed, sequential, eps, attn, g_sp, pooled, mean, dpar):
        """The whole backward, one sample per iteration: the per-sample vectors are recomputed from the saved
        pooled vector and mean; dpar (N, len(packed)) receives each sample's parameter gradients."""
        n, h, w, c = x4.shape
        hw = h * w
        x, dout, dx = x4.reshape(n, hw, c), d4.reshape(n, hw, c), dx4.reshape(n, hw, c)
        wq, wv, wz, ln_w, ln_b, wq_sp, wv_sp = _unpack(packed, c)
        for s in prange(n):
            g_ch = np.empty(c, np.float32)
            z1, zn, rstd = _channel_gate(pooled[s], wv, wz, ln_w, ln_b, eps, g_ch)
            mean_sp = mean[s] * g_ch if sequential else mean[s].copy()
            u, sm = _spatial_vector(mean_sp, wq_sp, wv_sp)
            v = u * g_ch if sequential else u
            d_gch, d_v = np.empty(c, np.float32), np.empty(c, np.float32)
            d_ls = np.empty(hw, np.float32)
            _backward_gates(x[s], dout[s], g_ch, g_sp[s], sequential, d_gch, d_ls, d_v)
            forward = (g_ch, u, sm, mean_sp, z1, zn, rstd)
            d_pooled, d_mean = _backward_vectors(d_gch, d_v, pooled[s], mean[s], packed, sequential, forward, dpar[s])
            gate = g_ch * np.float32(4.0) if sequential else g_ch
            a, gs, dwq = attn[s], g_sp[s], dpar[s, :c]
            _backward_input(x[s], dout[s], dx[s], wq, gate, gs, a, d_ls, v, d_pooled, d_mean, sequential, dwq)


# CATTLEPOSE_FUSED_PSA=0 turns the kernel off process-wide (eager PSA everywhere), e.g. to rule it out when
# debugging or on a platform where numba misbehaves
_enabled = [os.environ.get("CATTLEPOSE_FUSED_PSA", "1") != "0"]


@contextlib.contextmanager
def enabled(on: bool) -> Iterator[None]:
    """Turn the fused kernel on or off inside the block (benchmarks and tests compare it with eager PSA)."""
    before, _enabled[0] = _enabled[0], on
    try:
        yield
    finally:
        _enabled[0] = before


def usable(x: torch.Tensor) -> bool:
    """Whether the fused kernel can run on x: numba present, CPU float32, contiguous channels_last, not traced."""
    return (
        _enabled[0]
        and numba is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.numel() > 0
        and x.is_contiguous(memory_format=torch.channels_last)
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
    )


def pack(params: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The seven PSA parameters (ch_wq, ch_wv, ch_wz, ln weight, ln bias, sp_wq, sp_wv) as one float32 array,
    the order the kernel reads them in: one argument instead of seven (numba's per-argument dispatch cost
    is a measurable part of a 50 µs block)."""
    return np.concatenate([p.detach().numpy().reshape(-1) for p in params], dtype=np.float32)


def psa_forward(
    x: torch.Tensor, packed: np.ndarray, sequential: bool, eps: float, inplace: bool = False
) -> torch.Tensor:
    """PSA of a channels_last float32 CPU tensor x (N, C, H, W) with `pack`ed parameters. Returns a
    channels_last tensor: x itself, overwritten, when `inplace` (no allocation, and the output lines are
    already in cache), else a new one."""
    _set_threads()
    xa = _nhwc(x)  # numpy's views are cheaper than torch's permute + reshape
    if inplace:
        _run(_psa_kernel, xa, xa, packed, sequential, eps, False, _NONE, _NONE, _NONE, _NONE)
        return x
    out = torch.empty_like(x, memory_format=torch.channels_last)
    _run(_psa_kernel, xa, _nhwc(out), packed, sequential, eps, False, _NONE, _NONE, _NONE, _NONE)
    return out


_NONE = np.empty((1, 1), np.float32)  # stands for the arrays the inference forward does not write


class KernelUnavailable(RuntimeError):
    """The kernels could not be compiled or run here; they are now off and PSA runs in eager PyTorch."""


def _run(kernel, *args) -> None:
    """Call a kernel; if numba fails (compiling for an unexpected platform or array type), switch the kernels
    off for the process with one warning and raise KernelUnavailable, which psa.py answers with the eager form."""
    try:
        kernel(*args)
    except Exception as e:  # numba's errors at compile time; the compiled loops themselves raise nothing
        _enabled[0] = False
        warnings.warn(f"PSA's numba kernels are off ({type(e).__name__}: {e}); PSA runs in eager PyTorch", stacklevel=3)
        raise KernelUnavailable(str(e)) from e


def _nhwc(t: torch.Tensor) -> np.ndarray:
    """The (N, H, W, C) numpy view of a channels_last tensor's memory."""
    return (t.detach() if t.requires_grad else t).numpy().transpose(0, 2, 3, 1)


def _set_threads() -> None:
    threads = torch.get_num_threads()  # numba's setting is per calling thread, like torch's
    if getattr(_thread, "threads", None) != threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        # The first call in a process starts numba's OpenMP workers, and that sets the calling thread's OpenMP
        # thread count, torch's too, to numba's pool size (measured: OMP_NUM_THREADS=1, then 2 after the first
        # kernel; convolutions then sum in another order and two DDP processes oversubscribe): put it back.
        torch.set_num_threads(threads)
        _thread.threads = threads


def train_forward(
    x: torch.Tensor, packed: np.ndarray, sequential: bool, eps: float
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The forward for training: out, and what `backward` needs: (attn, g_sp) per pixel, (pooled, mean) per
    channel, one buffer split in four."""
    _set_threads()
    n, c, h, w = x.shape
    out = torch.empty_like(x, memory_format=torch.channels_last)
    buf = x.new_empty(2 * n * (h * w + c))
    parts = buf.split((n * h * w, n * h * w, n * c, n * c))
    saved = tuple(t.view(n, -1) for t in parts)
    _run(_psa_kernel, _nhwc(x), _nhwc(out), packed, sequential, eps, True, *(t.numpy() for t in saved))
    return out, saved


def backward(
    x: torch.Tensor,
    grad_out: torch.Tensor,
    packed: np.ndarray,
    sequential: bool,
    eps: float,
    saved: tuple[torch.Tensor, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, d_params) for `train_forward`'s saved (attn, g_sp, pooled, mean); d_params is laid out as `pack` lays
    out the parameters (summed over the batch). grad_out is made channels_last if it is not."""
    _set_threads()
    dx = torch.empty_like(x, memory_format=torch.channels_last)
    dpar = x.new_empty(x.shape[0], packed.shape[0])
    d = grad_out.contiguous(memory_format=torch.channels_last)
    arrays = [t.numpy() for t in saved]
    _run(_psa_backward, _nhwc(x), _nhwc(d), _nhwc(dx), packed, sequential, eps, *arrays, dpar.numpy())
    return dx, dpar.sum(dim=0)


def unpack(flat: torch.Tensor, channels: int) -> tuple[torch.Tensor, ...]:
    """`pack`'s layout back into the seven parameter shapes (views of flat)."""
    c, half = channels, channels // 2
    sizes = (c, half * c, c * half, c, c, half * c, half * c)
    shapes = ((c,), (half, c), (c, half), (c,), (c,), (half, c), (half, c))
    return tuple(part.view(shape) for part, shape in zip(flat.split(sizes), shapes, strict=True))


_thread = threading.local()


def warm_up(training: bool = True) -> bool:
    """Compile the kernels (or load them from numba's cache) now rather than in the first forward and backward:
    about 15 s the first time on a 2-core machine, under a second from the cache. `make setup` runs it.
    Returns whether numba is there."""
    if numba is None:
        return False
    from cattlepose.models.psa import PolarizedSelfAttention

    block = PolarizedSelfAttention(4).eval()
    x = torch.zeros(1, 4, 2, 2).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        block(x)
    if training:
        block.train()(x.requires_grad_()).sum().backward()
    return _enabled[0]  # False when compiling failed (a warning says why; PSA then runs eager)


_background: list[threading.Thread] = []


def warm_up_in_background() -> None:
    """Start `warm_up` in a daemon thread (once per process). Loading numba and the cached kernel takes ~0.5 s of
    mostly Python; `cattlepose predict` overlaps it with loading checkpoints and decoding the first images, so a
    short prediction run does not pay for the kernel before it gains from it. A forward that reaches the kernel
    first simply waits on numba's compile lock."""
    if numba is None or not _enabled[0] or _background:
        return
    thread = threading.Thread(target=warm_up, args=(False,), name="psa-kernel-warm-up", daemon=True)
    _background.append(thread)
    thread.start()
