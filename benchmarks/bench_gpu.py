"""The GPU fast path measured on one card, one row at a time (`make bench-gpu`; about 5 minutes).

Each row is printed as soon as it is measured (a run cut short by a time limit keeps what it measured), with the
time each compiled variant spent compiling.

1. the network alone (random input, forward + loss + backward + fused AdamW + EMA, bf16, channels_last):
   PSA none / parallel x eager / regional compilation (engine/compiling.py) / regional + CUDA graphs, at the
   config's input size and batch;
2. the training loader alone (synthetic cattle, the config's augmentation, `train.workers: auto`), with each
   stage of an item timed in this process;
3. the real `cattlepose train` on the config with synthetic data (one fold, a few epochs, history.csv's
   images/s after the first epoch, which pays for compilation);
4. `predict` end to end (5 fold models + flip on synthetic crops) against the same network's bare forwards.

On a machine without CUDA it says so and exits 0 (`--device cpu` runs it anyway, to check the script itself).

    .venv/bin/python benchmarks/bench_gpu.py [--config configs/adk2021.yaml] [--images 2048] [--steps 20]
        [--variants eager,regional,cudagraphs] [--skip network,loader,train,predict]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cattlepose.core.config import load_config


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def network_step(cfg, device: torch.device, psa: str, variant: str, steps: int) -> tuple[float, float, float]:
    """(images/s of the training step alone, seconds to the first timed step, seconds torch spent compiling).
    variant: eager, regional (the network's regions compiled, inductor's default mode) or cudagraphs (the same
    regions in mode reduce-overhead)."""
    from cattlepose.engine import compiling
    from cattlepose.engine import device as dev
    from cattlepose.engine.optim import EMA, make_optimizer
    from cattlepose.models.build import build_model
    from cattlepose.models.codec import HeatmapCodec

    mc = cfg.model.model_copy(update={"psa": psa, "pretrained": None})
    model = build_model(mc, 17).to(device, memory_format=torch.channels_last).train()
    opt, ema, codec = make_optimizer(model, cfg, device), EMA(model, 0.999), HeatmapCodec.from_config(cfg)
    if variant != "eager":
        compiling.MODE = "reduce-overhead" if variant == "cudagraphs" else None
        compiling.compile_regions(model)
    n, (h, w) = cfg.train.batch_size, cfg.model.input_size
    x = torch.randn(n, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
    kps = torch.rand(n, 17, 3, device=device) * torch.tensor([w, h, 2.0], device=device)
    heat, weights = codec.encode_batch(kps.round())

    def step() -> None:
        with dev.autocast(device, "auto"):
            logits = model(x)
        loss = codec.loss(logits.float(), heat, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)

    _, compile0 = compiling.compiled_graphs()
    start = time.perf_counter()
    for _ in range(3):  # compilation, CUDA graph capture, allocator
        step()
    _sync(device)
    ready = time.perf_counter() - start
    compiled = compiling.compiled_graphs()[1] - compile0
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * n / (time.perf_counter() - start), ready, compiled


def loader_rate(cfg, device: torch.device, root: Path, batches: int) -> tuple[float, int, dict[str, float]]:
    """(images/s of the training loader, its workers, ms per item of each stage in one process)."""
    from stages import stage_times

    from cattlepose.data.dataset import KeypointDataset
    from cattlepose.data.formats import read_samples
    from cattlepose.engine import dist
    from cattlepose.engine.device import resolve_workers
    from cattlepose.engine.loader import EpochSampler, train_loader

    samples, schema = read_samples("adk", root / "train", cfg.data.schema_, bbox=cfg.data.bbox)
    ds = KeypointDataset(samples, schema, cfg, train=True, seed=0)
    workers = resolve_workers(cfg.train.workers, device)
    sampler = EpochSampler(len(ds), cfg.train.batch_size, 0, dist.DistInfo())
    it = iter(train_loader(ds, sampler, workers, device))
    next(it)
    start, n = time.perf_counter(), 0
    for _ in range(min(batches, sampler.steps - 1)):
        n += next(it)["image"].shape[0]
    rate = n / (time.perf_counter() - start)

    stages = stage_times(ds)
    return rate, workers, stages


def pipeline_rate(
    config: str, device: torch.device, root: Path, runs: Path, epochs: int, extra: list[str], name: str
) -> tuple[float, float, str]:
    """(images/s of `cattlepose train` epochs after the first (median), seconds from the command's start to the
    end of its first epoch, the compile lines of its log), from history.csv and its output."""
    sets = [f"data.train={root / 'train'}", "model.pretrained=null", "train.folds=2", f"train.epochs={epochs}",
            "train.val_every=1000", "data.group_by=null", f"train.device={device.type}", *extra]  # fmt: skip
    cmd = [sys.executable, "-m", "cattlepose", "train", "-c", config, "--name", name, "--runs-dir", str(runs),
           "--folds", "0", *(a for s in sets for a in ("-s", s))]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    with open(runs / name / "fold0" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    later = rows[1:] or rows
    compile_lines = " / ".join(line.strip() for line in done.stdout.splitlines() if "compil" in line)
    # the first epoch ends after the start-up and compilation: total wall time less the later epochs
    first = wall - sum(float(r["seconds"]) for r in rows[1:])
    return statistics.median(float(r["images_per_s"]) for r in later), first, compile_lines


def predict_rates(cfg, device: torch.device, root: Path, run: Path, folds: int) -> tuple[float, float, float]:
    """(images/s of predict with flip over `folds` models from loading the models, the same without loading,
    images/s of the bare networks on the same batches)."""
    import yaml

    from cattlepose.core.config import dump_config
    from cattlepose.core.schema import load_schema
    from cattlepose.data.formats import folder
    from cattlepose.engine.infer import load_ensemble, predict_samples
    from cattlepose.models.build import build_model
    from cattlepose.runs.rundir import RunDir

    schema = load_schema(cfg.data.schema_)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"folds": max(2, folds)})})
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict()))
    for k in range(folds):
        (run / f"fold{k}").mkdir()
        model = build_model(cfg.model.model_copy(update={"pretrained": None}), schema.num_keypoints)
        torch.save({"model": model.state_dict()}, run / f"fold{k}" / "best.pt")
    samples = folder.read(root / "train" / "images", schema.num_keypoints)
    start = time.perf_counter()
    ens = load_ensemble(RunDir.open(run), device=device.type, crops=len(samples))  # compiles as auto decides
    preds = predict_samples(ens, samples)  # from a cold start: compilation (if any) and warm-up included
    cold = len(samples) / (time.perf_counter() - start)
    from cattlepose.engine.device import autocast, resolve_infer_batch

    bs, (h, w) = resolve_infer_batch(cfg.infer.batch_size, ens.device), cfg.model.input_size
    x = torch.randn(2 * bs, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
    batches = -(-len(samples) // bs)
    with torch.inference_mode(), autocast(ens.device, cfg.train.amp):
        for m in ens.models:
            m(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            for m in ens.models:
                m(x)
        _sync(device)
    return cold, len(samples) / preds.seconds, batches * bs / (time.perf_counter() - start)


def row(name: str, value: str, note: str) -> None:
    print(f"| {name} | {value} | {note} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/adk2021.yaml")
    ap.add_argument("--images", type=int, default=2048, help="synthetic training images")
    ap.add_argument("--steps", type=int, default=20, help="timed network steps per variant")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the real training run")
    ap.add_argument("--folds", type=int, default=5, help="fold models in the predict ensemble")
    ap.add_argument("--device", default="cuda", help="cpu only checks that the script runs")
    ap.add_argument("--set", "-s", action="append", default=[], help="config override, e.g. train.batch_size=8")
    ap.add_argument("--compile-backend", default="inductor", help="aot_eager: check the compiled path quickly")
    ap.add_argument("--variants", default="eager,regional,cudagraphs", help="network-step variants to time")
    ap.add_argument("--skip", default="", help="parts to leave out: network,loader,train,predict")
    args = ap.parse_args()
    from cattlepose.engine import compiling

    compiling.BACKEND = args.compile_backend
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench-gpu: no CUDA device on this machine; nothing to measure (run it on a GPU box)")
        return
    device = torch.device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    cfg = load_config(args.config, ["model.pretrained=null", *args.set])
    card = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (a check of the script, not a measurement)"
    cuda = torch.version.cuda if device.type == "cuda" else "-"
    print(f"bench-gpu on {card}, torch {torch.__version__}, CUDA {cuda}, {args.config}: {cfg.model.backbone} "
          f"{cfg.model.input_size[0]}x{cfg.model.input_size[1]}, batch {cfg.train.batch_size}", flush=True)  # fmt: skip
    print("| measurement | images/s | note |\n|---|---|---|", flush=True)
    total = time.perf_counter()
    rates: dict[tuple[str, str], float] = {}
    for variant in args.variants.split(",") if "network" not in skip else []:
        for psa in ("none", "parallel"):
            rate, ready, compiled = network_step(cfg, device, psa, variant, args.steps)
            rates[psa, variant] = rate
            note = f"first 3 steps {ready:.1f} s" + (f", {compiled:.1f} s compiling" if variant != "eager" else "")
            row(f"network step, PSA {psa}, {variant}", f"{rate:,.0f}", note)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            torch._dynamo.reset()  # each variant compiles from torch's on-disk caches, as a new process would
        if ("none", variant) in rates and ("parallel", variant) in rates:
            ratio = rates["none", variant] / rates["parallel", variant]
            row(f"PSA ÷ none, {variant} step", f"{ratio:.2f}", "time ratio (goal <= 1.15)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        from cattlepose.data.synthetic import synthesize

        synthesize(tmp_path / "synth", n_train=args.images, n_test=1, seed=0)
        if "loader" not in skip:
            rate, workers, stages = loader_rate(cfg, device, tmp_path / "synth", args.images // cfg.train.batch_size)
            row("training loader alone", f"{rate:,.0f}", f"{workers} workers")
            for k, v in stages.items():
                row(f"  one item: {k}", f"{v:.2f} ms", "in one process")
        if "train" not in skip:
            train = {}
            for psa in ("parallel", "none"):
                extra = [*args.set, f"model.psa={psa}"]
                rate, first, lines = pipeline_rate(args.config, device, tmp_path / "synth", tmp_path / "runs",
                                                   args.epochs, extra, f"bench_{psa}")  # fmt: skip
                train[psa] = rate
                row(f"cattlepose train ({Path(args.config).name}, PSA {psa})", f"{rate:,.0f}",
                    f"median epoch after the first (goal >= 1,500); first epoch done {first:.0f} s after the "
                    f"start (goal: first step within 60 s); {lines or 'not compiled'}")  # fmt: skip
            row("PSA ÷ none, cattlepose train", f"{train['none'] / train['parallel']:.2f}", "(goal <= 1.15)")
        if "predict" not in skip:
            cold, warm, bare = predict_rates(cfg, device, tmp_path / "synth", tmp_path / "pred_run", args.folds)
            row(f"predict, {args.folds} folds + flip, {args.images} crops", f"{cold:,.0f}",
                "images/s from loading the models, compilation included (goal >= 1,000)")  # fmt: skip
            row("  the same, the batch loop alone", f"{warm:,.0f}", "images/s")
            row("  ÷ the bare networks, same forwards", f"{warm / bare:.2f}", "(goal >= 0.85)")
    print(f"bench-gpu: {time.perf_counter() - total:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
