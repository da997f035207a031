"""A detector run's folds and its cross-validation: the samples (read as keypoint training reads them, folds from
the same folds.csv) grouped into photographs, each fold trained on its training photographs, its best.pt run on
its held-out ones (fold{k}/detections.json), and the box AP over all of them (cv.json, detections.json).

For the same data file, folds, seed and group_by, a photograph is held out in the same fold as in a keypoint run:
the assignment is RunDir.prepare's, made on the animals before they are grouped.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError
from cattlepose.core.schema import KeypointSchema
from cattlepose.core.ui import Log
from cattlepose.data.detection import DetImage, category_names, group_images, image_folds
from cattlepose.data.records import Sample
from cattlepose.engine.detect import load_fold_detector
from cattlepose.engine.detfit import detect_with, train_detector_fold
from cattlepose.engine.device import resolve_device
from cattlepose.metrics.boxes import BOX_KEYS, Detections, box_ap
from cattlepose.runs.rundir import RunDir


def detection_set(
    cfg: Config, samples: list[Sample], assignment: list[int]
) -> tuple[list[str], list[DetImage], list[int]]:
    """The categories, the photographs and each photograph's fold. Boxes are checked (bad ones are UserErrors)."""
    categories = category_names(samples)
    images, of_sample = group_images(samples, cfg, categories)
    return categories, images, image_folds(of_sample, assignment, images)


def train_folds(
    run: RunDir,
    cfg: Config,
    schema: KeypointSchema,
    samples: list[Sample],
    assignment: list[int],
    wanted: list[int],
    resume: bool,
    device: torch.device,
    log: Log,
) -> dict[str, Any] | None:
    """Train the wanted folds; once every fold is done, the report (else None)."""
    categories, images, folds = detection_set(cfg, samples, assignment)
    ignored = sum(int(i.ignore.sum()) for i in images)
    log.info(f"detector: {len(images)} photographs, {sum(len(i.boxes) for i in images)} animals ({ignored} ignore "
             f"regions), categories {', '.join(categories)}")  # fmt: skip
    predicted: dict[int, list[Detections]] = {}
    for k in wanted:
        if run.done(k):
            log.info(f"fold {k} is finished; skipped")
            continue
        train_i = [im for im, f in zip(images, folds, strict=True) if f != k]
        held_out = [im for im, f in zip(images, folds, strict=True) if f == k]
        with run.training(k):
            result = train_detector_fold(cfg, schema, categories, train_i, held_out, run.fold_dir(k), device, resume,
                                         log)  # fmt: skip
            predicted[k] = predict_fold(run, k, held_out, categories, device)
            run.mark_done(k, result.best_metric, result.best_epoch, time.time())
    if run.unfinished():
        return None
    every = {k: predicted[k] if k in predicted else read_fold(run, k, images, folds, categories, device)
             for k in range(cfg.train.folds)}  # fmt: skip
    return cv_report(run, images, folds, every, categories)


def predict_fold(
    run: RunDir, k: int, held_out: list[DetImage], categories: list[str], device: torch.device
) -> list[Detections]:
    """Fold k's best.pt on its held-out photographs, saved to fold{k}/detections.json."""
    model, _ = load_fold_detector(run, k)
    dets = detect_with(run.cfg, categories, [model], held_out, device)
    run.write_detections(_rows(held_out, dets), categories, k)
    return dets


def read_fold(
    run: RunDir, k: int, images: list[DetImage], folds: list[int], categories: list[str], device: torch.device
) -> list[Detections]:
    """A finished fold's saved detections (predicted again when the file was lost)."""
    held_out = [im for im, f in zip(images, folds, strict=True) if f == k]
    if not run.detections_path(k).is_file():
        return predict_fold(run, k, held_out, categories, device)
    saved_categories, saved = run.read_detections(k)
    if saved_categories != categories:
        raise UserError(f"fold {k} detected the categories {saved_categories}, the data now has {categories}",
                        path=run.detections_path(k))  # fmt: skip
    missing = [str(im.path) for im in held_out if str(im.path) not in saved]
    if missing:
        raise UserError(f"{len(missing)} held-out photograph(s) have no detections, e.g. {missing[0]}; retrain the "
                        f"fold: {run.retrain_hint(k)}", path=run.detections_path(k))  # fmt: skip
    return [_detections(saved[str(im.path)]) for im in held_out]


def cv_report(
    run: RunDir, images: list[DetImage], folds: list[int], every: dict[int, list[Detections]], categories: list[str]
) -> dict[str, Any]:
    """Box AP per fold, its spread, and over every held-out photograph; writes cv.json and detections.json."""
    per_fold, all_images, all_dets = {}, [], []
    for k, dets in sorted(every.items()):
        held_out = [im for im, f in zip(images, folds, strict=True) if f == k]
        result = box_ap(held_out, dets, categories)
        per_fold[str(k)] = {key: result[key] for key in BOX_KEYS}
        all_images += held_out
        all_dets += dets
    overall = box_ap(all_images, all_dets, categories)
    spread = {}
    for key in BOX_KEYS:
        values = [f[key] for f in per_fold.values() if f[key] is not None]
        spread[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None
    report = {
        "run": str(run.path),
        "task": "detect",
        "categories": categories,
        "folds": per_fold,
        "fold_spread": spread,
        "overall": {key: overall[key] for key in BOX_KEYS},
        **{key: overall[key] for key in BOX_KEYS},
        "by_category": overall["by_category"],
        "animals": overall["animals"],
        "images": overall["images"],
    }
    run.write_cv(report)
    run.write_detections(_rows(all_images, all_dets), categories)
    return report


def collect(run: RunDir, cfg: Config, samples: list[Sample], log: Log) -> dict[str, Any]:
    """`train --collect` of a detector run: the report from the folds' saved detections."""
    categories, images, folds = detection_set(cfg, samples, run.assignment(samples))
    device = resolve_device(cfg.train.device)
    every = {k: read_fold(run, k, images, folds, categories, device) for k in range(cfg.train.folds)}
    return cv_report(run, images, folds, every, categories)


def _rows(images: list[DetImage], dets: list[Detections]) -> list[dict[str, Any]]:
    return [{"image": str(im.path),
             "boxes": [[*map(float, b), float(s), int(c)] for b, s, c in zip(d.boxes, d.scores, d.labels, strict=True)]}
            for im, d in zip(images, dets, strict=True)]  # fmt: skip


def _detections(arr: np.ndarray) -> Detections:
    return Detections(arr[:, :4], arr[:, 4], arr[:, 5].astype(np.int64))
