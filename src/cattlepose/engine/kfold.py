"""`cattlepose train`: every requested fold of a run, one after the other, then the cross-validation report.

Several processes may share one run directory, each taking its own `--folds` (one per GPU or node); under
torchrun all processes train each fold together. Whoever finishes the last fold writes the report.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError
from cattlepose.core.ui import Log
from cattlepose.data import fingerprint
from cattlepose.data.check import require_decodable
from cattlepose.data.folds import merged_groups
from cattlepose.data.source import load_training_data
from cattlepose.engine import crossval, detcv, dist
from cattlepose.engine.device import resolve_device
from cattlepose.engine.fit import train_fold
from cattlepose.metrics.names import selection_metric
from cattlepose.runs.rundir import RunDir, read_data_record, started_folds


def run_training(
    cfg: Config,
    run_dir: Path,
    folds: list[int] | None = None,
    resume: bool = False,
    log: Log | None = None,
    accept_data_change: bool = False,
) -> dict[str, Any] | None:
    """Train the requested folds of a run; when every fold is done, return the CV report (else None).

    A run whose folds have trained goes on only with the data it recorded (`data.json`), unless
    `accept_data_change`."""
    log = log or Log(quiet=True)
    info = dist.from_env()
    device = resolve_device(cfg.train.device)
    if info.enabled and device.type == "cuda":
        import torch

        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    dist.init(info, device)
    if not info.is_main:
        log = Log(quiet=True)
    try:
        samples, schema = load_training_data(cfg, log)
        if cfg.task == "keypoints":
            selection_metric(cfg, schema)  # a setting the data cannot satisfy fails now, not after an epoch
        elif info.enabled:
            raise UserError("a detector run trains in one process; start it without torchrun", field="task")
        wanted = list(range(cfg.train.folds)) if folds is None else folds
        if info.is_main and not started_folds(run_dir):  # a first start: nothing is written with a bad image
            require_decodable(samples)
        if info.is_main:
            data = fingerprint.take(samples, previous=read_data_record(run_dir, damaged_ok=True))
            run, assignment = RunDir.prepare(run_dir, cfg, schema, samples, wanted, resume, data, accept_data_change,
                                             log)  # fmt: skip
            for group in merged_groups(samples, cfg.data.group_by):
                log.info(f"data.group_by {cfg.data.group_by}: {', '.join(group)} share photographs, so they are one "
                         "fold group")  # fmt: skip
        dist.barrier(info)
        if not info.is_main:
            run = RunDir(run_dir, cfg, schema)
            assignment = run.assignment(samples)
        log.info(
            f"run {run_dir}: {len(samples)} samples, {cfg.train.folds} folds by {cfg.data.group_by or 'sample'}, "
            f"training fold(s) {wanted} on {device}" + (f" x{info.world_size} processes" if info.enabled else "")
        )
        if cfg.task == "detect":
            return detcv.train_folds(run, cfg, schema, samples, assignment, wanted, resume, device, log)
        predicted: dict[int, crossval.OofPredictions] = {}
        for k in wanted:
            if run.done(k):
                log.info(f"fold {k} is finished; skipped")
                continue
            train_s = [s for s, f in zip(samples, assignment, strict=True) if f != k]
            held_out = [s for s, f in zip(samples, assignment, strict=True) if f == k]
            with run.training(k) if info.is_main else contextlib.nullcontext():
                result = train_fold(cfg, schema, train_s, held_out, run.fold_dir(k), device, resume, log, info)
                if info.is_main:
                    predicted[k] = crossval.predict_fold(run, k, held_out, device, log)
                    run.mark_done(k, result.best_metric, result.best_epoch, time.time())
            dist.barrier(info)
        if info.is_main and not run.unfinished():
            every = {k: predicted[k] if k in predicted else crossval.read_fold(run, k, samples, log)
                     for k in range(cfg.train.folds)}  # fmt: skip
            return crossval.cv_report(run, samples, every)
        return None
    finally:
        dist.shutdown(info)
