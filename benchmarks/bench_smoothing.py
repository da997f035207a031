"""Track smoothing against synthetic truth: the pixel error of `savgol`, `median` and `one_euro` (and a grid of
One-Euro settings, which chose the defaults of `track.min_cutoff`, `track.beta`, `track.d_cutoff`).

Walkers of `data/synth/walk.py` (cows crossing a 640x360 frame at about a stride a second, hooves planted and
swinging), their TRUE keypoint tracks (no rendering, no model) at `--fps`, with Gaussian pixel noise, scores
drawn from U(0.3, 1), 10 % of frames missed, and optionally a share of low-score outliers (score 0.05, 30 px
off), through `tracks.smooth.smooth_track`. The error is the mean distance to the truth over the frames
detected; hooves (the four feet) apart, since they alternate between still and fast.

    .venv/bin/python benchmarks/bench_smoothing.py [--animals 12] [--seconds 8] [--fps 25] [--noise 0,1,3,6]
        [--outliers 0.05] [--grid] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from cattlepose.core.config import TrackConfig
from cattlepose.data.synth.render import ADK17
from cattlepose.data.synth.walk import HOOVES as HOOF_NAMES
from cattlepose.data.synth.walk import WALK_FARMS, Lameness, make_walker, true_keypoints
from cattlepose.tracks.smooth import smooth_track

HOOVES = [ADK17.index(name) for name in HOOF_NAMES]


def walks(n: int, seconds: float, fps: float, seed: int) -> dict[str, list[np.ndarray]]:
    """n walkers' true (T, 17, 2) keypoints: walking across the frame; standing (each walker's pose at mid-clip
    held: only the network's jitter moves a keypoint); setting off (standing for the first half, then walking
    on from there: a speed filter has to notice the start)."""
    rng = np.random.default_rng(seed)
    walking = []
    for i in range(n):
        w = make_walker(rng, i + 1, 1 if i % 2 else -1, Lameness(0.0, 0.0, None, 0.0), (640, 360),
                        float(rng.uniform(0, 1)), seconds, WALK_FARMS[i % len(WALK_FARMS)], "cow")  # fmt: skip
        walking.append(true_keypoints(w, np.arange(int(seconds * fps)) / fps))
    standing = [np.repeat(xy[len(xy) // 2][None], len(xy), axis=0) for xy in walking]
    setting_off = [xy[np.maximum(np.arange(len(xy)) - len(xy) // 2, 0)] for xy in walking]
    return {"walking": walking, "standing": standing, "setting off": setting_off}


def noisy(truth: np.ndarray, noise: float, outliers: float, rng: np.random.Generator) -> np.ndarray:
    """(T, K, 3) raw detections: noise, scores, missed frames (NaN rows), low-score outliers."""
    t_len, k = truth.shape[:2]
    xy = truth + rng.normal(0.0, noise, truth.shape)
    s = rng.uniform(0.3, 1.0, (t_len, k))
    bad = rng.random((t_len, k)) < outliers
    xy[bad] += rng.normal(0.0, 30.0, (int(bad.sum()), 2))
    s[bad] = 0.05
    raw = np.concatenate([xy, s[:, :, None]], axis=2)
    gone = rng.random(t_len) < 0.1
    gone[[0, -1]] = False
    raw[gone] = np.nan
    return raw


def errors(truths: list[np.ndarray], raws: list[np.ndarray], cfg: TrackConfig | None, fps: float
           ) -> tuple[float, float]:  # fmt: skip
    """Mean error over the detected frames: (hooves, the other keypoints); cfg None: the raw error."""
    hoof, body = [], []
    others = [j for j in range(truths[0].shape[1]) if j not in HOOVES]
    for truth, raw in zip(truths, raws, strict=True):
        xy = raw[:, :, :2] if cfg is None else smooth_track(0, raw, cfg, fps).smoothed[:, :, :2]
        seen = ~np.isnan(raw[:, 0, 0])
        err = np.linalg.norm(xy[seen] - truth[seen], axis=-1)
        hoof.append(err[:, HOOVES].ravel())
        body.append(err[:, others].ravel())
    return float(np.concatenate(hoof).mean()), float(np.concatenate(body).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--animals", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--noise", default="0,1,3,6", help="keypoint noise levels, pixels (Gaussian sigma)")
    ap.add_argument("--outliers", type=float, default=0.05, help="share of points far off with a low score")
    ap.add_argument("--grid", action="store_true", help="also a grid of One-Euro min_cutoff x beta x d_cutoff")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    scenes = walks(args.animals, args.seconds, args.fps, args.seed)
    levels = [float(v) for v in args.noise.split(",")]
    rng = np.random.default_rng(1000 + args.seed)
    raws = {(sc, n): [noisy(t, n, args.outliers, rng) for t in truths] for sc, truths in scenes.items() for n in levels}
    print(f"{args.animals} walkers, {args.seconds:g} s at {args.fps:g} fps, {args.outliers:.0%} low-score outliers, "
          "10 % of frames missed; mean px error on the detected frames, hooves / other keypoints\n")  # fmt: skip
    d = TrackConfig()
    euro = f"one_euro ({d.min_cutoff:g} Hz, {d.beta:g}, {d.d_cutoff:g} Hz)"
    methods = {"raw": None, "savgol": TrackConfig(smooth="savgol"), "median": TrackConfig(smooth="median"),
               euro: TrackConfig(smooth="one_euro")}  # fmt: skip
    cols = [(sc, n) for sc in scenes for n in levels]
    print("| method | " + " | ".join(f"{sc}, noise {n:g} px" for sc, n in cols) + " | ms per track |")
    print("|---|" + "---|" * (len(cols) + 1))
    for name, cfg in methods.items():
        start = time.perf_counter()
        cells = [errors(scenes[sc], raws[sc, n], cfg, args.fps) for sc, n in cols]
        ms = 1000 * (time.perf_counter() - start) / (len(cols) * args.animals)
        print(f"| {name} | " + " | ".join(f"{h:.2f} / {b:.2f}" for h, b in cells) + f" | {ms:.1f} |")
    if not args.grid:
        return
    # the score of a setting: its error over the raw error, averaged over the scenes and the noise
    # levels above 0 (at 0 only the outliers and the filter's lag count, both shown in their own columns)
    noisy_cols = [(sc, n) for sc, n in cols if n > 0]
    base = {c: np.mean(errors(scenes[c[0]], raws[c], None, args.fps)) for c in noisy_cols}
    print("\nOne-Euro grid: score = mean over the three scenes and noise > 0 of (error / raw error); best first\n")
    rows = []
    for mc, beta, dc in itertools.product((0.25, 0.5, 1.0, 2.0), (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4),
                                          (0.25, 0.5, 1.0, 2.0)):  # fmt: skip
        cfg = TrackConfig(smooth="one_euro", min_cutoff=mc, beta=beta, d_cutoff=dc)
        cells = [errors(scenes[sc], raws[sc, n], cfg, args.fps) for sc, n in cols]
        score = np.mean([np.mean(cells[cols.index(c)]) / base[c] for c in noisy_cols])
        rows.append((float(score), mc, beta, dc, cells))
    rows.sort()
    print("| min_cutoff Hz | beta | d_cutoff Hz | score | " + " | ".join(f"{sc}, {n:g} px" for sc, n in cols) + " |")
    print("|---|---|---|---|" + "---|" * len(cols))
    for score, mc, beta, dc, cells in rows[:12]:
        print(f"| {mc:g} | {beta:g} | {dc:g} | {score:.3f} | " + " | ".join(f"{h:.2f} / {b:.2f}" for h, b in cells)
              + " |")  # fmt: skip


if __name__ == "__main__":
    main()
