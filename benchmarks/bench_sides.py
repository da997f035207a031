"""Left/right legs followed through a track (tracks/sides.py) against synthetic truth, by keypoint noise.

Walkers of `data/synth/walk.py` (as benchmarks/bench_gait.py draws them), their TRUE keypoint tracks with
Gaussian pixel noise, every left/right pair given in random order frame by frame (a model that cannot tell a
near leg from a far one names them at random), then `follow_pairs`. Reported: the hoof pairs kept on their legs
(frames where the legs are over 10 px apart; up to one swap of the names over a whole track), and the strides
within 5 % of the true period from `tracks.gait` on the followed tracks and on the scrambled ones.

    .venv/bin/python benchmarks/bench_sides.py [--animals 20] [--seconds 8] [--noise 0,2,4,8] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_gait import herd

from cattlepose.core.schema import load_schema
from cattlepose.data.synth.render import ADK17
from cattlepose.tracks.gait import KeypointTrack, gait_table
from cattlepose.tracks.sides import follow_pairs

NAMES = list(ADK17)
PAIRS = load_schema("adk17").pairs  # the schema owns its left/right pairs (ADK17, the walkers' keypoints)
HOOVES = [(a, b) for a, b in PAIRS if NAMES[a].endswith("_foot")]


def kept(fixed: np.ndarray, truth: np.ndarray, a: int, b: int) -> float:
    apart = np.linalg.norm(truth[:, a] - truth[:, b], axis=1) > 10
    same = np.linalg.norm(fixed[apart, a, :2] - truth[apart, a], axis=1) < 1e-9
    return float(max(same.mean(), 1 - same.mean()))


def within(tracks: list[KeypointTrack], periods: list[float], fps: float) -> tuple[float, int]:
    rows = [
        (r["duration_s"], p) for g, p in zip(gait_table(tracks, ADK17, fps), periods, strict=True) for r in g.strides
    ]
    return float(np.mean([abs(d / p - 1) <= 0.05 for d, p in rows])) if rows else float("nan"), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--animals", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--noise", default="0,2,4,8", help="keypoint noise levels, pixels (Gaussian sigma)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    walkers = herd(args.animals, args.seconds, args.fps, args.seed)
    periods = [w.period for w, _ in walkers]
    print(f"{args.animals} walkers, {args.seconds:g} s at {args.fps:g} fps, true keypoints + noise, pairs in "
          "random order\n")  # fmt: skip
    print("| noise px | hooves kept on their legs | strides within 5 %: followed | scrambled | ms per track |")
    print("|---|---|---|---|---|")
    for noise in [float(v) for v in args.noise.split(",")]:
        rng = np.random.default_rng(1000 + args.seed)
        followed, scrambled, scores = [], [], []
        seconds = 0.0
        for w, xy in walkers:
            noisy = xy + rng.normal(0.0, noise, xy.shape) if noise else xy
            kp = np.concatenate([noisy, np.ones((*xy.shape[:2], 1))], axis=-1)
            mixed = kp.copy()
            for a, b in PAIRS:
                swap = rng.random(len(kp)) < 0.5
                mixed[swap, a], mixed[swap, b] = kp[swap, b], kp[swap, a]
            start = time.perf_counter()
            fixed = follow_pairs(mixed, PAIRS)
            seconds += time.perf_counter() - start
            scores += [kept(fixed, noisy, a, b) for a, b in HOOVES]
            frames = np.arange(len(kp))
            followed.append(KeypointTrack(str(w.track), frames, fixed))
            scrambled.append(KeypointTrack(str(w.track), frames, mixed))
        (fw, n), (sw, _) = within(followed, periods, args.fps), within(scrambled, periods, args.fps)
        print(f"| {noise:g} | {np.mean(scores):.1%} | {fw:.1%} of {n} | {sw:.1%} | "
              f"{1000 * seconds / len(walkers):.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
