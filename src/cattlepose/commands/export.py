"""`cattlepose export`: a run's fold + flip ensemble as one ONNX file (`engine/export.py` builds and writes it)."""

from __future__ import annotations

from pathlib import Path

from cattlepose.core.errors import UserError
from cattlepose.core.ui import Log
from cattlepose.data.folds import parse_fold_list
from cattlepose.engine.detexport import export_detector
from cattlepose.engine.export import export_run, parse_batch
from cattlepose.runs.rundir import RunDir


def run_export(
    run_dir: Path,
    output: Path,
    folds: str | None,
    flip: bool,
    int8: bool,
    batch: str,
    calibration: int,
    log: Log,
    split_pairs: float = 0.0,
) -> None:
    n = parse_batch(batch)
    run = RunDir.open(run_dir)  # a keypoint run or a detector run: each has its own graph
    fold_list = parse_fold_list(folds, run.cfg.train.folds) if folds is not None else None
    if run.task == "detect":  # the detector's graph: folds + flip + decode to the top-K boxes
        if split_pairs:
            raise UserError("is for keypoint runs; a detector has no left/right pairs", field="--split-pairs")
        export_detector(run, output, fold_list, flip, int8, n, calibration, log)
        return
    export_run(
        run,
        output,
        fold_list,
        flip=flip,
        int8=int8,
        batch=n,
        calibration_images=calibration,
        log=log,
        split_pairs=split_pairs,
    )
