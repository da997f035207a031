"""`cattlepose evaluate`: a prediction file of any submission format scored against ground truth.

Predictions are paired with ground-truth animals first: by image file name (CSV, ADK JSON), or, for COCO results
with several animals in an image, by the smallest mean keypoint distance (Hungarian matching).
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
from cattlepose.data.records import Sample
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


def match_predictions(preds: dict[str, np.ndarray], samples: list[Sample], fmt: str) -> dict[str, np.ndarray]:
    """Re-key predictions by Sample.key. CSV / ADK JSON are keyed by image file name; COCO results by image id,
    with several animals of one image paired to ground truth by the smallest mean keypoint distance."""
    if fmt != "coco":
        by_name = {Path(k).name: v for k, v in preds.items()}
        by_name.update({Path(k).stem: v for k, v in preds.items() if Path(k).stem not in by_name})
        found = {s.key: by_name.get(s.image.name, by_name.get(s.image.stem)) for s in samples}
        missing = [s.image.name for s in samples if found[s.key] is None]
        if missing:
            raise UserError(f"no prediction for {len(missing)} image(s), e.g. {missing[:3]}")
        return found  # type: ignore[return-value]
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(str(s.meta.get("coco_image_id", s.image_id)), []).append(s)
    out: dict[str, np.ndarray] = {}
    for image_id, gts in groups.items():
        cands = [v for k, v in preds.items() if k.split("#")[0] == image_id]
        if len(cands) < len(gts):
            raise UserError(f"image {image_id}: {len(gts)} animal(s) in the ground truth, {len(cands)} predicted")
        cost = np.array([[_mean_distance(p, g.keypoints) for p in cands] for g in gts])
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            out[gts[r].key] = cands[c]
    return out


def _mean_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    m = gt[:, 2] > 0
    return float(np.linalg.norm(pred[m, :2] - gt[m, :2], axis=1).mean()) if m.any() else 0.0
