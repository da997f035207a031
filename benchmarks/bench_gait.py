"""Gait signals against synthetic truth, by keypoint noise: how close stride durations come, whether head bob
and back arch rank animals as their true lameness does, whether a shortened side is named.

Walkers of `data/synth/walk.py` (cows, random head bob and back arch, a third with a left and a third with a
right side shortened by 30 %), their TRUE keypoint tracks (no rendering, no model) with Gaussian pixel noise
added, through `tracks.gait.gait_table`. This measures the gait arithmetic alone; a model's keypoints add
their own errors (tracking swaps, occlusion gaps) on top.

    .venv/bin/python benchmarks/bench_gait.py [--animals 30] [--seconds 8] [--fps 25] [--noise 0,2,3,5] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from cattlepose.data.synth.render import ADK17
from cattlepose.data.synth.walk import WALK_FARMS, Lameness, make_walker, true_keypoints
from cattlepose.tracks.gait import KeypointTrack, gait_table


def herd(n: int, seconds: float, fps: float, seed: int):
    rng = np.random.default_rng(seed)
    walkers = []
    for i in range(n):
        side = (None, "left", "right")[i % 3]
        lame = Lameness(float(rng.uniform(0, 0.08)), float(rng.uniform(0, 0.08)), side, 0.3 if side else 0.0)
        w = make_walker(rng, i + 1, 1 if i % 2 else -1, lame, (640, 360), float(rng.uniform(0, 1)), seconds,
                        WALK_FARMS[i % len(WALK_FARMS)], "cow")  # fmt: skip
        walkers.append((w, true_keypoints(w, np.arange(int(seconds * fps)) / fps)))
    return walkers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--animals", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--noise", default="0,2,3,5", help="keypoint noise levels, pixels (Gaussian sigma)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    walkers = herd(args.animals, args.seconds, args.fps, args.seed)
    frames = int(args.seconds * args.fps)
    print(f"{args.animals} walkers, {args.seconds:g} s at {args.fps:g} fps, true keypoints + noise\n")
    print(
        "| noise px | strides | stride duration: median abs err | strides within 5 % | track median within 5 % "
        "| head bob Spearman | back arch Spearman | short side named | sound named sound | ms per track |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for noise in [float(v) for v in args.noise.split(",")]:
        rng = np.random.default_rng(1000 + args.seed)
        tracks = []
        for w, xy in walkers:
            noisy = xy + rng.normal(0.0, noise, xy.shape) if noise else xy
            kp = np.concatenate([noisy, np.ones((*xy.shape[:2], 1))], axis=-1)
            tracks.append(KeypointTrack(str(w.track), np.arange(frames), kp))
        start = time.perf_counter()
        results = gait_table(tracks, ADK17, args.fps)
        ms = (time.perf_counter() - start) * 1000 / len(tracks)
        errs = np.concatenate([[r["duration_s"] / w.period - 1 for r in g.strides] for (w, _), g in
                               zip(walkers, results, strict=True)])  # fmt: skip
        med = np.array([g.summary["stride_duration_s"] / w.period - 1 for (w, _), g in zip(walkers, results,
                                                                                             strict=True)])  # fmt: skip
        bob = spearmanr([w.lameness.head_bob for w, _ in walkers], [g.summary["head_bob_bl"] for g in results])
        arch = spearmanr([w.lameness.back_arch for w, _ in walkers], [g.summary["back_arch_bl"] for g in results])
        lame = [(w.lameness.short_side, g.summary["shorter_side"]) for (w, _), g in zip(walkers, results, strict=True)]
        named = np.mean([s == m for s, m in lame if s])
        sound = np.mean([m == "" for s, m in lame if not s])
        within = np.mean(np.abs(errs) <= 0.05)
        print(f"| {noise:g} | {len(errs)} | {np.median(np.abs(errs)) * 100:.2f} % | {within:.1%} "
              f"| {np.mean(np.abs(med) <= 0.05):.0%} | {bob.statistic:.3f} | {arch.statistic:.3f} | {named:.0%} "
              f"| {sound:.0%} | {ms:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
