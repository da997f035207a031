"""Compile time of the hrnet_w32 + PSA training step, by what is compiled, from a cold cache (issue 38).

whole: `torch.compile` of forward + loss (what cattlepose did before); module: each multi-resolution module and
Bottleneck compiled in place; block: each BasicBlock (with its PSA) and Bottleneck (what `compile_regions` does).
Each run uses a fresh TORCHINDUCTOR_CACHE_DIR (and no FX graph cache), so it measures a first compile. Prints the
eager step, the first compiled call (compilation included), a later compiled step, and dynamo's compile time.
One mode per process; run them one after the other on a quiet machine (whole takes 15-20 minutes on 2 cores):

    for m in block module whole; do .venv/bin/python benchmarks/bench_compile.py --mode $m; done
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("whole", "module", "block"), default="block")
    ap.add_argument("--config", default="configs/adk2021.yaml")
    ap.add_argument("--size", type=int, default=64, help="input side (compile time hardly depends on it)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--backend", default="inductor")
    args = ap.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="cattlepose-compile-")  # cold, before inductor
    import torch._inductor.config

    from cattlepose.core.config import load_config
    from cattlepose.engine import compiling
    from cattlepose.models import hrnet
    from cattlepose.models.build import build_model
    from cattlepose.models.codec import HeatmapCodec

    torch._inductor.config.fx_graph_cache = False
    torch.set_flush_denormal(True)
    compiling.configure()
    cfg = load_config(args.config, ["model.pretrained=null", f"model.input_size=[{args.size},{args.size}]"])
    model = build_model(cfg.model, 17).to(memory_format=torch.channels_last).train()
    codec = HeatmapCodec.from_config(cfg)
    n, s = args.batch, args.size
    x = torch.randn(n, 3, s, s).contiguous(memory_format=torch.channels_last)
    heat, weights = codec.encode_batch((torch.rand(n, 17, 3) * torch.tensor([s, s, 2.0])).round())

    def forward_loss(x: torch.Tensor, heat: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return codec.loss(model(x).float(), heat, weights)

    def step(fn: Callable[..., torch.Tensor]) -> float:
        start = time.perf_counter()
        fn(x, heat, weights).backward()
        return time.perf_counter() - start

    eager = min(step(forward_loss) for _ in range(3))
    fn = forward_loss
    if args.mode == "whole":
        fn = torch.compile(forward_loss, backend=args.backend, dynamic=False)
        regions = 1
    else:
        hrnet.COMPILE_UNIT = args.mode
        compiling.BACKEND = args.backend
        regions = len(compiling.compile_regions(model))
    first = step(fn)
    later = min(step(fn) for _ in range(2))
    graphs, seconds = compiling.compiled_graphs()
    print(f"| {args.mode} | {regions} | {graphs} | {first:.1f} s | {seconds:.1f} s | {later:.2f} s | {eager:.2f} s |")


if __name__ == "__main__":
    main()
