"""`predict --backend onnx`: an exported ensemble (engine/export.py) run by ONNX Runtime, as a `BatchFn` for
`infer.predict_batches`, so crops, boxes, back-projection and writers are those of the PyTorch backend.

The file is checked before any work: it must have its sidecar (OUT.json), be the very graph the sidecar was
written with (the SHA-256 of its bytes), come from the run's checkpoints as they are now (the SHA-256 of each
fold's best.pt: a retrained run's old export is refused), agree with the run on the input size and the
keypoints (and, when they are asked for, on folds and flip), and load in ONNX Runtime. Threads:
`train.threads` or every core (engine/device.py); the CUDA provider where ONNX Runtime has one and the device
is not forced to the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cattlepose.core.errors import UserError, first_line
from cattlepose.core.files import sha256_file, unreadable
from cattlepose.core.ui import Log
from cattlepose.engine import device as dev
from cattlepose.engine.export import INPUT_NAME, SIDECAR_FORMAT, export_line, sidecar_path
from cattlepose.runs.rundir import RunDir

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def read_sidecar(onnx_path: Path) -> dict[str, Any]:
    """OUT.json beside OUT.onnx, checked to be a cattlepose export's."""
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise UserError(
            f"{unreadable(path, 'sidecar')}: an exported model needs the JSON written beside it by "
            f"`cattlepose export RUN_DIR -o {onnx_path}`",
            path=path,
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"not a readable sidecar JSON ({first_line(e)}); export again", path=path) from None
    if not isinstance(info, dict) or not str(info.get("format", "")).startswith("cattlepose-onnx/"):
        raise UserError(f"not a cattlepose export's sidecar (format is not {SIDECAR_FORMAT})", path=path,
                        field="format")  # fmt: skip
    if info["format"] != SIDECAR_FORMAT:
        raise UserError(f"written by another cattlepose version ({info['format']}, this one reads "
                        f"{SIDECAR_FORMAT}: the fingerprints that tie a file to its graph and its run); export "
                        f"again: `{export_line(info, info.get('run', 'RUN_DIR'), onnx_path)}`", path=path,
                        field="format")  # fmt: skip
    for key in ("input_size", "keypoints", "flip", "folds", "graph_sha256", "checkpoints"):
        if key not in info:
            raise UserError("missing; export again", path=path, field=key)
    return info


def check_graph(info: dict[str, Any], onnx_path: Path) -> None:
    """The .onnx is the file its sidecar was written with: the SHA-256 of its bytes, as export computed it."""
    have, want = sha256_file(onnx_path), str(info["graph_sha256"])
    if have != want:
        raise UserError(
            f"not the graph its sidecar {sidecar_path(onnx_path)} was written with (SHA-256 {have[:12]}..., the "
            f"sidecar records {want[:12]}...): another export's file, or one changed or corrupt since; export "
            f"again, which writes both: `{export_line(info, info.get('run', 'RUN_DIR'), onnx_path)}`",
            path=onnx_path,
            field="graph_sha256",
        )


def check_against_run(
    info: dict[str, Any],
    onnx_path: Path,
    run: RunDir,
    folds: list[int] | None,
    flip: bool | None,
    log: Log | None = None,
) -> None:
    """The exported file predicts for this run: same input size and keypoints, folds and flip when asked, and
    made from its checkpoints as they are now."""
    path = sidecar_path(onnx_path)
    size = list(run.cfg.model.input_size)
    if list(info["input_size"]) != size:
        raise UserError(f"input size {info['input_size']} does not match the run's model.input_size {size} "
                        f"({run.path}); export this run again", path=path, field="input_size")  # fmt: skip
    names = list(run.schema.keypoints)
    if list(info["keypoints"]) != names:
        raise UserError(f"keypoints {info['keypoints']} do not match the run's schema {names} ({run.path}); "
                        "export this run again", path=path, field="keypoints")  # fmt: skip
    if folds is not None and list(info["folds"]) != list(folds):
        raise UserError(f"the file holds folds {info['folds']}, not --folds {folds}; drop --folds or export "
                        "those folds", path=path, field="folds")  # fmt: skip
    if flip is not None and bool(info["flip"]) != flip:
        was = "with" if info["flip"] else "without"
        raise UserError(f"the file was exported {was} flip; export again {'without' if was == 'with' else 'with'} "
                        "--no-flip, or predict to match", path=path, field="flip")  # fmt: skip
    again = export_line(info, run.path, onnx_path)
    absent = []
    for k, digest in info["checkpoints"].items():
        ckpt = run.checkpoint(int(k))
        if not ckpt.is_file():
            absent.append(str(ckpt))
        elif sha256_file(ckpt) != digest:
            raise UserError(f"exported from other weights than fold {k}'s {ckpt} holds now (the run was retrained, "
                            f"or the file belongs to another run); export again: `{again}`", path=path,
                            field="checkpoints")  # fmt: skip
    if absent and log is not None:  # a deployment may carry the run's config without its weights
        log.warn(f"{onnx_path} cannot be checked against the run's weights: {', '.join(absent)} absent")


def providers(device: str = "auto") -> list[str]:
    """ONNX Runtime's providers: CUDA first where it has it (and `device` allows), else the CPU."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device == "cuda" and CUDA not in have:
        raise UserError(f"--device cuda but ONNX Runtime has no CUDA provider (it has {', '.join(have)})",
                        field="--device")  # fmt: skip
    return [CUDA, CPU] if device != "cpu" and CUDA in have else [CPU]


class OnnxEnsemble:
    """An exported file in an ONNX Runtime session; calling it on (N, H, W, 3) uint8 crops gives coords
    (N, K, 2) in input-crop pixels and scores (N, K), as the PyTorch backend's `BatchFn` does. A graph with a
    fixed batch gets its crops in chunks of that size, the last one padded."""

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "auto"):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(unreadable(self.path, "exported model"), path=self.path)
        self.info = read_sidecar(self.path)
        check_graph(self.info, self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = dev.resolve_threads(threads)
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: on a small CPU the image decoding between batches needs those cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own types for a truncated or foreign file
            raise UserError(f"ONNX Runtime cannot load it: it is corrupt or not an ONNX model ({first_line(e)}); "
                            "export it again", path=self.path, field="model") from None  # fmt: skip
        inputs = self.session.get_inputs()
        if (
            len(inputs) != 1
            or inputs[0].name != INPUT_NAME
            or list(inputs[0].shape[1:3]) != list(self.info["input_size"])
        ):
            raise UserError(f"its graph input {[(i.name, i.shape) for i in inputs]} is not the sidecar's "
                            f"{INPUT_NAME} (N, {self.info['input_size']}, 3)", path=self.path,
                            field="input_size")  # fmt: skip
        first = inputs[0].shape[0]
        self.batch = first if isinstance(first, int) else None
        self.device = torch.device("cuda" if self.providers[0] == CUDA else "cpu")

    def run(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, K, 3) float32 x, y, score."""
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if self.batch is None:
            return self.session.run(None, {INPUT_NAME: crops})[0]
        out = []
        for s in range(0, len(crops), self.batch):
            chunk = crops[s : s + self.batch]
            n = len(chunk)
            if n < self.batch:
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *chunk.shape[1:]), np.uint8)])
            out.append(self.session.run(None, {INPUT_NAME: chunk})[0][:n])
        return np.concatenate(out)

    def __call__(self, crops: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = self.run(crops.numpy() if isinstance(crops, torch.Tensor) else crops).astype(np.float64)
        return res[..., :2], res[..., 2]
