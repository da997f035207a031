"""Polarized Self-Attention (Liu et al. 2021, arXiv 2107.00782), computed pool-first.

PSA gates x (N, C, H, W) twice, keeping full resolution along one axis while collapsing the other:
channel gate g_ch (N, C) = sigmoid(LN(W_z W_v Σ_i softmax_i(w_q·x_i) x_i)), one per channel;
spatial gate g_sp (N, H·W) = sigmoid(u·x_i) with u = W_vᵀ softmax(W_q mean_i(x_i)), one per pixel.
Parallel layout: x·(g_ch + g_sp). Sequential: the spatial branch sees x·g_ch and the output is 4·x·g_ch·g_sp.
The projections are bias-free 1x1 convolutions, so they commute with pooling: every full-size step is a pass
over x itself (two per-pixel dots, two poolings, the gated product), never a (C/2)-channel map.
At initialisation the block is the identity (both gates 1/2; the 4 of the sequential layout makes 1/4 one).

Two spellings of the same block. Eager mode (`forward`, `gates`): each full-size step is one library call
(batched matmuls, a mean), the gates in float32, one gate tensor multiplied in. Under torch.compile
(`forward_fused`, `gates_fused`): products and sums that the compiler fuses into a few kernels with no library
calls and no full-size gate or float32 copy (on the CPU backend a whole block compiles to one kernel forward and one
backward, against 8 + 11 for the matmul spelling; benchmarks/bench_psa_ops.py counts them). Both equal the
paper's naive form (tests/test_psa.py).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Layout = Literal["parallel", "sequential"]
SEQUENTIAL_GAIN = 4.0  # the sequential gates multiply and each starts at 1/2


class PolarizedSelfAttention(nn.Module):
    """PSA on (N, C, H, W), NCHW or channels_last; the output keeps the input's memory format and dtype.

    Parameters (the paper's 1x1 convolutions as matrices): ch_wq (C,), ch_wv (C/2, C), ch_wz (C, C/2), ch_ln
    (LayerNorm over C), sp_wq (C/2, C), sp_wv (C/2, C). ch_ln and sp_wv start at zero: each gate starts at 1/2.
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
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight, fan_in in ((self.ch_wq, self.channels), (self.ch_wv, self.channels),
                               (self.ch_wz, self.channels // 2), (self.sp_wq, self.channels)):  # fmt: skip
            nn.init.uniform_(weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))  # nn.Conv2d's default
        nn.init.zeros_(self.sp_wv)
        nn.init.zeros_(self.ch_ln.weight)
        nn.init.zeros_(self.ch_ln.bias)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, layout={self.layout}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self.forward_fused(x)
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # (N, HW, C): a view when x is channels_last
        if torch.is_autocast_enabled(x.device.type):  # the gates in float32: a softmax over thousands of pixels
            with torch.autocast(x.device.type, enabled=False):
                g_ch, g_sp = self.gates(pixels.float())
        else:
            g_ch, g_sp = self.gates(pixels)
        # the gate is built in the pixels' layout and multiplied in once; in place when autograd is off. In eager
        # mode this beats x·g_sp + x·g_ch: its backward shares one grad·x product between both gates.
        if self.layout == "parallel":
            gate = g_ch.unsqueeze(1) + g_sp.unsqueeze(2)
        else:
            gate = (SEQUENTIAL_GAIN * g_ch).unsqueeze(1) * g_sp.unsqueeze(2)
        gate = gate.to(x.dtype)
        out = (gate.mul_(pixels) if not torch.is_grad_enabled() else gate * pixels).view(n, h, w, c).permute(0, 3, 1, 2)
        return out.contiguous() if x.is_contiguous() else out  # NCHW in, NCHW out

    def forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The forward torch.compile traces: the gates as products and sums (`gates_fused`) read x in its own
        dtype and layout, and the gated product is x·g_sp + x·g_ch with each gate broadcast, never a full-size
        gate. The compiler fuses the upcast, the reductions, the small projections and the product into a few
        kernels with no library calls."""
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        with torch.autocast(x.device.type, enabled=False):
            g_ch, g_sp = self.gates_fused(pixels.to(torch.promote_types(x.dtype, torch.float32)))
        g_ch = g_ch.to(x.dtype).view(n, c, 1, 1)
        g_sp = g_sp.to(x.dtype).view(n, 1, h, w)
        if self.layout == "parallel":
            return x * g_sp + x * g_ch
        return x * (SEQUENTIAL_GAIN * g_ch) * g_sp

    def gates(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, HW, C) pixels -> the channel gate (N, C) and the spatial gate (N, HW), in eager mode.

        Every full-size step is one library call that reads the pixels in place, in whichever stride order they
        come: two batched vector-matrix products (the query logits, the spatial logits; written as a row vector
        times (C, HW) columns, which on this CPU runs several times faster than the matrix times a column), a
        weighted pooling, a mean.
        """
        n, _, c = pixels.shape
        columns = pixels.transpose(1, 2)  # (N, C, HW); a row vector times it is MKL's fast batched product
        # channel-only branch: the softmax over pixels of w_q·x_i pools x, then W_z W_v, LayerNorm, sigmoid
        attn = torch.softmax(torch.bmm(self.ch_wq.expand(n, 1, c), columns), dim=2)  # (N, 1, HW)
        pooled = torch.bmm(attn, pixels).squeeze(1)  # (N, C)
        g_ch = torch.sigmoid(self.ch_ln(pooled @ self.ch_wv.t() @ self.ch_wz.t()))
        # spatial-only branch: u = W_vᵀ softmax(W_q mean(y)) dotted with every y_i, where y = x (parallel) or
        # x·g_ch (sequential: mean(y) = g_ch·mean(x) and u·y_i = (u·g_ch)·x_i, so y is never built)
        mean = pixels.mean(dim=1)
        if self.layout == "sequential":
            mean = mean * g_ch
        u = torch.softmax(mean @ self.sp_wq.t(), dim=1) @ self.sp_wv
        if self.layout == "sequential":
            u = u * g_ch
        g_sp = torch.sigmoid(torch.bmm(u.unsqueeze(1), columns)).squeeze(1)  # (N, HW)
        return g_ch, g_sp

    def gates_fused(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`gates` as products and sums that torch.compile fuses: every matrix-vector product is written as a
        broadcast product summed over one axis, so the compiler emits a few fused reductions instead of a library
        call per product. In eager mode the same code would materialise each (N, HW, C) product, which is why
        `gates` exists."""
        attn = torch.softmax((pixels * self.ch_wq).sum(2, keepdim=True), dim=1)  # (N, HW, 1)
        pooled = (attn * pixels).sum(1)  # (N, C)
        hidden = (pooled.unsqueeze(1) * self.ch_wv).sum(2)  # (N, C/2)
        g_ch = torch.sigmoid(self.ch_ln((hidden.unsqueeze(1) * self.ch_wz).sum(2)))
        mean = pixels.mean(dim=1)
        if self.layout == "sequential":
            mean = mean * g_ch
        u = (torch.softmax((mean.unsqueeze(1) * self.sp_wq).sum(2), dim=1).unsqueeze(2) * self.sp_wv).sum(1)
        if self.layout == "sequential":
            u = u * g_ch
        g_sp = torch.sigmoid((pixels * u.unsqueeze(1)).sum(2))  # (N, HW)
        return g_ch, g_sp


# the state-dict entries of a PolarizedSelfAttention, whatever module holds it
TENSORS = ("ch_wq", "ch_wv", "ch_wz", "ch_ln.weight", "ch_ln.bias", "sp_wq", "sp_wv")


def is_psa_tensor(name: str) -> bool:
    """Whether a state-dict name (of a model or of a weights file) is a PSA tensor."""
    return name.split(" ", 1)[0].endswith(tuple(f".{t}" for t in TENSORS))


def psa_parameter_names(model: nn.Module) -> list[str]:
    """State-dict names of every PSA parameter and buffer of `model` (what a plain HRNet file cannot fill)."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, PolarizedSelfAttention):
            names += [f"{prefix}.{k}" for k in module.state_dict()]
    return names
