"""`cattlepose predict`: a run's fold + flip ensemble on new images, written as a submission file.

Command glue only: the input becomes Samples (a folder of crops, or the boxes of a COCO file), the library in
`infer.py` predicts them, and `submission.py` writes the chosen format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cattlepose.core.errors import UserError
from cattlepose.core.files import check_output, unreadable
from cattlepose.core.ui import Log
from cattlepose.data.folds import parse_fold_list
from cattlepose.data.formats import coco, folder
from cattlepose.data.formats.submission import check_format, write_predictions
from cattlepose.data.records import Sample
from cattlepose.engine.infer import load_ensemble, predict_samples
from cattlepose.runs.rundir import RunDir


def prediction_inputs(input: Path, images: Path | None, num_keypoints: int) -> list[Sample]:
    """The animals to predict: each image of a folder (the whole image is the animal), or each box of a COCO
    file (ground truth or detections; keypoints are not read)."""
    if not input.exists():
        raise UserError(unreadable(input, "input"), path=input)
    if input.is_dir():
        return folder.read(input, num_keypoints)
    samples, _ = coco.read_detailed(input, num_keypoints, images=images, boxes_only=True)
    if not samples:
        raise UserError("no annotations with boxes to predict", path=input, field="annotations")
    return samples


def run_predict(
    run_dir: Path,
    input: Path,
    output: Path,
    fmt: str = "csv",
    template: Path | None = None,
    flip: bool = True,
    folds: str | None = None,
    images: Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    log = log or Log(quiet=True)
    check_format(fmt)
    run = RunDir.open(run_dir)
    check_output(output, protect=[template, input if input.is_file() else None, run.path])  # before the work
    samples = prediction_inputs(input, images, run.schema.num_keypoints)
    fold_list = parse_fold_list(folds, run.cfg.train.folds) if folds is not None else None
    ens = load_ensemble(run, fold_list, device=device)
    preds = predict_samples(ens, samples, flip=flip, batch_size=batch_size, workers=workers, log=log)
    latency = preds.seconds / max(1, len(samples))
    write_predictions(fmt, output, samples, preds.as_dict(), run.schema, template=template, latency=latency)
    return {
        "images": len(samples),
        "seconds": preds.seconds,
        "images_per_s": len(samples) / max(preds.seconds, 1e-9),
        "latency_ms": 1000 * latency,
        "models": len(ens.models),
    }
