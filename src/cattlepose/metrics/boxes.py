"""Box AP: the one definition of a detector's score, COCO's bbox protocol through pycocotools' COCOeval.

`box_ap` scores detections against the photographs' animals: AP over IoU 0.50:0.95, AP50, AP75 and AR (100
detections per image), overall and per category. Animals flagged `ignore` (data/detection.py: fewer than
`detect.min_keypoints` labelled keypoints, or a box that could not be made from the keypoints) are COCO `iscrowd`
regions: a detection on one counts neither as a hit nor as a false positive, and missing one costs nothing,
since the goal is stated for animals with at least three labelled keypoints. A photograph without an animal
still counts: every detection in it is a false positive.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOX_KEYS = ("bbox_ap", "bbox_ap50", "bbox_ap75", "bbox_ar")


@dataclass
class Detections:
    """One image's detections: boxes (n, 4) x, y, w, h in its pixels, scores (n,), category indices (n,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))


def box_ap(truth: Sequence[Any], detections: Sequence[Detections], categories: Sequence[str]) -> dict[str, Any]:
    """COCO box metrics of `detections[i]` in image `truth[i]` (anything with `boxes`, `labels`, `ignore`: a
    data.detection.DetImage). Returns {bbox_ap, bbox_ap50, bbox_ap75, bbox_ar, animals, images, by_category:
    {name: {bbox_ap, bbox_ap50, animals}}}; a metric is None where no animal counts (every one ignored)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(detections):
        raise ValueError(f"{len(detections)} detection lists for {len(truth)} images")
    images, annotations, results = [], [], []
    counted = np.zeros(len(categories), np.int64)
    for i, (t, d) in enumerate(zip(truth, detections, strict=True)):
        images.append({"id": i + 1})
        for box, label, ignore in zip(np.asarray(t.boxes).reshape(-1, 4), t.labels, t.ignore, strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                                "iscrowd": int(bool(ignore))})  # fmt: skip
            counted[int(label)] += not ignore
        for box, score, label in zip(np.asarray(d.boxes).reshape(-1, 4), d.scores, d.labels, strict=True):
            results.append({"image_id": i + 1, "category_id": int(label) + 1, "bbox": [float(v) for v in box],
                            "score": float(score)})  # fmt: skip
    out: dict[str, Any] = {"animals": int(counted.sum()), "images": len(truth)}
    names = list(categories)
    if not counted.any():
        return {**out, **dict.fromkeys(BOX_KEYS), "by_category": {}}
    if not results:  # loadRes cannot take an empty list; nothing found is nothing right
        zero = {n: {"bbox_ap": 0.0, "bbox_ap50": 0.0, "animals": int(c)} for n, c in zip(names, counted, strict=True)
                if c}  # fmt: skip
        return {**out, **dict.fromkeys(BOX_KEYS, 0.0), "by_category": zero}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its summary table
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}  # fmt: skip
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats  # AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ...; -1 = undefined
    out.update({"bbox_ap": _val(stats[0]), "bbox_ap50": _val(stats[1]), "bbox_ap75": _val(stats[2]),
                "bbox_ar": _val(stats[8])})  # fmt: skip
    precision = ev.eval["precision"]  # (IoU thresholds, recall points, categories, areas, maxDets)
    by_category = {}
    for k, name in enumerate(names):
        if not counted[k]:
            continue
        p = precision[:, :, k, 0, -1]
        by_category[name] = {"bbox_ap": _mean(p), "bbox_ap50": _mean(p[0]), "animals": int(counted[k])}
    out["by_category"] = by_category
    return out


def _val(x: float) -> float | None:
    return None if x < 0 else float(x)


def _mean(p: np.ndarray) -> float | None:
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else None
