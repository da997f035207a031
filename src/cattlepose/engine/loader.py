"""The training batches: their order, the loader processes, and the move to the device.

The batch order of an epoch depends only on (seed, epoch), and every augmentation draws from a generator seeded
by (seed, epoch, index), so a resumed run sees the same batches whatever the worker count. Batches travel as
uint8 crops and keypoints; normalisation and heatmap targets are computed on the device (`DeviceBatch`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cattlepose.core.errors import UserError
from cattlepose.data.dataset import KeypointDataset, network_input
from cattlepose.engine import dist
from cattlepose.models.codec import HeatmapCodec


class EpochSampler(Sampler):
    """Yields (epoch, index) pairs: a permutation fixed by (seed, epoch), this rank's share of each global
    batch, whole batches only. The epoch travels with the index so persistent workers need no notification."""

    def __init__(self, n: int, global_batch: int, seed: int, info: dist.DistInfo):
        self.n, self.global_batch, self.seed, self.info = n, global_batch, seed, info
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def steps(self) -> int:
        return self.n // self.global_batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        local = self.global_batch // self.info.world_size
        for step in range(self.steps):
            start = step * self.global_batch + self.info.rank * local
            for i in order[start : start + local]:
                yield (self.epoch, int(i))

    def __len__(self) -> int:
        return self.steps * (self.global_batch // self.info.world_size)


class _EpochIndexed(Dataset):
    def __init__(self, dataset: KeypointDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        epoch, index = item
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def _one_thread(_: int) -> None:
    # each worker is one of many processes: OpenCV's and torch's own thread pools would oversubscribe the cores
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class _Loader(DataLoader):
    """A DataLoader whose workers' user errors (an image that cannot be decoded) arrive as the worker raised
    them: one message naming the file, not the worker's traceback that torch wraps around it."""

    def __iter__(self) -> Iterator:  # type: ignore[override]
        if self.num_workers > 0:
            # OpenCV's thread pool, once the parent process has used it, is copied half-alive into each forked
            # worker, where `cv2.setNumThreads(1)` then waits forever on it: 1 training run in 4 hung that way
            # with 2 workers on a 2-core machine. Shrinking the pool before the fork leaves the workers none.
            cv2.setNumThreads(1)
        try:
            yield from super().__iter__()
        except UserError as e:
            if "Original Traceback" not in e.message:
                raise
            last = e.message.strip().splitlines()[-1]
            raise UserError(last.split("UserError: ", 1)[-1]) from None


def train_loader(dataset: KeypointDataset, sampler: EpochSampler, workers: int, device: torch.device) -> DataLoader:
    return _Loader(
        _EpochIndexed(dataset),
        batch_size=sampler.global_batch // sampler.info.world_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_one_thread if workers > 0 else None,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )


@dataclass
class DeviceBatch:
    """A training batch on the device: the network input and its heatmap targets."""

    images: torch.Tensor  # (N, 3, H, W) float32, normalised
    heatmaps: torch.Tensor  # (N, K, Hh, Wh)
    weights: torch.Tensor  # (N, K)

    @classmethod
    def from_loader(
        cls, batch: dict, device: torch.device, codec: HeatmapCodec, channels_last: bool, ignore_hidden: bool
    ) -> DeviceBatch:
        """Move a loader batch to the device and build the targets there. `ignore_hidden`: keypoints an
        occluder covers get no loss (`augment.occlusion_policy: ignore`)."""
        kps = batch["keypoints"].to(device, non_blocking=True)
        if ignore_hidden:
            hidden = batch["hidden"].to(device, non_blocking=True)
            kps = torch.cat([kps[..., :2], kps[..., 2:] * ~hidden[..., None]], dim=-1)
        heatmaps, weights = codec.encode_batch(kps)
        return cls(network_input(batch["image"], device, channels_last), heatmaps, weights)
