"""`cattlepose evaluate`: a prediction file of any submission format scored against ground truth.

Command glue: CSV and ADK JSON rows are paired with ground-truth images by path (`formats.matching`) and
scored one prediction per animal; COCO results are scored by the COCO protocol (`metrics.evaluate_detections`).
Every prediction is counted: images without one are an error, predictions for images the ground truth does
not hold come back in `extra_predictions`, and `matching` says how PCK paired predictions with animals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cattlepose.core.config import load_config
from cattlepose.core.errors import UserError
from cattlepose.core.files import check_output
from cattlepose.data.formats import coco, detect_format, read_samples
from cattlepose.data.formats.matching import BY_PATH, assign_detections, pair_rows
from cattlepose.data.formats.submission import detect_prediction_format, read_coco_results, read_predictions
from cattlepose.metrics.keypoints import evaluate, evaluate_detections


def run_evaluate(
    pred: Path,
    gt: Path,
    config: Path | None = None,
    overrides: list[str] | None = None,
    schema_spec: str | None = None,
    images: Path | None = None,
    json_out: Path | None = None,
) -> dict[str, Any]:
    """The metrics of `pred` against `gt`; `json_out` (written by the caller) is checked first: never an input."""
    if json_out is not None:
        inputs = [("the predictions", pred), ("the ground truth", gt), ("the config", config), ("--images", images)]
        check_output(json_out, protect=inputs, keep_out=[("the ground truth", gt), ("--images", images)])
    cfg = load_config(config, overrides or [])
    _not_swapped(pred, gt)
    spec = schema_spec or cfg.data.schema_
    gt_format = detect_format(gt)
    samples, schema = read_samples(gt_format, gt, spec, images=images, bbox=cfg.data.bbox)
    fmt = detect_prediction_format(pred)
    thresholds = {"pck_torso": tuple(cfg.eval.pck_torso), "pck_bbox": tuple(cfg.eval.pck_bbox)}
    if fmt == "coco":
        image_ids, ignored = coco.read_unscored(gt, schema) if gt_format == "coco" else ([], [])
        by_category = gt_format == "coco"
        categories = {s.meta.get("category_id") for s in [*samples, *ignored]} if by_category else None
        dets, extra = assign_detections(read_coco_results(pred, schema), samples, image_ids, pred, categories)
        result = evaluate_detections(dets, samples, schema, **thresholds, image_ids=image_ids, ignored=ignored,
                                     by_category_id=by_category)  # fmt: skip
    else:
        paired, extra = pair_rows(read_predictions(pred, schema, fmt), samples, pred, fmt)
        result = evaluate(paired, samples, schema, **thresholds)
        result["matching"] = {"method": "image path", "description": BY_PATH, "animals": len(samples),
                              "paired": len(paired)}  # fmt: skip
    result["extra_predictions"] = extra
    return result


def _not_swapped(pred: Path, gt: Path) -> None:
    """Predictions are one file (CSV, ADK JSON, COCO results: a JSON list); ground truth an ADK folder, a COCO
    file (an object with images and annotations) or a CSV. Arguments given the other way round are named."""

    def kind(p: Path) -> str:
        if p.is_dir():
            return "gt"
        if p.suffix.lower() != ".json" or not p.is_file():
            return "either"
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "either"  # the readers name what is wrong with it
        if isinstance(doc, list):
            return "pred"
        is_gt = isinstance(doc, dict) and ({"images", "annotations"} <= set(doc) or "label_info" in doc)
        return "gt" if is_gt else "pred"

    if kind(pred) == "gt":
        why, path = f"PRED is {'a folder' if pred.is_dir() else 'a ground-truth file'}", pred
    elif kind(gt) == "pred":
        why, path = "GT holds predictions", gt
    else:
        return
    raise UserError(f"{why}: the arguments look swapped (predictions first, then ground truth); "
                    f"`cattlepose evaluate {gt} {pred}`", path=path)  # fmt: skip
