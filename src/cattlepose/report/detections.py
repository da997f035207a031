"""`cattlepose report RUN_DIR` of a detector run (task: detect): the box AP table (overall, per fold, per
category), the learning curves, and a gallery of held-out photographs with their animals (green: ground truth,
dashed grey: ignore regions) and the detections above the run's score threshold (red, with scores), the
photographs with the most missed or extra animals first."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open, write_text
from cattlepose.core.ui import Log
from cattlepose.data.detection import DetImage
from cattlepose.data.images import load_image
from cattlepose.data.source import load_training_data
from cattlepose.engine.detcv import detection_set
from cattlepose.engine.export import run_data_config
from cattlepose.report import figures
from cattlepose.runs.rundir import CV, RunDir

TILE = 360  # pixels of a gallery tile's longer side


def build_detector_report(run: RunDir, n_worst: int = 12, log: Log | None = None) -> Path:
    log = log or Log(quiet=True)
    cv_path = run.require(CV)
    cv = json.loads(cv_path.read_text(encoding="utf-8"))
    categories, saved = run.read_detections()
    samples, _ = load_training_data(run_data_config(run, log), log)
    _, images, _ = detection_set(run.cfg, samples, run.assignment(samples))
    out = run.path / "report"
    histories = {k: h for k in range(run.cfg.train.folds) if (h := run.history(k))}
    figs = []
    if histories:
        figures.save(figures.learning_curves(histories, "bbox_ap"), out / "learning_curves.png")
        figs.append("learning_curves.png")
    cards = _gallery(images, saved, categories, run.cfg.detect.score_threshold, out, n_worst)
    rows = [["out-of-fold", *(cv.get(k) for k in ("bbox_ap", "bbox_ap50", "bbox_ar")), cv.get("animals")]]
    rows += [
        [f"fold {k}", *(m.get(x) for x in ("bbox_ap", "bbox_ap50", "bbox_ar")), ""] for k, m in cv["folds"].items()
    ]
    cat_rows = [
        [n, p.get("bbox_ap"), p.get("bbox_ap50"), p.get("animals")] for n, p in cv.get("by_category", {}).items()
    ]
    page = out / "index.html"
    write_text(page, _html(run, rows, cat_rows, figs, cards))
    return page


def _misses(im: DetImage, boxes: np.ndarray, threshold: float) -> int:
    """Animals without a detection at IoU 0.5 plus detections on no animal, at the score threshold."""
    dets = boxes[boxes[:, 4] >= threshold, :4] if len(boxes) else np.zeros((0, 4))
    kept = im.boxes[~im.ignore]
    if not len(kept) or not len(dets):
        return len(kept) + len(dets)
    iou = _iou(kept, dets)
    return int((iou.max(1) < 0.5).sum() + (iou.max(0) < 0.5).sum())


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a0, a1 = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b0, b1 = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None).prod(-1)
    return inter / (a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter)


def _gallery(images: list[DetImage], saved: dict[str, np.ndarray], categories: list[str], threshold: float,
             out: Path, n: int) -> list[str]:  # fmt: skip
    held = [(im, saved[str(im.path)]) for im in images if str(im.path) in saved]
    held.sort(key=lambda p: -_misses(p[0], p[1], threshold))
    names = []
    for i, (im, boxes) in enumerate(held[:n]):
        try:
            rgb = load_image(im.path)
        except UserError:
            continue
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for box, ignore in zip(im.boxes, im.ignore, strict=True):
            x, y, w, h = map(int, box)
            cv2.rectangle(img, (x, y), (x + w, y + h), (160, 160, 160) if ignore else (0, 200, 0), 2)
        for x, y, w, h, score, label in boxes[boxes[:, 4] >= threshold] if len(boxes) else []:
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), (0, 0, 230), 2)
            cv2.putText(img, f"{categories[int(label)]} {score:.2f}", (int(x) + 2, int(y) + 14),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 230), 1, cv2.LINE_AA)  # fmt: skip
        k = TILE / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
        if ok:
            name = f"detections_{i:02d}.jpg"
            with atomic_open(out / name, "wb") as f:
                f.write(buf.tobytes())
            names.append(name)
    return names


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(run: RunDir, rows: list, cat_rows: list, figs: list[str], cards: list[str]) -> str:
    css = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}img{max-width:100%}"
           "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;"
           "text-align:right}td:first-child{text-align:left}")  # fmt: skip
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>cattlepose detector report: "
        f"{html.escape(run.name)}</title><style>{css}</style></head><body>",
        f"<h1>Detector report: {html.escape(str(run.path))}</h1>",
        "<p>COCO box AP of the held-out photographs (IoU 0.50:0.95), AP50 and AR (100 detections); animals with "
        f"fewer than {run.cfg.detect.min_keypoints} labelled keypoints are ignore regions.</p>",
        _table(["", "bbox AP", "AP50", "AR", "animals"], rows),
        "<h2>Per category</h2>",
        _table(["category", "bbox AP", "AP50", "animals"], cat_rows),
    ]
    parts += [f"<h2>{html.escape(f[:-4].replace('_', ' '))}</h2><img src='{f}'>" for f in figs]
    parts.append(f"<h2>Held-out photographs, most missed or extra animals first</h2><p>Green: animals; grey: ignore "
                 f"regions; red: detections scoring at least {run.cfg.detect.score_threshold}.</p>")  # fmt: skip
    parts += [f"<img src='{c}' style='margin:2px'>" for c in cards]
    parts.append("</body></html>")
    return "\n".join(parts)
