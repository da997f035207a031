"""`cattlepose export` of a detector run: `DetectorGraph` (every fold, the mirror, the averaging and the decode to
the top-K peaks) as one ONNX file with its sidecar, and engine/detect.py's `OnnxDetector` runs it
(`load_detector(..., backend="onnx")`) in place of the PyTorch graph. NMS and the thresholds stay in Python
(engine/detect.py `postprocess`), shared by both backends.

The graph takes (N, H, W, 3) uint8 letterboxed images (top-left, PAD_VALUE grey; original = input / scale) and
returns boxes (N, K, 4) x0, y0, x1, y1 in input pixels, scores (N, K) and category indices (N, K). The sidecar
is the keypoint export's (`cattlepose-onnx/3`: SHA-256 of the graph and of each fold's best.pt) with
`task: detect` and the categories; `--int8` is the same ONNX Runtime static quantisation of the fold networks'
convolutions, calibrated on the run's letterboxed training photographs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cattlepose.core.errors import UserError
from cattlepose.core.files import check_output
from cattlepose.core.ui import Log
from cattlepose.data.detection import PAD_VALUE, letterbox
from cattlepose.data.images import load_image
from cattlepose.data.source import load_training_data, training_paths
from cattlepose.engine.detect import OUTPUTS, DetectorGraph, ensemble_graph
from cattlepose.engine.export import (
    INPUT_NAME,
    OPSET,
    SIDECAR_FORMAT,
    _own_initializers,
    _version,
    checkpoint_fingerprints,
    run_data_config,
    sidecar_path,
    static_same_padding,
    write_pair,
)
from cattlepose.runs.rundir import RunDir


def detector_sidecar(run: RunDir, folds: list[int], flip: bool, int8: bool, categories: list[str]) -> dict[str, Any]:
    h, w = run.cfg.model.input_size
    return {
        "format": SIDECAR_FORMAT,
        "task": "detect",
        "cattlepose_version": _version(),
        "input": {"name": INPUT_NAME, "shape": ["N", h, w, 3], "dtype": "uint8", "layout": "NHWC", "color": "RGB"},
        "input_size": [h, w],
        "letterbox": {
            "placement": "top-left",
            "pad_value": PAD_VALUE,
            "note": "the image scaled by min(W / width, H / height), aspect kept; original = input / scale",
        },
        "outputs": {
            "boxes": "(N, K, 4) x0, y0, x1, y1 in input pixels",
            "scores": "(N, K)",
            "classes": "(N, K) category index",
        },
        "postprocess": "score threshold, min size, NMS per category (IoU), max animals: in Python",
        "categories": categories,
        "keypoints": list(run.schema.keypoints),
        "backbone": run.cfg.model.backbone,
        "stride": run.cfg.detect.stride,
        "top_k": run.cfg.detect.top_k,
        "flip": flip,
        "folds": folds,
        "int8": int8,
        "batch": "dynamic",
        "opset": OPSET,
        "run": str(run.path),
        "checkpoints": checkpoint_fingerprints(run, folds),
    }


def _to_onnx(graph: DetectorGraph, path: Path, input_size: tuple[int, int]) -> None:
    dummy = torch.full((2, *input_size, 3), PAD_VALUE, dtype=torch.uint8)
    axes = {INPUT_NAME: {0: "N"}, **{name: {0: "N"} for name in OUTPUTS}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=list(OUTPUTS), dynamic_axes=axes, do_constant_folding=True)  # fmt: skip
    _own_initializers(path)


def calibration_images(run: RunDir, n_images: int, log: Log) -> list[np.ndarray]:
    samples, _ = load_training_data(run_data_config(run, log), log)
    paths = list(dict.fromkeys(s.image for s in samples))
    if not paths:
        raise UserError("the run's training data has no images to calibrate int8 on", field="data.train")
    pick = np.unique(np.linspace(0, len(paths) - 1, min(n_images, len(paths))).round().astype(int))
    size = tuple(run.cfg.model.input_size)
    batch = np.stack([letterbox(load_image(paths[i]), size)[0] for i in pick])  # type: ignore[arg-type]
    return [batch[s : s + 8] for s in range(0, len(batch), 8)]


def export_detector(
    run: RunDir, out: Path, folds: list[int] | None, flip: bool, int8: bool, batch: int | None,
    calibration: int, log: Log,
) -> dict[str, Any]:  # fmt: skip
    """OUT.onnx and OUT.json of a detector run, both written together at the end (core/files.staged)."""
    if out.suffix != ".onnx":
        raise UserError("an exported model is written as a .onnx file (its sidecar beside it as .json)", path=out)
    if batch is not None:
        raise UserError("a detector's export takes any number of images (--batch dynamic)", field="--batch")
    chosen = run.model_folds(folds)
    data = [("the run's training data (data.train)", p) for p in training_paths(run.cfg)]
    json_path = sidecar_path(out)
    for path in (out, json_path):
        check_output(path, protect=[("the run", run.path), *data], keep_out=data)
    graph, categories = ensemble_graph(run, chosen, flip)
    size = tuple(run.cfg.model.input_size)
    for model in graph.models:
        static_same_padding(model, size)  # type: ignore[arg-type]
    info = detector_sidecar(run, chosen, flip, int8, categories)
    batches = calibration_images(run, calibration, log) if int8 else []
    write_pair(out, json_path, info, lambda fp32: _to_onnx(graph, fp32, size), graph, int8, batches)  # type: ignore[arg-type]
    log.info(f"wrote {out} and {json_path} (detector, {len(chosen)} fold(s), flip {'on' if flip else 'off'}"
             f"{', int8' if int8 else ''})")  # fmt: skip
    return {"onnx": str(out), "sidecar": str(json_path), **info}
