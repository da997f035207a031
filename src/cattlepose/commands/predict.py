"""`cattlepose predict`: a run's fold + flip ensemble on new images, written as a submission file.

Command glue only: the input becomes instances, the animals to predict (`data/boxes.py`: the boxes of a COCO
file or an ADK folder, or a box source over a folder of images, each image whole by default), a backend
predicts them through `infer.predict_batches` (PyTorch: `engine/infer.py`; ONNX Runtime: `onnx_backend.py` on
a file `export.py` wrote, or on one exported on the fly), and `submission.py` writes the chosen format.
`--detector` makes a detector run the box source (`detector_source.py`): whole photographs, any number of
animals each, an image with none an empty result; detection and keypoints are timed apart.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cattlepose.commands import detector_source
from cattlepose.core.errors import UserError
from cattlepose.core.files import check_output, unreadable
from cattlepose.core.ui import Log
from cattlepose.data.boxes import BoxSource, given_boxes, holds_boxes, whole_image
from cattlepose.data.folds import parse_fold_list
from cattlepose.data.formats import folder
from cattlepose.data.formats.submission import check_format, check_writable, write_predictions
from cattlepose.data.images import IMAGE_SUFFIXES
from cattlepose.data.records import Instance
from cattlepose.data.source import training_paths
from cattlepose.engine import device as dev
from cattlepose.engine.infer import Predictions, load_ensemble, predict_batches, predict_samples
from cattlepose.runs.rundir import RunDir

BACKENDS = ("torch", "onnx")


def prediction_inputs(
    input: Path, images: Path | None, num_keypoints: int, boxes: BoxSource | None = None
) -> tuple[list[Instance], list[str], int]:
    """The animals to predict: each box of a COCO file (ground truth or detections) or of an ADK folder, or
    what `boxes` finds in each image of a folder (by default the whole image is the animal); the entries of
    a folder left out, named (`folder.scan`); and the number of images (those where `boxes` found no animal
    included)."""
    if not input.exists():
        raise UserError(unreadable(input, "input"), path=input)
    if not holds_boxes(input):
        sources, skipped = folder.scan(input)
        return (boxes or whole_image)(sources), skipped, len(sources)
    if boxes is not None:
        raise UserError("holds boxes already; give a folder of images to find the animals in", path=input)
    instances = given_boxes(input, num_keypoints, images)
    return instances, [], len({(i.image, i.frame) for i in instances})


def check_backend(backend: str, onnx: Path | None) -> None:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}", field="--backend")
    if onnx is not None and backend != "onnx":
        raise UserError("an exported file is run by ONNX Runtime: add --backend onnx", field="--onnx")


def run_predict(
    run_dir: Path,
    input: Path,
    output: Path,
    fmt: str = "csv",
    template: Path | None = None,
    flip: bool | None = True,
    folds: str | None = None,
    images: Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    log: Log | None = None,
    backend: str = "torch",
    onnx: Path | None = None,
    boxes: BoxSource | None = None,
    detector: Path | None = None,
    detector_onnx: Path | None = None,
    detector_folds: str | None = None,
    detect_options: dict[str, Any] | None = None,
    categories: list[str] | None = None,
    check_categories: bool = True,
) -> dict[str, Any]:
    """`flip` None: flip on, or as the exported file has it (`--onnx`). `boxes`: what finds the animals in a
    folder of images; each image whole when None. `detector`: a detector run to find them with
    (`detector_source.py`: `detector_onnx` its exported file, `detect_options` overriding its `DetectOptions`,
    `categories` the ones kept, `check_categories` against the keypoint run's); it takes a folder of images,
    and refuses an input that holds boxes already (the given boxes would be ignored)."""
    log = log or Log(quiet=True)
    check_format(fmt)
    check_backend(backend, onnx)
    run = RunDir.open(run_dir, task="keypoints")  # a detector run is named before anything is read of it
    if detector is None:
        given = [flag for flag, v in (("--detector-onnx", detector_onnx), ("--detector-folds", detector_folds),
                                      ("--category", categories)) if v]  # fmt: skip
        given += [detector_source.OPTIONS[k][0] for k, v in (detect_options or {}).items()
                  if v is not None and k in detector_source.OPTIONS]  # fmt: skip
        if given:
            raise UserError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for the animals a detector "
                            "finds; add --detector DETECTOR_RUN", field=given[0])  # fmt: skip
    else:
        _check_detector_input(detector, input, fmt, boxes, detect_options or {})
    sidecar = None
    if onnx is not None:
        from cattlepose.engine.export import sidecar_path

        sidecar = sidecar_path(onnx)
    data = [("the run's training data (data.train)", p) for p in training_paths(run.cfg)]
    protect = [("the --template", template), ("the input", input), ("--images", images), ("the run", run.path),
               ("the --onnx file", onnx), ("the --onnx sidecar", sidecar), ("the --detector run", detector),
               ("the --detector-onnx file", detector_onnx), *data]  # fmt: skip
    folders = [("the input", input), ("--images", images), *data]  # a file written there joins the data
    check_output(output, protect=protect, keep_out=folders)  # before the work
    found = None
    if detector is not None:  # loaded, and its categories checked, before any image is read
        found = boxes = detector_source.load(
            detector,
            run,
            categories,
            check_categories,
            detect_options,
            device,
            # an export has its own mirror pass (`export --no-flip` halves detection); --no-flip asks for none
            None if detector_onnx is not None and flip is None else flip is not False,
            detector_onnx,
            log,
            folds=detector_folds,
        )
    instances, skipped, n_images = prediction_inputs(input, images, run.schema.num_keypoints, boxes)
    if skipped:
        log.warn(f"{input}: {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} not predicted (images are "
                 f"{', '.join(sorted(IMAGE_SUFFIXES))}): {'; '.join(skipped)}")  # fmt: skip
    check_writable(fmt, instances)  # a format that cannot hold them is named before the keypoints
    fold_list = parse_fold_list(folds, run.cfg.train.folds) if folds is not None else None
    if backend == "torch":
        flip = True if flip is None else flip
        ens = load_ensemble(run, fold_list, device=device, crops=len(instances), flip=flip, log=log)
        preds = predict_samples(ens, instances, flip=flip, batch_size=batch_size, workers=workers, log=log)
        models = len(ens.models)
    else:
        preds, models = _predict_onnx(run, instances, onnx, fold_list, flip, device, batch_size, workers, log)
    detect_seconds = found.seconds if found is not None else 0.0
    seconds = detect_seconds + preds.seconds  # each backend's own loop: loading and export time not counted
    latency = seconds / max(1, n_images)
    write_predictions(fmt, output, preds.poses(), run.schema, template=template, latency=latency)
    summary = {
        "images": n_images,
        "animals": len(instances),
        "images_without_animals": n_images - len({(i.image, i.frame) for i in instances}),
        "skipped": skipped,
        "seconds": seconds,
        "images_per_s": n_images / max(seconds, 1e-9),
        "latency_ms": 1000 * latency,
        "models": models,
        "backend": backend,
        "keypoint_seconds": preds.seconds,
        "keypoint_images_per_s": n_images / max(preds.seconds, 1e-9),
    }
    if found is not None:
        summary.update(detect_seconds=detect_seconds, detect_images_per_s=n_images / max(detect_seconds, 1e-9),
                       other_categories=found.dropped)  # fmt: skip
    return summary


def _check_detector_input(
    detector: Path, input: Path, fmt: str, boxes: BoxSource | None, options: dict[str, Any]
) -> None:
    """What `--detector` cannot work with, named before the detector is loaded: a keypoint run given as the
    detector, an input that holds boxes already, and the wide CSV while a detector may find several animals."""
    RunDir.config_of(detector, task="detect", flag="--detector")
    detector_source.check_options(options)
    if boxes is not None:
        raise ValueError("a detector and another box source at once")
    if input.exists() and holds_boxes(input):
        raise UserError("holds boxes already (a COCO file or an ADK folder), which --detector would ignore: give "
                        "the folder of its images to detect the animals in, or leave out --detector to predict in "
                        "the given boxes", path=input, field="--detector")  # fmt: skip
    if fmt == "csv" and options.get("max_animals") != 1:
        raise UserError("the wide CSV holds one animal per image, and a detector can find several in a photograph: "
                        "write --format long-csv, coco or adk-json, or keep the surest animal with --max-animals 1",
                        field="--format")  # fmt: skip


def _predict_onnx(
    run: RunDir,
    instances: list[Instance],
    onnx: Path | None,
    folds: list[int] | None,
    flip: bool | None,
    device: str,
    batch_size: int | None,
    workers: int | None,
    log: Log,
) -> tuple[Predictions, int]:
    """The given exported file (checked against the run), or the run exported to a temporary file."""
    from cattlepose.engine.export import export_run
    from cattlepose.engine.onnx_backend import OnnxEnsemble, check_against_run, read_sidecar

    with tempfile.TemporaryDirectory(prefix="cattlepose-onnx-") as scratch:
        if onnx is None:  # a missing fold is named by the export, before it starts
            onnx = Path(scratch) / "model.onnx"
            export_run(run, onnx, folds, flip=True if flip is None else flip)
        elif onnx.is_file():  # the sidecar against the run first: it names what differs
            info = read_sidecar(onnx)
            check_against_run(info, onnx, run, folds, flip, log)
            if info.get("split_pairs"):
                log.warn(f"{onnx} was exported with --split-pairs {info['split_pairs']:g}, for video: on photographs "
                         "a pair split without frames to follow it names the legs at random, which costs OKS AP "
                         "(docs/BENCHMARKS.md); export without it for predict")  # fmt: skip
        model = OnnxEnsemble(onnx, threads=run.cfg.train.threads, device=device)
        batch = batch_size or model.batch or dev.resolve_infer_batch(run.cfg.infer.batch_size, model.device)
        preds = predict_batches(instances, run.cfg.model.input_size, run.schema.num_keypoints, model, batch,
                                model.device, workers, log)  # fmt: skip
        return preds, len(model.info["folds"])
