"""The PSA formulation of cattlepose 285f152 (before issue 38), kept only as the "before" of
benchmarks/bench_psa_ops.py. The package never imports it."""

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
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # (N, HW, C): a view when x is channels_last
        if torch.is_autocast_enabled(x.device.type):  # the gates in float32: a softmax over thousands of pixels
            with torch.autocast(x.device.type, enabled=False):
                g_ch, g_sp = self.gates(pixels.float())
        else:
            g_ch, g_sp = self.gates(pixels)
        # the gate is built in the pixels' layout and multiplied in once; in place when autograd is off
        if self.layout == "parallel":
            gate = g_ch.unsqueeze(1) + g_sp.unsqueeze(2)
        else:
            gate = (SEQUENTIAL_GAIN * g_ch).unsqueeze(1) * g_sp.unsqueeze(2)
        gate = gate.to(x.dtype)
        out = (gate.mul_(pixels) if not torch.is_grad_enabled() else gate * pixels).view(n, h, w, c).permute(0, 3, 1, 2)
        return out.contiguous() if x.is_contiguous() else out  # NCHW in, NCHW out

    def gates(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, HW, C) pixels -> the channel gate (N, C) and the spatial gate (N, HW)."""
        n, _, c = pixels.shape
        columns = pixels.transpose(1, 2)  # (N, C, HW)
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
