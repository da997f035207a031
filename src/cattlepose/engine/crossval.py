"""Cross-validation: each fold's out-of-fold predictions, and the report over all of them (cv.json, oof.csv).

A fold's predictions are kept in memory by the process that trained it and saved exactly in `fold{k}/oof.csv`,
the hand-over to a later `collect` when folds ran in separate processes. The run's `oof.csv` is an output only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cattlepose.core.errors import UserError
from cattlepose.core.ui import Log
from cattlepose.data.records import Sample
from cattlepose.engine import detcv
from cattlepose.engine.device import resolve_device
from cattlepose.engine.infer import Ensemble, load_fold_model, predict_samples
from cattlepose.metrics.keypoints import evaluate
from cattlepose.models.codec import HeatmapCodec
from cattlepose.runs.rundir import RunDir

OofPredictions = dict[str, np.ndarray]  # sample key -> (K, 3) x, y, score in original pixels


def predict_fold(run: RunDir, k: int, samples: list[Sample], device: torch.device, log: Log) -> OofPredictions:
    """Fold k's best model on its held-out samples, saved exactly to fold{k}/oof.csv and returned."""
    model = load_fold_model(run, k, device)
    ens = Ensemble([model], HeatmapCodec.from_config(run.cfg), run.schema, run.cfg, device, [k])
    preds = predict_samples(ens, samples, workers=0, log=log).as_dict()
    run.write_oof(preds, {s.key: s.image.name for s in samples}, k)
    return preds


def read_fold(run: RunDir, k: int, samples: list[Sample], log: Log) -> OofPredictions:
    """A finished fold's saved predictions; when its oof.csv was lost, its best.pt predicts them again."""
    if run.oof_path(k).is_file():
        return run.read_oof(k)
    log.info(f"fold {k} has no oof.csv; predicting its held-out samples again with its {run.checkpoint(k).name}")
    held_out = [s for s, f in zip(samples, run.assignment(samples), strict=True) if f == k]
    return predict_fold(run, k, held_out, resolve_device(run.cfg.train.device), log)


def cv_report(run: RunDir, samples: list[Sample], folds: dict[int, OofPredictions]) -> dict[str, Any]:
    """Metrics per fold, their spread, and over all out-of-fold predictions; writes cv.json and oof.csv."""
    cfg, schema = run.cfg, run.schema
    assignment = run.assignment(samples)
    kw = {"pck_torso": tuple(cfg.eval.pck_torso), "pck_bbox": tuple(cfg.eval.pck_bbox)}
    per_fold = {}
    for k, preds in sorted(folds.items()):
        held_out = [s for s, f in zip(samples, assignment, strict=True) if f == k]
        per_fold[str(k)] = evaluate(preds, held_out, schema, **kw)["overall"]
    oof = {key: arr for preds in folds.values() for key, arr in preds.items()}
    missing = [s.key for s in samples if s.key not in oof]
    if missing:
        raise UserError(f"{len(missing)} sample(s) have no out-of-fold prediction, e.g. {missing[:3]}", path=run.path)
    overall = evaluate(oof, samples, schema, **kw)
    report = {"run": str(run.path), "folds": per_fold, "fold_spread": _spread(per_fold), **overall}
    run.write_cv(report)
    run.write_oof({s.key: oof[s.key] for s in samples}, {s.key: s.image.name for s in samples})
    return report


def _spread(per_fold: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of each metric over folds; a metric undefined in a fold (no usable torso
    length there) is left out of that fold."""
    names = [m for m, v in next(iter(per_fold.values())).items() if isinstance(v, (int, float))]
    spread = {}
    for m in names:
        values = [f[m] for f in per_fold.values() if f.get(m) is not None]
        spread[m] = {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None
    return spread


def collect(run_dir: Path, log: Log | None = None, accept_data_change: bool = False) -> dict[str, Any]:
    """The report from the saved fold predictions (after folds trained in separate processes), scored against
    the data the run recorded: a changed data set is refused unless `accept_data_change`."""
    from cattlepose.data.fingerprint import take
    from cattlepose.data.source import load_training_data
    from cattlepose.runs.rundir import read_data_record

    run = RunDir.open(run_dir)
    unfinished = run.unfinished()
    if unfinished:
        raise UserError(
            f"fold(s) {unfinished} have not finished; train them first: "
            f"`{run.train_command(','.join(map(str, unfinished)), '--resume')}`",
            path=run.path,
        )
    log = log or Log(quiet=True)
    samples, _ = load_training_data(run.cfg, log)
    data = take(samples, previous=read_data_record(run.path, damaged_ok=True))
    run.check_data(data, accept_data_change, log, ["--collect"])
    run.assignment(samples)  # a lost or mismatched folds.csv is named before any prediction
    if run.task == "detect":
        return detcv.collect(run, run.cfg, samples, log)
    return cv_report(run, samples, {k: read_fold(run, k, samples, log) for k in range(run.cfg.train.folds)})
