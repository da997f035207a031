"""Identity metrics of tracks against ground truth: IDF1 (Ristani et al. 2016: the one-to-one mapping of true to
predicted identities that agrees on the most frames) and identity switches (CLEAR MOT: a true animal matched,
in a frame, to another predicted identity than the one it was last matched to, a match of the previous
frame kept while it is still within the threshold). A true and a predicted animal
agree in a frame when their distance (the mean keypoint distance, in pixels) is below `threshold`; a true
keypoint given as NaN (outside the frame, say) is left out of that mean. With `pairs` (the schema's left/right
pairs), each pair is taken in whichever order is nearer: which leg a model calls left says nothing about which
animal it has, and a model that cannot tell near legs from far ones names them at random.

`ignore` lists, per frame, animals that are there but not asked for (MOT's "don't care": one mostly outside the
frame or hidden): a predicted animal within `ignore_threshold` (default `threshold`) of one of them, matched one
to one before the truth is, counts neither as a hit nor as a false positive.

Both matchings are `scipy.optimize.linear_sum_assignment`, so neither depends on the order animals are listed.
Written here because py-motmetrics, which defines them the same way, is not a dependency (nor worth one for
these two numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

# per frame: identity -> (K, 2) keypoints (or any (D,) / (K, D) position)
FrameIds = Mapping[int, np.ndarray]


def keypoint_distances(gt: np.ndarray, pred: np.ndarray, pairs: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """(K,) distances of (K, D) predicted keypoints to the true ones, each pair in its nearer order."""
    dist = np.linalg.norm(gt - pred, axis=-1)
    for a, b in pairs:
        other = np.linalg.norm(gt[[a, b]] - pred[[b, a]], axis=-1)
        if np.nansum(other) < np.nansum(dist[[a, b]]) and np.isfinite(other).sum() >= np.isfinite(dist[[a, b]]).sum():
            dist[[a, b]] = other
    return dist


def _distances(
    gt: FrameIds, pred: FrameIds, pairs: Sequence[tuple[int, int]] = ()
) -> tuple[list[int], list[int], np.ndarray]:
    g, p = list(gt), list(pred)
    d = np.full((len(g), len(p)), np.inf)
    for i, a in enumerate(g):
        ga = np.atleast_2d(np.asarray(gt[a], dtype=np.float64))
        for j, b in enumerate(p):
            pb = np.atleast_2d(np.asarray(pred[b], dtype=np.float64))
            dist = keypoint_distances(ga, pb, pairs)
            dist = dist[np.isfinite(dist)]
            d[i, j] = float(dist.mean()) if dist.size else np.inf
    return g, p, d


def _without_ignored(pred: FrameIds, ignore: FrameIds, threshold: float, pairs: Sequence[tuple[int, int]]) -> FrameIds:
    """The predicted animals of a frame less those matched (one to one, within `threshold`) to ignored ones."""
    if not ignore or not pred:
        return pred
    _, p, d = _distances(ignore, pred, pairs)
    rows, cols = linear_sum_assignment(np.where(d < threshold, d, 1e9))
    drop = {p[c] for r, c in zip(rows, cols, strict=True) if d[r, c] < threshold}
    return {k: v for k, v in pred.items() if k not in drop}


def identity_metrics(
    gt: Sequence[FrameIds],
    pred: Sequence[FrameIds],
    threshold: float,
    ignore: Sequence[FrameIds] | None = None,
    ignore_threshold: float | None = None,
    pairs: Sequence[tuple[int, int]] = (),
) -> dict[str, float]:
    """IDF1, IDP, IDR, identity switches and the counts behind them, over frames listed in the same order."""
    if len(gt) != len(pred) or (ignore is not None and len(ignore) != len(gt)):
        raise ValueError(f"{len(gt)} frames of ground truth, {len(pred)} of predictions"
                         + ("" if ignore is None else f", {len(ignore)} of ignored animals"))  # fmt: skip
    if ignore is not None:
        near = threshold if ignore_threshold is None else ignore_threshold
        pred = [_without_ignored(p, i, near, pairs) for p, i in zip(pred, ignore, strict=True)]
    gt_ids = sorted({i for f in gt for i in f})
    pred_ids = sorted({i for f in pred for i in f})
    gi, pi = {g: n for n, g in enumerate(gt_ids)}, {p: n for n, p in enumerate(pred_ids)}
    agree = np.zeros((len(gt_ids), len(pred_ids)))
    switches, last = 0, {}
    for fg, fp in zip(gt, pred, strict=True):
        if not fg or not fp:
            continue
        g, p, d = _distances(fg, fp, pairs)
        close = d < threshold
        for a, b in zip(*np.nonzero(close), strict=True):
            agree[gi[g[a]], pi[p[b]]] += 1
        # CLEAR MOT: a correspondence of the previous frame still within the threshold is kept; the others
        # are matched afresh, and a true animal matched to another identity than its last is a switch
        cost = np.where(close, d, 1e9)
        for r, name in enumerate(g):
            if name in last and last[name] in p and close[r, p.index(last[name])]:
                c = p.index(last[name])
                cost[r, :], cost[:, c] = 1e9, 1e9
                cost[r, c] = -1.0
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if close[r, c]:
                if g[r] in last and last[g[r]] != p[c]:
                    switches += 1
                last[g[r]] = p[c]
    n_gt = sum(len(f) for f in gt)
    n_pred = sum(len(f) for f in pred)
    idtp = 0.0
    if agree.size:
        rows, cols = linear_sum_assignment(-agree)
        idtp = float(agree[rows, cols].sum())
    return {
        "idf1": 2 * idtp / max(n_gt + n_pred, 1),
        "idp": idtp / max(n_pred, 1),
        "idr": idtp / max(n_gt, 1),
        "id_switches": float(switches),
        "idtp": idtp,
        "gt": float(n_gt),
        "pred": float(n_pred),
    }
