"""Training data loader vs the model's training step, side by side in one run (goal: loader / step >= 1.2).

- each stage of one training item in this process (decode, affine crop, augmentation, the whole item);
- loader alone: the training loader at the config's workers (`auto` as training resolves it), batches moved to
  the device with their targets rendered there, drained and dropped; with and without the decoded-image cache;
- train step alone: forward + loss + backward + AdamW on one batch already in memory;
- both together: the real loop, training on the loader's batches; on a small CPU the loader and the step share
  the same cores, so this is what training actually gets.

    .venv/bin/python benchmarks/bench_loader.py [--config configs/default.yaml] [--images 160] [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from stages import stage_times

from cattlepose.core.config import load_config
from cattlepose.data.dataset import KeypointDataset, decode_all
from cattlepose.data.formats import read_samples
from cattlepose.data.synthetic import synthesize
from cattlepose.engine import dist
from cattlepose.engine.device import resolve_workers
from cattlepose.engine.loader import DeviceBatch, EpochSampler, train_loader
from cattlepose.models.build import build_model
from cattlepose.models.codec import HeatmapCodec

CPU = torch.device("cpu")


def batches(loader, codec: HeatmapCodec, channels_last: bool) -> Iterator[DeviceBatch]:
    while True:
        for raw in loader:
            yield DeviceBatch.from_loader(raw, CPU, codec, channels_last, ignore_hidden=False)


def loader_rate(it: Iterator[DeviceBatch], n_batches: int) -> float:
    next(it)  # worker start-up and the first batch are not throughput
    start, n = time.perf_counter(), 0
    for _ in range(n_batches):
        n += next(it).images.shape[0]
    return n / (time.perf_counter() - start)


def train_rate(model, codec: HeatmapCodec, it: Iterator[DeviceBatch], steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step(b: DeviceBatch) -> int:
        loss = codec.loss(model(b.images), b.heatmaps, b.weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return b.images.shape[0]

    step(next(it))  # warm-up: allocator, kernels
    start = time.perf_counter()
    n = sum(step(next(it)) for _ in range(steps))
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--images", type=int, default=160, help="synthetic training images to generate")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps per measurement")
    ap.add_argument("--data", type=Path, default=None, help="a real data set (data.format of the config) instead")
    args = ap.parse_args()

    cfg = load_config(args.config, ["model.pretrained=null"])
    bs, cl = cfg.train.batch_size, cfg.model.channels_last
    workers = resolve_workers(cfg.train.workers, CPU)
    codec = HeatmapCodec.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            root = Path(tmp) / "synth"
            synthesize(root, n_train=args.images, n_test=1, seed=0)
            samples, schema = read_samples("adk", root / "train", cfg.data.schema_, bbox=cfg.data.bbox)
        else:
            samples, schema = read_samples(cfg.data.format, args.data, cfg.data.schema_, bbox=cfg.data.bbox)
        ds = KeypointDataset(samples, schema, cfg, train=True, seed=0)
        if len(ds) < bs:
            raise SystemExit(f"{len(samples)} images make no batch of {bs}: use --images {bs} or more")
        stages = stage_times(ds)
        sampler = EpochSampler(len(ds), bs, 0, dist.DistInfo())
        n_batches = max(1, sampler.steps - 1)
        load = loader_rate(batches(train_loader(ds, sampler, workers, CPU), codec, cl), n_batches)
        cached = KeypointDataset(samples, schema, cfg, train=True, seed=0, images=decode_all(samples))
        load_cached = loader_rate(batches(train_loader(cached, sampler, workers, CPU), codec, cl), n_batches)

        torch.manual_seed(0)
        model = build_model(cfg.model, schema.num_keypoints)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        fixed = next(batches(train_loader(ds, sampler, 0, CPU), codec, cl))
        train = train_rate(model, codec, iter(lambda: fixed, None), args.steps)
        both = train_rate(model, codec, batches(train_loader(ds, sampler, workers, CPU), codec, cl), args.steps)

    h, w = cfg.model.input_size
    print(f"config {args.config}: augment.level={cfg.augment.level}, input {h}x{w}, batch {bs}, workers {workers}, "
          f"torch threads {torch.get_num_threads()}, {len(samples)} images")  # fmt: skip
    for name, ms in stages.items():
        print(f"  one item: {name:<28}{ms:7.2f} ms")
    print(f"  loader alone                      {load:7.1f} img/s")
    print(f"  loader alone, decoded-image cache {load_cached:7.1f} img/s")
    print(f"  train step alone                  {train:7.1f} img/s")
    print(f"  training fed by the loader        {both:7.1f} img/s")
    print(f"  ratio loader / train              {load / train:7.2f}  (goal >= 1.2)")
    print(f"  ratio fed / train                 {both / train:7.2f}  (share of step speed left once loading competes)")


if __name__ == "__main__":
    main()
