"""`cattlepose info model`: size and compute of the configured model, and on request its speed here.

MACs come from torch's FlopCounterMode (multiply-accumulates = its FLOPs / 2). It counts convolutions and
matrix products only; elementwise work (BatchNorm in eval, ReLU, and in PSA the softmax, sigmoid and gating
products) is not counted, so PSA's MAC share is small while its share of the run time is not. Time ratios
come from `make bench` (variants interleaved in one process): one process's images/s moves with the machine.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cattlepose.core.config import Config
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


def _timed_round(model: nn.Module, x: torch.Tensor, iters: int) -> float:
    """Median seconds of one `model(x)` over `iters` calls: a call that another process preempted is an outlier
    the median ignores, where the mean would carry it."""
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_forward(
    model: nn.Module,
    x: torch.Tensor,
    rounds: int = 7,
    round_s: float = 0.25,
    tolerance: float = 0.03,
    max_warmup_s: float = 4.0,
) -> float:
    """Images per second of `model(x)` under inference_mode, meant to repeat between processes.

    The first calls of a process are slow and uneven (oneDNN builds its primitives, the allocator grows its
    pools, PSA's first call sets itself up), so a fixed count of warm-up calls left their cost in the timing.
    Here warm-up rounds (of about `round_s` seconds each) run until two in a row agree within `tolerance`, or
    `max_warmup_s` has passed. Then `rounds` timed rounds follow (fewer if they take over twice their planned
    time); a round's time is the median of its calls, and the fastest round is reported: other processes on the
    machine only ever slow a round down, so the fastest is the one they disturbed least (the reasoning of
    `timeit`'s minimum).
    """
    batch = x.shape[0]
    with torch.inference_mode():
        model(x)  # the first call alone can take many times a steady one: never timed
        per_call = _timed_round(model, x, 1)

        def iters() -> int:
            return max(1, min(1000, round(round_s / max(per_call, 1e-6))))

        deadline = time.perf_counter() + max_warmup_s
        while time.perf_counter() < deadline:
            current = _timed_round(model, x, iters())
            settled = abs(current - per_call) <= tolerance * min(current, per_call)
            per_call = current
            if settled:
                break
        # a busy machine makes every call slow: stop early rather than hold the command up (the CPU share that
        # `model_info` reports says when that happened)
        stop = time.perf_counter() + 2 * rounds * round_s
        times = [_timed_round(model, x, iters())]
        while len(times) < rounds and time.perf_counter() < stop:
            times.append(_timed_round(model, x, iters()))
    return batch / min(times)


def model_info(cfg: Config, num_keypoints: int, measure: bool = True) -> dict[str, Any]:
    """A flat table row: backbone, PSA layout, sizes, MACs and (if `measure`) forward images/s on this machine."""
    from cattlepose.models.build import build_model

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
        "psa": mc.psa if mc.psa == "none" else f"{mc.psa}, {mc.psa_placement}",
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
            threads = torch.get_num_threads()
            cpu, wall = time.process_time(), time.perf_counter()
            ips = measure_forward(model, x)
            cpu_share = (time.process_time() - cpu) / ((time.perf_counter() - wall) * threads)
        info["threads"] = threads
        info["channels_last"] = mc.channels_last
        info[f"forward images/s (batch {batch})"] = ips
        info["forward GMAC/s"] = ips * macs / 1e9
        # CPU time this process got per thread while timing: near 1 when it had its cores to itself; well below 1
        # means other processes took them and the speed above is theirs to explain, not the model's
        info["CPU share while timing"] = cpu_share
    return info


def detector_info(cfg: Config, categories: list[str], measure: bool = True) -> dict[str, Any]:
    """The detector of a `task: detect` config: backbone, input, output stride, categories, sizes, MACs and (if
    `measure`) forward images/s of one network on this machine (a fold ensemble with flip costs that times
    2 x folds)."""
    from cattlepose.models.detector import CenterNet

    mc = cfg.model
    model = CenterNet(mc.backbone, max(1, len(categories)), cfg.detect.stride).eval()
    h, w = mc.input_size
    macs, _ = count_macs(model, torch.zeros(1, 3, h, w))
    s = cfg.detect.stride
    info: dict[str, Any] = {
        "task": "detect",
        "backbone": mc.backbone,
        "input_size": f"{h}x{w} (letterboxed)",
        "heatmap_size": f"{h // s}x{w // s} (stride {s})",
        "categories": ", ".join(categories) or "(from the data)",
        "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
        "MACs (G, FlopCounterMode: conv+matmul)": macs / 1e9,
    }
    if measure:
        batch = 8
        x = torch.randn(batch, 3, h, w)
        if mc.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        with _threads(cfg.train.threads):
            info["threads"] = torch.get_num_threads()
            info[f"forward images/s (batch {batch}, one network)"] = measure_forward(model, x)
    return info
