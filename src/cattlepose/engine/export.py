"""`cattlepose export`: a run's whole ensemble as ONE ONNX file, with a sidecar JSON saying how to feed it.

The graph takes (N, H, W, 3) uint8 RGB crops, as `CropDataset` yields them, and returns (N, K, 3) float32
`x, y, score` in input-crop pixels. Inside: the input normalisation (data/dataset.py's constants), the mirror of
each crop in the same batch, every fold model with batch norm folded, probabilities (codec.to_probs), mirrors
flipped back with left/right channels swapped, averaged over flips and folds (`infer.model_probs`/`add_probs`,
the functions the PyTorch path uses) and decoded by `HeatmapCodec.decode_graph` (the codec's own decode math).

EfficientNet's TensorFlow "same" padding is computed from the input's shape at run time; for the fixed input
size of the export it becomes a static zero pad before a padding-free conv (ONNX Runtime fuses the pair into
one Conv with asymmetric pads), or the conv's own padding where it is symmetric.

`--int8`: static quantisation by ONNX Runtime (QDQ, per channel), calibrated on the run's training crops,
cropped as inference crops them. Only the networks' convolutions are quantised: PSA's softmax/sigmoid/matmul
work and the decode tail stay float, because quantise/dequantise pairs around that elementwise work cost more
than int8 saves there (issue #23: a naive int8 of every node was slower than fp32).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.padding import get_same_padding
from torch import nn

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError
from cattlepose.core.files import check_output, sha256_file, staged, writing
from cattlepose.core.ui import Log
from cattlepose.data.dataset import IMAGENET_MEAN, IMAGENET_STD, INPUT_SCALE, INPUT_SHIFT
from cattlepose.data.source import load_training_data, training_paths
from cattlepose.data.transforms import BOX_PADDING
from cattlepose.engine.infer import CropDataset, add_probs, load_fold_weights, model_probs
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.codec import HeatmapCodec
from cattlepose.models.efficientnet import SameConv2d
from cattlepose.models.psa import PolarizedSelfAttention
from cattlepose.runs.rundir import CONFIG, RunDir, read_data_record

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "crops", "keypoints"
# /2: the sidecar holds the SHA-256 of the graph file and of each fold checkpoint it was made from
SIDECAR_FORMAT = "cattlepose-onnx/3"  # 3: ce keypoint scores on the mse scale (models/codec.py); 2 scored 0-0.07
CALIBRATION_IMAGES = 32  # training crops the int8 ranges are measured on
_CALIBRATION_BATCH = 8


def sidecar_path(onnx_path: str | Path) -> Path:
    """OUT.onnx -> OUT.json."""
    return Path(onnx_path).with_suffix(".json")


def parse_batch(value: str | int | None) -> int | None:
    """`--batch`: a positive number of crops fixed in the graph, or `dynamic` (None)."""
    if value is None or str(value) == "dynamic":
        return None
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"'{value}' is neither a positive number of crops nor 'dynamic'", field="--batch")
    return n


# ----------------------------------------------------------------------------------------------------- graph
def static_same_padding(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Replace every TensorFlow-'same' conv (timm's Conv2dSame, the project's SameConv2d) by a static-padding
    equivalent for this input size: the conv's own padding where it is symmetric, else a zero pad before a
    padding-free conv. Returns how many were replaced. The model must be in eval mode (shapes are probed)."""
    targets = {name: m for name, m in model.named_modules() if isinstance(m, (Conv2dSame, SameConv2d))}
    if not targets:
        return 0
    shapes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=name: shapes.__setitem__(n, tuple(args[0].shape[-2:])))
             for name, m in targets.items()]  # fmt: skip
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        for h in hooks:
            h.remove()
    for name, m in targets.items():
        (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
        ih, iw = shapes[name]
        ph, pw = get_same_padding(ih, kh, sh, dh), get_same_padding(iw, kw, sw, dw)
        top, left = ph // 2, pw // 2
        bottom, right = ph - top, pw - left
        symmetric = top == bottom and left == right
        conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, (top, left) if symmetric else 0,
                         m.dilation, m.groups, m.bias is not None)  # fmt: skip
        conv.weight = m.weight
        if m.bias is not None:
            conv.bias = m.bias
        new: nn.Module = conv if symmetric else nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return len(targets)


