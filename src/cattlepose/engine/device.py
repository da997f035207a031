"""Machine-dependent choices in one place: device, mixed precision, loader workers, batch (whether to compile:
engine/compiling.py).

Every `auto` setting of the config is resolved here from the machine, so the same training and inference code
serves a laptop CPU and a GPU box.
"""

from __future__ import annotations

import contextlib
import os

import torch

from cattlepose.core.errors import UserError

CACHE_BUDGET_BYTES = 2 * 1024**3  # decoded images kept in memory when they fit (train.cache_images: auto)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA device is available", field="train.device")
    return torch.device(name)


def flush_denormals(device: torch.device) -> None:
    """On CPU, treat subnormal floats as zero. Softmaxes over thousands of pixels and far Gaussian tails produce
    them, and every operation that meets one runs many times slower; they are far below anything a metric
    sees. Process-wide, like the thread count."""
    if device.type == "cpu":
        torch.set_flush_denormal(True)


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """None means full fp32. AMP is for CUDA only: on CPU bf16 autocast is slower than channels_last fp32."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(setting: int | str, device: torch.device, processes: int = 1) -> int:
    """Loader processes per training or inference process. On a CPU the network keeps every core busy with
    its own threads and workers only take cores from it; a GPU needs every spare core decoding and augmenting."""
    if setting != "auto":
        return int(setting)
    spare = max(1, cores() // max(1, processes))
    if device.type == "cuda":
        return max(1, spare - 1)
    return 0 if spare <= 4 else min(4, spare // 4)


def resolve_threads(setting: int | None) -> int:
    """Intra-op threads of an inference runtime that is told a number (ONNX Runtime), as the PyTorch path has
    them: `train.threads`, else torch's own count (OMP_NUM_THREADS, or every core)."""
    return int(setting) if setting else torch.get_num_threads()


def resolve_infer_batch(setting: int | str, device: torch.device) -> int:
    """Crops per inference pass (flip doubles it): a CPU runs 64-image passes fastest, a GPU wants many more."""
    if setting != "auto":
        return int(setting)
    return 256 if device.type == "cuda" else 32
