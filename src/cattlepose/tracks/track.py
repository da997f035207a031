"""Identities across frames: each frame's detected animals (keypoints, box, score) are matched to the tracks
alive by `scipy.optimize.linear_sum_assignment` on a cost of 1 - similarity, where the similarity of a detection
and a track is `oks_weight` x OKS + (1 - `oks_weight`) x box IoU against where the track is predicted to be
now (constant velocity: its last position moved by its smoothed per-frame velocity for the frames since).

Hysteresis, in score and in time (as ByteTrack and SORT): only a detection scoring at least `start_score` begins a
track, while a track goes on through any detection the detector kept (an animal turning or half hidden scores
lower, a false positive seldom scores high); a new track is tentative until it has matched in `min_hits`
consecutive frames (a false positive seldom does), and it is then given its id for those frames too; a
tentative track that misses a frame dies. A
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
_POSITION_GAIN = 0.5  # how far a matched track's position moves to its detection (alpha)


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
    keypoints: np.ndarray  # (K, 3) at the last match
    box: np.ndarray  # (4,)
    last: int  # frame of the last match
    velocity: np.ndarray  # (3, 2): the animal's, the box corner's and the box size's motion per frame
    hits: int = 1  # consecutive matches (for a tentative track)
    track_id: int | None = None  # set when the track starts
    members: list[tuple[int, int]] = field(default_factory=list)  # (frame, detection index)

    def predicted(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the track should be at `frame`: keypoints (K, 2) and box."""
        dt = frame - self.last
        xy = self.keypoints[:, :2] + dt * self.velocity[0]
        box = self.box + dt * self.velocity[1:].reshape(4)
        box[2:] = np.maximum(box[2:], 1.0)
        return xy, box


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
    det: np.ndarray, pred: np.ndarray, area: np.ndarray, sigmas: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """(n, K, 2) detections x (m, K, 2) predictions -> (n, m) object keypoint similarity, each keypoint weighted
    (by the scores of both sides); `area`: (m,) the scale of each prediction (its box area)."""
    d2 = ((det[:, None, :, :] - pred[None, :, :, :]) ** 2).sum(-1)  # (n, m, K)
    kappa2 = (2 * sigmas) ** 2
    e = np.exp(-d2 / (2 * np.maximum(area, 1.0)[None, :, None] * kappa2[None, None, :]))
    return (e * weights).sum(-1) / np.maximum(weights.sum(-1), 1e-12)


def similarity(dets: FrameDetections, tracks: Sequence[_Track], frame: int, cfg: TrackConfig, sigmas: np.ndarray
               ) -> np.ndarray:  # fmt: skip
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
    oks = pose_oks(dets.keypoints[:, :, :2], xy, area, sigmas, weights)
    grown = boxes.copy()  # the box widened the same way
    pad = (np.sqrt(1.0 + 0.5 * unseen)[:, None] - 1.0) * boxes[:, 2:]
    grown[:, :2] -= pad / 2
    grown[:, 2:] += pad
    iou = box_iou(dets.boxes, grown)
    return cfg.oks_weight * oks + (1 - cfg.oks_weight) * iou


def track(frames: Sequence[FrameDetections], cfg: TrackConfig, sigmas: Sequence[float]) -> list[np.ndarray]:
    """The track id (1, 2, ...) of each detection of each frame, or UNTRACKED (-1): a false positive, an animal
    beyond `max_animals`, a track that never started. Frames are consecutive (frame i of the list is frame i of
    the video); an empty frame is a frame where nothing was found or that could not be decoded."""
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
            sim = similarity(sub, alive, t, cfg, sig)
            # started tracks are preferred to tentative ones for the same detection
            bonus = np.array([0.05 if tr.track_id is not None else 0.0 for tr in alive])
            cost = np.where(sim >= cfg.min_similarity, 1.0 - sim - bonus[None, :], _INFEASIBLE)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] >= _INFEASIBLE:
                    continue
                _update(alive[c], dets, int(order[r]), t, cfg)
                matched.add(int(order[r]))
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


def _new_track(dets: FrameDetections, i: int, t: int) -> _Track:
    return _Track(dets.keypoints[i].copy(), dets.boxes[i].copy(), t, np.zeros((3, 2)), members=[(t, i)])


def _update(tr: _Track, dets: FrameDetections, i: int, t: int, cfg: TrackConfig) -> None:
    """An alpha-beta filter (a Kalman filter with fixed gains) on the animal's position and motion: the state
    moves part of the way to the detection, the velocity by `velocity` x the surprise per frame, so one noisy
    or wrong detection bends a track less than it would replace it."""
    dt = t - tr.last
    kp, box = dets.keypoints[i], dets.boxes[i]
    pred_xy, pred_box = tr.predicted(t)
    # one motion for the whole animal: the median of its confident keypoints' (limbs swing, and a keypoint's
    # own noise would be its motion's), or the box's when none is confident
    confident = np.minimum(kp[:, 2], tr.keypoints[:, 2]) > 0.2
    corner = (box - pred_box).reshape(2, 2)
    body = np.median((kp[:, :2] - pred_xy)[confident], axis=0) if confident.any() else corner[0]
    surprise = np.concatenate([body[None], corner])
    if len(tr.members) == 1:  # the second sighting: the first motion is all there is
        tr.velocity = tr.velocity + surprise / dt
        state_xy, state_box = kp[:, :2], box
    else:
        tr.velocity = tr.velocity + cfg.velocity * surprise / dt
        state_xy = pred_xy + _POSITION_GAIN * (kp[:, :2] - pred_xy)
        state_box = pred_box + _POSITION_GAIN * (box - pred_box)
    tr.hits = tr.hits + 1 if dt == 1 else 1
    tr.keypoints = np.concatenate([state_xy, kp[:, 2:3]], axis=1)
    tr.box, tr.last = np.asarray(state_box, dtype=np.float64).copy(), t
    tr.members.append((t, i))


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
