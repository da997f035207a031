"""Batched inference, the library behind `predict`, validation and out-of-fold scoring: crops, flip TTA in the
same batch, fold ensemble, one decode, back to original pixels.

It predicts instances (`data/records.py`): an image and the box of one animal in it, however the box was found
(an annotation, the whole image, a detector). A training sample is an instance too.

Each crop and its mirror go through the network in one forward pass; the mirror's heatmaps are flipped back
(width mirrored, left/right channels swapped) and averaged with the crop's, then over every fold model,
as probabilities (the codec says how logits become probabilities). Decoding happens once, on the average.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError, first_line
from cattlepose.core.schema import KeypointSchema
from cattlepose.core.ui import Log
from cattlepose.data.dataset import BOX_PADDING, crop_for_inference, network_input
from cattlepose.data.images import load_image
from cattlepose.data.records import Instance, Pose
from cattlepose.data.transforms import invert_affine
from cattlepose.data.video import held_frame
from cattlepose.engine import compiling
from cattlepose.engine import device as dev
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.build import build_model
from cattlepose.models.codec import HeatmapCodec
from cattlepose.runs.rundir import BEST, RunDir


@dataclass
class Ensemble:
    models: list[nn.Module]
    codec: HeatmapCodec
    schema: KeypointSchema
    cfg: Config
    device: torch.device
    folds: list[int] = field(default_factory=list)
    compiled: bool = False  # the models' regions are compiled: batches are padded to one size (no recompiles)


@dataclass
class Predictions:
    instances: Sequence[Instance]
    coords: np.ndarray  # (N, K, 2) original image pixels
    scores: np.ndarray  # (N, K)
    seconds: float  # wall time of the whole pass, image decoding included

    @property
    def keys(self) -> list[str]:
        return [i.key for i in self.instances]

    def keypoints(self) -> np.ndarray:
        """(N, K, 3) x, y, score."""
        return np.concatenate([self.coords, self.scores[:, :, None]], axis=2)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Instance key -> (K, 3) array of x, y, score."""
        return dict(zip(self.keys, self.keypoints(), strict=True))

    def poses(self) -> list[Pose]:
        """One `Pose` per instance, in order: what the writers take."""
        return [Pose.predicted(i, k) for i, k in zip(self.instances, self.keypoints(), strict=True)]


def load_ensemble(
    run: RunDir | str | Path,
    folds: list[int] | None = None,
    device: str = "auto",
    crops: int = 0,
    flip: bool | None = None,
    log: Log | None = None,
) -> Ensemble:
    """Every fold model of a run (or the listed folds), ready for inference. `crops`: how many crops the caller
    will predict, which decides whether compiling pays (`train.compile: auto`; 0 = never under auto)."""
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    chosen = run.model_folds(folds)
    target = dev.resolve_device(device if device != "auto" else run.cfg.train.device)
    flip = run.cfg.infer.flip if flip is None else flip
    decision = compiling.decide(run.cfg.train.compile, target, crops * len(chosen) * (2 if flip else 1), "predict")
    if log is not None and run.cfg.train.compile != "off":
        log.info(f"{'compiling the fold models' if decision.compile else 'not compiled'}: {decision.reason}")
    models = [load_fold_model(run, k, target, compile=decision.compile) for k in chosen]
    return Ensemble(models, HeatmapCodec.from_config(run.cfg), run.schema, run.cfg, target, chosen, decision.compile)


def load_fold_model(
    run: RunDir, k: int, device: torch.device, checkpoint: str = BEST, compile: bool = False
) -> nn.Module:
    """A fold's weights in a network built from the run's config, ready for inference."""
    return prepare_for_inference(load_fold_weights(run, k, checkpoint), run.cfg, device, compile)


def load_fold_weights(run: RunDir, k: int, checkpoint: str = BEST) -> nn.Module:
    """A fold's weights in a network built from the run's config, in eval mode on the CPU (batch norm not yet
    fused: `prepare_for_inference` and the exporter each finish it their way)."""
    state = run.load_checkpoint(k, checkpoint)
    model = build_model(run.cfg.model.model_copy(update={"pretrained": None}), run.schema.num_keypoints)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise UserError(
            f"its weights do not fit the network of config.yaml ({first_line(e)}); was config.yaml edited? "
            f"Retrain the fold: {run.retrain_hint(k)}",
            path=run.checkpoint(k, checkpoint),
            field="model",
        ) from None
    return model.eval()


