"""One track's keypoints over its frames: short gaps filled and flagged, each keypoint's path smoothed with the
confidence of each point as its weight. The raw values are never changed; the smoothed ones are returned beside.

`savgol`: a Savitzky-Golay filter with weights: in each window a polynomial of degree `polyorder` fitted by
weighted least squares, its value at the window's centre taken. scipy's `savgol_filter` has no weights, which is
the point here (a missing frame weighs nothing, a low-confidence point little); with equal weights this is
exactly `savgol_filter` away from the ends (tests/test_tracking.py checks it). `median`: low-confidence points
replaced by their neighbours' interpolation, then scipy's median filter. `none`: gaps filled only.

`one_euro`: the One-Euro filter (Casiez, Roussel & Vogel, "1 Euro filter: a simple speed-based low-pass filter
for noisy input in interactive systems", CHI 2012): a first-order low-pass filter whose cutoff frequency rises
with the keypoint's speed, `min_cutoff + beta * |speed|` (Hz; the speed itself low-passed at `d_cutoff`), so
a still or slow keypoint (a planted hoof) is smoothed hard and a fast one (a swinging leg) follows with little
lag. The speed is the 2-D speed of the point (px/s), so x and y share one cutoff and the result does not depend
on the image's orientation. A point's weight (1 for a fully trusted point, less for a lower score, 0 for a
missing one) scales each step: alpha * weight, normalised as a weighted mean of the estimate (weight 1 - alpha)
and the measurement (alpha * weight), so a fully trusted point takes the filter's plain alpha, a point of half
the weight counts as half a measurement, and a missing one leaves the filter where it was (the time until the
next measurement counts in that measurement's step).

It is causal: each output depends on the frames up to it only, so it can run live, frame by frame; the frames
of a gap are filled (between the smoothed values either side) once the animal is seen again. Prefer `savgol`
(the default) for recorded video: centred, it has no lag, while any causal filter trails a moving animal. On
synthetic walking cattle at 25 fps without outliers (benchmarks/bench_smoothing.py, docs/BENCHMARKS.md) the
defaults trail the truth by 1.2-1.4 px without noise and lose to savgol and median at every noise level while
walking; standing, with jitter only, they beat both at 1 px of noise (0.43 px against savgol's 0.80 and median's
0.60) and savgol at 3 px. Use `one_euro` where the output is needed as the frames arrive, or to match a live
system's filtering.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import median_filter

from cattlepose.core.config import TrackConfig
from cattlepose.data.formats.tracks_csv import VideoTrack


def weights_of(scores: np.ndarray, cfg: TrackConfig) -> np.ndarray:
    """A point's weight: its score, times `low_score_weight` below `min_score`; 0 where missing (NaN)."""
    w = np.nan_to_num(np.clip(scores, 0.0, 1.0), nan=0.0)
    return np.where(w < cfg.min_score, w * cfg.low_score_weight, w)


