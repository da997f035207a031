"""Train one fold: set-up, then one loop of train -> validate -> checkpoint, epoch by epoch.

Exact resume: the batches of an epoch depend only on (seed, epoch) (`loader.py`), and `last.pt`, written after
every epoch, holds everything that changes (`TrainState`: weights, EMA, optimiser, schedule, scaler, RNGs,
history). A run killed mid-epoch restarts that epoch from the same state and computes the same numbers.
The step never waits for the device: losses stay there and are read every `LOSS_READ_EVERY` steps.
"""

from __future__ import annotations

import contextlib
import csv
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cattlepose.core.config import Config, config_to_dict
from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open
from cattlepose.core.schema import KeypointSchema
from cattlepose.core.ui import Log
from cattlepose.data.dataset import KeypointDataset, decode_all
from cattlepose.data.records import Sample
from cattlepose.engine import compiling, dist
from cattlepose.engine import device as dev
from cattlepose.engine.infer import Ensemble, predict_samples
from cattlepose.engine.loader import DeviceBatch, EpochSampler, train_loader
from cattlepose.engine.optim import EMA, make_optimizer, make_scheduler
from cattlepose.metrics.keypoints import evaluate
from cattlepose.metrics.names import is_better, selection_metric
from cattlepose.models.codec import HeatmapCodec
from cattlepose.runs.rundir import BEST, HISTORY, LAST

TIMING_COLUMNS = ("seconds", "images_per_s")  # the only history columns that differ between identical runs
LOSS_READ_EVERY = 20  # steps between reads of the device-side losses (progress text, non-finite check)


class TrainingDiverged(UserError):
    pass


