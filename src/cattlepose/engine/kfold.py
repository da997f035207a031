"""All folds of a run: data, folds.csv, one `train_fold` per fold, out-of-fold predictions, the CV report.

Several processes may share one run directory, each taking its own `--folds` (one per GPU or node): the
run is prepared under a file lock, every fold writes only inside `fold{k}/`, and `collect` assembles
`oof.csv` and `cv.json` once every fold has finished.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cattlepose.config import Config, config_to_dict, dump_config, load_config
from cattlepose.data.folds import assign_folds, read_folds, write_folds
from cattlepose.data.formats import read_samples
from cattlepose.data.records import Sample
from cattlepose.engine import dist
from cattlepose.engine.device import resolve_device
from cattlepose.engine.fit import load_fold_model, train_fold
from cattlepose.engine.infer import Ensemble, predict_samples
from cattlepose.errors import UserError
from cattlepose.io import atomic_open, write_json, write_text
from cattlepose.metrics import evaluate
from cattlepose.schema import KeypointSchema, schema_from_dict
from cattlepose.ui import Log


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- data
def ensure_synthetic(cfg: Config, log: Log) -> Path:
    """The embedded default data set, generated once (under a lock, so parallel fold processes agree)."""
    root = cfg.data.synth_dir
    with file_lock(root.parent / f".{root.name}.lock"):
        if not (root / "sample_submission.csv").is_file():
            from cattlepose.data.synthetic import synthesize

            log.info(f"generating the synthetic cattle set in {root} ({cfg.data.synth_train} + {cfg.data.synth_test})")
            with log.task("synth", total=cfg.data.synth_train + cfg.data.synth_test) as bar:
                synthesize(
                    root,
                    n_train=cfg.data.synth_train,
                    n_test=cfg.data.synth_test,
                    seed=cfg.data.synth_seed,
                    progress=lambda done, total: bar.update(1),
                )
    return root


def load_training_data(cfg: Config, log: Log) -> tuple[list[Sample], KeypointSchema]:
    d = cfg.data
    if d.train is None:
        root = ensure_synthetic(cfg, log)
        return read_samples("adk", root / "train", d.schema_, bbox=d.bbox, max_samples=d.max_samples)
    return read_samples(d.format, d.train, d.schema_, images=d.images, bbox=d.bbox, max_samples=d.max_samples)


# ---------------------------------------------------------------------------------------------- run folder
def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if diff:
                return diff
        return None
    return None if a == b else f"{prefix[:-1]} ({b!r} in the run, {a!r} now)"


def prepare_run(
    cfg: Config, run_dir: Path, samples: list[Sample], schema: KeypointSchema, folds: list[int], resume: bool
) -> list[int]:
    """Write config.yaml, schema.yaml and folds.csv once; later processes check they agree. Returns folds."""
    with file_lock(run_dir / ".lock"):
        saved = run_dir / "config.yaml"
        if saved.is_file():
            diff = _first_difference(config_to_dict(cfg), config_to_dict(load_config(saved)))
            if diff:
                raise UserError(f"this run was started with a different config: {diff}; use a new --name", path=saved)
        else:
            write_text(saved, dump_config(cfg))
            write_text(run_dir / "schema.yaml", yaml.safe_dump(schema.to_dict(), sort_keys=False))
        for k in folds:
            if (run_dir / f"fold{k}" / "last.pt").is_file() and not resume:
                raise UserError(
                    f"fold {k} has already started; pass --resume to continue it, or use a new --name",
                    path=run_dir,
                )
        folds_csv = run_dir / "folds.csv"
        if folds_csv.is_file():
            return read_folds(folds_csv, samples)
        assignment = assign_folds(samples, cfg.train.folds, cfg.data.group_by, cfg.train.seed)
        write_folds(folds_csv, samples, assignment, cfg.data.group_by)
        return assignment


def fold_done(run_dir: Path, k: int) -> bool:
    return (run_dir / f"fold{k}" / "done.json").is_file()


def write_predictions_csv(
    path: Path, samples: list[Sample], pred: dict[str, np.ndarray], schema: KeypointSchema
) -> None:
    """Out-of-fold predictions in original pixels: key, image, then x, y, score per keypoint."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "image"] + [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y", "score")])
        for s in samples:
            w.writerow([s.key, s.image.name] + [f"{v:.3f}" for v in pred[s.key].reshape(-1)])


def read_predictions_csv(path: Path, num_keypoints: int) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    return {r[0]: np.asarray(r[2:], dtype=np.float64).reshape(num_keypoints, 3) for r in rows}