def weighted_savgol(y: np.ndarray, w: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """(T,) values and weights -> (T,) the weighted local polynomial's value at each frame; NaN where the
    window holds no weight. Values where the weight is 0 are ignored (may be NaN)."""
    h = window // 2
    y = np.nan_to_num(np.where(w > 0, y, 0.0))
    wp = np.pad(w, h)
    yp = np.pad(y, h)
    ww = sliding_window_view(wp, window)  # (T, window)
    wy = ww * sliding_window_view(yp, window)
    j = np.arange(-h, h + 1, dtype=np.float64)
    powers = j[None, :] ** np.arange(2 * polyorder + 1)[:, None]  # (2p+1, window)
    moments = ww @ powers.T  # (T, 2p+1): sum of w j^m
    rhs = wy @ powers[: polyorder + 1].T  # (T, p+1)
    idx = np.arange(polyorder + 1)
    a = moments[:, idx[:, None] + idx[None, :]]  # (T, p+1, p+1)
    # a window with fewer supported frames than coefficients: a small ridge on the slope terms keeps the
    # system solvable and tends to the weighted mean there
    ridge = np.zeros(polyorder + 1)
    ridge[1:] = 1e-6
    a = a + ridge[None] * np.maximum(moments[:, :1, None], 1e-12) * np.eye(polyorder + 1)[None]
    out = np.full(y.shape, np.nan)
    ok = moments[:, 0] > 1e-9
    if ok.any():
        out[ok] = np.linalg.solve(a[ok], rhs[ok][:, :, None])[:, 0, 0]
    return out


def fill_gaps(values: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """(T,) with NaN -> linearly interpolated across runs of at most `max_gap` NaNs between two values, and
    which entries were filled. Longer runs and the ends stay NaN."""
    out = values.copy()
    have = np.flatnonzero(~np.isnan(values))
    filled = np.zeros(values.shape, dtype=bool)
    if have.size < 2:
        return out, filled
    for a, b in pairwise(have):
        if 1 < b - a <= max_gap + 1:
            t = np.arange(a + 1, b)
            out[t] = values[a] + (values[b] - values[a]) * (t - a) / (b - a)
            filled[t] = True
    return out, filled


def _alpha(te: np.ndarray, cutoff: np.ndarray | float) -> np.ndarray:
    """The smoothing factor of a first-order low-pass filter of `cutoff` Hz over a step of `te` seconds."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / te)


def _gain(alpha: np.ndarray, w: np.ndarray) -> np.ndarray:
    """How far a measurement of weight `w` moves the estimate: alpha * w, normalised as a weighted mean of the
    estimate (weight 1 - alpha) and the measurement (alpha * w), so w = 1 gives the plain alpha and w = 0 none.
    Not the bare product alpha * w: with a network's usual scores (0.3-1) that slows every step and the filter
    trails further (benchmarks/bench_smoothing.py at 1 Hz, beta 0.05, d_cutoff 1 Hz: 5.0 px noise-free walking
    error with the product, 3.2 px with this)."""
    a = alpha[:, None]
    return a * w / (1.0 - a + a * w)


def one_euro(values: np.ndarray, weights: np.ndarray, fps: float, min_cutoff: float, beta: float,
             d_cutoff: float) -> np.ndarray:  # fmt: skip
    """(T, P, D) positions of P points over T frames (NaN where missing) and (T, P) weights in [0, 1] ->
    (T, P, D) the One-Euro filter's output, causal. A point's filter starts at its first measurement with a
    weight; before it the output is NaN. A frame without weight holds the filter (its output is the last
    estimate) and the time passed counts in the next measurement's step."""
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    t_len, p, d = values.shape
    out = np.full(values.shape, np.nan)
    x_hat = np.full((p, d), np.nan)
    dx_hat = np.zeros((p, d))  # the low-passed velocity, px/s
    last = np.full(p, np.nan)  # the frame of each point's last measurement
    for t in range(t_len):
        v, w = values[t], weights[t]
        seen = (w > 0) & np.isfinite(v).all(axis=1)
        start = seen & np.isnan(last)
        x_hat[start], last[start] = v[start], t
        step = seen & ~start
        if step.any():
            te = (t - last[step]) / fps
            ws = w[step][:, None]
            prev = x_hat[step]
            dx = dx_hat[step] + _gain(_alpha(te, d_cutoff), ws) * ((v[step] - prev) / te[:, None] - dx_hat[step])
            cutoff = min_cutoff + beta * np.linalg.norm(dx, axis=1)
            x_hat[step] = prev + _gain(_alpha(te, cutoff), ws) * (v[step] - prev)
            dx_hat[step], last[step] = dx, t
        out[t] = x_hat
    return out


def smooth_track(first: int, raw: np.ndarray, cfg: TrackConfig, fps: float, track: int = 0) -> VideoTrack:
    """Smooth one track: raw (T, K, 3), NaN rows where the animal was not detected; `fps`, the video's frame
    rate, sets the time between frames (the One-Euro filter's cutoffs are in Hz); `track`, its id in the outputs."""
    t_len, k = raw.shape[:2]
    smoothed = np.full(raw.shape, np.nan)
    missing = np.isnan(raw[:, :, 0]).all(axis=1)
    interpolated = np.zeros(t_len, dtype=bool)
    if cfg.smooth == "one_euro":
        euro = one_euro(raw[:, :, :2], weights_of(raw[:, :, 2], cfg), fps, cfg.min_cutoff, cfg.beta, cfg.d_cutoff)
    for j in range(k):
        x, y, s = raw[:, j, 0], raw[:, j, 1], raw[:, j, 2]
        w = weights_of(s, cfg)
        fx, filled = fill_gaps(x, cfg.max_gap)
        fy, _ = fill_gaps(y, cfg.max_gap)
        fs, _ = fill_gaps(s, cfg.max_gap)
        interpolated |= filled & missing
        if cfg.smooth == "savgol" and t_len > 1:
            sx = weighted_savgol(x, w, cfg.window, cfg.polyorder)
            sy = weighted_savgol(y, w, cfg.window, cfg.polyorder)
            # where the window held nothing, or outside the filled span, the filled line stands
            bad = np.isnan(sx) | np.isnan(fx)
            sx[bad], sy[bad] = fx[bad], fy[bad]
        elif cfg.smooth == "median" and t_len > 1:
            sx, sy = _median(x, w, cfg), _median(y, w, cfg)
            bad = np.isnan(fx)
            sx[bad], sy[bad] = np.nan, np.nan
        elif cfg.smooth == "one_euro":
            sx, sy = euro[:, j, 0].copy(), euro[:, j, 1].copy()
            # a missing frame: filled between the smoothed values either side (as fx, the same frames); before
            # the filter's first weighted measurement, the raw value stands
            sx[np.isnan(x)], sy[np.isnan(y)] = np.nan, np.nan
            early = np.isnan(sx) & ~np.isnan(x)
            sx[early], sy[early] = x[early], y[early]
            sx, _ = fill_gaps(sx, cfg.max_gap)
            sy, _ = fill_gaps(sy, cfg.max_gap)
        else:
            sx, sy = fx, fy
        smoothed[:, j] = np.stack([sx, sy, fs], axis=1)
    return VideoTrack(track, first, raw, smoothed, interpolated)


def _median(v: np.ndarray, w: np.ndarray, cfg: TrackConfig) -> np.ndarray:
    """Low-confidence and missing points replaced by their neighbours' line, then a median of `window`."""
    trusted = np.where(w >= cfg.min_score, v, np.nan)
    filled, _ = fill_gaps(trusted, len(v))
    have = ~np.isnan(filled)
    if not have.any():
        return np.full(v.shape, np.nan)
    filled = np.interp(np.arange(len(v)), np.flatnonzero(have), filled[have])  # the ends: held flat
    return median_filter(filled, size=cfg.window, mode="nearest")
