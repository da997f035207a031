"""The detector's inference library: a detector run's folds (or its ONNX export) as a `data.boxes.BoxSource`.

    detector = load_detector(run_dir)            # a run whose config.yaml says task: detect
    instances = detector([ImageSource, ...])     # every image's animals, each image's best first

Each image is decoded (data/images.py), letterboxed into the run's `model.input_size` (top-left, so original
pixels = input pixels / scale), and goes through `DetectorGraph` with its mirror in the same batch: every fold
network's centre probabilities and sizes (mirrors flipped back) are averaged, offsets over the folds, and decoded
once (models/detector.py `decode_tensors`: 3x3 max-pool peaks, top-K). The exported ONNX graph is this very module
(engine/detexport.py), so both backends share `postprocess`: boxes back to original pixels, clipped, the score
threshold, the minimum size, torchvision's batched NMS per category and the `max_animals` best. `OnnxDetector`
is the ONNX Runtime session of an export, checked against its sidecar and the run as keypoint exports are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.ops import batched_nms

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError, first_line
from cattlepose.core.ui import Log
from cattlepose.data.dataset import INPUT_SCALE, INPUT_SHIFT
from cattlepose.data.detection import letterbox
from cattlepose.data.records import ImageSource, Instance
from cattlepose.data.video import image_of
from cattlepose.engine import device as dev
from cattlepose.engine.export import INPUT_NAME, sidecar_path
from cattlepose.engine.onnx_backend import check_against_run, check_graph, providers, read_sidecar
from cattlepose.metrics.boxes import Detections
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.detector import CenterNet, average_outputs, decode_tensors
from cattlepose.runs.rundir import BEST, RunDir

CPU_BATCH, CUDA_BATCH = 8, 64  # images per forward pass
OUTPUTS = ("boxes", "scores", "classes")  # of DetectorGraph and its ONNX export


@dataclass(frozen=True)
class DetectOptions:
    score_threshold: float = 0.3  # defaults come from the run's config (its `detect:` section)
    nms_iou: float = 0.5  # torchvision.ops.batched_nms, per category
    max_animals: int = 20  # per image, highest scores kept
    min_size: float = 4.0  # pixels, shorter box side, in the original image

    @classmethod
    def from_config(cls, cfg: Config) -> DetectOptions:
        d = cfg.detect
        return cls(d.score_threshold, d.nms_iou, d.max_animals, d.min_size)

    def check(self) -> DetectOptions:
        """Values a user may pass on the command line, checked (UserError naming the option)."""
        if not 0 <= self.score_threshold <= 1:
            raise UserError(f"score threshold {self.score_threshold} must lie in [0, 1]", field="score_threshold")
        if not 0 < self.nms_iou <= 1:
            raise UserError(f"NMS IoU {self.nms_iou} must lie in (0, 1]", field="nms_iou")
        if self.max_animals < 1:
            raise UserError(f"max_animals {self.max_animals} must be at least 1", field="max_animals")
        if not self.min_size >= 0:
            raise UserError(f"min_size {self.min_size} must be >= 0", field="min_size")
        return self


class DetectorGraph(nn.Module):
    """(N, H, W, 3) uint8 letterboxed images -> boxes (N, K, 4) x0, y0, x1, y1 in input pixels, scores (N, K),
    category indices (N, K): the fold ensemble with flip, averaging and decode; traceable to ONNX (module paths
    `models.{i}` name each fold's nodes, as in the keypoint export)."""

    def __init__(self, models: Sequence[CenterNet], flip: bool, top_k: int):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.flip, self.top_k, self.stride = flip, top_k, models[0].stride
        self.register_buffer("scale", INPUT_SCALE.clone(), persistent=False)
        self.register_buffer("shift", INPUT_SHIFT.clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() * self.scale + self.shift
        if self.flip:
            x = torch.cat([x, x.flip(3)], dim=0)
        heat, size, offset = average_outputs([m(x) for m in self.models], self.flip)
        return decode_tensors(heat, size, offset, self.stride, self.top_k)


BatchFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class Detector:
    """A `BoxSource`: images in, their animals out (`Instance`s with box, score, `meta["category"]`, `ann_id`
    0..n-1 within each image, best first); an image with no animal gives none."""

    def __init__(self, categories: list[str], options: DetectOptions, batch_fn: BatchFn, batch_size: int,
                 input_size: tuple[int, int], folds: list[int], backend: str, run: RunDir | None = None,
                 log: Log | None = None):  # fmt: skip
        self.categories, self.options, self.batch_fn, self.batch_size = categories, options, batch_fn, batch_size
        self.input_size, self.folds, self.backend, self.run, self.log = tuple(input_size), folds, backend, run, log
        self.seconds = 0.0  # time spent in calls so far (decoding included)
        self.images = 0

    def with_options(self, options: DetectOptions) -> Detector:
        """The same networks with other thresholds."""
        return Detector(self.categories, options.check(), self.batch_fn, self.batch_size, self.input_size,
                        self.folds, self.backend, self.run, self.log)  # fmt: skip

    def __call__(self, images: Sequence[ImageSource]) -> list[Instance]:
        return [inst for per_image in self.detect(images) for inst in per_image]

    def detect(self, images: Sequence[ImageSource]) -> list[list[Instance]]:
        """Each image's animals (a list per image, in order)."""
        out: list[list[Instance]] = []
        for dets, source, wh in self._batches(images):
            out.append(self.instances(source, dets, wh))
        return out

    def detections(self, images: Sequence[ImageSource]) -> list[Detections]:
        """Each image's detections as arrays (boxes x, y, w, h in original pixels), for scoring."""
        return [d for d, _, _ in self._batches(images)]

    def instances(self, source: ImageSource, d: Detections, wh: tuple[int, int]) -> list[Instance]:
        src = replace(source, width=source.width or wh[0], height=source.height or wh[1])
        return [Instance.in_image(src, box, ann_id=str(i), score=float(score),
                                  meta={"category": self.categories[int(label)]})
                for i, (box, score, label) in enumerate(zip(d.boxes, d.scores, d.labels, strict=True))]  # fmt: skip

    def _batches(self, images: Sequence[ImageSource]):
        start = time.perf_counter()
        h, w = self.input_size
        for s in range(0, len(images), self.batch_size):
            chunk = images[s : s + self.batch_size]
            batch = np.zeros((len(chunk), h, w, 3), np.uint8)
            scales, sizes = [], []
            for i, src in enumerate(chunk):
                image = image_of(src.path, src.frame)  # a photograph, or a video frame `holding` put
                batch[i], scale = letterbox(image, (h, w))
                scales.append(scale)
                sizes.append((image.shape[1], image.shape[0]))
            boxes, scores, labels = self.batch_fn(batch)
            for i, src in enumerate(chunk):
                yield postprocess(boxes[i], scores[i], labels[i], scales[i], sizes[i], self.options), src, sizes[i]
        self.seconds += time.perf_counter() - start
        self.images += len(images)


def postprocess(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, scale: float, wh: tuple[int, int],
    options: DetectOptions,
) -> Detections:  # fmt: skip
    """One image's decoded peaks (x0, y0, x1, y1 in input pixels) -> its detections in original pixels: clipped
    to the image, peaks (score above 0) at least the score threshold, at least min_size (and more than 0) on the
    shorter side, NMS per category, the max_animals best, best first; boxes as x, y, w, h."""
    b = torch.as_tensor(np.asarray(boxes, np.float64) / scale)
    b[:, 0::2] = b[:, 0::2].clamp(0, wh[0])
    b[:, 1::2] = b[:, 1::2].clamp(0, wh[1])
    s = torch.as_tensor(np.asarray(scores, np.float64))
    c = torch.as_tensor(np.asarray(labels).astype(np.int64))
    side = torch.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    # whatever the options say: a box without area is no animal (a peak in the letterbox's padding clips to one;
    # COCO results and evaluate refuse it), and a score of 0 is no peak (the decode zeroes the cells that are not
    # and top-K takes them where an image has fewer peaks), so --score-threshold 0 keeps every peak, nothing else
    keep = (s >= options.score_threshold) & (s > 0) & (side >= options.min_size) & (side > 0)
    b, s, c = b[keep], s[keep], c[keep]
    kept = batched_nms(b.float(), s.float(), c, options.nms_iou)[: options.max_animals]
    b, s, c = b[kept].numpy(), s[kept].numpy(), c[kept].numpy()
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1) if len(b) else np.zeros((0, 4))
    return Detections(xywh, s, c)


# ---------------------------------------------------------------------------------------------- loading
def detector_categories(state: dict[str, Any], path: Path) -> list[str]:
    names = state.get("categories")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError("a detector checkpoint must name its categories; retrain the fold", path=path,
                        field="categories")  # fmt: skip
    return names


def load_fold_detector(run: RunDir, k: int, checkpoint: str = BEST) -> tuple[CenterNet, list[str]]:
    """A fold's detector network (eval mode, CPU, batch norm not fused) and its categories."""
    state = run.load_checkpoint(k, checkpoint)
    path = run.checkpoint(k, checkpoint)
    categories = detector_categories(state, path)
    model = CenterNet(run.cfg.model.backbone, len(categories), run.cfg.detect.stride)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise UserError(f"its weights do not fit the detector of config.yaml ({first_line(e)}); retrain the fold: "
                        f"{run.retrain_hint(k)}", path=path, field="model") from None  # fmt: skip
    return model.eval(), categories


def ensemble_graph(run: RunDir, folds: list[int], flip: bool) -> tuple[DetectorGraph, list[str]]:
    """The folds' networks (batch norm fused) in one `DetectorGraph` on the CPU; the folds must agree on the
    categories."""
    models, names = [], None
    for k in folds:
        model, categories = load_fold_detector(run, k)
        if names is not None and categories != names:
            raise UserError(f"fold {k} was trained on the categories {categories}, another fold on {names}; "
                            "predict with --folds of one kind", path=run.checkpoint(k), field="categories")  # fmt: skip
        names = categories
        fuse_batchnorm(model)
        models.append(model)
    assert names is not None
    return DetectorGraph(models, flip, run.cfg.detect.top_k).eval(), names


def load_detector(
    run_dir: Path,
    folds: list[int] | None = None,
    device: str = "auto",
    flip: bool | None = True,
    options: DetectOptions | None = None,
    backend: str = "torch",
    onnx: Path | None = None,
    batch_size: int | None = None,
    log: Log | None = None,
) -> Detector:
    """A detector run's folds (all by default) as a `Detector`: PyTorch (`backend="torch"`) or the ONNX export
    `onnx` (`backend="onnx"`, checked against the run; `flip` None: as exported). A keypoint run is refused
    (UserError)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    run.require_task("detect", "--detector")
    options = (options or DetectOptions.from_config(run.cfg)).check()
    if backend == "torch":
        chosen = run.model_folds(folds)
        target = dev.resolve_device(device if device != "auto" else run.cfg.train.device)
        dev.flush_denormals(target)
        graph, categories = ensemble_graph(run, chosen, flip is not False)
        graph = graph.to(target)
        if run.cfg.model.channels_last:
            graph = graph.to(memory_format=torch.channels_last)

        def run_torch(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            with torch.inference_mode():
                boxes, scores, labels = graph(torch.from_numpy(batch).to(target))
            return boxes.cpu().double().numpy(), scores.cpu().double().numpy(), labels.cpu().numpy()

        size = batch_size or (CUDA_BATCH if target.type == "cuda" else CPU_BATCH)
        return Detector(categories, options, run_torch, size, tuple(run.cfg.model.input_size), chosen, "torch", run,
                        log)  # fmt: skip
    if backend == "onnx":
        if onnx is None:
            raise UserError("backend onnx needs the exported file (`cattlepose export RUN -o FILE.onnx`)",
                            field="--onnx")  # fmt: skip
        session = OnnxDetector(Path(onnx), run, folds, flip, device, log, threads=run.cfg.train.threads)
        return Detector(session.categories, options, session, batch_size or CPU_BATCH, tuple(run.cfg.model.input_size),
                        session.folds, "onnx", run, log)  # fmt: skip
    raise UserError(f"backend {backend!r} must be torch or onnx", field="--backend")


class OnnxDetector:
    """An exported detector in an ONNX Runtime session, checked against its sidecar and the run; called on
    (N, H, W, 3) uint8 letterboxed images it gives what `DetectorGraph` gives, as numpy arrays."""

    def __init__(self, path: Path, run: RunDir, folds: list[int] | None, flip: bool | None, device: str = "auto",
                 log: Log | None = None, threads: int | None = None):  # fmt: skip
        import onnxruntime as ort

        if not path.is_file():
            raise UserError("the exported detector is not there; `cattlepose export RUN -o FILE.onnx` writes it",
                            path=path)  # fmt: skip
        self.info = read_sidecar(path)
        if self.info.get("task") != "detect":
            raise UserError("not a detector's export (its sidecar has no task: detect)", path=sidecar_path(path),
                            field="task")  # fmt: skip
        check_graph(self.info, path)
        check_against_run(self.info, path, run, folds, flip, log)
        self.categories = [str(c) for c in self.info["categories"]]
        self.folds = [int(k) for k in self.info["folds"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = dev.resolve_threads(threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers(device))
        except Exception as e:  # onnxruntime raises its own types for a truncated or foreign file
            raise UserError(f"ONNX Runtime cannot load it ({first_line(e)}); export it again", path=path,
                            field="model") from None  # fmt: skip

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes, scores, classes = self.session.run(list(OUTPUTS), {INPUT_NAME: np.ascontiguousarray(batch, np.uint8)})
        return boxes.astype(np.float64), scores.astype(np.float64), classes.astype(np.int64)
