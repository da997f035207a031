"""`predict` and `evaluate` end to end: inputs to Samples, the ensemble, the submission writers, the metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from cattlepose.config import load_config
from cattlepose.data.folds import parse_fold_list
from cattlepose.data.formats import detect_format, read_samples
from cattlepose.data.formats.common import resolve_inside
from cattlepose.data.images import IMAGE_SUFFIXES, image_size
from cattlepose.data.records import Sample
from cattlepose.engine.infer import load_ensemble, load_run_config, predict_samples
from cattlepose.errors import UserError
from cattlepose.metrics import evaluate
from cattlepose.models import psa_fused
from cattlepose.submission import read_predictions, write_adk_json, write_coco_results, write_csv
from cattlepose.ui import Log

FORMATS = ("csv", "adk-json", "coco")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_sizes(folder: Path) -> dict[str, tuple[int, int]]:
    """file name -> (width, height) of every image in a folder, read from the headers."""
    return {p.name: image_size(p) for p in list_images(Path(folder))}


def samples_from_folder(folder: Path, num_keypoints: int) -> list[Sample]:
    """Each image is one animal crop (the ADK test set): the whole image is the box."""
    paths = list_images(folder)
    if not paths:
        raise UserError("no images (.jpg, .png, ...) in the folder", path=folder)
    samples = []
    for p in paths:
        w, h = image_size(p)
        samples.append(Sample(image=p, keypoints=np.zeros((num_keypoints, 3)), width=w, height=h))
    return samples


def samples_from_coco_boxes(path: Path, images: Path | None, num_keypoints: int) -> list[Sample]:
    """Boxes of a COCO file (ground truth or detections, keypoints not needed): one crop per box."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read COCO JSON ({e})", path=path) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise UserError("a COCO file needs an 'images' list", path=path, field="images")
    root = images or path.parent
    by_id = {}
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise UserError("each image needs 'id' and 'file_name'", path=path, field=f"images[{i}]")
        by_id[im["id"]] = im
    samples = []
    for i, ann in enumerate(doc.get("annotations") or []):
        im = by_id.get(ann.get("image_id"))
        if im is None:
            raise UserError(f"image_id {ann.get('image_id')} is not in 'images'", path=path, field=f"annotations[{i}]")
        box = np.asarray(ann.get("bbox", []), dtype=np.float64)
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
            raise UserError(f"bbox {ann.get('bbox')} must be [x, y, w, h] with w, h > 0", path=path,
                            field=f"annotations[{i}].bbox")  # fmt: skip
        img_path = resolve_inside(root, im["file_name"], source=path, field=f"images[{im['id']}].file_name")
        w, h = image_size(img_path)
        samples.append(
            Sample(
                image=img_path,
                keypoints=np.zeros((num_keypoints, 3)),
                bbox=box,
                image_id=str(im["id"]),
                ann_id=str(ann.get("id", i)),
                width=w,
                height=h,
                meta={"coco_image_id": im["id"]},
            )
        )
    if not samples:
        raise UserError("no annotations with boxes to predict", path=path, field="annotations")
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
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}", field="--format")
    if not input.exists():
        raise UserError("input not found", path=input)
    cfg, schema = load_run_config(run_dir)
    fold_list = parse_fold_list(folds, cfg.train.folds) if folds else None
    if cfg.model.psa != "none" and (device == "cpu" or not torch.cuda.is_available()):
        psa_fused.warm_up_in_background()  # overlaps loading the checkpoints and the first images
    ens = load_ensemble(run_dir, fold_list, device=device)
    if input.is_dir():
        samples = samples_from_folder(input, schema.num_keypoints)
    else:
        samples = samples_from_coco_boxes(input, images, schema.num_keypoints)
    if fmt != "coco":
        names = [s.image.name for s in samples]
        if len(set(names)) != len(names):
            raise UserError(f"'{fmt}' holds one animal per image; use --format coco for several", field="--format")
    preds = predict_samples(ens, samples, flip=flip, batch_size=batch_size, workers=workers, log=log)
    by_key = preds.as_dict()
    latency = preds.seconds / max(1, len(samples))
    if fmt == "csv":
        write_csv(output, {s.image.name: by_key[s.key] for s in samples}, schema, template=template)
    elif fmt == "adk-json":
        write_adk_json(
            output, {s.image.name: by_key[s.key] for s in samples}, schema, latency=latency,
            image_paths={s.image.name: str(s.image) for s in samples},
        )  # fmt: skip
    else:
        image_ids = {s.key: _coco_image_id(s, i) for i, s in enumerate(samples)}
        write_coco_results(output, by_key, image_ids, scores={k: float(v[:, 2].mean()) for k, v in by_key.items()})
    return {
        "images": len(samples),
        "seconds": preds.seconds,
        "images_per_s": len(samples) / max(preds.seconds, 1e-9),
        "latency_ms": 1000 * latency,
        "models": len(ens.models),
    }


def _coco_image_id(s: Sample, fallback: int) -> int:
    if "coco_image_id" in s.meta:
        return int(s.meta["coco_image_id"])
    return int(s.image_id) if s.image_id.isdigit() else fallback


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
        return found
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


def run_evaluate(
    pred: Path, gt: Path, config: Path | None = None, overrides: list[str] | None = None, schema_spec: str | None = None
) -> dict[str, Any]:
    cfg = load_config(config, overrides or [])
    spec = schema_spec or cfg.data.schema_
    gt_fmt = detect_format(gt)
    samples, schema = read_samples(gt_fmt, gt, spec, bbox=cfg.data.bbox)
    fmt = _prediction_format(pred)
    raw = read_predictions(pred, schema, fmt)
    matched = match_predictions(raw, samples, fmt)
    return evaluate(matched, samples, schema, pck_torso=tuple(cfg.eval.pck_torso), pck_bbox=tuple(cfg.eval.pck_bbox))


def _prediction_format(path: Path) -> str:
    if not path.is_file():
        raise UserError("prediction file not found", path=path)
    if path.suffix.lower() == ".csv":
        return "csv"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"neither CSV nor JSON ({e})", path=path) from None
    return "adk-json" if isinstance(doc, dict) and "annotations" in doc else "coco"
