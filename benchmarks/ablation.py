"""Ablation at the default budget: PSA none / parallel / sequential, PSA in fewer blocks, augmentation light / heavy.

Each variant is a full k-fold run of the default config with one setting changed (2 folds by default), trained
with the real CLI, so the numbers are what `make train` would report. Variants already trained are reused
(`--resume`), so an interrupted ablation continues. Prints one markdown table from the runs' cv.json, with the
out-of-fold metrics split by visible and occluded keypoints, and the training wall time of each run.

    .venv/bin/python benchmarks/ablation.py [--folds 2] [--config configs/default.yaml] [--only psa_none,...] [-s k=v]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "psa_parallel+heavy": [],  # the default config
    "psa_none": ["model.psa=none"],
    "psa_sequential": ["model.psa=sequential"],
    "psa_last": ["model.psa_placement=last"],  # the last BasicBlock of each branch of each module
    "psa_stage4": ["model.psa_placement=stage4"],
    "aug_light": ["augment.level=light"],
    "aug_none": ["augment.level=none"],
}
METRICS = ("pck_torso@0.35", "pck_bbox@0.1", "oks_ap")


def train(name: str, overrides: list[str], args: argparse.Namespace) -> float:
    cli = Path(sys.executable).parent / "cattlepose"
    cmd = [str(cli), "train", "-c", args.config, "--name", name, "--runs-dir", args.runs_dir, "--resume", "-q"]
    cmd += ["-s", f"train.folds={args.folds}"]
    for o in [*overrides, *args.set]:
        cmd += ["-s", o]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def row(name: str, cv: dict, seconds: float | None) -> str:
    vis, occ = cv["by_visibility"]["visible"], cv["by_visibility"]["occluded"]
    cells = [f"{cv['overall'][m]:.3f}" for m in METRICS]
    cells += [f"{vis['pck_torso@0.35']:.3f}", f"{occ['pck_torso@0.35']:.3f}"]
    cells += [f"{occ['pck_bbox@0.1']:.3f}", "-" if seconds is None else f"{seconds / 60:.1f}"]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    ap.add_argument("-s", "--set", action="append", default=[], help="override for every variant, e.g. train.threads=1")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    lines = [
        "| variant | PCK@0.35 torso | PCK@0.1 box | OKS AP | PCK@0.35 visible | PCK@0.35 occluded "
        "| PCK@0.1 box occluded | train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        run = f"ablation_{name.replace('+', '_')}"
        cv_path = Path(args.runs_dir) / run / "cv.json"
        seconds = None if cv_path.is_file() else train(run, VARIANTS[name], args)
        lines.append(row(name, json.loads(cv_path.read_text()), seconds))
        print(lines[-1], flush=True)
    print(f"\n{args.folds}-fold CV of {args.config}, out-of-fold predictions (flip + DARK):\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
