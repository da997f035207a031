"""Inference variants on one trained run: single fold vs fold ensemble, flip vs no flip, argmax vs DARK.

Everything is scored on the same held-out images (the synthetic test set by default) with the same trained
weights; only the inference path changes.

    .venv/bin/python benchmarks/variants.py [RUN_DIR] [--test data/synth/test]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from cattlepose.data.formats import read_samples
from cattlepose.engine.infer import load_ensemble, predict_samples
from cattlepose.metrics.keypoints import evaluate
from cattlepose.models.codec import HeatmapCodec

METRICS = ("pck_torso@0.35", "pck_bbox@0.1", "oks_ap")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", default="runs/default")
    ap.add_argument("--test", default="data/synth/test")
    ap.add_argument("--workers", type=int, default=None, help="default: as predict chooses")
    args = ap.parse_args()

    full = load_ensemble(args.run, device="cpu")
    cfg = full.cfg
    schema_file = Path(args.run) / "schema.yaml"
    samples, schema = read_samples("adk", args.test, schema_file if schema_file.is_file() else cfg.data.schema_)
    codecs = {
        d: HeatmapCodec.from_config(cfg.model_copy(update={"codec": cfg.codec.model_copy(update={"decode": d})}))
        for d in ("argmax", "dark")
    }
    variants = []
    for k, model in zip(full.folds, full.models, strict=True):
        variants.append((f"fold {k} alone, flip, DARK", replace(full, models=[model], folds=[k]), True, "dark"))
    for flip in (False, True):
        for decode in ("argmax", "dark"):
            label = f"{len(full.models)}-fold ensemble, {'flip' if flip else 'no flip'}, {decode}"
            variants.append((label, full, flip, decode))

    print(f"| inference ({args.run} on {args.test}, {len(samples)} images) | " + " | ".join(METRICS) + " | images/s |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for label, ens, flip, decode in variants:
        ens = replace(ens, codec=codecs[decode])
        preds = predict_samples(ens, samples, flip=flip, workers=args.workers)
        result = evaluate(preds.as_dict(), samples, schema, pck_torso=(0.35,), pck_bbox=(0.1,))
        cells = " | ".join(f"{result['overall'][m]:.3f}" for m in METRICS)
        print(f"| {label} | {cells} | {len(samples) / preds.seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
