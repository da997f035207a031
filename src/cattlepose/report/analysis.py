"""Failure analysis numbers: where and how predictions go wrong. Pure numpy; figures live in figures.py.

Every function takes predictions as an (N, K, 2+) array aligned with a list of Samples, so the report and the
notebook compute the same numbers from the same out-of-fold file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cattlepose.core.schema import KeypointSchema
from cattlepose.data.records import Sample
from cattlepose.metrics.keypoints import pck_normaliser


def stack_truth(samples: Sequence[Sample]) -> np.ndarray:
    """(N, K, 3) ground truth."""
    return np.stack([s.keypoints for s in samples])


def errors_px(pred: np.ndarray, samples: Sequence[Sample]) -> np.ndarray:
    """(N, K) distance in original pixels; NaN where the keypoint is unlabelled (v = 0)."""
    gt = stack_truth(samples)
    err = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    return np.where(gt[..., 2] > 0, err, np.nan)


def crop_size(s: Sample) -> float:
    box = s.crop_box()
    return float(max(box[2], box[3]))


def normalised_errors(pred: np.ndarray, samples: Sequence[Sample], schema: KeypointSchema, kind: str) -> np.ndarray:
    """(N, K) error divided by the PCK normaliser of `kind` (`metrics.keypoints.pck_normaliser`): PCK@a is the
    fraction of these <= a, and NaN marks keypoints that PCK leaves out (unlabelled, or no normaliser)."""
    return errors_px(pred, samples) / pck_normaliser(samples, schema, kind)[:, None]


def pck(norm_err: np.ndarray, alpha: float, mask: np.ndarray | None = None) -> float:
    """Fraction of labelled keypoints (optionally within mask) whose normalised error is <= alpha."""
    valid = ~np.isnan(norm_err)
    if mask is not None:
        valid &= mask
    n = int(valid.sum())
    return float((norm_err[valid] <= alpha).sum() / n) if n else float("nan")


@dataclass
class SwapRate:
    left: str
    right: str
    rate: float  # fraction of labelled left/right predictions that sit closer to the partner's truth
    count: int


def swap_rates(
    pred: np.ndarray,
    samples: Sequence[Sample],
    schema: KeypointSchema,
    min_separation: np.ndarray | None = None,
) -> list[SwapRate]:
    """Per left/right pair: how often a prediction is closer to its partner's ground truth than to its own.

    Both keypoints of the pair must be labelled; each of the two predictions counts once. In a side view the
    left and right joints of a pair often nearly coincide, and then "closer to the partner" is a coin toss that
    says nothing about left/right confusion: `min_separation` ((N,) pixels) keeps only the animals whose pair
    lies at least that far apart."""
    gt = stack_truth(samples)
    out = []
    for a, b in schema.pairs:
        both = (gt[:, a, 2] > 0) & (gt[:, b, 2] > 0)
        if min_separation is not None:
            both &= np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=-1) >= min_separation
        swapped = 0
        for own, partner in ((a, b), (b, a)):
            d_own = np.linalg.norm(pred[:, own, :2] - gt[:, own, :2], axis=-1)
            d_partner = np.linalg.norm(pred[:, own, :2] - gt[:, partner, :2], axis=-1)
            swapped += int(((d_partner < d_own) & both).sum())
        count = 2 * int(both.sum())
        out.append(
            SwapRate(schema.keypoints[a], schema.keypoints[b], swapped / count if count else float("nan"), count)
        )
    return out


def visibility_split(norm_err: np.ndarray, samples: Sequence[Sample], alphas: Sequence[float]) -> dict:
    """PCK at each alpha for visible (v=2) and occluded (v=1) keypoints, with counts."""
    vis = stack_truth(samples)[..., 2]
    out = {}
    for name, v in (("visible", 2), ("occluded", 1)):
        mask = vis == v
        out[name] = {"count": int(mask.sum()), **{f"pck@{a:g}": pck(norm_err, a, mask) for a in alphas}}
    return out


def occluded_fraction(s: Sample) -> float:
    """The image's share of occluded keypoints: the generator's record when present, else counted from v."""
    if "occluded_fraction" in s.meta:
        return float(s.meta["occluded_fraction"])
    labelled = s.keypoints[:, 2] > 0
    return float((s.keypoints[labelled, 2] == 1).mean()) if labelled.any() else 0.0


def binned_pck(
    norm_err: np.ndarray, values: np.ndarray, edges: Sequence[float], alpha: float
) -> list[dict[str, float]]:
    """PCK@alpha of the images whose per-image value falls in each [edge_i, edge_i+1) bin (last bin closed)."""
    rows = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        last = i == len(edges) - 2
        sel = (values >= lo) & ((values <= hi) if last else (values < hi))
        rows.append({"lo": float(lo), "hi": float(hi), "images": int(sel.sum()), "pck": pck(norm_err[sel], alpha)})
    return rows


def per_keypoint(norm_err: np.ndarray, err_px: np.ndarray, schema: KeypointSchema, alpha: float) -> list[dict]:
    rows = []
    for k, name in enumerate(schema.keypoints):
        col = err_px[:, k]
        valid = ~np.isnan(col)
        rows.append(
            {
                "keypoint": name,
                "pck": pck(norm_err[:, [k]], alpha),
                "median_px": float(np.median(col[valid])) if valid.any() else float("nan"),
                "count": int(valid.sum()),
            }
        )
    return rows


def worst_images(norm_err: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n images with the highest mean normalised error (unlabelled keypoints ignored)."""
    with np.errstate(invalid="ignore"):
        score = np.nanmean(np.where(np.isnan(norm_err), np.nan, norm_err), axis=1)
    score = np.nan_to_num(score, nan=-1.0)
    return np.argsort(-score, kind="stable")[:n]