# ---------------------------------------------------------------------------------------------- training
def run_training(
    cfg: Config,
    run_dir: Path,
    folds: list[int] | None = None,
    resume: bool = False,
    log: Log | None = None,
) -> dict[str, Any] | None:
    """Train the requested folds of a run; when every fold is done, collect and return the CV report."""
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
        wanted = list(range(cfg.train.folds)) if folds is None else folds
        if info.is_main:
            assignment = prepare_run(cfg, run_dir, samples, schema, wanted, resume)
        dist.barrier(info)
        if not info.is_main:
            assignment = read_folds(run_dir / "folds.csv", samples)
        log.info(
            f"run {run_dir}: {len(samples)} samples, {cfg.train.folds} folds by {cfg.data.group_by or 'sample'}, "
            f"training fold(s) {wanted} on {device}" + (f" x{info.world_size} processes" if info.enabled else "")
        )
        for k in wanted:
            fold_dir = run_dir / f"fold{k}"
            if fold_done(run_dir, k):
                log.info(f"fold {k} is finished; skipped")
                continue
            train_s = [s for s, f in zip(samples, assignment, strict=True) if f != k]
            val_s = [s for s, f in zip(samples, assignment, strict=True) if f == k]
            result = train_fold(cfg, schema, train_s, val_s, fold_dir, device, resume=resume, log=log, info=info)
            if info.is_main:
                model = load_fold_model(fold_dir, cfg, schema, device)
                ens = Ensemble([model], _codec(cfg), schema, cfg, device, [k])
                preds = predict_samples(ens, val_s, workers=0, log=log)
                write_predictions_csv(fold_dir / "oof.csv", val_s, preds.as_dict(), schema)
                write_json(
                    fold_dir / "done.json",
                    {"best_metric": result.best_metric, "best_epoch": result.best_epoch, "finished": time.time()},
                )
            dist.barrier(info)
        if info.is_main and all(fold_done(run_dir, k) for k in range(cfg.train.folds)):
            return collect(run_dir, log=log, samples=samples, schema=schema)
        return None
    finally:
        dist.shutdown(info)


def _codec(cfg: Config):
    from cattlepose.codec import HeatmapCodec

    return HeatmapCodec.from_config(cfg)


def collect(
    run_dir: Path,
    log: Log | None = None,
    samples: list[Sample] | None = None,
    schema: KeypointSchema | None = None,
) -> dict[str, Any]:
    """Assemble oof.csv and cv.json from finished folds (after fold-parallel runs, or at the end of one)."""
    log = log or Log(quiet=True)
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError("not a run directory (no config.yaml)", path=run_dir)
    cfg = load_config(run_dir / "config.yaml")
    if schema is None:
        schema = schema_from_dict(yaml.safe_load((run_dir / "schema.yaml").read_text()), run_dir / "schema.yaml")
    if samples is None:
        samples, _ = load_training_data(cfg, log)
    assignment = read_folds(run_dir / "folds.csv", samples)
    unfinished = [k for k in range(cfg.train.folds) if not fold_done(run_dir, k)]
    if unfinished:
        raise UserError(f"fold(s) {unfinished} have not finished; train them first", path=run_dir)
    eval_kw = {"pck_torso": tuple(cfg.eval.pck_torso), "pck_bbox": tuple(cfg.eval.pck_bbox)}
    oof: dict[str, np.ndarray] = {}
    per_fold: dict[str, Any] = {}
    for k in range(cfg.train.folds):
        part = read_predictions_csv(run_dir / f"fold{k}" / "oof.csv", schema.num_keypoints)
        val_s = [s for s, f in zip(samples, assignment, strict=True) if f == k]
        per_fold[str(k)] = evaluate(part, val_s, schema, **eval_kw)["overall"]
        oof.update(part)
    write_predictions_csv(run_dir / "oof.csv", samples, oof, schema)
    overall = evaluate(oof, samples, schema, **eval_kw)
    names = [m for m, v in next(iter(per_fold.values())).items() if isinstance(v, (int, float))]
    spread = {}
    for m in names:  # a metric can be undefined in one fold (no usable torso length there): skip it there
        values = [per_fold[k][m] for k in per_fold if per_fold[k].get(m) is not None]
        spread[m] = {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None
    report = {"run": str(run_dir), "folds": per_fold, "fold_spread": spread, **overall}
    write_json(run_dir / "cv.json", report)
    return report


def cv_summary_rows(report: dict[str, Any], metrics: tuple[str, ...]) -> list[list[str]]:
    rows = []
    for k, m in report["folds"].items():
        rows.append([f"fold {k}"] + [_fmt(m.get(name)) for name in metrics])
    rows.append(["out-of-fold"] + [_fmt(report["overall"].get(name)) for name in metrics])
    for split in ("visible", "occluded"):
        part = report.get("by_visibility", {}).get(split, {})
        rows.append([f"  {split}"] + [_fmt(part.get(name)) for name in metrics])
    return rows


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
