"""torch.compile in bounded time, only where it pays, and never silently.

* Regional compilation: the network's repeated blocks (`PoseNetwork.compile_regions`) are compiled one by one,
  in place, instead of the whole network as one graph. Identical blocks share one compiled graph (torch inlines
  module parameters as graph inputs), so an HRNet compiles a handful of distinct blocks, not a hundred-odd
  PSA blocks in one graph: whole-model compilation of hrnet_w32 + PSA ran for minutes on a card without finishing
  its first step. Shapes are static (`dynamic=False`: training batches are whole, inference pads its last batch),
  and the recompile limit is raised so that every distinct block shape (one per HRNet branch) is compiled rather
  than silently left eager.
* Caches that outlive the process: torch's compiled-graph caches (FX graph and AOT autograd) are kept under
  `compile_cache_dir()`, so later folds, later runs and `predict` reuse the kernels of earlier ones.
* `train.compile: auto` compiles only where the expected work pays for compiling: a long training on a CUDA
  card, a predict of many crops; never on a CPU (the inductor CPU backend's compile time is minutes on a laptop),
  never a predict of a few hundred crops, never a short run.
* What was compiled and how long it took is logged; the progress display says "compiling" while it happens.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cattlepose.core.ui import Log, Task

# torch.compile's backend; tests and CPU rehearsals swap in "aot_eager" (the traced graph, no code generation)
BACKEND = "inductor"
# None: inductor's default mode. "reduce-overhead" adds CUDA graphs per region (bench_gpu.py measures both).
MODE: str | None = None
RECOMPILE_LIMIT = 64  # compiled graphs per block class (torch's default, 8, leaves an HRNet's 4th shape eager)

# `auto` compiles when the expected work is at least this much (images through the network, forward and backward
# for training; crop forwards for predict: crops x fold models x 2 with flip). Compiling an hrnet_w32 + PSA's
# distinct blocks costs tens of seconds on a card from a cold cache and saves a large share of each step, so it
# pays after a few hundred thousand images; below that the eager path is as fast from start to end.
TRAIN_MIN_IMAGES = 250_000
PREDICT_MIN_FORWARDS = 250_000


@dataclass(frozen=True)
class Decision:
    compile: bool
    reason: str


def decide(setting: str, device: torch.device, work: int, kind: str = "train") -> Decision:
    """Whether to compile `work` images (training: images x epochs; predict: crop forwards) on `device`, and why.
    `setting` is `train.compile`: on and off are obeyed; auto decides from the device and the work."""
    if setting == "off":
        return Decision(False, "train.compile is off")
    if setting == "on":
        return Decision(True, "train.compile is on")
    if device.type != "cuda":
        return Decision(False, f"auto: not compiled on {device.type} (compiling pays on a CUDA card)")
    threshold = TRAIN_MIN_IMAGES if kind == "train" else PREDICT_MIN_FORWARDS
    what = "training images" if kind == "train" else "crop forwards"
    if work < threshold:
        return Decision(False, f"auto: {work:,} {what} are too few to pay for compiling (from {threshold:,})")
    return Decision(True, f"auto: {work:,} {what}")


def compile_cache_dir() -> Path:
    """Where torch keeps compiled kernels between processes: $TORCHINDUCTOR_CACHE_DIR when set, else
    $XDG_CACHE_HOME/cattlepose/torch-compile (~/.cache/...). torch's own default, /tmp/torchinductor_<user>, is
    lost at every reboot."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cattlepose" / "torch-compile"


def configure() -> None:
    """Process-wide compile settings (idempotent): the cache folder, the persistent caches, the recompile limit."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
    import torch._dynamo
    import torch._functorch.config
    import torch._inductor.config

    dynamo = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), RECOMPILE_LIMIT))
    if hasattr(dynamo, "accumulated_recompile_limit"):
        dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 8 * RECOMPILE_LIMIT)
    elif hasattr(dynamo, "accumulated_cache_size_limit"):
        dynamo.accumulated_cache_size_limit = max(dynamo.accumulated_cache_size_limit, 8 * RECOMPILE_LIMIT)
    torch._inductor.config.fx_graph_cache = True
    if hasattr(torch._functorch.config, "enable_autograd_cache"):
        torch._functorch.config.enable_autograd_cache = True


def compile_regions(model: nn.Module) -> list[str]:
    """Compile the network's regions in place (`module.compile()`: names, state dicts and checkpoints are
    unchanged); returns their names. A module without `compile_regions` is compiled whole."""
    configure()
    regions = model.compile_regions() if hasattr(model, "compile_regions") else [("", model)]
    for _, module in regions:
        module.compile(backend=BACKEND, mode=MODE, dynamic=False)
    return [name or type(model).__name__ for name, _ in regions]


def eager() -> contextlib.AbstractContextManager:
    """Run compiled regions as plain eager code inside the block (validation of a compiled training model)."""
    return torch.compiler.set_stance("force_eager")


def region_summary(names: list[str]) -> str:
    """'108 regions (104 stage2-4 blocks, 4 layer1 blocks)'-style text: how many, by top-level module."""
    by_root: dict[str, int] = {}
    for name in names:
        root = name.split(".")[1] if name.startswith("backbone.") and "." in name[9:] else name.split(".")[0]
        by_root[root] = by_root.get(root, 0) + 1
    parts = ", ".join(f"{n} in {root}" for root, n in by_root.items())
    return f"{len(names)} region(s) ({parts})"


def compiled_graphs() -> tuple[int, float]:
    """(graphs compiled so far in this process, seconds torch spent compiling them: its own
    `compile_times()` of dynamo's compile step plus the backward graphs compiled at the first backward)."""
    from torch._dynamo.utils import compile_times, counters

    graphs = int(counters["stats"].get("unique_graphs", 0))
    times = compile_times(repr="csv", aggregate=True)
    phases = dict(zip(*times, strict=False)) if isinstance(times, tuple) else {}
    seconds = sum(float(phases.get(k, 0.0)) for k in ("_compile.compile_inner", "backward._backward_impl"))
    return graphs, seconds


@contextlib.contextmanager
def reporting(log: Log, bar: Task | None, what: str) -> Iterator[None]:
    """Around the call that triggers compilation: the progress bar's status says 'compiling <what>' with the
    seconds so far (a separate line where there is no bar); afterwards the log says how many graphs were
    compiled and how long it took (from torch's counters, so a warm cache shows as a short time)."""
    graphs0, seconds0 = compiled_graphs()
    start = time.perf_counter()
    stop = threading.Event()
    thread = None
    if bar is not None and not log.quiet:

        def tick() -> None:
            while True:
                bar.update(0, status=f"compiling {what}: {time.perf_counter() - start:.0f} s")
                if stop.wait(1.0):
                    return

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
    log.info(f"compiling {what} (the first step waits for it) ...")
    try:
        yield
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        graphs, seconds = compiled_graphs()
        wall = time.perf_counter() - start
        log.info(
            f"compiled {what}: {graphs - graphs0} graph(s), {seconds - seconds0:.1f} s in torch.compile, "
            f"{wall:.1f} s for the first step (cache: {compile_cache_dir()})"
        )
