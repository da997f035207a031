"""`cattlepose evaluate`: a prediction file of any submission format scored against ground truth.

Command glue: the prediction file is read as predicted animals (`submission.read_predictions`), each placed in
its ground-truth image (`formats.matching.locate`: by the image's path under the data root, or a COCO image id)
and then scored one of two ways, which the result's `matching` names:
- one prediction per animal: where every image holds one predicted animal and one ground-truth animal, and the
  file is not COCO results (a folder of crops; the ADK2021 test set), each prediction is paired with the
  animal of its image (`metrics.evaluate`);
- the COCO protocol otherwise (COCO results always; several animals in an image on either side): every
  predicted animal competes for the animals of its image, ranked by its score (`metrics.evaluate_detections`).
  A wide CSV holds one row per image and is refused against an image of several animals.
Every prediction is counted: images with animals and no prediction are an error for a wide CSV (a row per
image) and misses of the COCO protocol for the other formats, whose files hold no entry for an image where
nothing was found (`images_without_prediction` names them); predictions for images the ground truth does not
hold come back in `extra_predictions`. The COCO protocol also scores the predictions' boxes, where the file
gives them (COCO results' `bbox`, the long CSV's box columns), by COCO box AP (`boxes`): how well the animals
were found, apart from their keypoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cattlepose.core.config import load_config
from cattlepose.core.errors import UserError
from cattlepose.core.files import check_output
from cattlepose.data.formats import coco, detect_format, read_samples
from cattlepose.data.formats.matching import BY_PATH, check_one_per_image, image_name, locate
from cattlepose.data.formats.submission import detect_prediction_format, read_predictions
from cattlepose.data.records import Pose, Sample
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
    if fmt == "csv":
        check_one_per_image(samples, pred)
    gt_images, ignored = coco.read_unscored(gt, schema) if gt_format == "coco" else ({}, [])
    by_category = fmt == "coco" and gt_format == "coco"  # category ids on both sides
    categories = {s.meta.get("category_id") for s in [*samples, *ignored]} if by_category else None
    poses, extra = locate(read_predictions(pred, schema, fmt), samples, fmt, pred, gt_images, categories)
    paired = None if fmt == "coco" else one_per_animal(poses, samples)
    if paired is not None:
        result = evaluate({k: p.keypoints for k, p in paired.items()}, samples, schema, **thresholds,
                          scores={k: p.score for k, p in paired.items()})  # fmt: skip
        result["matching"] = {"method": "image path", "description": BY_PATH, "animals": len(samples),
                              "paired": len(paired)}  # fmt: skip
    else:
        result = evaluate_detections(poses, samples, schema, **thresholds, image_ids=list(gt_images),
                                     ignored=ignored, by_category_id=by_category)  # fmt: skip
        if fmt in UNSCORED:
            result["matching"]["description"] += (
                f"; a {UNSCORED[fmt]} holds no scores: its animals rank equal, in file order"
            )
    result["extra_predictions"] = extra
    found = {p.instance.image_id for p in poses}
    result["images_without_prediction"] = list(dict.fromkeys(image_name(s) for s in samples
                                                             if s.image_id not in found))  # fmt: skip
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


UNSCORED = {"csv": "wide CSV", "adk-json": "ADK JSON"}  # prediction formats without an animal's score


def one_per_animal(poses: list[Pose], samples: list[Sample]) -> dict[str, Pose] | None:
    """Sample.key -> the one prediction of its image, where every image holds one predicted and one ground-truth
    animal (and no prediction lies in an image without one); None otherwise."""
    truth = {s.image_id: s for s in samples}
    predicted = {p.instance.image_id: p for p in poses}
    if len(truth) != len(samples) or len(predicted) != len(poses) or predicted.keys() != truth.keys():
        return None
    return {truth[image].key: p for image, p in predicted.items()}
