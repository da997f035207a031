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

OKS AP through pycocotools' COCOeval, in one of two settings:
- `evaluate`: predictions already paired with animals (one per animal: a crop's, a ground-truth box's, a CSV
  row matched by image path). Each animal is its own COCO "image" holding it and its one prediction.
- `evaluate_detections`: the COCO protocol over a results file. Every detection of an image competes for its
  animals, ranked by its score; a detection left unmatched is a false positive, an animal left unmatched a miss.
  PCK and pixel errors need pairs: COCOeval's own matching at OKS 0.5 gives them (AP50's: each detection, in
  score order, takes the unmatched animal it fits best, if it fits that well, so a stray detection cannot take
  an animal from a good one); an animal without such a detection is a miss in PCK and left out of pixel
  errors. The result's `matching` says so.
The OKS scale is the annotation's own `area` when the data gives one (COCO files: the segmentation's area), else
the area of the animal's region: its box, or the image for whole-image crops, or the keypoints' extent.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.records import Instance, Pose, Sample, animal_region
from cattlepose.metrics.names import OKS_KEYS, metric_names, pck_key

VISIBILITY_SPLITS = {"visible": 2, "occluded": 1}


def evaluate(
    preds: Mapping[str, np.ndarray],
    samples: Sequence[Sample],
    schema: KeypointSchema,
    pck_torso: Sequence[float] = (0.35, 0.1),
    pck_bbox: Sequence[float] = (0.1, 0.2),
    scores: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Score predictions (Sample.key -> (K, 2) or (K, 3) x, y[, score] in original pixels) against samples,
    each prediction already paired with its animal. `scores` (Sample.key -> the animal's score) rank them in
    OKS AP; without one, a prediction's mean keypoint score does, or 1 when it has none.

    Returns a JSON-serialisable dict: n_samples, n_keypoints (labelled), torso_unavailable, overall,
    per_keypoint, by_visibility, and by_category when the samples hold more than one `meta["category"]`
    (sheep and horses of one file): per category its n_samples, n_keypoints, torso_unavailable and overall,
    as `evaluate` gives them on that category's samples alone. A metric with nothing to average over is
    None. Torso PCK keys are absent when the schema has no `pck_pair`. OKS AP/AR is overall only.
    """
    if not samples:
        raise UserError("nothing to evaluate: the ground truth holds no samples")
    gt, pred, score = _stack(preds, samples, schema.num_keypoints, scores)
    oks = oks_metrics(gt, pred, score, samples, schema.sigmas)
    result = _scores(gt, pred, samples, schema, pck_torso, pck_bbox, oks)
    groups = _by_category(samples)
    if len(groups) > 1:
        # scored as a set of its own, so OKS AP ranks each category's detections among themselves
        result["by_category"] = {
            name: _part(evaluate(preds, part, schema, pck_torso=pck_torso, pck_bbox=pck_bbox, scores=scores))
            for name, part in groups.items()
        }
    return result


def evaluate_detections(
    detections: Sequence[Pose],
    samples: Sequence[Sample],
    schema: KeypointSchema,
    pck_torso: Sequence[float] = (0.35, 0.1),
    pck_bbox: Sequence[float] = (0.1, 0.2),
    image_ids: Sequence[str] = (),
    ignored: Sequence[Sample] = (),
    by_category_id: bool = False,
) -> dict[str, Any]:
    """Score a results file by the COCO protocol (see the module's notes); the keys of `evaluate`, plus
    `matching`: how PCK and pixel errors paired detections with animals, and the counts.

    detections: every predicted animal, its `instance.image_id` the `Sample.image_id` of the ground-truth image
    it is in (`formats.matching.locate`), its `score` what ranks it. image_ids: every image of the ground truth
    (those without an animal hold only false positives); the samples' own images when empty. ignored:
    annotations COCO ignores (crowds, none labelled): a detection on one counts neither way. by_category_id:
    detections are scored per `instance.meta["category_id"]` against the samples' and AP averaged over
    categories, as COCOeval does; otherwise categories are not told apart.
    """
    if not samples:
        raise UserError("nothing to evaluate: the ground truth holds no samples")
    k = schema.num_keypoints
    gt = _ground_truth(samples, k)
    scene = _Scene(samples, ignored, detections, image_ids, by_category_id)
    oks, pairs = _coco_eval(scene, schema.sigmas, pair=True)
    pred = np.full((len(samples), k, 2), np.nan)
    for i, d in pairs.items():
        pred[i] = detections[d].keypoints[:, :2]
    result = _scores(gt, pred, samples, schema, pck_torso, pck_bbox, oks)
    result["matching"] = {
        "method": "coco",
        "description": PAIRED_BY_OKS,
        "animals": len(samples),
        "paired": len(pairs),
        "animals_unpaired": len(samples) - len(pairs),
        "detections": len(detections),
        "detections_unpaired": len(detections) - len(pairs),
    }
    result["boxes"] = box_ap(scene)
    groups = _by_category(samples)
    if len(groups) > 1:
        result["by_category"] = {}
        for name, part in groups.items():
            keys = {s.key for s in part}
            if by_category_id:
                cats = {s.meta.get("category_id") for s in part}
                dets = [d for d in detections if d.instance.meta.get("category_id") in cats]
                ign = [s for s in ignored if s.meta.get("category_id") in cats]
                ids = list(scene.image_ids)
            else:
                # the detections paired with this category's animals, and the unpaired ones in its images
                own = {d for i, d in pairs.items() if samples[i].key in keys}
                mine = {s.image_id for s in part}
                paired = set(pairs.values())
                dets = [d for j, d in enumerate(detections)
                        if j in own or (j not in paired and d.instance.image_id in mine)]  # fmt: skip
                ign = [s for s in ignored if s.image_id in mine]
                ids = sorted(mine)
            r = evaluate_detections(dets, part, schema, pck_torso, pck_bbox, ids, ign, by_category_id)
            result["by_category"][name] = _part(r)
    return result


PAIRED_BY_OKS = (
    "COCO protocol: OKS AP over every detection, ranked by score, unmatched detections false positives; PCK and "
    "pixel errors over the pairs COCOeval matches at OKS >= 0.5 (AP50's matching); an animal without such a "
    "detection is a miss in PCK and left out of pixel errors"
)


BOX_KEYS = ("box_ap", "box_ap50", "box_ap75", "box_ar")


def box_ap(scene: _Scene) -> dict[str, float | None] | None:
    """COCO box AP (IoU 0.50:0.95, AP50, AP75, AR at 100 detections) of the detections' boxes against the
    animals' regions, through COCOeval's `bbox` protocol: how well the boxes were found, apart from the
    keypoints in them. None when a detection has no box (a file without boxes)."""
    if scene.box_results is None:
        return None
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not scene.box_results:
        return dict.fromkeys(BOX_KEYS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": scene.images, "annotations": scene.annotations, "categories": scene.categories}
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in scene.box_results]), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats  # bbox: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ...; -1 = undefined
    return {key: None if stats[i] < 0 else float(stats[i]) for key, i in zip(BOX_KEYS, (0, 1, 2, 8), strict=True)}


def _part(r: dict[str, Any]) -> dict[str, Any]:
    return {key: r[key] for key in ("n_samples", "n_keypoints", "torso_unavailable", "overall")}


def _scores(
    gt: np.ndarray,
    pred: np.ndarray,
    samples: Sequence[Sample],
    schema: KeypointSchema,
    pck_torso: Sequence[float],
    pck_bbox: Sequence[float],
    oks: Mapping[str, float | None],
) -> dict[str, Any]:
    """Every metric but OKS (given) of (N, K, 3) ground truth against (N, K, 2) predictions; a NaN prediction
    (an animal nothing was paired with) is a miss in PCK and left out of the pixel errors."""
    labelled = gt[:, :, 2] > 0
    dist = np.linalg.norm(pred - gt[:, :, :2], axis=2)  # (N, K)

    norms: dict[str, np.ndarray] = {"bbox": box_normaliser(samples, gt)}
    thresholds: dict[str, Sequence[float]] = {"bbox": tuple(pck_bbox)}
    if schema.pck_pair is not None:
        norms["torso"] = torso_normaliser(gt, schema.pck_pair)
        thresholds["torso"] = tuple(pck_torso)
    # PCK hits per threshold, (N, K) each; NaN normalisers (no torso) are excluded through `valid`, NaN
    # distances (nothing paired) are misses
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
    overall.update(oks)
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
    return {
        "n_samples": len(samples),
        "n_keypoints": int(labelled.sum()),
        "torso_unavailable": int((~np.isfinite(norms["torso"])).sum()) if "torso" in norms else None,
        "overall": {name: overall[name] for name in order},
        "per_keypoint": per_keypoint,
        "by_visibility": by_visibility,
        "left_right": left_right_merged(gt, pred, schema, norms["bbox"]),
    }


# A left/right pair counts when its two labelled keypoints are at least this far apart (of the box's long side);
# it is merged when the two predictions are closer than MERGED_OF_TRUE of that distance.
APART_OF_BOX = 0.1
MERGED_OF_TRUE = 0.25


def left_right_merged(
    gt: np.ndarray, pred: np.ndarray, schema: KeypointSchema, box: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per left/right pair ("left / right" names as the schema's flip pairs give them): `n` animals whose two
    keypoints are both labelled and apart, and `merged`, the fraction of them whose two predictions fall on one
    point. A model that cannot tell the sides apart (near and far legs of a side view) learns the same map for
    both and puts both keypoints on whichever it sees best: PCK at a generous threshold hides that, a gait or a
    per-side measurement does not."""
    out = {}
    for a, b in schema.pairs:
        both = (gt[:, a, 2] > 0) & (gt[:, b, 2] > 0)
        true = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=1)
        predicted = np.linalg.norm(pred[:, a] - pred[:, b], axis=1)
        with np.errstate(invalid="ignore"):
            apart = both & (true >= APART_OF_BOX * box) & np.isfinite(predicted)
            merged = apart & (predicted < MERGED_OF_TRUE * true)
        n = int(apart.sum())
        out[f"{schema.keypoints[a]} / {schema.keypoints[b]}"] = {
            "n": n, "merged": float(merged.sum() / n) if n else None,
        }  # fmt: skip
    return out


def merged_pairs(result: Mapping[str, Any], at_least: float = 0.5, min_n: int = 10) -> list[str]:
    """Warnings for the pairs of an `evaluate` result that are merged in at least `at_least` of `min_n` or more
    animals."""
    return [f"{pair}: both predictions on one point in {m['merged']:.0%} of {m['n']} animals whose two are apart; "
            "the model does not tell left from right there"
            for pair, m in result.get("left_right", {}).items()
            if m["merged"] is not None and m["n"] >= min_n and m["merged"] >= at_least]  # fmt: skip


def _by_category(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by `meta["category"]` in order of first appearance; those without one under "unknown"."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        name = s.meta.get("category")
        groups.setdefault("unknown" if name is None else str(name), []).append(s)
    return groups


def _stack(
    preds: Mapping[str, np.ndarray], samples: Sequence[Sample], k: int, scores: Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K, 3) ground truth, (N, K, 2) predicted xy, (N,) detection scores; every input checked."""
    missing = [s.key for s in samples if s.key not in preds]
    if missing:
        raise UserError(f"no prediction for {len(missing)} of {len(samples)} sample(s), e.g. {', '.join(missing[:5])}")
    gt = _ground_truth(samples, k)
    pred = np.empty((len(samples), k, 2))
    score = np.ones(len(samples))
    for i, s in enumerate(samples):
        p = np.asarray(preds[s.key], dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != k or p.shape[1] not in (2, 3):
            raise UserError(f"prediction for {s.key} has shape {p.shape}; expected ({k}, 2) or ({k}, 3)")
        if not np.all(np.isfinite(p)):
            raise UserError(f"prediction for {s.key} holds NaN or infinite values")
        pred[i] = p[:, :2]
        if scores is not None and s.key in scores:
            score[i] = float(scores[s.key])
        elif p.shape[1] == 3:
            score[i] = float(p[:, 2].mean())
    return gt, pred, score


def _ground_truth(samples: Sequence[Sample], k: int) -> np.ndarray:
    """(N, K, 3) keypoints of the samples, each checked against the schema's count."""
    gt = np.empty((len(samples), k, 3))
    for i, s in enumerate(samples):
        if s.keypoints.shape != (k, 3):
            raise UserError(f"sample {s.key} has {s.num_keypoints} keypoints, the schema has {k}", field="keypoints")
        gt[i] = s.keypoints
    return gt


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
    """OKS scale s²: the annotation's own area where the data gives one (`meta["area"]`, as COCO scores), else
    the area of the animal's region (`_region`)."""
    area = s.meta.get("area")
    if isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area) and area > 0:
        return float(area)
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
    d = dist[mask & np.isfinite(dist)]
    out["rmse"] = float(np.sqrt(np.mean(d**2))) if d.size else None
    out["median_error"] = float(np.median(d)) if d.size else None
    out["mean_error"] = float(d.mean()) if d.size else None
    return out


def oks_metrics(
    gt: np.ndarray, pred: np.ndarray, score: np.ndarray, samples: Sequence[Sample], sigmas: Sequence[float]
) -> dict[str, float | None]:
    """OKS AP (0.50:0.95), AP50, AP75 and AR of paired predictions: each sample its own COCO image holding it
    and its one prediction (scored by `score`). Samples without a labelled keypoint are ignored by COCOeval (as
    COCO does); None when none is labelled."""
    dets = [Pose(Instance(s.image, image_id=s.key), pred[i], float(score[i])) for i, s in enumerate(samples)]
    scene = _Scene(samples, (), dets, (), False, image_of=lambda s: s.key)
    return _coco_eval(scene, sigmas)[0]


class _Scene:
    """Ground truth and detections as COCO's API holds them: integer ids for images, categories, annotations
    (samples 1..N, then the ignored ones) and results (1..D in the order given, as `loadRes` numbers them)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        ignored: Sequence[Sample],
        detections: Sequence[Pose],
        image_ids: Sequence[str],
        by_category_id: bool,
        image_of: Callable[[Sample], str] = lambda s: s.image_id,
    ):
        gts = [*samples, *ignored]
        self.image_ids = list(dict.fromkeys([*map(str, image_ids), *(image_of(s) for s in gts)]))
        image_num = {name: i + 1 for i, name in enumerate(self.image_ids)}
        cat_keys = [s.meta.get("category_id") for s in gts] if by_category_id else []
        cat_num = {c: i + 1 for i, c in enumerate(dict.fromkeys(cat_keys))} if by_category_id else {None: 1}

        def cat(c: Any) -> int:
            return cat_num[c if by_category_id else None]

        self.images = [{"id": n, "width": 0, "height": 0} for n in image_num.values()]
        self.categories = [{"id": n, "name": str(c)} for c, n in cat_num.items()]
        self.annotations = []
        for i, s in enumerate(gts):
            region = [float(v) for v in _region(s, s.keypoints)]
            crowd = int(bool(s.meta.get("iscrowd"))) if i >= len(samples) else 0
            self.annotations.append({
                "id": i + 1, "image_id": image_num[image_of(s)], "category_id": cat(s.meta.get("category_id")),
                "bbox": region, "area": object_area(s, s.keypoints), "iscrowd": crowd,
                "num_keypoints": int((s.keypoints[:, 2] > 0).sum()), "keypoints": s.keypoints.reshape(-1).tolist(),
            })  # fmt: skip
        self.results = [
            {"image_id": image_num[d.instance.image_id], "category_id": cat(d.instance.meta.get("category_id")),
             "keypoints": _with_scores(d.keypoints).reshape(-1).tolist(), "score": float(d.score)}
            for d in detections
        ]  # fmt: skip
        boxed = all(d.instance.bbox is not None for d in detections)
        self.box_results = [
            {"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
             "bbox": [float(v) for v in d.instance.bbox]}  # type: ignore[union-attr]
            for r, d in zip(self.results, detections, strict=True)
        ] if boxed else None  # fmt: skip
        self.n_samples = len(samples)


def _with_scores(kps: np.ndarray) -> np.ndarray:
    """(K, 3) x, y, score: a prediction read without keypoint scores gets 1 (COCOeval reads x and y only)."""
    kps = np.asarray(kps, dtype=np.float64)
    return kps if kps.shape[1] == 3 else np.concatenate([kps, np.ones((len(kps), 1))], axis=1)


def _coco_eval(
    scene: _Scene, sigmas: Sequence[float], pair: bool = False
) -> tuple[dict[str, float | None], dict[int, int]]:
    """(OKS AP, AP50, AP75, AR through COCOeval; sample index -> detection index of COCOeval's own matching
    at OKS 0.5, when `pair`). Nothing labelled: None; no detection: 0."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not any(a["num_keypoints"] for a in scene.annotations[: scene.n_samples]):
        return dict.fromkeys(OKS_KEYS), {}
    if not scene.results:  # COCO's loadRes cannot take an empty list; nothing found is nothing right
        return dict.fromkeys(OKS_KEYS, 0.0), {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its summary table
        coco_gt = COCO()
        coco_gt.dataset = {"images": scene.images, "annotations": scene.annotations, "categories": scene.categories}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in scene.results])  # loadRes adds keys to the dicts
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = ev.stats  # keypoints: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl; -1 = undefined
        pairs: dict[int, int] = {}
        if pair:
            # COCOeval's own matching at its loosest threshold, OKS 0.5 (AP50's): each detection, best score
            # first (the top maxDets of an image), took the unmatched animal it fits best, if it fits that well
            whole = ev.params.areaRng[0]  # "all" areas
            for e in ev.evalImgs:
                if e is None or list(e["aRng"]) != list(whole):
                    continue
                for det_id, gt_id in zip(e["dtIds"], e["dtMatches"][0], strict=True):
                    if 0 < gt_id <= scene.n_samples:
                        pairs[int(gt_id) - 1] = int(det_id) - 1

    def val(x: float) -> float | None:
        return None if x < 0 else float(x)

    return {
        "oks_ap": val(stats[0]),
        "oks_ap50": val(stats[1]),
        "oks_ap75": val(stats[2]),
        "oks_ar": val(stats[5]),
    }, pairs
