"""Identities across frames: each frame's detected animals (keypoints, box, score) are matched to the tracks
alive by `scipy.optimize.linear_sum_assignment` on a cost of 1 - similarity, where the similarity of a detection
and a track is `oks_weight` x OKS + (1 - `oks_weight`) x box IoU against where the track is predicted to be
now. A track's motion is a straight line fitted (Theil-Sen) to the confident keypoints of its matches in the last
`motion_window` frames (`fit_motion`): the prediction is its last pose, put on that line, moved along it for the
frames since. Leaving a track or a detection unmatched has a cost too (`assign`), so one good match is never
traded for two poor ones.

Hysteresis, in score and in time (as ByteTrack and SORT): only a detection scoring at least `start_score` begins a
track, while a track goes on through any detection the detector kept (an animal turning or half hidden scores
lower, a false positive seldom scores high); a new track is tentative until it has matched in `min_hits`
consecutive frames (a false positive seldom does), and it is then given its id for those frames too; a
tentative track that misses a frame dies. Started tracks take their detections first and tentative ones match
what is left (ByteTrack's cascade), so a duplicate box never grows a track that takes an animal from its own. A
started track survives `max_gap` frames unseen (an occlusion, a missed detection, an undecodable frame) and ends
after. Pairs less similar than `min_similarity` are never matched (the gate, widened by the frames a track has
been unseen), and at most `max_animals` tracks are started and alive at once: a tentative track beyond the cap
waits for one to end.

The input is offline (the whole video's detections), which is what lets a track's tentative frames keep its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from cattlepose.core.config import TrackConfig

UNTRACKED = -1
_INFEASIBLE = 1e6
_TRUSTED = 0.3  # a keypoint scored at least this takes part in its track's motion fit


@dataclass
class FrameDetections:
    """The animals found in one frame: (n, K, 3) keypoints x, y, score; (n, 4) boxes x, y, w, h; (n,) scores."""

    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, k: int) -> FrameDetections:
        return cls(np.zeros((0, k, 3)), np.zeros((0, 4)), np.zeros(0))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class _Track:
    keypoints: np.ndarray  # (K, 3) at the last match, put on the fitted line
    box: np.ndarray  # (4,) at the last match, put on the fitted line
    last: int  # frame of the last match
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px per frame, fitted
    hits: int = 1  # consecutive matches (for a tentative track)
    track_id: int | None = None  # set when the track starts
    members: list[tuple[int, int]] = field(default_factory=list)  # (frame, detection index)
    points: list[np.ndarray] = field(default_factory=list)  # each member's (K + 1, 3): keypoints, box centre

    def predicted(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the track should be at `frame`: keypoints (K, 2) and box, moved along the fitted motion."""
        shift = (frame - self.last) * self.velocity
        box = self.box.copy()
        box[:2] += shift
        return self.keypoints[:, :2] + shift, box


