"""`cattlepose evaluate`: a prediction file of any submission format scored against ground truth.

Predictions are paired with ground-truth animals first, image by image: the image is found by file name (CSV,
long CSV, ADK JSON) or by image id (COCO results); where an image holds several animals, each ground-truth
animal gets the prediction at the smallest mean keypoint distance (Hungarian matching).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from cattlepose.core.config import load_config
from cattlepose.core.errors import UserError
from cattlepose.data.formats import detect_format, read_samples
from cattlepose.data.formats.submission import detect_prediction_format, read_predictions
from cattlepose.data.records import Pose, Sample
from cattlepose.metrics.keypoints import evaluate


def run_evaluate(
    pred: Path,
    gt: Path,
    config: Path | None = None,
    overrides: list[str] | None = None,
    schema_spec: str | None = None,
    images: Path | None = None,
) -> dict[str, Any]:
    cfg = load_config(config, overrides or [])
    _not_swapped(pred, gt)
    spec = schema_spec or cfg.data.schema_
    samples, schema = read_samples(detect_format(gt), gt, spec, images=images, bbox=cfg.data.bbox)
    fmt = detect_prediction_format(pred)
    matched = match_predictions(read_predictions(pred, schema, fmt), samples, fmt)
    return evaluate(matched, samples, schema, pck_torso=tuple(cfg.eval.pck_torso), pck_bbox=tuple(cfg.eval.pck_bbox))


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


def match_predictions(poses: list[Pose], samples: list[Sample], fmt: str) -> dict[str, np.ndarray]:
    """Sample.key -> the keypoints of the predicted animal paired with it. COCO results name images by id,
    the other formats by file name (or stem); within an image, animals are paired by the smallest mean keypoint
    distance."""
    by_id = fmt == "coco"
    predicted: dict[str, list[Pose]] = {}
    for p in poses:
        predicted.setdefault(p.instance.image_id if by_id else Path(p.instance.image_id).name, []).append(p)
    if not by_id:  # a file may name images by stem (a template's spelling)
        for name in list(predicted):
            predicted.setdefault(Path(name).stem, predicted[name])
    truth: dict[str, list[Sample]] = {}
    for s in samples:
        truth.setdefault(str(s.meta.get("coco_image_id", s.image_id)) if by_id else s.image.name, []).append(s)
    out: dict[str, np.ndarray] = {}
    missing = []
    for image, gts in truth.items():
        cands = predicted.get(image) or ([] if by_id else predicted.get(Path(image).stem, []))
        if not cands and not by_id:
            missing.append(image)
            continue
        if len(cands) < len(gts):
            raise UserError(f"image {image}: {len(gts)} animal(s) in the ground truth, {len(cands)} predicted")
        cost = np.array([[_mean_distance(p.keypoints, g.keypoints) for p in cands] for g in gts])
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            out[gts[r].key] = cands[c].keypoints
    if missing:
        raise UserError(f"no prediction for {len(missing)} image(s), e.g. {missing[:3]}")
    return out


def _mean_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    m = gt[:, 2] > 0
    return float(np.linalg.norm(pred[m, :2] - gt[m, :2], axis=1).mean()) if m.any() else 0.0
