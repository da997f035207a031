"""Inference pipeline vs bare model, side by side in one run (issue: predict throughput / model >= 0.85).

The pipeline decodes JPEGs, crops, runs each crop and its mirror in one batch, un-flips, decodes (DARK) and
maps back to original pixels. The bare model runs forward passes of the same batch shape on tensors already
in memory. Flip counts as two images on both sides. Weights are random: throughput does not depend on them.

    .venv/bin/python benchmarks/bench_predict.py [--images 256] [--config FILE] [--folds 1] [--rounds 9] [--batch N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

from cattlepose.core.config import dump_config, load_config
from cattlepose.core.schema import load_schema
from cattlepose.data.boxes import whole_image
from cattlepose.data.formats import folder
from cattlepose.data.synthetic import synthesize
from cattlepose.engine.device import resolve_infer_batch
from cattlepose.engine.infer import load_ensemble, predict_samples
from cattlepose.models.build import build_model


def make_run(run_dir: Path, cfg, schema, folds: int) -> None:
    run_dir.mkdir(parents=True)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"folds": max(2, folds)})})
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    (run_dir / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict()))
    for k in range(folds):
        torch.manual_seed(k)
        model = build_model(cfg.model, schema.num_keypoints)
        (run_dir / f"fold{k}").mkdir()
        torch.save({"model": model.state_dict()}, run_dir / f"fold{k}" / "best.pt")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--folds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None, help="default: as predict chooses")
    ap.add_argument("--batch", type=int, default=None, help="crops per batch (default: infer.batch_size)")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved bare/pipeline rounds")
    args = ap.parse_args()

    cfg = load_config(args.config)
    schema = load_schema(cfg.data.schema_)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "synth", n_train=1, n_test=args.images, seed=0)
        make_run(tmp / "run", cfg, schema, args.folds)
        ens = load_ensemble(tmp / "run", device="cpu", folds=list(range(args.folds)))
        samples = whole_image(folder.images(tmp / "synth" / "test" / "images"))
        bs = args.batch or resolve_infer_batch(cfg.infer.batch_size, ens.device)
        h, w = cfg.model.input_size
        x = torch.randn(2 * bs, 3, h, w).contiguous(memory_format=torch.channels_last)
        n_batches = -(-len(samples) // bs)

        def bare() -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                for _ in range(n_batches):
                    for m in ens.models:
                        m(x)
            return time.perf_counter() - start

        def pipeline() -> float:
            return predict_samples(ens, samples, flip=True, batch_size=bs, workers=args.workers).seconds

        bare(), pipeline()  # warm-up: allocator, threads, worker start-up paths
        # interleaved, so a slow spell of the machine hits both sides alike
        rounds = [(bare(), pipeline()) for _ in range(args.rounds)]
        t_bare, t_pipe = min(b for b, _ in rounds), min(p for _, p in rounds)
        per_round = sorted(b / p for b, p in rounds)
    crops = 2 * len(samples) * args.folds  # flip doubles the crops; every fold model sees each
    bare_rate = 2 * n_batches * bs * args.folds / t_bare
    pipe_rate = crops / t_pipe
    print(f"config {args.config}: {cfg.model.backbone} psa={cfg.model.psa} {h}x{w}, batch {bs} (+ mirrors), "
          f"{args.folds} fold model(s), {len(samples)} images, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'bare model forward':<28}{bare_rate:8.1f} crops/s")
    print(f"{'predict pipeline':<28}{pipe_rate:8.1f} crops/s  ({len(samples) / t_pipe:.1f} images/s with flip)")
    print(f"{'pipeline / bare':<28}{pipe_rate / bare_rate:8.3f}   fastest rounds (goal >= 0.85)")
    lo, mid, hi = per_round[0], per_round[len(per_round) // 2], per_round[-1]
    print(f"{'  per round':<28}{mid:8.3f}   median, range {lo:.3f}-{hi:.3f}")


if __name__ == "__main__":
    main()