def fit_motion(frames: np.ndarray, points: np.ndarray, confident: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One straight-line motion shared by the points of an animal: (n,) frames, (n, P, 2) points, (n, P) which
    are trusted -> ((P, 2) each point where the line puts it at the last frame, NaN where it was never trusted;
    (2,) the velocity per frame). Theil-Sen: the velocity is the median of the slopes between every two frames of
    every point trusted in both, each point's place the median of its trusted positions moved to the last frame.

    A line, because animals walk steadily over a second or two. Points, not the box, because a half-hidden
    animal's box is its visible part, which stands still while the animal walks behind another, whereas each
    visible keypoint moves with it. Theil-Sen, because while two animals overlap some matches may be the other
    animal's: up to ~29 % of wrong slopes leave the line where the animal is (least squares, or the alpha-beta
    filter before it, follow them: docs/BENCHMARKS.md, "Video end to end")."""
    x = np.asarray(frames, dtype=np.float64) - frames[-1]
    pts = np.asarray(points, dtype=np.float64)
    ok = np.asarray(confident, dtype=bool)
    velocity = np.zeros(2)
    if len(x) >= 2:
        i, j = np.triu_indices(len(x), 1)
        both = ok[i] & ok[j]  # (pairs, P)
        slopes = (pts[j] - pts[i]) / (x[j] - x[i])[:, None, None]
        if both.any():
            velocity = np.median(slopes[both], axis=0)
    moved = np.where(ok[..., None], pts - x[:, None, None] * velocity, np.nan)
    at_last = np.full(pts.shape[1:], np.nan)
    seen = ok.any(axis=0)  # a point never trusted stays NaN (nanmedian would warn on it)
    at_last[seen] = np.nanmedian(moved[:, seen], axis=0)
    return at_last, velocity


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4) x (m, 4) boxes x, y, w, h -> (n, m) intersection over union."""
    a, b = a[:, None, :], b[None, :, :]
    x0, y0 = np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1])
    x1 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y1 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def pose_oks(
    det: np.ndarray,
    pred: np.ndarray,
    area: np.ndarray,
    sigmas: np.ndarray,
    weights: np.ndarray,
    pairs: Sequence[tuple[int, int]] = (),
) -> np.ndarray:
    """(n, K, 2) detections x (m, K, 2) predictions -> (n, m) object keypoint similarity, each keypoint weighted
    (by the scores of both sides); `area`: (m,) the scale of each prediction (its box area). Each left/right pair
    in `pairs` counts in whichever of its two orders matches better: a model that cannot tell near legs from
    far ones names them at random, and that says nothing about which animal it is."""
    kappa2 = (2 * sigmas) ** 2
    scale = 2 * np.maximum(area, 1.0)[None, :, None] * kappa2[None, None, :]

    def terms(d: np.ndarray) -> np.ndarray:  # (n, m, K) weighted per-keypoint similarities
        return np.exp(-((d[:, None, :, :] - pred[None, :, :, :]) ** 2).sum(-1) / scale) * weights

    e = terms(det)
    total = e.sum(-1)
    if pairs:
        a, b = np.array(pairs).T
        swapped = det.copy()
        swapped[:, a], swapped[:, b] = det[:, b], det[:, a]
        f = terms(swapped)
        total += np.maximum(0.0, f[..., a] + f[..., b] - e[..., a] - e[..., b]).sum(-1)
    return total / np.maximum(weights.sum(-1), 1e-12)


def similarity(dets: FrameDetections, tracks: Sequence[_Track], frame: int, cfg: TrackConfig, sigmas: np.ndarray,
               pairs: Sequence[tuple[int, int]] = ()) -> np.ndarray:  # fmt: skip
    """(n detections, m tracks) similarity in [0, 1] to each track's predicted position."""
    preds = [t.predicted(frame) for t in tracks]
    xy = np.stack([p[0] for p in preds])
    boxes = np.stack([p[1] for p in preds])
    unseen = np.array([frame - t.last - 1 for t in tracks], dtype=np.float64)
    # an unseen track is less sure of where it is: its scale grows with the frames it has missed
    area = boxes[:, 2] * boxes[:, 3] * (1.0 + 0.5 * unseen)
    weights = np.sqrt(
        np.clip(dets.keypoints[:, None, :, 2], 0, 1) * np.stack([t.keypoints[:, 2] for t in tracks])[None]
    )
    weights = np.clip(weights, 1e-3, None)
    oks = pose_oks(dets.keypoints[:, :, :2], xy, area, sigmas, weights, pairs)
    grown = boxes.copy()  # the box widened the same way
    pad = (np.sqrt(1.0 + 0.5 * unseen)[:, None] - 1.0) * boxes[:, 2:]
    grown[:, :2] -= pad / 2
    grown[:, 2:] += pad
    iou = box_iou(dets.boxes, grown)
    return cfg.oks_weight * oks + (1 - cfg.oks_weight) * iou


