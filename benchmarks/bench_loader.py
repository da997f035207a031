"""Training data loader vs the model's training step, side by side in one run (issue: loader / train >= 1.5).

Three measurements on the same machine, one after the other:
- loader alone: the training DataLoader at the config's worker count (default 2), batches drained and dropped;
- train step alone: forward + loss + backward + AdamW on one batch already in memory, channels_last as
  configured (the model from `cattlepose.models.build_model`);
- both together: the real loop, training on the loader's batches; on a 2-core machine the workers and the
  step compete for the same cores, so this is what training actually gets.
The ratio loader / train says whether data loading can keep up; together / train says what it costs.

    .venv/bin/python benchmarks/bench_loader.py [--config configs/default.yaml] [--images 160] [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cattlepose.codec import HeatmapCodec
from cattlepose.config import load_config
from cattlepose.data.dataset import KeypointDataset
from cattlepose.data.formats import read_samples
from cattlepose.data.synthetic import synthesize
from cattlepose.models import build_model
from cattlepose.schema import load_schema


def loader_rate(loader: DataLoader, batches: int) -> float:
    it = iter(loader)
    next(it)  # worker start-up and first batch are not throughput
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["image"].shape[0]
    return n / (time.perf_counter() - t0)


def train_rate(model, codec, batches, steps: int, channels_last: bool) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step(batch) -> int:
        x = batch["image"]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = codec.loss(model(x), batch["heatmaps"], batch["weights"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return x.shape[0]

    it = iter(batches)
    step(next(it))  # warm-up: allocator, kernels
    t0 = time.perf_counter()
    n = sum(step(next(it)) for _ in range(steps))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--images", type=int, default=160, help="synthetic training images to generate")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps per measurement")
    ap.add_argument("--data", type=Path, default=None, help="a real data set (data.format of the config) instead")
    args = ap.parse_args()

    cfg = load_config(args.config)
    schema = load_schema(cfg.data.schema_)
    bs, workers = cfg.train.batch_size, cfg.train.workers
    codec = HeatmapCodec.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            root = Path(tmp) / "synth"
            synthesize(root, n_train=args.images, n_test=1, seed=0)  # n_test=0 is refused
            samples, _ = read_samples("adk", root / "train", cfg.data.schema_, bbox=cfg.data.bbox)
        else:
            samples, _ = read_samples(cfg.data.format, args.data, cfg.data.schema_, bbox=cfg.data.bbox)
            samples = (samples * (-(-2 * bs // len(samples))))[: max(len(samples), 2 * bs)]  # at least 2 batches
        sizes = [(s.width or 0) * (s.height or 0) for s in samples]
        ds = KeypointDataset(samples, schema, cfg, train=True, codec=codec, seed=0)

        # per-item cost in this process, for reference
        t0 = time.perf_counter()
        for i in range(64):
            ds[i % len(ds)]
        item_ms = (time.perf_counter() - t0) / 64 * 1000

        def make_loader() -> DataLoader:
            return DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True,
                              persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))  # fmt: skip

        batches = max(1, len(ds) // bs - 1)
        load = loader_rate(make_loader(), batches)

        torch.manual_seed(0)
        model = build_model(cfg.model, schema.num_keypoints)
        if cfg.model.channels_last:
            model = model.to(memory_format=torch.channels_last)
        fixed = next(iter(DataLoader(ds, batch_size=bs, num_workers=0)))
        train = train_rate(model, codec, iter(lambda: fixed, None), args.steps, cfg.model.channels_last)

        fed_loader = make_loader()  # one loader, so persistent workers start once, as in training

        def forever():
            while True:
                yield from fed_loader

        both = train_rate(model, codec, forever(), args.steps, cfg.model.channels_last)

    h, w = cfg.model.input_size
    print(f"config {args.config}: augment.level={cfg.augment.level}, input {h}x{w}, batch {bs}, workers {workers}, "
          f"torch threads {torch.get_num_threads()}, {len(samples)} images of median "
          f"{int(np.median(sizes)) / 1e6:.2f} MP")  # fmt: skip
    print(f"  one item in the main process      {item_ms:7.2f} ms")
    print(f"  loader alone ({workers} workers)           {load:7.1f} img/s")
    print(f"  train step alone                  {train:7.1f} img/s")
    print(f"  training fed by the loader        {both:7.1f} img/s")
    print(f"  ratio loader / train              {load / train:7.2f}  (issue: >= 1.5)")
    print(f"  ratio fed / train                 {both / train:7.2f}  (share of step speed left once loading competes)")


if __name__ == "__main__":
    main()
