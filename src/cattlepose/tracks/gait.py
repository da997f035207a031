"""Gait signals of walking cattle from tracked keypoints: strides, head bob, back arch, tracking, step asymmetry.

Input: one `KeypointTrack` per animal (frame numbers and, per frame, every keypoint's x, y and score) and the
frame rate. Keypoints are found by name (ADK17 names, or any spelling `core.schema.match_keypoint_names`
recognises); a schema without the ones a signal needs is a `UserError` naming them (`NEEDS`).

Definitions (image pixels; `L`, the body length, is the track's median withers-tail root distance, and every
length below is also given in body lengths, `_bl`, so animals of any size and distance compare):

- Travel direction `u`: the unit vector of the withers' displacement over the walking segment.
- Protraction of a hoof: (hoof - withers) . u / L, how far forward of the withers the hoof is. A hoof lands at
  the end of its swing, at its most forward point under the body, so a **footfall** is a peak of protraction
  (`scipy.signal.find_peaks`, at least 0.6 of the stride period apart, on protraction smoothed over 0.35 of
  the period, refined to a fraction of a frame by the parabola through the peak). This is the "maximal
  protraction" event of kinematic gait analysis; it needs no ground line, which a 2-D side view does not give
  (the hoof's height and speed minimum, the other classic cues, depend on the camera's tilt and on noise far
  more). With 3 px of keypoint noise, smoothing over 0.35 of a stride instead of 0.2 s took the strides
  within 5 % of their true duration from 91 % to all (tests/test_gait.py's six cows; 95 % of 688 strides of
  30 cows in benchmarks/bench_gait.py). The stride period that spaces the peaks is twice the median time between
  landings of either hoof of a pair: the peaks of the front leg's protraction, max(left, right), which does not
  depend on which leg a model calls left (`_stride_period`).
- **Stride** (per hoof): from one footfall of a hoof to its next, when they are 0.75-1.33 periods apart
  (`STRIDE_RANGE`; further, a footfall was missed or belongs to the other leg). Duration: their time
  difference. Length: the distance between the two landing positions (stride length, the classic definition:
  one full gait cycle).
- **Step length**: from a footfall to the landing position of the other side's hoof of the same pair (fore or
  rear) that landed last before it, along u. **Step asymmetry** of a track: (S_left - S_right) / mean(S_left,
  S_right), S_side the median step of that side's hooves; negative when the left steps are shorter (the left
  side "shortened stride" of a lame animal; Russello et al. 2024 and classic step-length asymmetry).
- **Tracking distance** (per rear stride): the rear hoof's landing position minus that of the same side's fore
  hoof that landed last before it, along u: positive when the rear hoof lands ahead of the fore hoof's print
  ("tracking up"; Russello et al. 2024 trait "tracking up"; Flower & Weary 2006 locomotion scoring).
- **Head bob** (per stride): the amplitude of the head's height above the withers (fore_head minus fore_spine,
  image up) at the stride frequency, fitted by least squares over the stride (a constant, a linear drift and
  one sine and cosine of period = the stride's duration) (Russello et al. 2024 "head bobbing"; Barney et al.
  2023 use the head keypoint's vertical movement after tracking).
- **Back arch** (per stride): the mean over the stride of the loin's (rear_spine) distance above the withers
  (fore_spine) - tail root (hip) line, divided by that line's length (Russello et al. 2024 "back arch";
  Barney et al. 2023, the back keypoints' curvature; Viazzi et al. 2013 back posture measurement).

References: Russello H., van der Tol R., Holzhauer M., van Henten E. J., Kootstra G. (2024), "Video-based
automatic lameness detection of dairy cows using pose estimation and multiple locomotion traits", Computers
and Electronics in Agriculture 223; Barney S., Dlay S., Crowe A., Kyriazakis I., Leach M. (2023), "Deep
learning pose estimation for multi-cattle lameness detection", Scientific Reports 13:4499; Viazzi S. et al.
(2013), "Analysis of individual classification of lameness using automatic measurement of back posture in
dairy cattle", J. Dairy Sci. 96; Flower F. C., Weary D. M. (2006), "Effect of hoof pathologies on subjective
assessments of dairy cow gait", J. Dairy Sci. 89.

A pair of hooves (fore or rear) whose left and right keypoints coincide (median under `COINCIDE_BL` body
lengths apart) is one leg labelled twice, the mark of a model that cannot tell near legs from far ones: its
footfalls and strides are not measured, and the track's note says so.

Missing keypoints (a score below `min_score`, or no row) are filled linearly across gaps up to a quarter
second; longer gaps cut the track into segments and no stride spans one. Positions are smoothed by a
Savitzky-Golay filter (0.2 s, order 2) before any signal is taken.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import find_peaks, savgol_filter

from cattlepose.core.errors import UserError
from cattlepose.core.schema import KeypointSchema, match_keypoint_names

HOOVES = ("fore_left_foot", "fore_right_foot", "rear_left_foot", "rear_right_foot")
FEET_NEEDS = (*HOOVES, "fore_spine")
# every signal and the keypoints (ADK17 names) it needs
NEEDS: dict[str, tuple[str, ...]] = {
    "body length": ("fore_spine", "hip"),
    "footfalls, stride duration and length": FEET_NEEDS,
    "step asymmetry": FEET_NEEDS,
    "tracking distance": FEET_NEEDS,
    "head bob": ("fore_head", "fore_spine"),
    "back arch": ("fore_spine", "rear_spine", "hip"),
}
REQUIRED = tuple(dict.fromkeys(k for ks in NEEDS.values() for k in ks))
MAX_GAP_S = 0.25
SMOOTH_S = 0.2
FOOTFALL_SMOOTH = 0.35  # of the stride period: the window protraction is smoothed over to find footfalls
PERIOD_RANGE_S = (0.4, 3.0)
STRIDE_RANGE = (0.75, 1.33)  # of the period: a stride outside is a missed or wrong footfall, not a stride
FRONT_SMOOTH_S = 0.25  # the front leg's protraction is smoothed over this before its peaks (landings) are found
# A pair's left and right hooves closer than this (median, body lengths) are one point labelled twice: a model
# that cannot tell the near legs from the far ones puts both on whichever leg it sees best (walking hooves are a
# quarter body length apart at the median; they pass each other only briefly). Strides from such a pair would
# be a mixture of two legs, so they are not measured, and the note says why.
COINCIDE_BL = 0.05
PAIRS = {"fore": HOOVES[:2], "rear": HOOVES[2:]}

STRIDE_COLUMNS = ("track", "hoof", "stride", "start_frame", "end_frame", "start_s", "duration_s", "length_px",
                  "length_bl", "speed_bl_s", "step_bl", "tracking_bl", "head_bob_bl", "back_arch_bl")  # fmt: skip
SUMMARY_COLUMNS = ("track", "frames", "seconds", "strides", "stride_duration_s", "cadence_per_min", "stride_length_px",
                   "stride_length_bl", "speed_bl_s", "body_length_px", "head_bob_bl", "back_arch_bl", "tracking_bl",
                   "step_left_bl", "step_right_bl", "step_asymmetry", "shorter_side", "note")  # fmt: skip
ASYMMETRY_SIDE = 0.1  # |step asymmetry| from which `shorter_side` names a side


@dataclass(frozen=True)
class KeypointTrack:
    track: str
    frames: np.ndarray  # (N,) frame numbers, increasing
    keypoints: np.ndarray  # (N, K, 3) x, y, score in the schema's order; NaN x or y: not seen


@dataclass
class TrackGait:
    """One track's signals on its frame grid (for plots) and its stride rows and summary (for tables)."""

    track: str
    frames: np.ndarray  # (M,) every frame from the first to the last
    protraction: dict[str, np.ndarray]  # hoof -> (M,) body lengths (NaN outside walking segments)
    head: np.ndarray  # (M,) head height above the withers, body lengths
    arch: np.ndarray  # (M,) back arch, body lengths
    footfalls: dict[str, np.ndarray]  # hoof -> fractional frame numbers
    strides: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def keypoint_index(schema: KeypointSchema | Sequence[str]) -> dict[str, int]:
    """ADK17 name -> index in the schema, for every keypoint a gait signal needs; a UserError names the ones
    missing and what each signal needs."""
    names = list(schema.keypoints if isinstance(schema, KeypointSchema) else schema)
    found = match_keypoint_names(names, REQUIRED)
    missing = [k for k in REQUIRED if k not in found]
    if missing:
        needs = "; ".join(f"{sig}: {', '.join(ks)}" for sig, ks in NEEDS.items())
        raise UserError(f"the keypoints lack {', '.join(missing)}, which gait signals need (matched by name "
                        f"to the ADK17 names; {needs}); the keypoints given: {', '.join(names)}",
                        field="keypoints")  # fmt: skip
    return {k: names.index(found[k]) for k in REQUIRED}


