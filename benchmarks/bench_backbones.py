"""Every backbone against hrnet_w18_small + PSA, side by side in one run: training step and inference.

For each input size, the variants run interleaved round by round (drift hits them alike): a training step
(forward + spatial cross-entropy + backward + AdamW, batch 32, channels_last) and an inference pass as predict
runs it (batch norm fused, channels_last, 32 crops and their 32 mirrors in one batch). Each figure is the fastest
round (other processes only ever add time); ratios are against hrnet_w18_small + PSA at the same size. Goal of
the real-photo recipe's network: predict crops/s >= 0.5x hrnet_w18_small + PSA at its input size.

    .venv/bin/python benchmarks/bench_backbones.py [--sizes 128 160] [--rounds 8] [--variants ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from cattlepose.core.config import ModelConfig
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.build import build_model
from cattlepose.models.codec import HeatmapCodec

# name -> (backbone, psa)
VARIANTS = {
    "hrnet_w18_small+psa": ("hrnet_w18_small", "parallel"),
    "lite0+psa": ("tf_efficientnet_lite0", "parallel"),
    "lite0": ("tf_efficientnet_lite0", "none"),
    "lite1+psa": ("tf_efficientnet_lite1", "parallel"),
    "lite2+psa": ("tf_efficientnet_lite2", "parallel"),
}
BASELINE = "hrnet_w18_small+psa"
K = 20  # the Animal-Pose keypoints


def _timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _variant(backbone: str, psa: str, size: int, batch: int):
    """(train step, inference pass) closures of one network at one input size."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, psa=psa, input_size=(size, size)), K)
    model = model.to(memory_format=torch.channels_last).train()
    infer = copy.deepcopy(model).eval()
    fuse_batchnorm(infer)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    codec = HeatmapCodec((size, size))
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    kps = torch.cat([torch.rand(batch, K, 2) * (size - 1), torch.full((batch, K, 1), 2.0)], dim=-1)
    heatmaps, weights = codec.encode_batch(kps)
    crops = torch.randn(2 * batch, 3, size, size).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        loss = codec.loss(model(x), heatmaps, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.inference_mode()
    def forward() -> None:
        infer(crops)

    return step, forward


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 160])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as training and predict run (engine/device.py)
    names = [BASELINE, *(v for v in args.variants if v != BASELINE)]
    print(f"threads {args.threads}, batch {args.batch} (inference: {args.batch} crops + mirrors), fp32, channels_last")
    print("| input | network | train img/s | ÷ hrnet | predict crops/s | ÷ hrnet | (medians ÷ hrnet) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        fns = {n: _variant(*VARIANTS[n], size, args.batch) for n in names}
        for step, forward in fns.values():  # warm-up: oneDNN primitives, allocator pools
            step()
            forward()
        train = {n: [] for n in names}
        infer = {n: [] for n in names}
        for _ in range(args.rounds):
            for n, (step, forward) in fns.items():
                train[n].append(args.batch / _timed(step, 1))
                infer[n].append(args.batch / _timed(forward, 1))
        base_t, base_i = max(train[BASELINE]), max(infer[BASELINE])
        med_t, med_i = statistics.median(train[BASELINE]), statistics.median(infer[BASELINE])
        for n in names:
            t, i = max(train[n]), max(infer[n])
            medians = f"{statistics.median(train[n]) / med_t:.2f} / {statistics.median(infer[n]) / med_i:.2f}"
            print(f"| {size}² | {n} | {t:.1f} | {t / base_t:.2f} | {i:.1f} | {i / base_i:.2f} | {medians} |")


if __name__ == "__main__":
    main()
