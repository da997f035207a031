"""Train one fold: read it top to bottom.

Exact resume rests on three facts: the batch order of an epoch depends only on (seed, epoch); every
augmentation draws from a generator seeded by (seed, epoch, index), whichever worker runs it; and `last.pt`,
written after every epoch, holds all state that changes (model, EMA, optimiser, schedule, scaler, RNGs,
history). A run killed mid-epoch restarts that epoch from the same state and computes the same numbers.
"""

from __future__ import annotations

import copy
import csv
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from cattlepose.codec import HeatmapCodec
from cattlepose.config import Config, config_to_dict
from cattlepose.data.dataset import KeypointDataset
from cattlepose.data.records import Sample
from cattlepose.engine import dist
from cattlepose.engine.device import amp_dtype, autocast
from cattlepose.engine.infer import Ensemble, predict_samples, prepare_for_inference
from cattlepose.errors import UserError
from cattlepose.io import atomic_open, atomic_path
from cattlepose.metrics import evaluate
from cattlepose.schema import KeypointSchema
from cattlepose.ui import Log

LOWER_IS_BETTER = ("rmse", "median_error", "mean_error", "loss")
TIMING_COLUMNS = ("seconds", "images_per_s")  # the only history columns that differ between identical runs


class TrainingDiverged(UserError):
    pass


# ---------------------------------------------------------------------------------------------- data order
class EpochSampler(Sampler):
    """Yields (epoch, index) pairs: a permutation fixed by (seed, epoch), this rank's share of each global
    batch, whole batches only. The epoch travels with the index so persistent workers need no notification."""

    def __init__(self, n: int, global_batch: int, seed: int, info: dist.DistInfo):
        self.n, self.global_batch, self.seed, self.info = n, global_batch, seed, info
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def steps(self) -> int:
        return self.n // self.global_batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        local = self.global_batch // self.info.world_size
        for step in range(self.steps):
            start = step * self.global_batch + self.info.rank * local
            for i in order[start : start + local]:
                yield (self.epoch, int(i))

    def __len__(self) -> int:
        return self.steps * (self.global_batch // self.info.world_size)


class EpochIndexed(Dataset):
    def __init__(self, dataset: KeypointDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        epoch, index = item
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


# ---------------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of the weights, with timm's warm-up so short runs are not dominated by
    the random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m.detach(), alpha=1 - d)
            else:
                e.copy_(m)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


# ---------------------------------------------------------------------------------------------- helpers
def effective_lr(cfg: Config) -> float:
    ratio = cfg.train.batch_size / cfg.train.base_batch_size
    scale = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[cfg.train.lr_scale]
    return cfg.train.lr * scale


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # norms and biases are not decayed
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=effective_lr(cfg))