class EnsembleGraph(nn.Module):
    """(N, H, W, 3) uint8 crops -> (N, K, 3) float32 x, y, score in input-crop pixels: what predict computes
    from a batch of crops, as one traceable module (module paths `models.{i}` name each fold's nodes)."""

    def __init__(self, models: Sequence[nn.Module], codec: HeatmapCodec, flip_index: Sequence[int], flip: bool,
                 pairs: Sequence[tuple[int, int]] = (), split_pairs: float = 0.0):  # fmt: skip
        super().__init__()
        self.pairs = list(pairs)
        self.split_pairs = split_pairs
        self.models = nn.ModuleList(models)
        self.codec = codec
        self.flip_index = list(flip_index)
        self.flip = flip
        self.register_buffer("scale", INPUT_SCALE.clone(), persistent=False)
        self.register_buffer("shift", INPUT_SHIFT.clone(), persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        n = crops.shape[0]
        x = crops.permute(0, 3, 1, 2).float() * self.scale + self.shift
        if self.flip:
            x = torch.cat([x, x.flip(3)], dim=0)
        total: torch.Tensor | None = None
        for model in self.models:
            total = add_probs(total, model_probs(self.codec, model(x), n, self.flip, self.flip_index))
        assert total is not None
        return self.codec.decode_graph(self.codec.split_pairs(total / len(self.models), self.pairs, self.split_pairs))


def export_model(run: RunDir, folds: list[int], flip: bool, split_pairs: float = 0.0) -> EnsembleGraph:
    """The run's fold models (batch norm fused, static padding) in one graph module, on the CPU, eval mode."""
    models = []
    for k in folds:
        model = load_fold_weights(run, k)
        fuse_batchnorm(model)
        static_same_padding(model, tuple(run.cfg.model.input_size))
        models.append(model)
    codec = HeatmapCodec.from_config(run.cfg)
    return EnsembleGraph(models, codec, run.schema.flip_index, flip, run.schema.pairs, split_pairs).eval()


def to_onnx(graph: EnsembleGraph, path: Path, input_size: tuple[int, int], batch: int | None) -> None:
    """torch.onnx.export (the TorchScript exporter, opset 18: PSA's softmax, sigmoid and matmuls export as
    they are; node names carry the module paths that int8 uses to leave PSA out)."""
    dummy = torch.zeros((batch or 2, *input_size, 3), dtype=torch.uint8)
    axes = None if batch else {INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)  # fmt: skip
    _own_initializers(path)


def _own_initializers(path: Path) -> None:
    """Constant folding shares equal initializers through Identity nodes (every zero bias of an untrained batch
    norm, say); each user gets its own copy instead, so a Conv's bias is an initializer again, which int8 needs
    to fuse it into one quantised convolution."""
    import onnx

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    for node in [n for n in model.graph.node if n.op_type == "Identity" and n.input[0] in inits]:
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[node.input[0]])
        copy.name = node.output[0]
        model.graph.initializer.append(copy)
        model.graph.node.remove(node)
    onnx.save(model, str(path))


# ----------------------------------------------------------------------------------------------------- int8
def module_path(node_name: str) -> str:
    """The module path of a node of the TorchScript exporter ('/models.0/backbone/stage2/stage2.0/aa/Softmax'
    -> 'models.0.backbone.stage2.0.aa'): each scope repeats its container's name ('stage2' -> 'stage2.0')."""
    scopes = node_name.strip("/").split("/")[:-1]
    parts: list[str] = []
    previous = ""
    for s in scopes:
        parts.append(s[len(previous) + 1 :] if previous and s.startswith(previous + ".") else s)
        previous = s
    return ".".join(parts)


def float_nodes(onnx_path: Path, graph: EnsembleGraph) -> list[str]:
    """Nodes int8 must leave in float: every node of a PSA module, and every node outside the fold networks
    (the input normalisation, flip, softmax, averaging and decode)."""
    import onnx

    psa = tuple(name + "." for name, m in graph.named_modules() if isinstance(m, PolarizedSelfAttention))
    keep = []
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        path = module_path(node.name) + "."
        if not path.startswith("models.") or path.startswith(psa):
            keep.append(node.name)
    return keep