def gait_table(
    tracks: Sequence[KeypointTrack], schema: KeypointSchema | Sequence[str], fps: float, min_score: float = 0.3
) -> list[TrackGait]:
    """Every track's gait (see the module docstring); rows for the tables are `.strides` and `.summary`."""
    if not (np.isfinite(fps) and fps > 0):
        raise UserError(f"the frame rate must be a positive number, got {fps}", field="fps")
    index = keypoint_index(schema)
    return [track_gait(t, index, fps, min_score) for t in tracks]


def _dense(track: KeypointTrack, index: dict[str, int], min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """(frames (M,), xy (M, R, 2)) of the REQUIRED keypoints on every frame, NaN where unseen."""
    frames = np.asarray(track.frames, np.int64)
    kp = np.asarray(track.keypoints, np.float64)[:, [index[k] for k in REQUIRED]]
    grid = np.arange(frames.min(), frames.max() + 1) if len(frames) else np.zeros(0, np.int64)
    xy = np.full((len(grid), len(REQUIRED), 2), np.nan)
    seen = kp[..., :2].copy()
    seen[~(kp[..., 2] >= min_score)] = np.nan
    xy[frames - (grid[0] if len(grid) else 0)] = seen
    return grid, xy


def _fill_gaps(xy: np.ndarray, max_gap: int) -> np.ndarray:
    """Linear interpolation across runs of NaN no longer than `max_gap` frames, between seen frames."""
    out = xy.copy()
    flat = out.reshape(len(out), int(np.prod(out.shape[1:])))  # a view: filling it fills `out`
    idx = np.arange(len(out))
    for c in range(flat.shape[1]):
        col = flat[:, c]
        ok = np.isfinite(col)
        if ok.sum() < 2 or ok.all():
            continue
        for start, end in _segments(~ok, 1):
            if start > 0 and end < len(col) and end - start <= max_gap:
                col[start:end] = np.interp(idx[start:end], idx[ok], col[ok])
    return out


def _segments(valid: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, end) runs of True at least `min_len` long."""
    edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True) if e - s >= min_len]


def _odd(n: float) -> int:
    k = max(5, round(n))
    return k if k % 2 else k + 1


def _stride_period(protr: dict[str, np.ndarray], hooves: list[str], fps: float) -> float | None:
    """The stride period (frames) of a walking segment: twice the median time between the landings of either
    hoof of a pair, the peaks of the leg in front, max(left, right) protraction. That series does not care which
    leg is called left, so a model that mixes the legs up in some frames (tracks/sides.py) leaves it whole, where
    each hoof's own series, mixed, repeats at 1.5 or 2 strides (their autocorrelation, used before, took 9 of 18
    synthetic-video animals within 5 % of the truth; this, 15: docs/BENCHMARKS.md)."""
    spacings: list[float] = []
    for a, b in PAIRS.values():
        if a not in hooves:
            continue
        front = np.maximum(protr[a], protr[b])
        window = _odd(FRONT_SMOOTH_S * fps)
        if len(front) <= window:
            continue
        front = savgol_filter(front, window, 2)
        spread = float(np.percentile(front, 95) - np.percentile(front, 5))
        peaks, _ = find_peaks(front, distance=max(1, int(PERIOD_RANGE_S[0] * fps / 2)), prominence=0.25 * spread)
        spacings += np.diff([_refine(front, int(i)) for i in peaks]).tolist()  # to a fraction of a frame
    if not spacings:
        return None
    period = 2.0 * float(np.median(spacings))
    return period if PERIOD_RANGE_S[0] * fps <= period <= PERIOD_RANGE_S[1] * fps else None


def _refine(y: np.ndarray, i: int) -> float:
    """Sub-frame peak position: the vertex of the parabola through y[i-1], y[i], y[i+1]."""
    if i <= 0 or i >= len(y) - 1:
        return float(i)
    a, b, c = y[i - 1], y[i], y[i + 1]
    den = a - 2 * b + c
    return float(i + np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else float(i)


def _at(series: np.ndarray, pos: float) -> np.ndarray:
    """A (M, 2) series at a fractional index (linear)."""
    i = int(np.clip(np.floor(pos), 0, len(series) - 2))
    f = pos - i
    return (1 - f) * series[i] + f * series[i + 1]


def track_gait(track: KeypointTrack, index: dict[str, int], fps: float, min_score: float = 0.3) -> TrackGait:
    """One track's gait signals, stride rows and summary (module docstring)."""
    grid, xy = _dense(track, index, min_score)
    col = {k: i for i, k in enumerate(REQUIRED)}
    xy = _fill_gaps(xy, round(MAX_GAP_S * fps))
    m = len(grid)
    nan = np.full(m, np.nan)
    out = TrackGait(str(track.track), grid, {h: nan.copy() for h in HOOVES}, nan.copy(), nan.copy(),
                    {h: np.zeros(0) for h in HOOVES})  # fmt: skip
    valid = np.isfinite(xy).all(axis=(1, 2))
    window = _odd(SMOOTH_S * fps)
    body = np.linalg.norm(xy[:, col["fore_spine"]] - xy[:, col["hip"]], axis=1)
    body_len = float(np.nanmedian(body)) if np.isfinite(body).any() else float("nan")
    notes = []
    hooves = _distinct_hooves(xy, col, body_len, notes)
    segments = _segments(valid, max(window + 2, int(PERIOD_RANGE_S[0] * fps * 2)))
    if not segments:
        notes.append("no stretch long enough with every needed keypoint seen")
    for s, e in segments:
        seg = savgol_filter(xy[s:e], window, 2, axis=0)
        withers, hip = seg[:, col["fore_spine"]], seg[:, col["hip"]]
        axis = withers - hip
        length = np.linalg.norm(axis, axis=1)
        # head height above the withers and the loin's height above the withers-tail root line (image up)
        out.head[s:e] = -(seg[:, col["fore_head"], 1] - withers[:, 1]) / body_len
        r = seg[:, col["rear_spine"]] - hip
        normal = np.stack([axis[:, 1], -axis[:, 0]], axis=1) / length[:, None]
        normal *= np.where(normal[:, 1] < 0, 1.0, -1.0)[:, None]  # the side that is up in the image
        out.arch[s:e] = np.einsum("ij,ij->i", r, normal) / length
        travel = withers[-1] - withers[0]
        if np.linalg.norm(travel) < 0.25 * body_len:
            notes.append(f"frames {grid[s]}-{grid[e - 1]}: not walking (the withers move under a quarter body length)")
            continue
        u = travel / np.linalg.norm(travel)
        protr = {h: (seg[:, col[h]] - withers) @ u / body_len for h in HOOVES}
        for h in HOOVES:
            out.protraction[h][s:e] = protr[h]
        if not hooves:
            continue
        period = _stride_period(protr, hooves, fps)
        if period is None:
            notes.append(f"frames {grid[s]}-{grid[e - 1]}: no stride rhythm found")
            continue
        # footfalls from protraction smoothed over a third of the stride (from the unsmoothed positions)
        peak_window = _odd(FOOTFALL_SMOOTH * period)
        for h in hooves:
            raw = (xy[s:e, col[h]] - xy[s:e, col["fore_spine"]]) @ u / body_len
            p = savgol_filter(raw, peak_window, 2) if len(raw) > peak_window else protr[h]
            spread = float(np.percentile(p, 95) - np.percentile(p, 5))
            peaks, _ = find_peaks(p, distance=max(1, int(0.6 * period)), prominence=0.25 * spread)
            ff = np.array([_refine(p, int(i)) for i in peaks])
            out.footfalls[h] = np.concatenate([out.footfalls[h], grid[s] + ff])
        _strides(out, seg, col, s, grid, u, body_len, fps, period)
    out.strides.sort(key=lambda r: (r["start_frame"], r["hoof"]))
    out.summary = _summary(out, body_len, fps, notes)
    return out