@dataclass
class TrainState:
    """Everything a fold's training changes; `last.pt` is its `state_dict`."""

    model: nn.Module
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    epoch: int = 0  # epochs finished
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "rng": rng_state(),
            "history": self.history,
            "best": self.best,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        set_rng_state(state["rng"])
        self.history, self.best, self.best_epoch = state["history"], state["best"], state["best_epoch"]

    @property
    def eval_model(self) -> nn.Module:
        """What validation scores and `best.pt` keeps: the EMA weights when there are any."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class Fold:
    """What stays fixed while a fold trains."""

    cfg: Config
    schema: KeypointSchema
    dir: Path
    device: torch.device
    info: dist.DistInfo
    log: Log
    codec: HeatmapCodec
    sampler: EpochSampler
    loader: torch.utils.data.DataLoader
    forward_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    best_metric: str
    compile_pending: bool = False  # regions compiled, their first step (which compiles them) still to come

    @property
    def meta(self) -> dict[str, Any]:
        """Saved beside the weights, so a checkpoint says what it was trained on."""
        return {"config": config_to_dict(self.cfg), "schema": self.schema.to_dict()}


@dataclass
class FoldResult:
    fold_dir: Path
    best_metric: float | None
    best_epoch: int | None
    history: list[dict[str, Any]]


def train_fold(
    cfg: Config,
    schema: KeypointSchema,
    train_samples: list[Sample],
    val_samples: list[Sample],
    fold_dir: Path,
    device: torch.device,
    resume: bool = False,
    log: Log | None = None,
    info: dist.DistInfo | None = None,
) -> FoldResult:
    fold, state = setup_fold(cfg, schema, train_samples, fold_dir, device, log or Log(quiet=True), info)
    last = fold_dir / LAST
    if resume and last.is_file():
        state.load_state_dict(torch.load(last, map_location="cpu", weights_only=True))
        fold.log.info(f"{fold_dir.name}: resumed after epoch {state.epoch}")
    for epoch in range(state.epoch, cfg.train.epochs):
        row = train_one_epoch(fold, state, epoch)
        state.epoch = epoch + 1
        if fold.info.is_main and val_samples and _validates(cfg, epoch):
            metrics = validate(fold, state.eval_model, val_samples)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            value = metrics.get(fold.best_metric)
            if value is not None and is_better(fold.best_metric, value, state.best):
                state.best, state.best_epoch = value, epoch + 1
                save_weights(fold, state, BEST, metric=value)
        state.history.append(row)
        if fold.info.is_main:
            if not val_samples and state.epoch == cfg.train.epochs:  # nothing to select on: the last weights
                save_weights(fold, state, BEST)
            save_checkpoint(fold_dir / LAST, {**state.state_dict(), **fold.meta})
            write_history(fold_dir / HISTORY, state.history)
            fold.log.info(f"{fold_dir.name} epoch {state.epoch}: {_summary(row)}")
        dist.barrier(fold.info)
    return FoldResult(fold_dir, state.best, state.best_epoch, state.history)


def setup_fold(
    cfg: Config,
    schema: KeypointSchema,
    samples: list[Sample],
    fold_dir: Path,
    device: torch.device,
    log: Log,
    info: dist.DistInfo | None = None,
) -> tuple[Fold, TrainState]:
    """Data, model, optimiser, schedule, EMA and the (compiled) forward + loss of one fold, before any step."""
    from cattlepose.models.build import build_model

    info = info or dist.DistInfo()
    tc = cfg.train
    fold_dir.mkdir(parents=True, exist_ok=True)
    dev.flush_denormals(device)
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    # the global batch is split over processes; a tiny data set shrinks it rather than train nothing
    global_batch = min(tc.batch_size, len(samples))
    global_batch -= global_batch % info.world_size
    if global_batch < info.world_size:
        raise UserError(f"{len(samples)} training samples cannot feed {info.world_size} processes")
    images = _image_cache(cfg, samples, log)
    dataset = KeypointDataset(samples, schema, cfg, train=True, seed=tc.seed, images=images)
    sampler = EpochSampler(len(dataset), global_batch, tc.seed, info)
    loader = train_loader(dataset, sampler, dev.resolve_workers(tc.workers, device, info.world_size), device)

    model = build_model(cfg.model, schema.num_keypoints, log=log if info.is_main else None, keypoints=schema.keypoints)
    model = model.to(device, memory_format=torch.channels_last if cfg.model.channels_last else torch.preserve_format)
    ema = EMA(model, tc.ema) if tc.ema else None  # a copy made before compiling: validation runs it eagerly
    opt = make_optimizer(model, cfg, device)
    sched = make_scheduler(opt, round(tc.warmup_epochs * sampler.steps), tc.epochs * sampler.steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dev.amp_dtype(device, tc.amp) == torch.float16)
    state = TrainState(model, ema, opt, sched, scaler)

    net: nn.Module = model
    if info.enabled:
        if tc.sync_bn and device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    codec = HeatmapCodec.from_config(cfg)

    def forward_loss(images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        with dev.autocast(device, tc.amp):
            logits = net(images)
        return codec.loss(logits.float(), heatmaps, weights)

    decision = compiling.decide(tc.compile, device, sampler.steps * global_batch * tc.epochs, "train")
    if decision.compile:
        names = compiling.compile_regions(model)
        if info.is_main:
            log.info(f"compiling {compiling.region_summary(names)} at the first step ({decision.reason})")
    elif info.is_main and tc.compile != "off":
        log.info(f"not compiled: {decision.reason}")
    best_metric = selection_metric(cfg, schema)
    fold = Fold(cfg, schema, fold_dir, device, info, log, codec, sampler, loader, forward_loss, best_metric,
                compile_pending=decision.compile)  # fmt: skip
    return fold, state


def train_one_epoch(fold: Fold, state: TrainState, epoch: int) -> dict[str, Any]:
    """One pass over the training batches; returns the epoch's history row (without validation)."""
    tc, device = fold.cfg.train, fold.device
    ignore_hidden = fold.cfg.augment.occlusion_policy == "ignore"
    fold.sampler.set_epoch(epoch)
    state.model.train()
    steps = fold.sampler.steps
    losses = torch.zeros(steps, device=device)  # read every LOSS_READ_EVERY steps: the step never syncs
    seen, read, status = 0, 0, ""
    start = time.perf_counter()
    with fold.log.task(f"{fold.dir.name} epoch {epoch + 1}/{tc.epochs}", total=steps) as bar:
        for step, raw in enumerate(fold.loader):
            batch = DeviceBatch.from_loader(raw, device, fold.codec, fold.cfg.model.channels_last, ignore_hidden)
            with _first_compiled_step(fold, bar):
                loss = fold.forward_loss(batch.images, batch.heatmaps, batch.weights)
                losses[step] = loss.detach()
                state.optimizer.zero_grad(set_to_none=True)
                state.scaler.scale(loss).backward()
            optimizer_step(state, tc.grad_clip)
            seen += batch.images.shape[0]
            if step + 1 - read >= LOSS_READ_EVERY or step + 1 == steps:
                mean = check_losses(losses, read, step + 1, epoch, fold.cfg.train.lr, fold.dir)
                read = step + 1
                rate = seen * fold.info.world_size / (time.perf_counter() - start)
                status = f"loss {mean:.4f} lr {state.scheduler.get_last_lr()[0]:.2e} {rate:.0f} img/s"
            bar.update(1, status=status)
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch + 1,
        "lr": state.scheduler.get_last_lr()[0],
        "train_loss": dist.all_reduce_mean(float(losses.double().mean()) if steps else 0.0, fold.info),
        "seconds": round(seconds, 3),
        "images_per_s": round(seen * fold.info.world_size / seconds, 2),
    }


