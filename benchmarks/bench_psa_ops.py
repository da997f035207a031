"""Kernels per PSA block, before and after the fused formulation (issue 38), counted on this CPU as the stand-in
for a card, and the eager time of one block side by side.

- eager: every non-view ATen operation the block dispatches (a TorchDispatchMode), forward and forward + backward:
  on a GPU each is at least one kernel launch, and in eager mode each costs the CPU a dispatch;
- compiled: the calls in the code torch.compile (inductor, CPU backend) generates for the block, forward graph
  and backward graph: fused loops plus library calls (extern mm/bmm);
- eager ms: forward + backward of one block, the two formulations interleaved round by round (minimum).

"before" is benchmarks/psa_before.py (cattlepose 285f152); "after" is the package's models/psa.py.

    .venv/bin/python benchmarks/bench_psa_ops.py [--channels 32] [--size 64] [--batch 8] [--rounds 10]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).parent))
import psa_before

from cattlepose.models import psa as psa_after


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.__name__ != "promote_types.default":  # promote_types computes no tensor
            self.ops[func.__name__] += 1
        return func(*args, **(kwargs or {}))


def eager_ops(m: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    with CountOps() as fwd:
        m(x)
    xg = x.detach().requires_grad_()
    with CountOps() as both:
        out = m(xg)
        grad = torch.ones_like(out)  # counted below as the caller's, not the block's
        out.backward(grad)
    return sum(fwd.ops.values()), sum(both.ops.values()) - 1


def compiled_calls(m: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    compiled = torch.compile(m, backend="inductor", fullgraph=True)
    xg = x.detach().requires_grad_()
    _, codes = run_and_get_code(lambda: compiled(xg).sum().backward())
    call = re.compile(r"^\s*(\w+ = )?(cpp_fused_\w+|triton_\w+\.run|extern_kernels\.\w+|aten\.\w+\.\w+)\(", re.M)
    counts = [len(call.findall(code)) for code in codes]
    return counts[0], counts[1] if len(counts) > 1 else 0


def eager_ms(blocks: dict[str, torch.nn.Module], x: torch.Tensor, rounds: int) -> dict[str, float]:
    best = dict.fromkeys(blocks, float("inf"))
    for _ in range(rounds):
        for name, m in blocks.items():
            xg = x.detach().requires_grad_()
            t = time.perf_counter()
            m(xg).sum().backward()
            best[name] = min(best[name], time.perf_counter() - t)
    return {k: v * 1e3 for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--size", type=int, default=64, help="feature map height and width")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    x = torch.randn(args.batch, args.channels, args.size, args.size).contiguous(memory_format=torch.channels_last)
    print(f"PSA block, {args.channels} channels, {args.size}x{args.size}, batch {args.batch}, channels_last, fp32, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    print(
        "| layout | version | eager ops fwd | eager ops fwd+bwd | compiled calls fwd | compiled calls bwd | eager ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for layout in ("parallel", "sequential"):
        torch.manual_seed(0)
        before = psa_before.PolarizedSelfAttention(args.channels, layout)
        after = psa_after.PolarizedSelfAttention(args.channels, layout)
        after.load_state_dict(before.state_dict())
        blocks = {"before": before, "after": after}
        ms = eager_ms(blocks, x, args.rounds)
        for name, m in blocks.items():
            f, fb = eager_ops(m, x)
            cf, cb = compiled_calls(m, x)
            print(f"| {layout} | {name} | {f} | {fb} | {cf} | {cb} | {ms[name]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