def _distinct_hooves(xy: np.ndarray, col: dict[str, int], body_len: float, notes: list[str]) -> list[str]:
    """The hooves whose pair (fore or rear) is two points; a note for each pair labelled twice on one point."""
    keep = []
    for limb, (a, b) in PAIRS.items():
        d = np.linalg.norm(xy[:, col[a]] - xy[:, col[b]], axis=1)
        d = d[np.isfinite(d)]
        apart = float(np.median(d)) / body_len if len(d) and body_len > 0 else float("nan")
        if np.isfinite(apart) and apart < COINCIDE_BL:
            notes.append(f"{limb} hooves: left and right coincide (median {apart * body_len:.1f} px apart): the "
                         f"keypoint model does not tell them apart, so their footfalls and strides are not "
                         f"measured")  # fmt: skip
        else:
            keep += [a, b]
    return keep


def _strides(out: TrackGait, seg: np.ndarray, col: dict[str, int], s: int, grid: np.ndarray, u: np.ndarray,
             body_len: float, fps: float, period: float) -> None:  # fmt: skip
    """Stride rows of one segment (footfalls already in `out.footfalls`, as frame numbers)."""
    n = len(seg)

    def local(h: str) -> np.ndarray:  # this segment's footfalls of hoof h, as indices into seg
        f = out.footfalls[h] - grid[s]
        return f[(f >= 0) & (f <= n - 1)]

    def landing(h: str, pos: float) -> np.ndarray:
        return _at(seg[:, col[h]], pos)

    def last_before(h: str, pos: float) -> float | None:
        prior = local(h)
        prior = prior[(prior < pos) & (prior > pos - 1.0 * period)]
        return float(prior[-1]) if len(prior) else None

    withers = seg[:, col["fore_spine"]]
    head_up = -(seg[:, col["fore_head"], 1] - withers[:, 1]) / body_len
    arch = out.arch[s : s + n]
    for h in HOOVES:
        limb, side, _ = h.split("_")
        other = f"{limb}_{'right' if side == 'left' else 'left'}_foot"
        same_fore = f"fore_{side}_foot"
        ff = local(h)
        count = 0
        for a, b in itertools.pairwise(ff):
            if not (STRIDE_RANGE[0] * period <= b - a <= STRIDE_RANGE[1] * period):
                continue  # a missed or doubled footfall: no stride across it
            count += 1
            duration = (b - a) / fps
            length = float(np.linalg.norm(landing(h, b) - landing(h, a)))
            c = last_before(other, a)
            step = float((landing(h, a) - landing(other, c)) @ u / body_len) if c is not None else float("nan")
            tracking = float("nan")
            if limb == "rear":
                c = last_before(same_fore, a)
                if c is not None:
                    tracking = float((landing(h, a) - landing(same_fore, c)) @ u / body_len)
            idx = np.arange(int(np.ceil(a)), int(np.floor(b)) + 1)
            out.strides.append({
                "track": out.track, "hoof": h, "stride": count, "start_frame": float(grid[s] + a),
                "end_frame": float(grid[s] + b), "start_s": float((grid[s] + a) / fps), "duration_s": duration,
                "length_px": length, "length_bl": length / body_len, "speed_bl_s": length / body_len / duration,
                "step_bl": step, "tracking_bl": tracking, "head_bob_bl": _harmonic(head_up[idx], idx - a, b - a),
                "back_arch_bl": float(np.mean(arch[idx])),
            })  # fmt: skip