def prepare_for_inference(model: nn.Module, cfg: Config, device: torch.device, compile: bool = False) -> nn.Module:
    """Eval mode, batch norm fused into the convolutions (same outputs, fewer passes), device and layout; its
    regions compiled when `compile` (the caller decides: `compiling.decide`)."""
    dev.flush_denormals(device)
    model = model.eval()
    fuse_batchnorm(model)
    model = model.to(device)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        compiling.compile_regions(model)
    return model


class CropDataset(Dataset):
    """Decodes images in loader workers and crops each instance's box; a broken image comes back as an error,
    not a crash, so a predict run can name every broken file before it writes anything. Crops stay (H, W, 3)
    uint8: `network_input` normalises a whole batch at once, a quarter of the bytes to move and no per-image
    pass. The last image decoded is kept, so the animals of one image, which box sources list one after the
    other, cost one decode. An instance of a video frame (`frame` set) reads the frame `data/video.holding` put
    in memory."""

    def __init__(self, instances: Sequence[Instance], input_size: tuple[int, int], padding: float = BOX_PADDING):
        self.instances = instances
        self.input_size = input_size
        self.padding = padding
        self._last: tuple[tuple[Path, int | None], np.ndarray | str] | None = None

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, i: int) -> dict:
        crop = np.zeros((*self.input_size, 3), np.uint8)
        trans, size, error = self.load_into(i, crop)
        return {"image": torch.from_numpy(crop), "trans": torch.from_numpy(trans), "size": torch.from_numpy(size),
                "index": i, "error": error}  # fmt: skip

    def load_into(self, i: int, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """Decode and crop instance i into `out` ((H, W, 3) uint8, left as it is for a broken image); returns
        the (2, 3) original -> input affine, the original (width, height), and the error message or ''."""
        inst = self.instances[i]
        image = self._image(inst)
        if isinstance(image, str):
            return np.zeros((2, 3)), np.zeros(2), image
        _, trans = crop_for_inference(image, inst.bbox, self.input_size, self.padding, out=out)
        return trans, np.array([image.shape[1], image.shape[0]], dtype=np.float64), ""

    def _image(self, inst: Instance) -> np.ndarray | str:
        """The instance's decoded image, or why it cannot be read."""
        key = (inst.image, inst.frame)
        if self._last is None or self._last[0] != key:
            try:  # a video frame is held in memory by the command that decodes the video in chunks
                frame = inst.frame
                self._last = (key, load_image(inst.image) if frame is None else held_frame(inst.image, frame))
            except UserError as e:
                self._last = (key, str(e))
        return self._last[1]


def inline_batches(ds: CropDataset, batch_size: int) -> Iterator[dict]:
    """The DataLoader's batches without a DataLoader, decoded in this process (what predict does with no worker
    processes): each crop is written straight into one reused (B, H, W, 3) buffer, so there is no per-image
    tensor and no collate copy. A yielded image batch is valid until the next."""
    crops = np.empty((batch_size, *ds.input_size, 3), np.uint8)
    for start in range(0, len(ds), batch_size):
        index = np.arange(start, min(start + batch_size, len(ds)))
        trans, size = np.empty((len(index), 2, 3)), np.empty((len(index), 2))
        errors = []
        for j, i in enumerate(index):
            trans[j], size[j], error = ds.load_into(int(i), crops[j])
            errors.append(error)
        yield {"image": torch.from_numpy(crops[: len(index)]), "trans": torch.from_numpy(trans),
               "size": torch.from_numpy(size), "index": torch.from_numpy(index), "error": errors}  # fmt: skip


def model_probs(
    codec: HeatmapCodec, logits: torch.Tensor, n: int, flip: bool, flip_index: Sequence[int]
) -> torch.Tensor:
    """One model's (N or 2N, K, Hh, Wh) logits -> (N, K, Hh, Wh) probabilities, each crop's averaged with its
    flipped-back mirror (the second N rows) when `flip`. Shared by the PyTorch path and the exported graph."""
    probs = codec.to_probs(logits.float())
    if flip:
        probs = 0.5 * (probs[:n] + codec.flip_back(probs[n:], flip_index))
    return probs


def add_probs(total: torch.Tensor | None, probs: torch.Tensor) -> torch.Tensor:
    """The running sum of the fold models' probabilities (a model with another heatmap size is resized)."""
    if total is None:
        return probs
    if probs.shape[-2:] != total.shape[-2:]:
        probs = F.interpolate(probs, size=total.shape[-2:], mode="bilinear", align_corners=False)
    return total + probs


@torch.inference_mode()
def ensemble_probs(
    ens: Ensemble, crops: torch.Tensor, flip: bool, reuse: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average heatmap probabilities over models (and the mirrored copy of each crop, in the same batch).
    `crops`: (N, H, W, 3) uint8, as `CropDataset` yields them. Returns the probabilities and the input batch,
    which the next call may `reuse`."""
    n = crops.shape[0]
    batch = network_input(crops, ens.device, ens.cfg.model.channels_last, flip, reuse)
    total: torch.Tensor | None = None
    for model in ens.models:
        with dev.autocast(ens.device, ens.cfg.train.amp):
            logits = model(batch)
        total = add_probs(total, model_probs(ens.codec, logits, n, flip, ens.schema.flip_index))
    assert total is not None
    return total / len(ens.models), batch


# crops (N, H, W, 3) uint8 -> coords (N, K, 2) in input-crop pixels and scores (N, K): one backend's network
BatchFn = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]


def torch_batch_fn(
    ens: Ensemble, flip: bool, batch_size: int, log: Log | None = None, split_pairs: float = 0.0
) -> BatchFn:
    """The PyTorch backend: the ensemble's probabilities decoded by the codec (the input buffer reused; a
    left/right pair on one point split into its two peaks with `split_pairs` > 0, `HeatmapCodec.split_pairs`).
    Compiled models see one batch shape only: a short last batch is padded to `batch_size` (a new shape would
    compile every region again), and its first batch, which compiles them, is reported."""
    buffer: list[torch.Tensor | None] = [None]
    pending = [ens.compiled]

    def run(crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        n = crops.shape[0]
        if ens.compiled and n < batch_size:
            crops = torch.cat([crops, crops.new_zeros((batch_size - n, *crops.shape[1:]))])
        if pending[0]:
            with compiling.reporting(log or Log(quiet=True), None, "the fold models"):
                probs, buffer[0] = ensemble_probs(ens, crops, flip, buffer[0])
            pending[0] = False
        else:
            probs, buffer[0] = ensemble_probs(ens, crops, flip, buffer[0])
        probs = ens.codec.split_pairs(probs[:n], ens.schema.pairs, split_pairs)
        coords, scores = ens.codec.decode(probs)
        return coords, scores

    return run


def predict_samples(
    ens: Ensemble,
    instances: Sequence[Instance],
    flip: bool | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    log: Log | None = None,
) -> Predictions:
    """Predict every instance's keypoints in original pixel coordinates (clamped to the image)."""
    flip = ens.cfg.infer.flip if flip is None else flip
    batch_size = batch_size or dev.resolve_infer_batch(ens.cfg.infer.batch_size, ens.device)
    return predict_batches(
        instances, ens.cfg.model.input_size, ens.schema.num_keypoints, torch_batch_fn(ens, flip, batch_size, log),
        batch_size, ens.device, workers, log,
    )  # fmt: skip


def predict_batches(
    instances: Sequence[Instance],
    input_size: tuple[int, int],
    num_keypoints: int,
    run_batch: BatchFn,
    batch_size: int,
    device: torch.device,
    workers: int | None = None,
    log: Log | None = None,
) -> Predictions:
    """The batch loop of every backend: crops decoded (in loader workers, or inline on a small CPU, so image
    decoding overlaps the network where there are cores for it), `run_batch` on each batch, keypoints back to
    original pixels (clamped to the image). Broken images are all named (once each, however many animals
    they hold) before anything is returned."""
    log = log or Log(quiet=True)
    workers = dev.resolve_workers("auto", device) if workers is None else workers
    ds = CropDataset(instances, tuple(input_size))
    if workers == 0 and device.type == "cpu":
        loader: Iterable[dict] = inline_batches(ds, batch_size)
    else:
        loader = DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
    coords = np.zeros((len(instances), num_keypoints, 2))
    scores = np.zeros((len(instances), num_keypoints))
    errors: list[str] = []
    start = time.perf_counter()
    with log.task("predict", total=len(instances)) as bar:
        for batch in loader:
            idx = batch["index"].numpy()
            errors.extend(e for e in batch["error"] if e)
            xy, sc = run_batch(batch["image"])
            ok = np.array([not e for e in batch["error"]], dtype=bool)
            if ok.any():  # back to original pixels, the whole batch at once, clamped to each image
                inv = invert_affine(batch["trans"].numpy()[ok])
                back = xy[ok] @ inv[:, :, :2].transpose(0, 2, 1) + inv[:, None, :, 2]
                coords[idx[ok]] = np.clip(back, 0, batch["size"].numpy()[ok][:, None, :] - 1)
                scores[idx[ok]] = sc[ok]
            bar.update(len(idx))
    errors = list(dict.fromkeys(errors))
    if errors:
        shown = "\n  ".join(errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise UserError(f"{len(errors)} image(s) could not be read; nothing was written:\n  {shown}{more}")
    return Predictions(instances, coords, scores, time.perf_counter() - start)
