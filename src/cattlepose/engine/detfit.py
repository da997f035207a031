"""Train one fold of a detector run: the photographs of the fold's training animals, CenterNet targets built on
the device's side of the loader, AdamW + EMA + warm-up/cosine (engine/optim.py), validation by box AP through
the inference library (engine/detect.py) selecting best.pt.

The machinery is the keypoint fold's (engine/fit.py): `TrainState` and `last.pt` every epoch for exact resume (the
batches of an epoch depend only on (seed, epoch): loader.EpochSampler; each item's augmentation on (seed, epoch,
index)), history.csv, the progress bar, a non-finite loss named with its step.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cattlepose.core.config import Config, config_to_dict
from cattlepose.core.schema import KeypointSchema
from cattlepose.core.ui import Log
from cattlepose.data.dataset import network_input
from cattlepose.data.detection import DetectionDataset, DetImage
from cattlepose.data.images import load_image
from cattlepose.engine import device as dev
from cattlepose.engine import dist
from cattlepose.engine.detect import CPU_BATCH, DetectOptions, Detector, DetectorGraph
from cattlepose.engine.fit import (
    LOSS_READ_EVERY,
    FoldResult,
    TrainState,
    check_losses,
    optimizer_step,
    save_checkpoint,
    seed_everything,
    write_history,
)
from cattlepose.engine.loader import EpochSampler, train_loader
from cattlepose.engine.optim import EMA, make_optimizer, make_scheduler
from cattlepose.metrics.boxes import Detections, box_ap
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.detector import build_detector, detection_loss, encode_targets
from cattlepose.runs.rundir import BEST, LAST

BEST_METRIC = "bbox_ap"


@dataclass
class DetFold:
    cfg: Config
    schema: KeypointSchema
    categories: list[str]
    dir: Path
    device: torch.device
    log: Log
    sampler: EpochSampler
    loader: torch.utils.data.DataLoader

    @property
    def meta(self) -> dict[str, Any]:
        """Saved beside the weights: the config, the schema the animals were read with, the categories."""
        return {"config": config_to_dict(self.cfg), "schema": self.schema.to_dict(), "categories": self.categories,
                "task": "detect"}  # fmt: skip


def train_detector_fold(
    cfg: Config,
    schema: KeypointSchema,
    categories: list[str],
    train_images: list[DetImage],
    val_images: list[DetImage],
    fold_dir: Path,
    device: torch.device,
    resume: bool = False,
    log: Log | None = None,
) -> FoldResult:
    log = log or Log(quiet=True)
    fold, state = setup_detector_fold(cfg, schema, categories, train_images, fold_dir, device, log)
    last = fold_dir / LAST
    if resume and last.is_file():
        state.load_state_dict(torch.load(last, map_location="cpu", weights_only=True))
        log.info(f"{fold_dir.name}: resumed after epoch {state.epoch}")
    for epoch in range(state.epoch, cfg.train.epochs):
        row = train_one_epoch(fold, state, epoch)
        state.epoch = epoch + 1
        if val_images and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs):
            metrics = validate(fold, state.eval_model, val_images)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            value = metrics.get(BEST_METRIC)
            if value is not None and (state.best is None or value > state.best):
                state.best, state.best_epoch = value, epoch + 1
                _save_weights(fold, state, BEST, metric=value)
        state.history.append(row)
        if not val_images and state.epoch == cfg.train.epochs:
            _save_weights(fold, state, BEST)
        if state.best is None and state.epoch == cfg.train.epochs and not (fold_dir / BEST).is_file():
            _save_weights(fold, state, BEST)  # validation never scored (no countable animal held out)
        save_checkpoint(last, {**state.state_dict(), **fold.meta})
        write_history(fold_dir / "history.csv", state.history)
        shown = {k: v for k, v in row.items() if k in ("train_loss", "val_bbox_ap", "val_bbox_ap50")}
        log.info(f"{fold_dir.name} epoch {state.epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()
                                                                      if v is not None))  # fmt: skip
    return FoldResult(fold_dir, state.best, state.best_epoch, state.history)


def setup_detector_fold(
    cfg: Config, schema: KeypointSchema, categories: list[str], images: list[DetImage], fold_dir: Path,
    device: torch.device, log: Log,
) -> tuple[DetFold, TrainState]:  # fmt: skip
    tc = cfg.train
    fold_dir.mkdir(parents=True, exist_ok=True)
    dev.flush_denormals(device)
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    batch = min(tc.batch_size, len(images))
    cache = _image_cache(cfg, images, log)
    dataset = DetectionDataset(images, cfg, train=True, seed=tc.seed, cache=cache)
    sampler = EpochSampler(len(dataset), batch, tc.seed, dist.DistInfo())
    loader = train_loader(dataset, sampler, dev.resolve_workers(tc.workers, device), device)  # type: ignore[arg-type]
    model = build_detector(cfg.model.backbone, len(categories), cfg.detect.stride, cfg.model.pretrained, log)
    model = model.to(device, memory_format=torch.channels_last if cfg.model.channels_last else torch.preserve_format)
    ema = EMA(model, tc.ema) if tc.ema else None
    opt = make_optimizer(model, cfg, device)
    sched = make_scheduler(opt, round(tc.warmup_epochs * sampler.steps), tc.epochs * sampler.steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dev.amp_dtype(device, tc.amp) == torch.float16)
    state = TrainState(model, ema, opt, sched, scaler)
    return DetFold(cfg, schema, categories, fold_dir, device, log, sampler, loader), state


def _image_cache(cfg: Config, images: list[DetImage], log: Log) -> dict[Path, np.ndarray] | None:
    setting = cfg.train.cache_images
    known = all(i.source.width and i.source.height for i in images)
    size = sum((i.source.width or 0) * (i.source.height or 0) * 3 for i in images)
    if setting == "off" or (setting == "auto" and (not known or size > dev.CACHE_BUDGET_BYTES)):
        return None
    log.info(f"decoding {len(images)} training images into memory ({size / 2**20:.0f} MiB)")
    return {i.path: load_image(i.path) for i in images}


def targets_of(batch: dict, fold: DetFold) -> dict[str, torch.Tensor]:
    """A loader batch's boxes -> CenterNet targets (numpy, on the CPU: a few small maps per image)."""
    cfg = fold.cfg
    h, w = cfg.model.input_size
    stride = cfg.detect.stride
    parts: dict[str, list[np.ndarray]] = {}
    for boxes, labels, ignore, n in zip(batch["boxes"].numpy(), batch["labels"].numpy(), batch["ignore"].numpy(),
                                        batch["count"].numpy(), strict=True):  # fmt: skip
        t = encode_targets(boxes[:n], labels[:n], ignore[:n], len(fold.categories), (h // stride, w // stride), stride)
        for k, v in t.items():
            parts.setdefault(k, []).append(v)
    return {k: torch.from_numpy(np.stack(v)).to(fold.device, non_blocking=True) for k, v in parts.items()}


def train_one_epoch(fold: DetFold, state: TrainState, epoch: int) -> dict[str, Any]:
    tc, device = fold.cfg.train, fold.device
    fold.sampler.set_epoch(epoch)
    state.model.train()
    steps = fold.sampler.steps
    losses = torch.zeros(steps, device=device)
    seen, read, status = 0, 0, ""
    start = time.perf_counter()
    with fold.log.task(f"{fold.dir.name} epoch {epoch + 1}/{tc.epochs}", total=steps) as bar:
        for step, raw in enumerate(fold.loader):
            images = network_input(raw["image"], device, fold.cfg.model.channels_last)
            targets = targets_of(raw, fold)
            with dev.autocast(device, tc.amp):
                outputs = state.model(images)
            loss, _ = detection_loss(outputs, targets)
            losses[step] = loss.detach()
            state.optimizer.zero_grad(set_to_none=True)
            state.scaler.scale(loss).backward()
            optimizer_step(state, tc.grad_clip)
            seen += images.shape[0]
            if step + 1 - read >= LOSS_READ_EVERY or step + 1 == steps:
                mean = check_losses(losses, read, step + 1, epoch, fold.cfg.train.lr, fold.dir)
                read = step + 1
                rate = seen / (time.perf_counter() - start)
                status = f"loss {mean:.4f} lr {state.scheduler.get_last_lr()[0]:.2e} {rate:.1f} img/s"
            bar.update(1, status=status)
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch + 1,
        "lr": state.scheduler.get_last_lr()[0],
        "train_loss": float(losses.double().mean()) if steps else 0.0,
        "seconds": round(seconds, 3),
        "images_per_s": round(seen / seconds, 2),
    }


def validate(fold: DetFold, model: nn.Module, images: list[DetImage]) -> dict[str, float | None]:
    """Box AP of the held-out photographs through the inference path (flip included)."""
    dets = detect_with(fold.cfg, fold.categories, [model], images, fold.device)
    result = box_ap(images, dets, fold.categories)
    return {k: result[k] for k in ("bbox_ap", "bbox_ap50", "bbox_ar")}


def detect_with(
    cfg: Config, categories: list[str], models: list[nn.Module], images: list[DetImage], device: torch.device
) -> list[Detections]:
    """Detections of `images` by `models` (copies are fused and put in eval mode; the originals are left as they
    were), with the run's inference settings (flip: infer.flip) and a score threshold of 0.001 (AP ranks every
    detection; a threshold would cut the curve)."""
    copies = []
    for m in models:
        c = copy.deepcopy(m).eval()
        fuse_batchnorm(c)
        copies.append(c)
    graph = DetectorGraph(copies, cfg.infer.flip, cfg.detect.top_k).to(device).eval()

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            b, s, c = graph(torch.from_numpy(batch).to(device))
        return b.cpu().double().numpy(), s.cpu().double().numpy(), c.cpu().numpy()

    options = DetectOptions.from_config(cfg)
    options = DetectOptions(0.001, options.nms_iou, max(options.max_animals, 100), options.min_size)
    detector = Detector(categories, options, run, CPU_BATCH, tuple(cfg.model.input_size), [], "torch")
    return detector.detections([i.source for i in images])


def _save_weights(fold: DetFold, state: TrainState, name: str, **extra: Any) -> None:
    weights = {"model": state.eval_model.state_dict(), "epoch": state.epoch, **extra, **fold.meta}
    save_checkpoint(fold.dir / name, weights)