def make_scheduler(
    opt: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


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


def is_better(metric: str, value: float, best: float | None) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    lower = any(metric.startswith(p) for p in LOWER_IS_BETTER)
    return value < best if lower else value > best


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(c for c in r if c not in columns)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def validation_metrics(model: nn.Module, samples: list[Sample], schema: KeypointSchema, cfg: Config,
                       device: torch.device) -> dict[str, float]:  # fmt: skip
    """Score a model through the same inference path a submission takes (flip included)."""
    ens = Ensemble([model], HeatmapCodec.from_config(cfg), schema, cfg, device)
    preds = predict_samples(ens, samples, workers=0)
    result = evaluate(
        preds.as_dict(), samples, schema, pck_torso=tuple(cfg.eval.pck_torso), pck_bbox=tuple(cfg.eval.pck_bbox)
    )
    return {k: float(v) for k, v in result["overall"].items() if isinstance(v, (int, float))}


# ---------------------------------------------------------------------------------------------- the fold
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
    stop_after_epoch: int | None = None,
) -> FoldResult:
    from cattlepose.models import build_model

    log = log or Log(quiet=True)
    info = info or dist.DistInfo()
    tc = cfg.train
    fold_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)

    # --- data: the global batch is split over processes; tiny data sets shrink it rather than train nothing
    global_batch = min(tc.batch_size, len(train_samples))
    global_batch -= global_batch % info.world_size
    if global_batch < info.world_size:
        raise UserError(f"{len(train_samples)} training samples cannot feed {info.world_size} processes")
    codec = HeatmapCodec.from_config(cfg)
    train_ds = KeypointDataset(train_samples, schema, cfg, train=True, codec=codec, seed=tc.seed)
    sampler = EpochSampler(len(train_ds), global_batch, tc.seed, info)
    loader = DataLoader(
        EpochIndexed(train_ds),
        batch_size=global_batch // info.world_size,
        sampler=sampler,
        num_workers=tc.workers,
        persistent_workers=tc.workers > 0,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    steps = sampler.steps

    # --- model, optimiser, schedule, EMA, scaler
    model = build_model(cfg.model, schema.num_keypoints).to(device)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, tc.ema) if tc.ema else None
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, round(tc.warmup_epochs * steps), tc.epochs * steps)
    use_scaler = amp_dtype(device, tc.amp) == torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    net: nn.Module = model
    if info.enabled:
        if tc.sync_bn and device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    history: list[dict[str, Any]] = []
    best: float | None = None
    best_epoch: int | None = None
    start_epoch = 0
    last_path, best_path = fold_dir / "last.pt", fold_dir / "best.pt"
    if resume and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        history, best, best_epoch = state["history"], state["best"], state["best_epoch"]
        start_epoch = int(state["epoch"])
        log.info(f"{fold_dir.name}: resumed after epoch {start_epoch}")

    ckpt_meta = {"config": config_to_dict(cfg), "schema": schema.to_dict()}
    for epoch in range(start_epoch, tc.epochs):
        sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        loss_sum, seen = 0.0, 0
        with log.task(f"{fold_dir.name} epoch {epoch + 1}/{tc.epochs}", total=steps) as bar:
            for step, batch in enumerate(loader):
                x = batch["image"].to(device, non_blocking=True)
                if cfg.model.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                target = batch["heatmaps"].to(device, non_blocking=True)
                weight = batch["weights"].to(device, non_blocking=True)
                with autocast(device, tc.amp):
                    logits = net(x)
                loss = codec.loss(logits.float(), target, weight)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"the loss became {value} at epoch {epoch + 1}, step {step + 1}; lower train.lr "
                        f"(now {tc.lr}) or set train.grad_clip",
                        path=fold_dir,
                        field="train.lr",
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if tc.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                if ema is not None:
                    ema.update(model)
                loss_sum += value * x.shape[0]
                seen += x.shape[0]
                rate = seen * info.world_size / (time.perf_counter() - t0)
                bar.update(1, status=f"loss {loss_sum / seen:.4f} lr {sched.get_last_lr()[0]:.2e} {rate:.0f} img/s")
        seconds = time.perf_counter() - t0
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": sched.get_last_lr()[0],
            "train_loss": dist.all_reduce_mean(loss_sum / max(1, seen), info),
            "seconds": round(seconds, 3),
            "images_per_s": round(seen * info.world_size / seconds, 2),
        }
        eval_model = ema.module if ema is not None else model
        validate = (epoch + 1) % tc.val_every == 0 or epoch + 1 == tc.epochs
        if validate and val_samples and info.is_main:
            metrics = validation_metrics(eval_model, val_samples, schema, cfg, device)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            if tc.best_metric not in metrics:
                raise UserError(
                    f"'{tc.best_metric}' is not a validation metric; choose one of {', '.join(sorted(metrics))}",
                    field="train.best_metric",
                )
            value = metrics[tc.best_metric]
            if is_better(tc.best_metric, value, best):
                best, best_epoch = value, epoch + 1
                save_checkpoint(
                    best_path, {"model": eval_model.state_dict(), "epoch": epoch + 1, "metric": value, **ckpt_meta}
                )
        model.train()
        history.append(row)
        if info.is_main:
            if not val_samples and epoch + 1 == tc.epochs:  # nothing to select on: the last weights are the best
                save_checkpoint(best_path, {"model": eval_model.state_dict(), "epoch": epoch + 1, **ckpt_meta})
            save_checkpoint(
                last_path,
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch + 1,
                    "rng": rng_state(),
                    "history": history,
                    "best": best,
                    "best_epoch": best_epoch,
                    **ckpt_meta,
                },
            )
            write_history(fold_dir / "history.csv", history)
            shown = {k: v for k, v in row.items() if k.startswith("val_pck") or k in ("train_loss", "val_oks_ap")}
            log.info(f"{fold_dir.name} epoch {epoch + 1}: " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        dist.barrier(info)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return FoldResult(fold_dir, best, best_epoch, history)


def load_fold_model(fold_dir: Path, cfg: Config, schema: KeypointSchema, device: torch.device) -> nn.Module:
    from cattlepose.models import build_model

    ckpt = torch.load(fold_dir / "best.pt", map_location="cpu", weights_only=True)
    model = build_model(cfg.model.model_copy(update={"pretrained": None}), schema.num_keypoints)
    model.load_state_dict(ckpt["model"])
    return prepare_for_inference(model, cfg, device)