def track(
    frames: Sequence[FrameDetections],
    cfg: TrackConfig,
    sigmas: Sequence[float],
    pairs: Sequence[tuple[int, int]] = (),
) -> list[np.ndarray]:
    """The track id (1, 2, ...) of each detection of each frame, or UNTRACKED (-1): a false positive, an animal
    beyond `max_animals`, a track that never started. Frames are consecutive (frame i of the list is frame i of
    the video); an empty frame is a frame where nothing was found or that could not be decoded. `pairs`: the
    schema's left/right pairs, each matched in either order (`pose_oks`, `_update`)."""
    sig = np.asarray(sigmas, dtype=np.float64)
    alive: list[_Track] = []
    finished: list[_Track] = []
    next_id = 1
    for t, dets in enumerate(frames):
        # tracks unseen for longer than they may be end; a tentative track ends at its first miss
        keep = []
        for tr in alive:
            gap = t - tr.last - 1
            if gap > cfg.max_gap or (tr.track_id is None and gap > 0):
                finished.append(tr)
            else:
                keep.append(tr)
        alive = keep
        order = np.argsort(-dets.scores, kind="stable")[: 2 * cfg.max_animals] if len(dets) else np.zeros(0, int)
        matched: set[int] = set()
        if len(order) and alive:
            sub = FrameDetections(dets.keypoints[order], dets.boxes[order], dets.scores[order])
            sim = similarity(sub, alive, t, cfg, sig, pairs)
            cost = np.where(sim >= cfg.min_similarity, 1.0 - sim, np.inf)
            # started tracks take their detections first, tentative ones from what is left (ByteTrack's
            # cascade): a second box on an animal (a detector's duplicate) must not grow a tentative track that
            # then looks more like the animal than its own track does and takes it over
            started = np.array([tr.track_id is not None for tr in alive])
            for stage in (started, ~started):
                free = np.array([int(order[r]) not in matched for r in range(len(order))])
                if not stage.any() or not free.any():
                    continue
                rows, cols = np.flatnonzero(free), np.flatnonzero(stage)
                for r, c in assign(cost[np.ix_(rows, cols)], cfg.min_similarity):
                    _update(alive[cols[c]], dets, int(order[rows[r]]), t, cfg, pairs)
                    matched.add(int(order[rows[r]]))
        for i in order:
            if int(i) not in matched and dets.scores[i] >= cfg.start_score:
                alive.append(_new_track(dets, int(i), t))
        # tentative tracks with enough hits start, best first, while there is room under the cap
        started = sum(tr.track_id is not None for tr in alive)
        for tr in sorted(alive, key=lambda x: -x.hits):
            if tr.track_id is None and tr.hits >= cfg.min_hits and started < cfg.max_animals:
                tr.track_id, next_id, started = next_id, next_id + 1, started + 1
    ids = [np.full(len(d), UNTRACKED, dtype=np.int64) for d in frames]
    for tr in [*finished, *alive]:
        if tr.track_id is not None:
            for f, i in tr.members:
                ids[f][i] = tr.track_id
    return ids


def assign(cost: np.ndarray, min_similarity: float) -> list[tuple[int, int]]:
    """Rows matched to columns at the least total cost, where leaving a row or a column unmatched costs half
    the gate's cost (1 - min_similarity): a pair is matched only if it is cheaper than leaving both out, and one
    good match is not traded for two poor ones. (A plain rectangular assignment matches as many pairs as it
    can first, so a gated-out pair can decide which of the others are made.)"""
    n, m = cost.shape
    out = (1.0 - min_similarity) / 2
    big = np.full((n + m, n + m), _INFEASIBLE)
    big[:n, :m] = np.where(np.isfinite(cost), cost, _INFEASIBLE)
    big[:n, m:] = np.where(np.eye(n, dtype=bool), out, _INFEASIBLE)
    big[n:, :m] = np.where(np.eye(m, dtype=bool), out, _INFEASIBLE)
    big[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(big)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if r < n and c < m and big[r, c] < _INFEASIBLE]


