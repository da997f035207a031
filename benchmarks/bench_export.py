"""PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, side by side in one run (issue #23).

End to end from JPEG files to the submission file, through `run_predict` (the code behind `cattlepose predict`):
decode, crop, the network (each crop and its mirror in one batch when flip is on), un-flip, average, decode,
back to original pixels, the CSV written by the template. Model loading and export are not in the timing (they
are printed apart). Two set-ups: (a) the run's ensemble, all folds + flip; (b) fold 0 alone without flip.
Rounds are interleaved (a slow spell of a shared machine hits every variant alike); the best round counts.
Scores: PCK@0.35 of the torso and PCK@0.1 of the box against the synthetic test set's ground truth, through
the project's `evaluate`.

    .venv/bin/python benchmarks/bench_export.py [--run DIR] [--images 128] [--rounds 3]
    # no --run: trains a tiny run on synthetic data first (--train-images, --epochs); --untrained: random weights
    # (throughput only, the scores mean nothing)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml

from cattlepose.commands.evaluate import run_evaluate
from cattlepose.commands.predict import run_predict
from cattlepose.core.config import dump_config, load_config
from cattlepose.core.ui import Log
from cattlepose.data.synthetic import synthesize
from cattlepose.engine import kfold
from cattlepose.engine.export import export_run
from cattlepose.models.build import build_model
from cattlepose.runs.rundir import RunDir

TINY = ["train.epochs={epochs}", "train.folds=3", "train.workers=0", "train.compile=off", "train.val_every=100"]


def tiny_run(root: Path, config: str, train: Path, epochs: int, untrained: bool, extra: list[str]) -> Path:
    """A run of `config` on the synthetic training images: trained for `epochs`, or random weights."""
    sets = [f"data.train={train}", "data.format=adk", *(s.format(epochs=epochs) for s in TINY), *extra]
    cfg = load_config(config, sets)
    run = root / "run"
    if not untrained:
        kfold.run_training(cfg, run, None, resume=False, log=Log(quiet=True))
        return run
    from cattlepose.core.schema import load_schema

    schema = load_schema(cfg.data.schema_)
    meta = {"config": json.loads(json.dumps(cfg.model_dump(mode="json", by_alias=True))), "schema": schema.to_dict()}
    for k in range(cfg.train.folds):
        (run / f"fold{k}").mkdir(parents=True)
        torch.manual_seed(k)
        model = build_model(cfg.model, schema.num_keypoints)
        torch.save({"model": model.state_dict(), **meta}, run / f"fold{k}" / "best.pt")
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict(), sort_keys=False))
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None, help="a trained run (default: train a tiny one)")
    ap.add_argument("--config", default="configs/default.yaml", help="config of the tiny run")
    ap.add_argument("--images", type=int, default=128, help="synthetic test images (JPEG files)")
    ap.add_argument("--test", type=Path, default=None,
                    help="an ADK test folder (images/, annotations/) with sample_submission.csv beside it, instead "
                    "of fresh synthetic images: use the run's own test set, never images it trained on")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    ap.add_argument("--train-images", type=int, default=96, help="tiny run: synthetic training images")
    ap.add_argument("--epochs", type=int, default=2, help="tiny run: epochs per fold")
    ap.add_argument("--folds", default=None, help="the ensemble's folds, e.g. 0,1 (default: all of the run)")
    ap.add_argument("--untrained", action="store_true", help="tiny run with random weights (speed only)")
    ap.add_argument("-s", "--set", action="append", default=[], help="config override of the tiny run")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "synth", n_train=args.train_images, n_test=args.images, seed=0)
        start = time.perf_counter()
        if args.run is None:
            run_dir = tiny_run(tmp, args.config, tmp / "synth" / "train", args.epochs, args.untrained, args.set)
            what = f"tiny run ({'random weights' if args.untrained else f'{args.epochs} epochs'})"
        else:
            run_dir, what = args.run, str(args.run)
        made = time.perf_counter() - start
        run = RunDir.open(run_dir)
        ens_folds = [int(k) for k in args.folds.split(",")] if args.folds else list(range(run.cfg.train.folds))
        test = args.test or tmp / "synth" / "test"
        images, template = test / "images", test.parent / "sample_submission.csv"

        exports: dict[tuple[str, bool], Path] = {}
        export_s: dict[str, float] = {}
        for setup, folds, flip in (("ensemble", ens_folds, True), ("single", [0], False)):
            for int8 in (False, True):
                path = tmp / f"{setup}{'_int8' if int8 else ''}.onnx"
                t = time.perf_counter()
                export_run(run, path, folds, flip=flip, int8=int8)
                export_s[path.stem] = time.perf_counter() - t
                exports[(setup, int8)] = path

        variants = []
        for setup, folds, flip in (("ensemble", ",".join(map(str, ens_folds)), True), ("single", "0", False)):
            n_models = len(folds.split(","))
            variants.append((setup, "torch eager", dict(backend="torch", folds=folds, flip=flip), n_models, flip))
            for int8 in (False, True):
                onnx = exports[(setup, int8)]
                name = "onnx int8" if int8 else "onnx fp32"
                variants.append((setup, name, dict(backend="onnx", onnx=onnx, folds=None, flip=None), n_models, flip))

        best: dict[tuple[str, str], float] = {}
        scores: dict[tuple[str, str], dict] = {}
        for r in range(args.rounds + 1):  # round 0 warms up (allocator, threads, caches) and is not counted
            for setup, name, kw, _, _ in variants:
                out = tmp / f"{setup}_{name.replace(' ', '_')}.csv"
                summary = run_predict(run_dir, images, out, template=template, workers=0, **kw)
                if r == 0:
                    overall = run_evaluate(out, test, config=run_dir / "config.yaml")["overall"]
                    scores[(setup, name)] = overall
                    continue
                best[(setup, name)] = min(best.get((setup, name), float("inf")), summary["seconds"])

    n = len(list(images.glob("*.jpg"))) if args.test else args.images
    print(
        f"\nrun: {what}; {run.cfg.model.backbone} psa={run.cfg.model.psa} {run.cfg.model.input_size[0]}x"
        f"{run.cfg.model.input_size[1]}, ensemble of folds {ens_folds}; {n} JPEG images; "
        f"best of {args.rounds} interleaved rounds; {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    if args.run is None:
        print(f"(tiny run made in {made:.0f} s)")
    print("export seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in export_s.items()))
    print("\n| set-up | backend | crops/s | ms per image | × torch | PCK@0.35 torso | PCK@0.1 box |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for setup, name, _, models, flip in variants:
        seconds = best[(setup, name)]
        crops = n * models * (2 if flip else 1)
        ratio = best[(setup, "torch eager")] / seconds
        label = f"{models} fold(s) + flip" if flip else "1 model, no flip"
        sc = scores[(setup, name)]
        print(
            f"| {label} | {name} | {crops / seconds:,.0f} | {1000 * seconds / n:.2f} | {ratio:.2f} | "
            f"{sc['pck_torso@0.35']:.4f} | {sc['pck_bbox@0.1']:.4f} |"
        )
    for setup in ("ensemble", "single"):
        t = best[(setup, "torch eager")]
        print(
            f"ratio {setup}: onnx fp32 / torch {t / best[(setup, 'onnx fp32')]:.2f}, "
            f"onnx int8 / torch {t / best[(setup, 'onnx int8')]:.2f}, "
            f"int8 / fp32 {best[(setup, 'onnx fp32')] / best[(setup, 'onnx int8')]:.2f}"
        )


if __name__ == "__main__":
    main()
