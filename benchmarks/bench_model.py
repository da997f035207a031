"""PSA cost on CPU, measured side by side in one run: train step and inference, with PSA ÷ without.

Goals: train step with PSA ÷ without <= 1.12, inference ÷ <= 1.10 (default config: hrnet_w18_small, 128x128,
batch 32, channels_last, 2 threads). Runs of none / parallel / sequential are interleaved round by round so
that drift hits every variant alike. Each ratio is a ratio of the fastest round of each variant: other processes
on a shared machine only ever add time, so the minimum is the least disturbed measurement (medians are printed
too). Also prints the forward pass's GFLOP/s (FlopCounterMode conv+matmul FLOPs) against a 2048² fp32 matmul
measured in the same run: how much of the machine's dense throughput the network reaches.

    .venv/bin/python benchmarks/bench_model.py [--config FILE] [--rounds 20] [--steps 1] [--infer-steps 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from cattlepose.core.config import load_config
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.build import build_model
from cattlepose.models.info import count_macs

VARIANTS = ("none", "parallel", "sequential")


def matmul_gflops(n: int = 2048, repeats: int = 8) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def spatial_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # the default training loss: per keypoint, log-softmax over the heatmap against a normalised target
    return -(target * logits.flatten(2).log_softmax(-1)).sum(-1).mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1, help="timed train steps per variant per round")
    ap.add_argument("--infer-steps", type=int, default=3, help="timed forward passes per variant per round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as training and predict run (engine/device.py)
    torch.manual_seed(0)

    cfg = load_config(args.config)
    k = 17
    h, w = cfg.model.input_size
    batch = cfg.train.batch_size
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    x = torch.randn(batch, 3, h, w).contiguous(memory_format=fmt)
    target = F.softmax(torch.randn(batch, k, h // 4 * (w // 4)), dim=-1)

    models, opts, macs, folded = {}, {}, {}, {}
    for v in VARIANTS:
        m = build_model(cfg.model.model_copy(update={"psa": v, "pretrained": None}), k)
        macs[v] = count_macs(m.eval(), x[:1].contiguous())[0]
        # what `cattlepose predict` runs: eval mode with batch norm folded into the convolutions
        folded[v] = copy.deepcopy(m)
        fuse_batchnorm(folded[v])
        folded[v] = folded[v].to(memory_format=fmt)
        models[v] = m.to(memory_format=fmt).train()
        opts[v] = torch.optim.AdamW(m.parameters(), lr=1e-4)

    def train_step(v: str) -> None:
        opts[v].zero_grad(set_to_none=True)
        spatial_ce(models[v](x), target).backward()
        opts[v].step()

    def infer(model: torch.nn.Module) -> float:
        with torch.inference_mode():
            t = time.perf_counter()
            for _ in range(args.infer_steps):
                model(x)
            return (time.perf_counter() - t) / args.infer_steps

    mm = matmul_gflops()  # measured again at the end; the better of the two is this machine's dense throughput
    for v in VARIANTS:  # warm-up: allocator, oneDNN primitives
        train_step(v)
        models[v].eval()
        infer(models[v])
        infer(folded[v])
        models[v].train()

    train_t: dict[str, list[float]] = {v: [] for v in VARIANTS}
    infer_t: dict[str, list[float]] = {v: [] for v in VARIANTS}
    fold_t: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for v in order:
            models[v].train()
            t = time.perf_counter()
            for _ in range(args.steps):
                train_step(v)
            train_t[v].append((time.perf_counter() - t) / args.steps)
            models[v].eval()
            infer_t[v].append(infer(models[v]))
            fold_t[v].append(infer(folded[v]))
    mm = max(mm, matmul_gflops())

    tr = {v: min(train_t[v]) for v in VARIANTS}
    inf = {v: min(infer_t[v]) for v in VARIANTS}
    tr_med = {v: statistics.median(train_t[v]) for v in VARIANTS}
    inf_med = {v: statistics.median(infer_t[v]) for v in VARIANTS}
    fo = {v: min(fold_t[v]) for v in VARIANTS}
    fo_med = {v: statistics.median(fold_t[v]) for v in VARIANTS}
    print(
        f"model cost ({cfg.model.backbone}, {h}x{w}, batch {batch}, "
        f"{'channels_last' if cfg.model.channels_last else 'NCHW'}, {args.threads} threads, "
        f"{args.rounds} interleaved rounds x {args.steps} train steps / {args.infer_steps} forwards, fastest round)"
    )
    print(f"fp32 matmul 2048²: {mm:.0f} GFLOP/s")
    print(
        "| psa | train step s | train img/s | train ÷ none | infer s | infer img/s | infer ÷ none "
        "| fwd GFLOP/s | ÷ matmul |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for v in VARIANTS:
        gf = 2 * macs[v] * batch / inf[v] / 1e9
        print(
            f"| {v} | {tr[v]:.3f} | {batch / tr[v]:.1f} | {tr[v] / tr['none']:.3f} | {inf[v]:.3f} | "
            f"{batch / inf[v]:.1f} | {inf[v] / inf['none']:.3f} | {gf:.1f} | {gf / mm:.3f} |"
        )
    print(
        "inference as predict runs it (batch norm folded), fastest round: "
        + ", ".join(f"{v} {batch / fo[v]:.1f} img/s ÷ {fo[v] / fo['none']:.3f}" for v in VARIANTS)
        + "; medians ÷ "
        + ", ".join(f"{v} {fo_med[v] / fo_med['none']:.3f}" for v in VARIANTS[1:])
    )
    print(
        "medians instead: "
        + ", ".join(
            f"{v} train ÷ {tr_med[v] / tr_med['none']:.3f} infer ÷ {inf_med[v] / inf_med['none']:.3f}"
            for v in VARIANTS[1:]
        )
    )
    # the goal is the default config's PSA (parallel); sequential is an option that has always cost more
    goal_ok = tr["parallel"] / tr["none"] <= 1.12 and fo["parallel"] / fo["none"] <= 1.10
    print(f"goals of the default, parallel (train ÷ <= 1.12, folded ÷ <= 1.10): {'met' if goal_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
