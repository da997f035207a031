"""PSA inference on CPU as one fused kernel per block (numba), for channels_last float32 tensors.

Why: in eager PyTorch a PSA block is ~20 operator calls, each a pass over the whole batch (mean, query logits,
softmax pooling, spatial logits, gate, product). This kernel takes one sample at a time, whose tile (at most a
few hundred KB: H·W pixels × C channels) stays in the core's cache, and makes three passes over it there:

1. per-pixel channel-query logits and the channel sums (for the mean);
2. the softmax-weighted pooling of x (the channel branch's pooled vector);
3. per-pixel spatial logits, then the gated output ``x_i·(g_ch + g_sp,i)`` (parallel) or ``4·x_i·g_ch·g_sp,i``
   (sequential), written once.

Between passes 2 and 3 sit the per-sample vector products of ``psa._channel_gate`` and ``psa._spatial_vector``.
Samples run in parallel over numba's threads (as many as torch uses). What made it fast, measured per piece:

* the reductions over pixels take four pixels per iteration: with 16-channel rows a one-pixel loop body is too
  short for the compiler's vector loops (2-3x slower); the gated output is the exception (one pixel is faster);
* exp runs in a vectorisable float32 routine (``_exp_``): libm's scalar exp, two per pixel, cost more than all
  the passes over x together;
* in the network PSA writes its output over its input (``inplace``, set by ``pose_hrnet``) and reaches the kernel
  through as little Python as possible: between two convolutions the caches are cold and every attribute lookup
  costs several times its cost in a loop; the seven parameters travel as one packed array.

In hrnet_w18_small at batch 32 this took the PSA blocks from ~6 ms to ~3.8 ms of a 70-75 ms forward
(``benchmarks/psa_in_network.py``).

Equal to the eager forward to float32 rounding (``tests/test_psa_fused.py``). Compiled on first use and cached
next to this file (``cache=True``); where numba is missing or the tensor is not a contiguous channels_last float32
CPU tensor, ``psa.py`` uses its eager forward instead.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator

import numpy as np
import torch

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a declared dependency; eager PSA still works without it
    numba = None

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
        """g_ch = sigmoid(LayerNorm(W_z W_v pooled)), as psa._channel_gate."""
        z = _matvec(wz, _matvec(wv, pooled))
        c = z.shape[0]
        mu = z.sum() / c
        var = np.float32(0.0)
        for k in range(c):
            var += (z[k] - mu) * (z[k] - mu)
        rstd = np.float32(1.0 / math.sqrt(var / c + eps))
        for k in range(c):
            y = (z[k] - mu) * rstd * ln_w[k] + ln_b[k]
            g_ch[k] = 1.0 / (1.0 + math.exp(-y))

    @njit(**_JIT)
    def _spatial_vector(mean, wq, wv):
        """u = W_vᵀ softmax(W_q mean), as psa._spatial_vector."""
        t = _matvec(wq, mean)
        t = np.exp(t - t.max())
        t /= t.sum()
        u = np.zeros(wv.shape[1], np.float32)
        for r in range(wv.shape[0]):
            for k in range(wv.shape[1]):
                u[k] += t[r] * wv[r, k]
        return u

    @njit(parallel=True, **_JIT)
    def _psa_kernel(x4, out4, packed, sequential, eps):
        n, h, w, c = x4.shape  # (N, H, W, C) C-contiguous: a channels_last tensor's memory
        hw = h * w
        x, out = x4.reshape(n, hw, c), out4.reshape(n, hw, c)
        half = c // 2
        o = 0
        wq, o = packed[o : o + c], o + c
        wv, o = packed[o : o + half * c].reshape(half, c), o + half * c
        wz, o = packed[o : o + c * half].reshape(c, half), o + c * half
        ln_w, o = packed[o : o + c], o + c
        ln_b, o = packed[o : o + c], o + c
        wq_sp, o = packed[o : o + half * c].reshape(half, c), o + half * c
        wv_sp = packed[o : o + half * c].reshape(half, c)
        for s in prange(n):
            xn, on = x[s], out[s]
            buf = np.empty(hw, np.float32)
            scale = np.empty(hw, np.int32)
            sums = np.empty(c, np.float32)
            m = _logits_and_sums(xn, wq, buf, sums)
            buf -= m  # softmax weights of the channel-query logits
            _exp_(buf, scale)
            total = buf.sum()
            pooled = np.empty(c, np.float32)
            _weighted_pool(xn, buf, pooled)
            pooled *= np.float32(1.0) / total
            mean = sums * np.float32(1.0 / hw)
            g_ch = np.empty(c, np.float32)
            _channel_gate(pooled, wv, wz, ln_w, ln_b, eps, g_ch)
            if sequential:  # the spatial branch sees x·g_ch (see psa._psa_forward)
                v = _spatial_vector(mean * g_ch, wq_sp, wv_sp) * g_ch
                g_ch *= np.float32(4.0)
            else:
                v = _spatial_vector(mean, wq_sp, wv_sp)
            _dots(xn, v, buf)
            _sigmoid_(buf, scale)
            _gated(xn, on, g_ch, buf, sequential)


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
    with torch.no_grad():
        return torch.cat([p.detach().float().reshape(-1) for p in params]).numpy()


def psa_forward(
    x: torch.Tensor, packed: np.ndarray, sequential: bool, eps: float, inplace: bool = False
) -> torch.Tensor:
    """PSA of a channels_last float32 CPU tensor x (N, C, H, W) with `pack`ed parameters. Returns a
    channels_last tensor: x itself, overwritten, when `inplace` (no allocation, and the output lines are
    already in cache), else a new one."""
    threads = torch.get_num_threads()  # numba's setting is per calling thread, like torch's
    if getattr(_thread, "threads", None) != threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        _thread.threads = threads
    # numpy's views are cheaper than torch's permute + reshape; x may require grad under no_grad
    xa = (x.detach() if x.requires_grad else x).numpy().transpose(0, 2, 3, 1)
    if inplace:
        _psa_kernel(xa, xa, packed, sequential, eps)
        return x
    out = torch.empty_like(x, memory_format=torch.channels_last)
    _psa_kernel(xa, out.numpy().transpose(0, 2, 3, 1), packed, sequential, eps)
    return out


_thread = threading.local()


def warm_up() -> bool:
    """Compile the kernel (or load it from numba's cache) now rather than on the first forward: about 7 s the
    first time on a 2-core machine, 0.5 s from the cache. `make setup` runs it. Returns whether numba is there."""
    if numba is None:
        return False
    from cattlepose.models.psa import PolarizedSelfAttention

    block = PolarizedSelfAttention(4).eval()
    with torch.inference_mode():
        block(torch.zeros(1, 4, 2, 2).contiguous(memory_format=torch.channels_last))
    return True


_background: list[threading.Thread] = []


def warm_up_in_background() -> None:
    """Start `warm_up` in a daemon thread (once per process). Loading numba and the cached kernel takes ~0.5 s of
    mostly Python; `cattlepose predict` overlaps it with loading checkpoints and decoding the first images, so a
    short prediction run does not pay for the kernel before it gains from it. A forward that reaches the kernel
    first simply waits on numba's compile lock."""
    if numba is None or not _enabled[0] or _background:
        return
    thread = threading.Thread(target=warm_up, name="psa-kernel-warm-up", daemon=True)
    _background.append(thread)
    thread.start()
