"""Keypoint metrics: PCK (torso- and box-normalised), OKS AP/AR through pycocotools, pixel errors.

Every metric is computed on labelled keypoints only (v > 0) and reported overall, per keypoint and split by
visibility (v = 2 visible, v = 1 labelled but occluded). Everything but OKS AP is vectorised numpy over an
(N, K) distance matrix; COCOeval runs once.

Normalisers, per sample, from the ground truth:
- torso: |kp_i - kp_j| for the schema's `pck_pair` (fore_spine, rear_spine for adk17; PCK@0.35 of it is the
  ADK2021 score). A sample whose pair is not both labelled, or coincides, has no torso length and is left out
  of torso PCK (counted in `torso_unavailable`).
- box: max(w, h) of the annotation box; for whole-image crops (bbox None) max(width, height) of the image;
  the labelled keypoints' extent only when neither is known.

OKS: each sample is its own COCO "image" holding one ground-truth animal and its one prediction (predictions
are already paired with animals, see `commands.evaluate.match_predictions`), scored by the mean keypoint score
when predictions carry one. The object area is the box area w*h, or the image area for whole-image crops
(the animal fills the crop), or the keypoint extent's area as a last resort. COCO itself uses the
segmentation area, which is smaller than the box, so these OKS values are a little more lenient than COCO's.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.records import Sample, animal_region
from cattlepose.metrics.names import OKS_KEYS, metric_names, pck_key

VISIBILITY_SPLITS = {"visible": 2, "occluded": 1}


def evaluate(
    preds: Mapping[str, np.ndarray],
    samples: Sequence[Sample],
    schema: KeypointSchema,
    pck_torso: Sequence[float] = (0.35, 0.1),
    pck_bbox: Sequence[float] = (0.1, 0.2),
) -> dict[str, Any]:
    """Score predictions (Sample.key -> (K, 2) or (K, 3) x, y[, score] in original pixels) against samples.

    Returns a JSON-serialisable dict: n_samples, n_keypoints (labelled), torso_unavailable, overall,
    per_keypoint, by_visibility, and by_category when the samples hold more than one `meta["category"]`
    (sheep and horses of one file): per category its n_samples, n_keypoints, torso_unavailable and overall,
    as `evaluate` gives them on that category's samples alone. A metric with nothing to average over is
    None. Torso PCK keys are absent when the schema has no `pck_pair`. OKS AP/AR is overall only.
    """
    if not samples:
        raise UserError("nothing to evaluate: the ground truth holds no samples")
    k = schema.num_keypoints
    gt, pred, score = _stack(preds, samples, k)
    labelled = gt[:, :, 2] > 0
    dist = np.linalg.norm(pred - gt[:, :, :2], axis=2)  # (N, K)

    norms: dict[str, np.ndarray] = {"bbox": box_normaliser(samples, gt)}
    thresholds: dict[str, Sequence[float]] = {"bbox": tuple(pck_bbox)}
    if schema.pck_pair is not None:
        norms["torso"] = torso_normaliser(gt, schema.pck_pair)
        thresholds["torso"] = tuple(pck_torso)
    # PCK hits per threshold, (N, K) each; NaN normalisers (no torso) are excluded through `valid`
    pck: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind in ("torso", "bbox"):
        if kind not in norms:
            continue
        norm = norms[kind][:, None]
        valid = labelled & np.isfinite(norm)
        for a in thresholds[kind]:
            with np.errstate(invalid="ignore"):
                pck[pck_key(kind, a)] = (dist <= a * norm, valid)

    overall = _summary(dist, labelled, pck)
    overall.update(oks_metrics(gt, pred, score, samples, schema.sigmas))
    per_keypoint = {}
    for j, name in enumerate(schema.keypoints):
        sel = np.zeros_like(labelled)
        sel[:, j] = True
        per_keypoint[name] = _summary(dist, labelled & sel, pck) | {"n": int(labelled[:, j].sum())}
    by_visibility = {}
    for split, v in VISIBILITY_SPLITS.items():
        mask = gt[:, :, 2] == v
        by_visibility[split] = _summary(dist, mask, pck) | {"n": int(mask.sum())}
    order = metric_names(schema, pck_torso, pck_bbox)
    result = {
        "n_samples": len(samples),
        "n_keypoints": int(labelled.sum()),
        "torso_unavailable": int((~np.isfinite(norms["torso"])).sum()) if "torso" in norms else None,
        "overall": {name: overall[name] for name in order},
        "per_keypoint": per_keypoint,
        "by_visibility": by_visibility,
    }
    groups = _by_category(samples)
    if len(groups) > 1:
        result["by_category"] = {}
        for name, part in groups.items():
            # scored as a set of its own, so OKS AP ranks each category's detections among themselves
            r = evaluate(preds, part, schema, pck_torso=pck_torso, pck_bbox=pck_bbox)
            result["by_category"][name] = {
                key: r[key] for key in ("n_samples", "n_keypoints", "torso_unavailable", "overall")
            }
    return result


def _by_category(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by `meta["category"]` in order of first appearance; those without one under "unknown"."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        name = s.meta.get("category")
        groups.setdefault("unknown" if name is None else str(name), []).append(s)
    return groups


def _stack(
    preds: Mapping[str, np.ndarray], samples: Sequence[Sample], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K, 3) ground truth, (N, K, 2) predicted xy, (N,) detection scores; every input checked."""
    missing = [s.key for s in samples if s.key not in preds]
    if missing:
        raise UserError(f"no prediction for {len(missing)} of {len(samples)} sample(s), e.g. {', '.join(missing[:5])}")
    gt = np.empty((len(samples), k, 3))
    pred = np.empty((len(samples), k, 2))
    score = np.ones(len(samples))
    for i, s in enumerate(samples):
        if s.keypoints.shape != (k, 3):
            raise UserError(f"sample {s.key} has {s.num_keypoints} keypoints, the schema has {k}", field="keypoints")
        p = np.asarray(preds[s.key], dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != k or p.shape[1] not in (2, 3):
            raise UserError(f"prediction for {s.key} has shape {p.shape}; expected ({k}, 2) or ({k}, 3)")
        if not np.all(np.isfinite(p)):
            raise UserError(f"prediction for {s.key} holds NaN or infinite values")
        gt[i] = s.keypoints
        pred[i] = p[:, :2]
        if p.shape[1] == 3:
            score[i] = float(p[:, 2].mean())
    return gt, pred, score


def torso_normaliser(gt: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """(N,) ground-truth distance between the pair's keypoints; NaN where either is unlabelled or they coincide."""
    a, b = gt[:, pair[0]], gt[:, pair[1]]
    length = np.linalg.norm(a[:, :2] - b[:, :2], axis=1)
    ok = (a[:, 2] > 0) & (b[:, 2] > 0) & (length > 0)
    return np.where(ok, length, np.nan)


def box_normaliser(samples: Sequence[Sample], gt: np.ndarray) -> np.ndarray:
    """(N,) the long side of each animal's region (`_region`); NaN when it is zero."""
    sides = np.array([max(_region(s, gt[i])[2:]) for i, s in enumerate(samples)], dtype=np.float64)
    return np.where(sides > 0, sides, np.nan)


def pck_normaliser(samples: Sequence[Sample], schema: KeypointSchema, kind: str) -> np.ndarray:
    """(N,) the length PCK of `kind` ("torso" or "bbox") divides errors by; NaN where an animal has none (it is
    then left out of that PCK). The one definition every PCK of the project uses."""
    gt = np.stack([s.keypoints for s in samples]) if samples else np.zeros((0, schema.num_keypoints, 3))
    if kind == "bbox":
        return box_normaliser(samples, gt)
    if kind == "torso" and schema.pck_pair is not None:
        return torso_normaliser(gt, schema.pck_pair)
    raise ValueError(f"no {kind} normaliser for schema {schema.name}")


def object_area(s: Sample, gt: np.ndarray) -> float:
    """OKS scale s²: the area of the animal's region (`_region`)."""
    region = _region(s, gt)
    return float(region[2] * region[3])


def _region(s: Sample, gt: np.ndarray) -> np.ndarray:
    """The animal's region (`records.animal_region`: its box or the whole image), or, where neither is known,
    the extent of its labelled keypoints (an in-memory sample without an image size)."""
    region = animal_region(s.bbox, s.width, s.height)
    if region is not None:
        return region
    xy = gt[gt[:, 2] > 0, :2]
    w, h = (xy.max(axis=0) - xy.min(axis=0)) if len(xy) else (0.0, 0.0)
    return np.array([0.0, 0.0, float(w), float(h)])


def _summary(dist: np.ndarray, mask: np.ndarray, pck: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """PCK per threshold and pixel errors over the keypoints selected by `mask` (N, K)."""
    out: dict[str, Any] = {}
    for name, (hit, valid) in pck.items():
        m = mask & valid
        n = int(m.sum())
        out[name] = float(hit[m].sum() / n) if n else None
    d = dist[mask]
    out["rmse"] = float(np.sqrt(np.mean(d**2))) if d.size else None
    out["median_error"] = float(np.median(d)) if d.size else None
    out["mean_error"] = float(d.mean()) if d.size else None
    return out


def oks_metrics(
    gt: np.ndarray, pred: np.ndarray, score: np.ndarray, samples: Sequence[Sample], sigmas: Sequence[float]
) -> dict[str, float | None]:
    """OKS AP (0.50:0.95), AP50, AP75 and AR through pycocotools' COCOeval, one sample per COCO image.

    Samples without a labelled keypoint are ignored by COCOeval (as COCO does); None when none is labelled.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    empty: dict[str, float | None] = dict.fromkeys(OKS_KEYS)
    n_labelled = (gt[:, :, 2] > 0).sum(axis=1)
    if not n_labelled.any():
        return empty
    images, anns, results = [], [], []
    for i, s in enumerate(samples):
        image_id = i + 1
        area = object_area(s, gt[i])
        box = [float(v) for v in _region(s, gt[i])]
        images.append({"id": image_id, "width": s.width or 0, "height": s.height or 0})
        anns.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "bbox": box,
                "area": area,
                "iscrowd": 0,
                "num_keypoints": int(n_labelled[i]),
                "keypoints": gt[i].reshape(-1).tolist(),
            }
        )
        kps = np.concatenate([pred[i], np.ones((pred.shape[1], 1))], axis=1)
        results.append(
            {"image_id": image_id, "category_id": 1, "keypoints": kps.reshape(-1).tolist(), "score": float(score[i])}
        )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its summary table
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "animal"}]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats  # keypoints: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl; -1 = undefined

    def val(x: float) -> float | None:
        return None if x < 0 else float(x)

    return {"oks_ap": val(stats[0]), "oks_ap50": val(stats[1]), "oks_ap75": val(stats[2]), "oks_ar": val(stats[5])}