class _CropReader:
    """onnxruntime.quantization's CalibrationDataReader: batches of the run's training crops."""

    def __init__(self, batches: list[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def calibration_batches(run: RunDir, n_images: int, batch: int | None, log: Log) -> list[np.ndarray]:
    """Up to `n_images` of the run's training images, evenly spaced, cropped as inference crops them."""
    samples, _ = load_training_data(run_data_config(run, log), log)
    if not samples:
        raise UserError("the run's training data has no images to calibrate int8 on", field="data.train")
    pick = np.unique(np.linspace(0, len(samples) - 1, min(n_images, len(samples))).round().astype(int))
    ds = CropDataset([samples[i] for i in pick], tuple(run.cfg.model.input_size), BOX_PADDING)
    crops = np.zeros((len(ds), *ds.input_size, 3), np.uint8)
    for i in range(len(ds)):
        _, _, error = ds.load_into(i, crops[i])
        if error:
            raise UserError(f"a calibration image cannot be read: {error}", field="data.train")
    size = batch or _CALIBRATION_BATCH
    batches = [crops[s : s + size] for s in range(0, len(crops), size)]
    if batch and len(batches[-1]) < batch:  # a fixed-batch graph takes only full batches: repeat crops
        batches[-1] = np.resize(np.concatenate([batches[-1], crops]), (batch, *crops.shape[1:]))
    return batches


def run_data_config(run: RunDir, log: Log) -> Config:
    """The run's config with its relative data paths (`data.train`, `data.images`, the synthetic set's
    `data.synth_dir`) made absolute. They are relative to the folder the run was trained from: the current
    folder, a folder above the data the run recorded (data.json's root, where its files were found), or a
    folder above the run (the default layout is FOLDER/runs/NAME); the first that holds every one of them is
    taken, and a UserError names the key and config.yaml when none does."""
    d = run.cfg.data
    keys = {"data.train": d.train_files, "data.images": [p for p in d.image_folders or [] if p is not None]}
    if d.train is None:
        keys = {"data.synth_dir": [d.synth_dir]}
    relative = {k: [p for p in paths if not p.is_absolute()] for k, paths in keys.items()}
    if not any(relative.values()):
        return run.cfg
    here = Path.cwd()
    record = read_data_record(run.path, damaged_ok=True)
    recorded = [Path(record.root), *Path(record.root).parents] if record is not None and record.root else []
    for base in [here, *recorded, *run.path.resolve().parents]:
        if all((base / p).exists() for paths in relative.values() for p in paths):
            break
    else:
        key, paths = next((k, v) for k, v in relative.items() if v)
        raise UserError(
            f"{key} {paths[0]} is relative to the folder the run was trained from, and neither {here} nor a "
            f"folder above the run holds it; run the command from that folder, or write the absolute path in "
            f"{run.path / CONFIG}",
            path=run.path / CONFIG,
            field=key,
        )
    if base == here:
        return run.cfg

    def absolute(value: object) -> object:
        if isinstance(value, list):
            return [absolute(v) for v in value]
        return base / value if isinstance(value, Path) and not value.is_absolute() else value

    update = {"train": absolute(d.train), "images": absolute(d.images), "synth_dir": absolute(d.synth_dir)}
    log.info(f"the run's data paths are relative to {base}, where it was trained: read from there")
    return run.cfg.model_copy(update={"data": d.model_copy(update=update)})


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantiser logs advice (pre-processing) on the root logger; the export's own log says what it did."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32: Path, out: Path, graph: EnsembleGraph, batches: list[np.ndarray]) -> int:
    """Static QDQ int8 (per-channel weights, uint8 activations, MinMax ranges) of the fold networks' Conv
    nodes; returns how many nodes were left in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    exclude = float_nodes(fp32, graph)
    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        quantize_static(
            str(fp32), str(out), _CropReader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
            nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
            calibration_providers=["CPUExecutionProvider"],
        )  # fmt: skip
    return len(exclude)


# ----------------------------------------------------------------------------------------------------- sidecar
def _version() -> str:
    """The installed distribution's version (the package root, which holds it too, is above this layer)."""
    try:
        return importlib.metadata.version("cattlepose")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sidecar(
    run: RunDir, folds: list[int], flip: bool, int8: bool, batch: int | None, split_pairs: float = 0.0
) -> dict[str, Any]:
    """What a user with onnxruntime and numpy needs to feed the file and read its output."""
    h, w = run.cfg.model.input_size
    c = run.cfg.codec
    return {
        "format": SIDECAR_FORMAT,
        "cattlepose_version": _version(),
        "input": {
            "name": INPUT_NAME,
            "shape": [batch or "N", h, w, 3],
            "dtype": "uint8",
            "layout": "NHWC",
            "color": "RGB",
        },
        "input_size": [h, w],
        "normalisation": {
            "inside_graph": True,
            "formula": "(x / 255 - mean) / std",
            "mean": [round(float(v), 6) for v in IMAGENET_MEAN],
            "std": [round(float(v), 6) for v in IMAGENET_STD],
        },
        "crop": {
            "padding": BOX_PADDING,
            "note": "the animal's box (or the whole image) grown by padding, at the "
            "input's aspect ratio, resampled to input_size; output x, y are pixels of that crop",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": [batch or "N", run.schema.num_keypoints, 3],
            "fields": ["x", "y", "score"],
        },
        "keypoints": list(run.schema.keypoints),
        "schema": run.schema.to_dict(),
        "backbone": run.cfg.model.backbone,
        "psa": run.cfg.model.psa,
        "codec": {"kind": c.kind, "decode": c.decode, "loss": c.loss, "sigma": c.sigma},
        "flip": flip,
        "split_pairs": split_pairs,
        "folds": folds,
        "int8": int8,
        "batch": batch or "dynamic",
        "opset": OPSET,
        "run": str(run.path),
        "checkpoints": checkpoint_fingerprints(run, folds),
    }


def checkpoint_fingerprints(run: RunDir, folds: list[int]) -> dict[str, str]:
    """Fold -> the SHA-256 of the best.pt an export is made from: retraining the run changes them, which tells
    a stale export from a current one (the graph's own weights are fused and rounded, so they cannot be
    compared with a checkpoint's)."""
    return {str(k): sha256_file(run.checkpoint(k)) for k in folds}


# ----------------------------------------------------------------------------------------------------- command
def export_run(
    run_dir: str | Path | RunDir,
    out: str | Path,
    folds: list[int] | None = None,
    flip: bool = True,
    int8: bool = False,
    batch: int | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
    log: Log | None = None,
    split_pairs: float = 0.0,
) -> dict[str, Any]:
    """Write OUT.onnx and OUT.json (`split_pairs` > 0: a left/right pair on one point decoded as its two peaks,
    what `cattlepose video` asks for); every check (run, folds, output) comes before the export. Both files become
    theirs together at the end; a failure writing either names that file and leaves the previous pair whole."""
    log = log or Log(quiet=True)
    out = Path(out)
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    if out.suffix != ".onnx":
        raise UserError("an exported model is written as a .onnx file (its sidecar beside it as .json)", path=out)
    chosen = run.model_folds(folds)
    data = [("the run's training data (data.train)", p) for p in training_paths(run.cfg)]
    json_path = sidecar_path(out)
    for path in (out, json_path):
        check_output(path, protect=[("the run", run.path), *data], keep_out=data)
    if not 0 <= split_pairs < 1:
        raise UserError(f"must be at least 0 and below 1, got {split_pairs}", field="--split-pairs")
    info = sidecar(run, chosen, flip, int8, batch, split_pairs)  # the checkpoints' fingerprints before they are read
    graph = export_model(run, chosen, flip, split_pairs)
    size = tuple(run.cfg.model.input_size)
    batches = calibration_batches(run, calibration_images, batch, log) if int8 else []
    write_pair(out, json_path, info, lambda fp32: to_onnx(graph, fp32, size, batch), graph, int8, batches)
    log.info(f"wrote {out} and {json_path} ({len(chosen)} fold(s), flip {'on' if flip else 'off'}"
             f"{', int8' if int8 else ''})")  # fmt: skip
    return {"onnx": str(out), "sidecar": str(json_path), **info}


def write_pair(
    out: Path, json_path: Path, info: dict[str, Any], to_fp32: Callable[[Path], None], graph: nn.Module,
    int8: bool, batches: list[np.ndarray],
) -> None:  # fmt: skip
    """The ONNX file (`to_fp32` writes the float graph; with `int8`, quantized on the calibration `batches`) and
    its sidecar `info`, both theirs together at the end (core/files.staged): the one writer of an export's pair."""
    with staged(out, json_path) as (tmp_onnx, tmp_json):
        with writing(out), _scratch(out, int8) as scratch:
            fp32 = scratch / "fp32.onnx" if scratch else tmp_onnx
            to_fp32(fp32)
            if int8:
                info["float_nodes"] = quantize_int8(fp32, tmp_onnx, graph, batches)
                info["calibration_images"] = sum(len(b) for b in batches)
        info["graph_sha256"] = sha256_file(tmp_onnx)
        with writing(json_path):
            tmp_json.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _scratch(out: Path, needed: bool) -> Iterator[Path | None]:
    """A hidden folder beside the output for int8's float graph: on the output's disk, so a full disk is the
    output's, and removed however the export ends."""
    if not needed:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as scratch:
        yield Path(scratch)


def export_line(info: dict[str, Any], run: str | Path, out: str | Path) -> str:
    """The `cattlepose export` line that writes `out` again as its sidecar `info` describes it."""
    parts = ["cattlepose export", str(run), "-o", str(out)]
    if info.get("folds") is not None:
        parts += ["--folds", ",".join(str(k) for k in info["folds"])]
    if info.get("flip") is False:
        parts.append("--no-flip")
    if info.get("int8"):
        parts.append("--int8")
    if info.get("split_pairs"):
        parts += ["--split-pairs", f"{info['split_pairs']:g}"]
    if isinstance(info.get("batch"), int):
        parts += ["--batch", str(info["batch"])]
    return " ".join(parts)
