"""Synthetic set: generation speed, occlusion mix, and the score of trivial predictors on its test split.

Generates the default 1,500 + 300 images into a temporary folder (in this process, so pin it to one core with
`taskset -c 0` to measure single-core speed), then scores:
- mean pose: every training animal's keypoints normalised to its crop (x / width, y / height), averaged,
  and placed in each test crop (multiplied back);
- mean pose per facing (an oracle that knows which way the animal faces): the floor a model should beat
  by a wide margin once it can tell left from right.

    .venv/bin/python benchmarks/bench_synth.py [--n-train 1500] [--n-test 300] [--seed 0] [--occlusion 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cattlepose.data.formats import read_samples
from cattlepose.data.records import Sample
from cattlepose.data.synthetic import synthesize


def normalised(samples: list[Sample]) -> np.ndarray:
    """(N, K, 2) keypoints as fractions of the crop; NaN where unlabelled."""
    out = np.full((len(samples), samples[0].num_keypoints, 2), np.nan)
    for i, s in enumerate(samples):
        lab = s.keypoints[:, 2] > 0
        out[i, lab] = s.keypoints[lab, :2] / [s.width, s.height]
    return out


def place(pose: np.ndarray, s: Sample) -> np.ndarray:
    xy = pose * [s.width, s.height]
    return np.column_stack([xy, np.ones(len(xy))])  # score 1


def faces_right(s: Sample, names: tuple[str, ...]) -> bool:
    return bool(s.keypoints[names.index("fore_head"), 0] > s.keypoints[names.index("hip"), 0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--occlusion", type=float, default=1.0)
    args = ap.parse_args()

    from cattlepose.metrics.keypoints import evaluate  # imported late: the generation numbers do not depend on it

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synth"
        t0, c0 = time.perf_counter(), time.process_time()
        summary = synthesize(out, args.n_train, args.n_test, args.seed, args.occlusion)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        train, schema = read_samples("adk", out / "train", "adk17")
        test, _ = read_samples("adk", out / "test", "adk17")

    print(f"## Synthetic set: {args.n_train} + {args.n_test} images, seed {args.seed}, occlusion {args.occlusion}\n")
    print("| measure | value |\n|---|---|")
    print(f"| wall time (s) | {wall:.1f} |")
    print(f"| images/s (wall) | {summary['images_per_s']:.0f} |")
    print(f"| images per CPU second (one process, one thread of work) | {summary['images'] / cpu:.0f} |")
    print(f"| keypoints occluded (v=1) | {summary['keypoints_occluded']:.3f} |")
    print(f"| ... by the animal itself | {summary['keypoints_self_occluded']:.3f} |")
    print(f"| ... by foreground objects | {summary['keypoints_object_occluded']:.3f} |")
    print(f"| images with >= 1 occluded keypoint | {summary['images_with_occlusion']:.3f} |")
    print(f"| images with >= 1 object-occluded keypoint | {summary['images_with_object_occlusion']:.3f} |")
    print(f"| farms | {summary['farms']} |")
    print(f"| categories | {summary['categories']} |")
    print(f"| median long side (px) | {summary['median_long_side']} |")

    names = schema.keypoints
    norm = normalised(train)
    mean_pose = np.nanmean(norm, axis=0)
    right = np.array([faces_right(s, names) for s in train])
    per_facing = {True: np.nanmean(norm[right], axis=0), False: np.nanmean(norm[~right], axis=0)}
    predictors = {
        "mean pose": {s.key: place(mean_pose, s) for s in test},
        "mean pose per facing (oracle facing)": {s.key: place(per_facing[faces_right(s, names)], s) for s in test},
    }
    print("\n## Trivial predictors on the test split\n")
    print("| predictor | PCK@0.35 torso | PCK@0.1 box | OKS AP | PCK@0.35 torso, visible | ..., occluded |")
    print("|---|---|---|---|---|---|")
    for name, preds in predictors.items():
        r = evaluate(preds, test, schema)
        o, vis = r["overall"], r["by_visibility"]
        print(
            f"| {name} | {o['pck_torso@0.35']:.3f} | {o['pck_bbox@0.1']:.3f} | {o['oks_ap']:.3f} "
            f"| {vis['visible']['pck_torso@0.35']:.3f} | {vis['occluded']['pck_torso@0.35']:.3f} |"
        )


if __name__ == "__main__":
    main()
