"""What PSA costs inside the network, against what a block could cost at best (issue: inference ÷ <= 1.10).

Times the batch-norm-folded model (as `cattlepose predict` runs it) with PSA's fused CPU kernel (the default,
models/psa_fused.py), with the eager PSA forward, with every PSA block replaced by a plain copy of its input (the
cost of one read and one write through the eager path), and optionally with the eager forward compiled by
`torch.compile` (inductor; needs a C++ compiler, compiles for about half a minute). Rounds are interleaved;
fastest round per variant. Also prints the time inside the PSA modules per forward.

With --train: training steps (forward + backward, model in train mode) with no PSA, PSA in the fused kernels and
eager PSA, and the time spent in PSA's own forward and backward (`_PSAFunction`) per step.

    .venv/bin/python benchmarks/psa_in_network.py [--batch 32] [--rounds 12] [--compile] [--train]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from cattlepose.config import load_config
from cattlepose.models import build_model, psa_fused
from cattlepose.models import psa as P
from cattlepose.models.fold_bn import fold_batchnorm


def folded(cfg, psa: str) -> torch.nn.Module:
    m = build_model(cfg.model.model_copy(update={"psa": psa, "pretrained": None}), 17).eval()
    fold_batchnorm(m)
    return m.to(memory_format=torch.channels_last)


def time_inside(blocks: list[torch.nn.Module], forward: Callable[[], object]) -> float:
    """Seconds spent inside `blocks` during one call of `forward` (forward pre/post hooks on each block)."""
    spent, starts = [0.0], []

    def enter(*_) -> None:
        starts.append(time.perf_counter())

    def leave(*_) -> None:
        spent[0] += time.perf_counter() - starts.pop()

    hooks = [b.register_forward_pre_hook(enter) for b in blocks] + [b.register_forward_hook(leave) for b in blocks]
    try:
        forward()
    finally:
        for hook in hooks:
            hook.remove()
    return spent[0]


def train_main(cfg, batch: int, rounds: int) -> None:
    h, w = cfg.model.input_size
    x = torch.randn(batch, 3, h, w).contiguous(memory_format=torch.channels_last)
    target = torch.softmax(torch.randn(batch, 17, h // 4 * (w // 4)), dim=-1)
    models = {}
    for psa in ("none", "parallel"):
        m = build_model(cfg.model.model_copy(update={"psa": psa, "pretrained": None}), 17)
        models[psa] = m.to(memory_format=torch.channels_last).train()
    spent = {"forward": 0.0, "backward": 0.0}
    fwd, bwd = P._PSAFunction.forward, P._PSAFunction.backward

    def timed_forward(ctx, *args):
        t = time.perf_counter()
        out = fwd(ctx, *args)
        spent["forward"] += time.perf_counter() - t
        return out

    @torch.autograd.function.once_differentiable
    def timed_backward(ctx, grad):
        t = time.perf_counter()
        out = bwd(ctx, grad)
        spent["backward"] += time.perf_counter() - t
        return out

    P._PSAFunction.forward, P._PSAFunction.backward = staticmethod(timed_forward), staticmethod(timed_backward)
    variants = {"no PSA": ("none", True), "PSA parallel (fused kernels)": ("parallel", True),
                "PSA parallel (eager)": ("parallel", False)}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in variants}
    inside: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    try:
        for r in range(rounds + 1):  # the first round warms up
            for name, (psa, fused) in variants.items():
                model = models[psa]
                model.zero_grad(set_to_none=True)
                spent["forward"] = spent["backward"] = 0.0
                with psa_fused.enabled(fused):
                    t = time.perf_counter()
                    (-(target * model(x).flatten(2).log_softmax(-1)).sum(-1).mean()).backward()
                    if r:
                        times[name].append(time.perf_counter() - t)
                        inside[name].append((spent["forward"], spent["backward"]))
    finally:
        P._PSAFunction.forward, P._PSAFunction.backward = staticmethod(fwd), staticmethod(bwd)
    base = min(times["no PSA"])
    print(f"{cfg.model.backbone}, train step (forward + backward), batch {batch}, {h}x{w}, "
          f"{torch.get_num_threads()} threads, {rounds} interleaved rounds, fastest")  # fmt: skip
    for name, ts in times.items():
        f, b = (min(v[i] for v in inside[name]) for i in (0, 1))
        extra = f"   PSA forward {f * 1000:.1f} ms + backward {b * 1000:.1f} ms" if name != "no PSA" else ""
        print(f"{name:<32}{min(ts) * 1000:8.1f} ms   ÷ no PSA {min(ts) / base:.3f}{extra}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--train", action="store_true", help="time training steps instead of folded inference")
    args = ap.parse_args()
    cfg = load_config(args.config)
    if args.train:
        train_main(cfg, args.batch, args.rounds)
        return
    h, w = cfg.model.input_size
    x = torch.randn(args.batch, 3, h, w).contiguous(memory_format=torch.channels_last)
    plain, psa = folded(cfg, "none"), folded(cfg, cfg.model.psa if cfg.model.psa != "none" else "parallel")
    layout = next(m.layout for m in psa.modules() if isinstance(m, P.PolarizedSelfAttention))
    eager = P._psa_forward

    def copy(x: torch.Tensor, *params) -> tuple[torch.Tensor, None]:
        return x.clone(memory_format=torch.channels_last), None

    # name -> (fused kernel on?, the eager forward to use)
    variants: dict[str, tuple[bool, Callable]] = {
        f"PSA {layout} (fused kernel)": (True, eager),
        f"PSA {layout} (eager)": (False, eager),
        "PSA replaced by a copy of x": (False, copy),
    }
    if args.compile:
        fn = torch.compile(lambda x, *p: eager(x, *p, layout, 1e-5)[0], dynamic=False)
        variants["PSA compiled (torch.compile)"] = (False, lambda x, *a: (fn(x, *a[:7]), None))
    times: dict[str, list[float]] = {"no PSA": [], **{k: [] for k in variants}}
    inside: dict[str, float] = dict.fromkeys(variants, 0.0)
    blocks = [m for m in psa.modules() if isinstance(m, P.PolarizedSelfAttention)]

    def run(name: str) -> float:
        fused, fn = variants[name]
        P._psa_forward = fn
        with psa_fused.enabled(fused):
            t = time.perf_counter()
            psa(x)
            return time.perf_counter() - t

    with torch.inference_mode():
        for _ in range(2):  # warm-up (and compilation)
            plain(x)
            for name in variants:
                run(name)
        for _ in range(args.rounds):
            t = time.perf_counter()
            plain(x)
            times["no PSA"].append(time.perf_counter() - t)
            for name in variants:
                times[name].append(run(name))
        for name in variants:  # one more pass each, with hooks timing the PSA blocks
            inside[name] = time_inside(blocks, lambda name=name: run(name))
    P._psa_forward = eager
    base = min(times["no PSA"])
    print(f"{cfg.model.backbone}, batch norm folded, batch {args.batch}, {h}x{w}, {torch.get_num_threads()} threads")
    for name, ts in times.items():
        spent = f"   inside the {len(blocks)} PSA blocks {inside[name] * 1000:.1f} ms" if name in inside else ""
        print(f"{name:<32}{min(ts) * 1000:8.1f} ms   ÷ no PSA {min(ts) / base:.3f}{spent}")


if __name__ == "__main__":
    main()