def optimizer_step(state: TrainState, grad_clip: float | None) -> None:
    """After the backward pass: clip, step (through the scaler), schedule, EMA; one spelling for every trainer."""
    if grad_clip:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip, foreach=True)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.model)


@contextlib.contextmanager
def _first_compiled_step(fold: Fold, bar: Any) -> Iterator[None]:
    """The step that compiles the network (forward and backward) says so on the progress bar and in the log."""
    if not fold.compile_pending:
        yield
        return
    log = fold.log if fold.info.is_main else Log(quiet=True)
    with compiling.reporting(log, bar, "the network"):
        yield
    fold.compile_pending = False


def check_losses(losses: torch.Tensor, start: int, stop: int, epoch: int, lr: float, where: Path) -> float:
    """Read steps [start, stop) of the epoch's losses; a non-finite one stops the run (`where`: its fold folder)
    and names its step. Returns the epoch's mean loss so far."""
    values = losses[:stop].double().cpu()
    bad = (~torch.isfinite(values[start:])).nonzero()
    if len(bad):
        step = start + int(bad[0])
        raise TrainingDiverged(
            f"the loss became {float(values[step])} at epoch {epoch + 1}, step {step + 1}; lower train.lr "
            f"(now {lr}) or set train.grad_clip",
            path=where,
            field="train.lr",
        )
    return float(values.mean())


def validate(fold: Fold, model: nn.Module, samples: list[Sample]) -> dict[str, float]:
    """Score a model through the same inference path a submission takes (flip included). Eagerly: a model
    with compiled regions would otherwise compile its eval-mode graphs for a few hundred crops."""
    cfg = fold.cfg
    training = model.training
    ens = Ensemble([model.eval()], fold.codec, fold.schema, cfg, fold.device)
    with compiling.eager():
        preds = predict_samples(ens, samples, workers=0)
    result = evaluate(preds.as_dict(), samples, fold.schema, tuple(cfg.eval.pck_torso), tuple(cfg.eval.pck_bbox))
    model.train(training)
    return {k: float(v) for k, v in result["overall"].items() if isinstance(v, (int, float))}


def _validates(cfg: Config, epoch: int) -> bool:
    return (epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs


def _summary(row: dict[str, Any]) -> str:
    shown = {k: v for k, v in row.items() if k.startswith("val_pck") or k in ("train_loss", "val_oks_ap")}
    return "  ".join(f"{k} {v:.4f}" for k, v in shown.items())


# ---------------------------------------------------------------------------------------------- settings
def _image_cache(cfg: Config, samples: list[Sample], log: Log) -> dict[Path, np.ndarray] | None:
    setting = cfg.train.cache_images
    unique = {s.image: s for s in samples}.values()
    known = all(s.width and s.height for s in unique)
    size = sum((s.width or 0) * (s.height or 0) * 3 for s in unique)
    if setting == "off" or (setting == "auto" and (not known or size > dev.CACHE_BUDGET_BYTES)):
        return None
    log.info(f"decoding {len({s.image for s in samples})} training images into memory ({size / 2**20:.0f} MiB)")
    return decode_all(samples)


# ---------------------------------------------------------------------------------------------- files
def save_weights(fold: Fold, state: TrainState, name: str, **extra: Any) -> None:
    """The evaluation weights alone (what `predict` loads), with the run's config and schema."""
    weights = {"model": state.eval_model.state_dict(), "epoch": state.epoch, **extra, **fold.meta}
    save_checkpoint(fold.dir / name, weights)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    # through a Python file: a failed write then keeps the system's reason (a full disk), which torch.save to a
    # path replaces by its zip writer's "unexpected pos"
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(c for c in r if c not in columns)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})


# ---------------------------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """Every global RNG, in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