def _new_track(dets: FrameDetections, i: int, t: int) -> _Track:
    box = dets.boxes[i].astype(np.float64)
    return _Track(dets.keypoints[i].copy(), box, t, members=[(t, i)], points=[_points(dets.keypoints[i], box)])


def _points(kp: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(K + 1, 3): the keypoints, then the box centre (always trusted: the fallback when no keypoint is)."""
    centre = np.asarray(box[:2], dtype=np.float64) + np.asarray(box[2:], dtype=np.float64) / 2
    return np.concatenate([np.asarray(kp, dtype=np.float64), [[*centre, 1.0]]])


def _update(
    tr: _Track, dets: FrameDetections, i: int, t: int, cfg: TrackConfig, pairs: Sequence[tuple[int, int]] = ()
) -> None:
    """The track takes the detection's pose and box, put on the motion line refitted over its matches of the
    last `motion_window` frames: one wrong or noisy detection moves the next prediction no more than the line
    lets it. Each left/right pair is taken in the order nearer the track's prediction, so the line of a leg is
    fitted to one leg (the track's own memory only: the detection itself is not changed)."""
    expected = tr.predicted(t)[0]
    tr.hits = tr.hits + 1 if t - tr.last == 1 else 1
    tr.last = t
    tr.members.append((t, i))
    box = dets.boxes[i].astype(np.float64)
    now = _points(_nearer_order(dets.keypoints[i], expected, pairs), box)
    tr.points.append(now)
    # the matches of the last window, found from the end: a track of a long video has thousands of members
    start = len(tr.members)
    while start > 0 and tr.members[start - 1][0] > t - cfg.motion_window:
        start -= 1
    frames = np.array([f for f, _ in tr.members[start:]], dtype=np.float64)
    pts = np.stack(tr.points[start:])
    at_last, tr.velocity = fit_motion(frames, pts[:, :, :2], pts[:, :, 2] >= _TRUSTED)
    # each point on the line where it has been trusted; the others (and the box) by the points' median shift
    shift = at_last - now[:, :2]
    common = np.nanmedian(shift[np.isfinite(shift[:, 0])], axis=0)
    shift = np.where(np.isfinite(shift), shift, common)
    tr.keypoints = np.concatenate([now[:-1, :2] + shift[:-1], now[:-1, 2:]], axis=1)
    tr.box = np.concatenate([box[:2] + common, box[2:]])


def _nearer_order(kp: np.ndarray, pred: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """(K, 3) keypoints with each pair swapped where the swapped order is nearer the (K, 2) prediction."""
    out = np.array(kp, dtype=np.float64, copy=True)
    for a, b in pairs:
        keep = np.nansum((kp[[a, b], :2] - pred[[a, b]]) ** 2)
        swap = np.nansum((kp[[b, a], :2] - pred[[a, b]]) ** 2)
        if swap < keep:
            out[a], out[b] = kp[b], kp[a]
    return out


def tracks_of(frames: Sequence[FrameDetections], ids: Sequence[np.ndarray]) -> dict[int, tuple[int, np.ndarray]]:
    """Each track's keypoints over its frames, from its first to its last: track id -> (first frame, (T, K, 3)
    x, y, score with NaN rows where it was not seen): what `smooth.smooth_track` takes."""
    seen: dict[int, dict[int, np.ndarray]] = {}
    for t, (dets, tid) in enumerate(zip(frames, ids, strict=True)):
        for i, track_id in enumerate(tid):
            if track_id != UNTRACKED:
                seen.setdefault(int(track_id), {})[t] = dets.keypoints[i]
    out = {}
    for track_id, by_frame in sorted(seen.items()):
        first, last = min(by_frame), max(by_frame)
        k = next(iter(by_frame.values())).shape[0]
        raw = np.full((last - first + 1, k, 3), np.nan)
        for t, kp in by_frame.items():
            raw[t - first] = kp
        out[track_id] = (first, raw)
    return out
