"""`cattlepose info model`: size, compute and measured speed of the configured model.

MACs come from torch's FlopCounterMode (multiply-accumulates = its FLOPs / 2). It counts convolutions and
matrix products only; elementwise work (BatchNorm in eval, ReLU, and in PSA the softmax, sigmoid and gating
products) is not counted. PSA's pool-first form leaves it with almost no matmul work, so its MAC share is small
while its share of the run time is not: the measured images/s is the number to compare.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cattlepose.config import Config
from cattlepose.models.psa import PolarizedSelfAttention


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(total, PSA) multiply-accumulates of one forward pass on `x`, from FlopCounterMode."""
    psa_names = {name for name, m in model.named_modules() if isinstance(m, PolarizedSelfAttention)}
    root = type(model).__name__
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model(x)
    per_module = counter.get_flop_counts()
    psa = sum(sum(per_module.get(f"{root}.{name}", {}).values()) for name in psa_names)
    return counter.get_total_flops() // 2, psa // 2


def measure_forward(model: nn.Module, x: torch.Tensor, seconds: float = 2.0, warmup: int = 2) -> float:
    """Images per second of `model(x)` under inference_mode, after `warmup` untimed passes."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        n, start = 0, time.perf_counter()
        while True:
            model(x)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return n * x.shape[0] / elapsed


def model_info(cfg: Config, num_keypoints: int, measure: bool = True) -> dict[str, Any]:
    """A flat table row: backbone, PSA layout, sizes, MACs and (if `measure`) forward images/s on this machine."""
    from cattlepose.models import build_model

    mc = cfg.model
    model = build_model(mc.model_copy(update={"pretrained": None}), num_keypoints).eval()
    params = sum(p.numel() for p in model.parameters())
    psa_params = sum(
        p.numel() for m in model.modules() if isinstance(m, PolarizedSelfAttention) for p in m.parameters()
    )
    h, w = mc.input_size
    macs, psa_macs = count_macs(model, torch.zeros(1, 3, h, w))
    info: dict[str, Any] = {
        "backbone": mc.backbone,
        "psa": mc.psa,
        "input_size": f"{h}x{w}",
        "heatmap_size": f"{h // 4}x{w // 4}",
        "keypoints": num_keypoints,
        "params (M)": params / 1e6,
        "psa params share": psa_params / params,
        "MACs (G, FlopCounterMode: conv+matmul)": macs / 1e9,
        "psa MACs share": psa_macs / macs if macs else 0.0,
    }
    if measure:
        batch = 16
        x = torch.randn(batch, 3, h, w)
        if mc.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        with _threads(cfg.train.threads):
            ips = measure_forward(model, x)
            info["threads"] = torch.get_num_threads()
        info["channels_last"] = mc.channels_last
        info[f"forward images/s (batch {batch})"] = ips
        info["forward GMAC/s"] = ips * macs / 1e9
    return info