def _harmonic(y: np.ndarray, t: np.ndarray, period: float) -> float:
    """Amplitude of the period-`period` sine in y(t), fitted with a constant and a linear drift."""
    if len(y) < 5:
        return float("nan")
    w = 2 * np.pi * t / period
    design = np.column_stack([np.ones_like(t), t / period, np.cos(w), np.sin(w)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.hypot(coef[2], coef[3]))


def _median(rows: list[dict[str, Any]], key: str, keep=lambda r: True) -> float:
    vals = np.array([r[key] for r in rows if keep(r)], np.float64)
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else float("nan")


def _summary(g: TrackGait, body_len: float, fps: float, notes: list[str]) -> dict[str, Any]:
    rows = g.strides
    step_l = _median(rows, "step_bl", lambda r: "_left_" in r["hoof"])
    step_r = _median(rows, "step_bl", lambda r: "_right_" in r["hoof"])
    asym = (step_l - step_r) / (0.5 * (step_l + step_r)) if np.isfinite(step_l + step_r) else float("nan")
    shorter = "" if not np.isfinite(asym) or abs(asym) < ASYMMETRY_SIDE else ("left" if asym < 0 else "right")
    duration = _median(rows, "duration_s")
    per_hoof = [n for n in (sum(r["hoof"] == h for r in rows) for h in HOOVES) if n] or [0]
    if not rows and not notes:
        notes.append("no strides: fewer than two footfalls of any hoof")
    return {
        "track": g.track, "frames": len(g.frames), "seconds": len(g.frames) / fps,
        "strides": int(np.median(per_hoof)), "stride_duration_s": duration,
        "cadence_per_min": 60.0 / duration if np.isfinite(duration) else float("nan"),
        "stride_length_px": _median(rows, "length_px"), "stride_length_bl": _median(rows, "length_bl"),
        "speed_bl_s": _median(rows, "speed_bl_s"), "body_length_px": body_len,
        "head_bob_bl": _median(rows, "head_bob_bl"), "back_arch_bl": _median(rows, "back_arch_bl"),
        "tracking_bl": _median(rows, "tracking_bl"), "step_left_bl": step_l, "step_right_bl": step_r,
        "step_asymmetry": asym, "shorter_side": shorter, "note": "; ".join(notes),
    }  # fmt: skip
