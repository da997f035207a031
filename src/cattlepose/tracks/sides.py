"""Left/right pairs followed through a track: each keypoint of a pair stays on one leg from frame to frame.

A keypoint model that cannot tell a near leg from a far one (docs/BENCHMARKS.md: most do, on cattle, sheep and
horses) gives the two legs of a pair in either order, frame by frame (`video.split_pairs` finds both legs where
it would have put the pair on one). Gait needs each hoof's own path: a footfall is a peak of one hoof's
protraction, and two legs mixed give strides of half or twice their duration.

Per pair, over the frames where both are seen:
- where the two points are well apart (over `CLOSE` of their median distance, at least `MIN_RUN` frames), each
  frame's order is the one whose points continue the straight lines through the last `FIT_FRAMES` positions of
  each path best;
- across a stretch where they come close (the legs pass each other, or the model put both on one), the stretch
  after is joined to the one before by the leg in stance. In a walk the two legs of a pair pass while one
  stands on the ground, so that leg's mean position over the `LINK_FRAMES` frames before the close stretch is
  its mean after, while the swinging leg is at its fastest just there and follows no line. The order under
  which the better-matching leg matches best wins (a sum over both legs lets the swing decide, and each
  keypoint becomes "the front leg": half-period strides). On true walking keypoints with random orders and
  4 px of noise this keeps hooves on their legs in 99.5 % of frames (tests/test_sides.py).
- the close frames take the order nearest to the lines of the side they are nearer in time.

Which leg is called left is then the model's majority: the labelling that agrees with the model's own order in
more of the frames where the two points are apart. A model that knows sides keeps them; one that does not names
them by a coin toss, consistently over the run (a run of frames after a gap of more than `max_gap` frames is
its own). Positions are never moved, only which keypoint of the pair each point is.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

APART_PX = 2.0  # two points of a pair closer than this are one point: they vote for no labelling
CLOSE = 0.5  # of the pair's median distance: closer, the two legs may be passing
MIN_RUN = 3  # frames apart for a stretch that is ordered frame by frame
FIT_FRAMES = 5  # a path's last positions its next one is predicted from (a straight line through them)
LINK_FRAMES = 5  # frames each side of a close stretch whose mean positions link the legs across it


def follow_pairs(raw: np.ndarray, pairs: Sequence[tuple[int, int]], max_gap: int = 10) -> np.ndarray:
    """(T, K, 3) x, y, score of one track (NaN where not seen) -> the same with each pair's two keypoints
    swapped in the frames where that keeps every leg on one path (module docstring)."""
    out = np.array(raw, dtype=np.float64, copy=True)
    for a, b in pairs:
        seen = np.flatnonzero(np.isfinite(out[:, [a, b], :2]).all(axis=(1, 2)))
        if len(seen) == 0:
            continue
        cuts = np.flatnonzero(np.diff(seen) > max_gap + 1) + 1
        for run in np.split(seen, cuts):
            swap = _orders(out[run, a, :2], out[run, b, :2], run.astype(np.float64))
            apart = np.linalg.norm(out[run, a, :2] - out[run, b, :2], axis=1) > APART_PX
            if swap[apart].sum() * 2 > apart.sum():  # the model's own order wins the majority of its frames
                swap = ~swap
            frames = run[swap]
            out[frames, a], out[frames, b] = raw[frames, b], raw[frames, a]
    return out


def _predict(t: np.ndarray, xy: np.ndarray, at: float | np.ndarray) -> np.ndarray:
    """The straight line fitted (least squares) to a path's positions (n, 2), at time(s) `at`: (2,) or (m, 2)."""
    at = np.asarray(at, dtype=np.float64)
    if len(t) == 1:
        return np.broadcast_to(xy[0], (*at.shape, 2))
    tc = t - t.mean()
    slope = (tc[:, None] * (xy - xy.mean(0))).sum(0) / (tc**2).sum()
    return xy.mean(0) + slope * (at[..., None] - t.mean())


def _greedy(pa: np.ndarray, pb: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n,) True where a frame's two points are swapped: each point goes to the path whose straight-line
    prediction (from its last `FIT_FRAMES` positions) it continues best."""
    n = len(t)
    order = np.zeros(n, dtype=bool)
    paths = np.zeros((2, n, 2))
    paths[0, 0], paths[1, 0] = pa[0], pb[0]
    for i in range(1, n):
        lo = max(0, i - FIT_FRAMES)
        p0 = _predict(t[lo:i], paths[0, lo:i], t[i])
        p1 = _predict(t[lo:i], paths[1, lo:i], t[i])
        keep = ((pa[i] - p0) ** 2).sum() + ((pb[i] - p1) ** 2).sum()
        swap = ((pb[i] - p0) ** 2).sum() + ((pa[i] - p1) ** 2).sum()
        order[i] = swap < keep
        paths[0, i], paths[1, i] = (pb[i], pa[i]) if order[i] else (pa[i], pb[i])
    return order


def _orders(pa: np.ndarray, pb: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n,) True where a frame's two points are swapped (the module docstring's three steps)."""
    n = len(t)
    d = np.linalg.norm(pa - pb, axis=1)
    apart = d > max(APART_PX, CLOSE * float(np.median(d)))
    runs = [(s, e) for s, e in _runs(apart) if e - s >= MIN_RUN]
    if not runs:
        return _greedy(pa, pb, t)
    order = np.zeros(n, dtype=bool)
    for s, e in runs:
        order[s:e] = _greedy(pa[s:e], pb[s:e], t[s:e])
    paths = _paths(pa, pb, order)

    def nearest(i: int, s: int, e: int) -> bool:  # frame i swapped, by the lines through frames s:e
        q0, q1 = (_predict(t[s:e], p[s:e], t[i]) for p in paths)
        keep = ((pa[i] - q0) ** 2).sum() + ((pb[i] - q1) ** 2).sum()
        return bool(((pb[i] - q0) ** 2).sum() + ((pa[i] - q1) ** 2).sum() < keep)

    for (s0, e0), (s1, e1) in itertools.pairwise(runs):
        # the leg in stance links the two sides (module docstring): its mean position before is its mean after
        lo, hi = max(s0, e0 - LINK_FRAMES), min(e1, s1 + LINK_FRAMES)
        before = [p[lo:e0].mean(0) for p in paths]
        after = [p[s1:hi].mean(0) for p in paths]
        keep = min(((before[0] - after[0]) ** 2).sum(), ((before[1] - after[1]) ** 2).sum())
        swap = min(((before[0] - after[1]) ** 2).sum(), ((before[1] - after[0]) ** 2).sum())
        if swap < keep:  # every later frame changes sides with it
            order[s1:] = ~order[s1:]
            paths = _paths(pa, pb, order)
        mid = 0.5 * (t[e0 - 1] + t[s1])
        for i in range(e0, s1):
            order[i] = (
                nearest(i, max(s0, e0 - FIT_FRAMES), e0) if t[i] <= mid else nearest(i, s1, min(e1, s1 + FIT_FRAMES))
            )
    (s0, e0), (s1, e1) = runs[0], runs[-1]
    for i in range(s0):  # before the first stretch, and after the last: from its lines
        order[i] = nearest(i, s0, min(e0, s0 + FIT_FRAMES))
    for i in range(e1, n):
        order[i] = nearest(i, max(s1, e1 - FIT_FRAMES), e1)
    return order


def _paths(pa: np.ndarray, pb: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    return [np.where(order[:, None], pb, pa), np.where(order[:, None], pa, pb)]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
