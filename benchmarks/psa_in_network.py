"""What PSA costs inside the network, against what a block could cost at best (issue: inference ÷ <= 1.10).

Times the batch-norm-folded model (as `cattlepose predict` runs it) with PSA as it is, with every PSA block
replaced by a plain copy of its input (the cost of one read and one write, a floor for any fused block), and
optionally with each block's inference function compiled by `torch.compile` (inductor; needs a C++ compiler,
compiles for about half a minute). Rounds are interleaved; fastest round per variant.

    .venv/bin/python benchmarks/psa_in_network.py [--batch 32] [--rounds 12] [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from cattlepose.config import load_config
from cattlepose.models import build_model
from cattlepose.models import psa as P
from cattlepose.models.fold_bn import fold_batchnorm


def folded(cfg, psa: str) -> torch.nn.Module:
    m = build_model(cfg.model.model_copy(update={"psa": psa, "pretrained": None}), 17).eval()
    fold_batchnorm(m)
    return m.to(memory_format=torch.channels_last)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    cfg = load_config(args.config)
    h, w = cfg.model.input_size
    x = torch.randn(args.batch, 3, h, w).contiguous(memory_format=torch.channels_last)
    plain, psa = folded(cfg, "none"), folded(cfg, cfg.model.psa if cfg.model.psa != "none" else "parallel")
    layout = next(m.layout for m in psa.modules() if isinstance(m, P.PolarizedSelfAttention))
    eager = P._psa_forward

    def copy(x: torch.Tensor, *params) -> tuple[torch.Tensor, None]:
        return x.clone(memory_format=torch.channels_last), None

    variants: dict[str, Callable] = {f"PSA {layout} (eager)": eager, "PSA replaced by a copy of x": copy}
    if args.compile:
        fn = torch.compile(lambda x, *p: eager(x, *p, layout, 1e-5)[0], dynamic=False)
        variants["PSA compiled (torch.compile)"] = lambda x, *a: (fn(x, *a[:7]), None)
    times: dict[str, list[float]] = {"no PSA": [], **{k: [] for k in variants}}
    with torch.inference_mode():
        for _ in range(2):  # warm-up (and compilation)
            plain(x)
            for f in variants.values():
                P._psa_forward = f
                psa(x)
        for _ in range(args.rounds):
            t = time.perf_counter()
            plain(x)
            times["no PSA"].append(time.perf_counter() - t)
            for name, f in variants.items():
                P._psa_forward = f
                t = time.perf_counter()
                psa(x)
                times[name].append(time.perf_counter() - t)
    P._psa_forward = eager
    base = min(times["no PSA"])
    print(f"{cfg.model.backbone}, batch norm folded, batch {args.batch}, {h}x{w}, {torch.get_num_threads()} threads")
    for name, ts in times.items():
        print(f"{name:<32}{min(ts) * 1000:8.1f} ms   ÷ no PSA {min(ts) / base:.3f}")


if __name__ == "__main__":
    main()
