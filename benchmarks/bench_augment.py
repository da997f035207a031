"""One training item's augmentation, this tree's against a git revision's, side by side on the same crops and seeds.

The crops are the config's training crops of a small synthetic set (256² heavy occlusion for adk2021.yaml); each
round augments every crop with both versions, interleaved; the table gives the fastest round of each (ms per crop).

    .venv/bin/python benchmarks/bench_augment.py [--before HEAD~1] [--config configs/adk2021.yaml] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from cattlepose.core.config import load_config
from cattlepose.data import augment
from cattlepose.data.dataset import KeypointDataset
from cattlepose.data.formats import read_samples
from cattlepose.data.synthetic import synthesize

ROOT = Path(__file__).resolve().parents[1]


def module_at(revision: str, tmp: Path) -> ModuleType:
    source = subprocess.run(["git", "show", f"{revision}:src/cattlepose/data/augment.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    path = tmp / "augment_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("augment_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="HEAD~1", help="git revision of the version to compare with")
    ap.add_argument("--config", default=str(ROOT / "configs" / "adk2021.yaml"))
    ap.add_argument("--crops", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config(args.config, ["model.pretrained=null"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "synth", n_train=args.crops, n_test=1, seed=0)
        samples, schema = read_samples("adk", root / "synth" / "train", cfg.data.schema_, bbox=cfg.data.bbox)
        ds = KeypointDataset(samples, schema, cfg, train=True, seed=0)
        crops, kps = [], []
        for i in range(len(ds)):
            item = ds[i]
            crops.append(np.ascontiguousarray(np.asarray(item["image"])))
            kps.append(np.asarray(item["keypoints"]))
        patches = ds.augmenter.patches if ds.augmenter is not None else None
        versions = {args.before: module_at(args.before, root).Augmenter(cfg.augment, patches),
                    "this tree": augment.Augmenter(cfg.augment, patches)}  # fmt: skip
        best = dict.fromkeys(versions, float("inf"))
        for r in range(args.rounds):
            for name, aug in versions.items():
                start = time.perf_counter()
                for i, (crop, kp) in enumerate(zip(crops, kps, strict=True)):
                    aug.augment(crop, kp, np.random.default_rng([r, i]))
                best[name] = min(best[name], (time.perf_counter() - start) / len(crops) * 1e3)
    h, w = cfg.model.input_size
    print(f"augmentation of one {h}x{w} crop, {cfg.augment.level}, fastest of {args.rounds} rounds")
    print("| version | ms per crop |\n|---|---|")
    for name, ms in best.items():
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
