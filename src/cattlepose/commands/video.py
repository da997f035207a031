"""`cattlepose video`: a keypoint run on videos, streamed: each video decoded in chunks of `video.chunk` frames
(data/video.py), the animals of a chunk found (a detector run, one fixed box, or the whole frame) and their
keypoints predicted in batches by the flip + fold ensemble (PyTorch or ONNX Runtime, `infer.predict_batches`
as predict does), each chunk's raw results saved in OUTDIR/.partial/; then identities over frames
(tracks/track.py), each track smoothed and its short gaps filled (tracks/smooth.py), and per video the files of
`OUTPUTS` written together, once, at the end.

A killed run leaves its finished chunks in OUTDIR/.partial/STEM-HASH/, where HASH names what decides the raw
results (the video file, the run's checkpoints or the exported file, the detector, the box, folds, flip,
backend, chunk size): the same command again continues from the first missing chunk; anything else starts
afresh. Tracking and smoothing settings are not in the hash: changing them reuses every chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cattlepose.commands import detector_source
from cattlepose.core.config import Config, apply_overrides, config_to_dict, parse_config
from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_path, check_output, sha256_file, staged, try_lock, unreadable, writing
from cattlepose.core.ui import Log
from cattlepose.core.yamlfile import load_yaml
from cattlepose.data.boxes import BoxSource
from cattlepose.data.folds import parse_fold_list
from cattlepose.data.formats.tracks_csv import write_dlc, write_summary, write_tidy
from cattlepose.data.records import ImageSource, Instance
from cattlepose.data.source import training_paths
from cattlepose.data.video import Chunk, VideoInfo, chunks, holding, probe
from cattlepose.engine import device as dev
from cattlepose.engine.infer import BatchFn, load_ensemble, predict_batches, torch_batch_fn
from cattlepose.report.video import pick_codec, write_labelled
from cattlepose.runs.rundir import BEST, RunDir
from cattlepose.tracks.sides import follow_pairs
from cattlepose.tracks.smooth import smooth_track
from cattlepose.tracks.track import FrameDetections, track, tracks_of

PARTIAL = ".partial"  # OUTDIR/.partial/STEM-HASH/chunkNNNNNN.npz: a video's finished chunks
# the files written for each video, by the video's file stem (the labelled video's suffix is its codec's)
OUTPUTS = {"tracks": "{stem}.tracks.csv", "summary": "{stem}.summary.csv", "dlc": "{stem}.dlc.csv",
           "labelled": "{stem}.labelled{suffix}"}  # fmt: skip
_FORMAT = 1  # bumped when what a chunk file holds changes: older chunks are then not reused


@dataclass
class _Backend:
    batch_fn: BatchFn
    input_size: tuple[int, int]
    batch_size: int
    device: Any
    models: int
    fingerprint: dict[str, Any]


def video_settings(cfg: Config, config: Path | None, overrides: list[str] | None) -> Config:
    """The run's config with the `video:` and `track:` sections of `config` and the `-s video.* / track.*`
    overrides applied. What decides the predictions is the run's: another key of `config` is accepted only where
    it agrees with the run's config (a training config can be given), and `-s` takes video.* and track.* only."""
    raw = config_to_dict(cfg)
    if config is not None:
        given = load_yaml(config, "config file") or {}
        if not isinstance(given, dict):
            raise UserError("a config must be a mapping of sections", path=config)
        own = parse_config({k: v for k, v in given.items() if k not in ("video", "track")}, source=config)
        differs = _first_difference(given, config_to_dict(own), raw)
        if differs is not None:  # a training config is welcome where it agrees with the run
            raise UserError(f"differs from the run's own config.yaml ({differs}); only the video: and track: "
                            "sections apply to `cattlepose video`, the run decides its predictions", path=config,
                            field=differs.split(":")[0])  # fmt: skip
        for section in ("video", "track"):
            if isinstance(given.get(section), dict):
                raw[section] = {**raw.get(section, {}), **given[section]}
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if not key.startswith(("video.", "track.")):
            raise UserError("only video.* and track.* keys can be set for `cattlepose video`", path=f"-s {item}",
                            field=key)  # fmt: skip
    raw = apply_overrides(raw, overrides or [])
    try:
        return parse_config(raw, source=config)
    except UserError as e:
        given_keys = {item.split("=", 1)[0].strip(): item for item in overrides or []}
        if e.field in given_keys:
            raise UserError(e.message, path=f"-s {given_keys[e.field]}", field=e.field) from None
        raise


def _first_difference(given: dict[str, Any], parsed: dict[str, Any], run: dict[str, Any]) -> str | None:
    """The first key a config file sets, outside video: and track:, to another value than the run has."""
    for section, values in given.items():
        if section in ("video", "track"):
            continue
        if not isinstance(values, dict):
            if parsed.get(section) != run.get(section):
                return f"{section}: {parsed.get(section)!r}, the run has {run.get(section)!r}"
            continue
        for key in values:
            mine, theirs = parsed.get(section, {}).get(key), run.get(section, {}).get(key)
            if mine != theirs:
                return f"{section}.{key}: {mine!r}, the run has {theirs!r}"
    return None


def parse_box(text: str) -> np.ndarray:
    """`x,y,w,h` in pixels -> the box; a UserError naming --box when it is not four numbers with w, h > 0."""
    try:
        box = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise UserError(f"'{text}' is not x,y,w,h (four numbers in pixels)", field="--box") from None
    if box.shape != (4,) or not np.isfinite(box).all():
        raise UserError(f"'{text}' is not x,y,w,h (four numbers in pixels)", field="--box")
    if box[2] <= 0 or box[3] <= 0:
        raise UserError(f"'{text}': width and height must be positive", field="--box")
    return box


def check_box(box: np.ndarray, info: VideoInfo) -> None:
    x, y, w, h = box
    if x < 0 or y < 0 or x + w > info.width or y + h > info.height:
        raise UserError(f"{x:g},{y:g},{w:g},{h:g} is not inside the frame ({info.width} x {info.height} pixels) of "
                        f"{info.path}", field="--box")  # fmt: skip


def output_names(outdir: Path, stem: str, suffix: str, labelled: bool) -> dict[str, Path]:
    return {key: outdir / name.format(stem=stem, suffix=suffix) for key, name in OUTPUTS.items()
            if labelled or key != "labelled"}  # fmt: skip


def run_video(
    run_dir: Path,
    videos: list[Path],
    outdir: Path,
    detector: Path | None = None,
    detector_onnx: Path | None = None,
    detector_folds: str | None = None,
    score_threshold: float | None = None,
    box: str | None = None,
    flip: bool = True,
    folds: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    backend: str = "torch",
    onnx: Path | None = None,
    max_animals: int | None = None,
    labelled: bool | None = None,
    max_gap: int | None = None,
    smooth: str | None = None,
    config: Path | None = None,
    overrides: list[str] | None = None,
    log: Log | None = None,
) -> list[dict[str, Any]]:
    """Every video through the run; returns what was written for each."""
    from cattlepose.commands.predict import check_backend

    log = log or Log(quiet=True)
    check_backend(backend, onnx)
    if onnx is not None and not onnx.is_file():
        raise UserError(unreadable(onnx, "exported model"), path=onnx, field="--onnx")
    if detector is not None and box is not None:
        raise UserError("give either a detector run or one fixed box, not both", field="--box")
    if detector is None:
        given = [flag for flag, v in (("--detector-onnx", detector_onnx), ("--detector-folds", detector_folds),
                                      ("--score-threshold", score_threshold)) if v is not None]  # fmt: skip
        if given:
            raise UserError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for the animals a detector "
                            "finds; add --detector DETECTOR_RUN", field=given[0])  # fmt: skip
    if detector_onnx is not None and not detector_onnx.is_file():
        raise UserError(unreadable(detector_onnx, "exported detector"), path=detector_onnx, field="--detector-onnx")
    fixed = parse_box(box) if box is not None else None
    run = RunDir.open(run_dir).require_task("keypoints", "KEYPOINT_RUN")
    cfg = video_settings(run.cfg, config, overrides)
    if max_animals is not None:
        if detector is None:
            raise UserError("counts the animals a detector finds; without --detector every frame is one animal",
                            field="--max-animals")  # fmt: skip
        cfg.track.max_animals = max_animals
    if labelled is not None:
        cfg.video.labelled = labelled
    for key, value, flag in (("max_gap", max_gap, "--max-gap"), ("smooth", smooth, "--smooth")):
        if value is not None:
            try:
                setattr(cfg.track, key, value)
            except ValueError as e:  # pydantic's validation on assignment
                first = e.errors()[0]["msg"] if hasattr(e, "errors") else str(e)
                raise UserError(f"{first} (got {value!r})", field=flag) from None
    if detector is None:  # one animal per frame: a fixed box or the whole frame
        cfg.track.max_animals = 1
    if not videos:
        raise UserError("give one or more video files", field="VIDEO")
    infos = [probe(v) for v in videos]  # every video checked before any work
    stems: dict[str, Path] = {}
    for info in infos:
        if info.path.stem in stems and stems[info.path.stem].resolve() != info.path.resolve():
            raise UserError(f"has the same name as {stems[info.path.stem]}: their outputs would be the same files; "
                            "rename one or run them apart", path=info.path)  # fmt: skip
        stems[info.path.stem] = info.path
        if fixed is not None:
            check_box(fixed, info)
        if not info.fps_known and cfg.track.smooth == "one_euro":  # its cutoffs are in Hz
            log.warn(f"{info.path}: the video holds no frame rate; the one_euro filter (and the times written) "
                     f"assume {info.fps:g} fps")  # fmt: skip
    infos = list({i.path.resolve(): i for i in infos}.values())
    fourcc, suffix = pick_codec(cfg.video.codec) if cfg.video.labelled else ("", "")
    if outdir.exists() and not outdir.is_dir():
        raise UserError("is a file; give a folder for the outputs", path=outdir)
    data = [("the run's training data (data.train)", p) for p in training_paths(run.cfg)]
    protect = [("the run", run.path), ("the --detector run", detector), ("the --onnx file", onnx),
               ("the --detector-onnx file", detector_onnx),
               *(("a video", i.path) for i in infos), *data]  # fmt: skip
    keep_out = [("the run", run.path), ("the --detector run", detector), *data]
    for info in infos:
        for path in output_names(outdir, info.path.stem, suffix, cfg.video.labelled).values():
            check_output(path, protect=protect, keep_out=keep_out)
    fold_list = parse_fold_list(folds, run.cfg.train.folds) if folds is not None else None
    if fold_list is None and backend == "onnx" and onnx is not None:  # the export's folds (the run may lack others)
        from cattlepose.engine.onnx_backend import read_sidecar

        fold_list = [int(k) for k in read_sidecar(onnx)["folds"]]
    run.model_folds(fold_list)  # a missing fold is named before the output folder is made
    boxes = None
    if detector is not None:  # loaded, and its categories checked against the run's, before any frame is read
        options = {"max_animals": cfg.track.max_animals, "score_threshold": score_threshold}
        det_flip = None if detector_onnx is not None else cfg.video.detector_flip  # an export has its own
        boxes = detector_source.load(detector, run, overrides=options, device=device, flip=det_flip,
                                     onnx=detector_onnx, log=log, folds=detector_folds)  # fmt: skip
    det_id = _detector_id(detector, detector_onnx, detector_folds, score_threshold, cfg)
    partial_root = outdir / PARTIAL
    partial_root.mkdir(parents=True, exist_ok=True)
    results = []
    with try_lock(partial_root / ".lock") as mine:
        if not mine:
            raise UserError("another `cattlepose video` is writing to this folder; wait for it or choose another",
                            path=outdir)  # fmt: skip
        total = sum(i.frames for i in infos)
        with _backend(run, backend, onnx, fold_list, flip, cfg.video.split_pairs, device, batch_size, total, log) as be:
            for info in infos:
                results.append(_one_video(run, cfg, info, outdir, be, boxes, fixed, det_id, fourcc, suffix, log))
        for r in results:
            shutil.rmtree(r.pop("partial"), ignore_errors=True)
    with contextlib.suppress(OSError):
        (partial_root / ".lock").unlink()
        partial_root.rmdir()  # only when no other video's chunks are kept there
    return results


def _detector_id(detector: Path | None, onnx: Path | None, folds: str | None, score_threshold: float | None,
                 cfg: Config) -> dict[str, Any] | None:  # fmt: skip
    """What decides the detector's boxes, for the chunks' fingerprint."""
    if detector is None:
        return None
    return {"path": str(detector.resolve()),
            "checkpoints": sorted(sha256_file(p) for p in sorted(detector.glob("fold*/best.pt"))),
            "onnx": None if onnx is None else sha256_file(onnx), "folds": folds, "score_threshold": score_threshold,
            "max_animals": cfg.track.max_animals, "flip": cfg.video.detector_flip}  # fmt: skip


@contextlib.contextmanager
def _backend(
    run: RunDir,
    backend: str,
    onnx: Path | None,
    folds: list[int] | None,
    flip: bool,
    split: float,
    device: str,
    batch_size: int | None,
    frames: int,
    log: Log,
) -> Iterator[_Backend]:
    """The keypoint network of either backend as a `BatchFn`, and what identifies its predictions."""
    chosen = run.model_folds(folds)
    checkpoints = {str(k): sha256_file(run.checkpoint(k, BEST)) for k in chosen}
    if backend == "torch":
        ens = load_ensemble(run, folds, device=device, crops=frames, flip=flip, log=log)
        size = batch_size or dev.resolve_infer_batch(ens.cfg.infer.batch_size, ens.device)
        fn = torch_batch_fn(ens, flip, size, log, split_pairs=split)
        yield _Backend(fn, run.cfg.model.input_size, size, ens.device, len(ens.models),
                       {"backend": "torch", "checkpoints": checkpoints, "flip": flip,
                        "split_pairs": split})  # fmt: skip
        return
    from cattlepose.engine.export import export_run
    from cattlepose.engine.onnx_backend import OnnxEnsemble, check_against_run, read_sidecar

    with tempfile.TemporaryDirectory(prefix="cattlepose-onnx-") as scratch:
        if onnx is None:
            onnx = Path(scratch) / "model.onnx"
            export_run(run, onnx, folds, flip=flip, split_pairs=split)
        elif onnx.is_file():
            info = read_sidecar(onnx)
            check_against_run(info, onnx, run, folds, flip, log)
            made = float(info.get("split_pairs", 0.0))  # exports older than the key never split
            if made != split:  # the graph decides; said, so a gait without strides is not a mystery
                log.warn(f"{onnx} was exported with --split-pairs {made:g}, not video.split_pairs {split:g}: it "
                         f"decides (export again with `--split-pairs {split:g}` for this setting)")  # fmt: skip
                split = made
        model = OnnxEnsemble(onnx, threads=run.cfg.train.threads, device=device)
        size = batch_size or model.batch or dev.resolve_infer_batch(run.cfg.infer.batch_size, model.device)
        graph = sha256_file(onnx) if onnx.parent != Path(scratch) else None
        yield _Backend(model, run.cfg.model.input_size, size, model.device, len(model.info["folds"]),
                       {"backend": "onnx", "graph": graph, "checkpoints": checkpoints, "flip": flip,
                        "split_pairs": split})  # fmt: skip


def _fingerprint(info: VideoInfo, run: RunDir, be: _Backend, det: dict[str, Any] | None, fixed: np.ndarray | None,
                 cfg: Config) -> str:  # fmt: skip
    """What decides a video's raw results, hashed: chunks are reused only under the same."""
    stat = info.path.stat()
    doc = {"format": _FORMAT, "video": str(info.path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns,
           "run": str(run.path.resolve()), "model": be.fingerprint, "detector": det,
           "box": None if fixed is None else fixed.tolist(), "chunk": cfg.video.chunk}  # fmt: skip
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _chunk_path(folder: Path, index: int) -> Path:
    return folder / f"chunk{index:06d}.npz"


def _one_video(run: RunDir, cfg: Config, info: VideoInfo, outdir: Path, be: _Backend, boxes: BoxSource | None,
               fixed: np.ndarray | None, det_id: dict[str, Any] | None, fourcc: str, suffix: str, log: Log
               ) -> dict[str, Any]:  # fmt: skip
    stem = info.path.stem
    folder = outdir / PARTIAL / f"{stem}-{_fingerprint(info, run, be, det_id, fixed, cfg)}"
    folder.mkdir(parents=True, exist_ok=True)
    done = 0
    while _chunk_path(folder, done).is_file():
        done += 1
    finished = folder / "complete"  # every chunk is there
    k = run.schema.num_keypoints
    start = time.perf_counter()
    predicted = 0
    resumed = done * cfg.video.chunk  # at most: the last chunk may be short (below, once the chunks are read)
    if resumed:
        log.info(f"{info.path}: continuing after frame {resumed} (the finished chunks of an earlier run, in {folder})")
    if not finished.is_file():
        with log.task(stem, total=info.frames) as bar:
            bar.update(resumed)
            for ch in chunks(info.path, cfg.video.chunk, first=done, total=info.frames):
                result = _predict_chunk(ch, info, be, boxes, fixed, k)
                with atomic_path(_chunk_path(folder, ch.index)) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **result)
                predicted += ch.stop - ch.start
                rate = predicted / max(time.perf_counter() - start, 1e-9)
                bar.update(ch.stop - ch.start, status=f"{rate:.1f} frames/s")
        with atomic_path(finished) as tmp:
            tmp.write_text("")
    seconds = time.perf_counter() - start
    frames, n_frames, missing = _load_chunks(folder, k)
    resumed = min(resumed, n_frames)
    pairs = run.schema.pairs if cfg.track.follow_pairs else []
    ids = track(frames, cfg.track, run.schema.sigmas, pairs)
    tracks = [
        smooth_track(first, follow_pairs(raw, pairs, cfg.track.max_gap), cfg.track, info.fps, track=tid)
        for tid, (first, raw) in tracks_of(frames, ids).items()
    ]
    names = output_names(outdir, stem, suffix, cfg.video.labelled)
    labelled_tmp = folder / f"labelled{suffix}"
    written = None
    if cfg.video.labelled:
        with writing(names["labelled"]):
            written = write_labelled(labelled_tmp, info, tracks, run.schema.skeleton, fourcc, cfg.video.chunk,
                                     cfg.video.draw_min_score, log)  # fmt: skip
    keys = list(names)
    with staged(*names.values()) as tmps:
        tmp = dict(zip(keys, tmps, strict=True))
        with writing(names["tracks"]):
            write_tidy(tmp["tracks"], stem, info.fps, tracks, run.schema.keypoints)
        with writing(names["summary"]):
            write_summary(tmp["summary"], stem, info.fps, tracks)
        with writing(names["dlc"]):
            write_dlc(tmp["dlc"], f"cattlepose_{run.name}", n_frames, tracks, run.schema.keypoints)
        if cfg.video.labelled:
            os.replace(labelled_tmp, tmp["labelled"])
    return {
        "video": info.path,
        "frames": n_frames,
        "missing": missing,
        "tracks": len(tracks),
        "resumed_frames": resumed,
        "predicted_frames": predicted,
        "seconds": seconds,
        "frames_per_s": predicted / max(seconds, 1e-9),
        "labelled_frames": written,
        "outputs": names,
        "models": be.models,
        "partial": folder,
    }


def _predict_chunk(ch: Chunk, info: VideoInfo, be: _Backend, boxes: BoxSource | None, fixed: np.ndarray | None,
                   k: int) -> dict[str, np.ndarray]:  # fmt: skip
    """The chunk's animals and their keypoints, as arrays: frame, keypoints (n, K, 3), box, box score."""
    order = sorted(ch.frames)
    with holding(info.path, ch.frames):
        if boxes is not None:
            sources = [ImageSource(info.path, f"{info.path.stem}#{f}", info.width, info.height, f) for f in order]
            instances = list(boxes(sources))
        else:
            instances = [Instance(info.path, fixed, f"{info.path.stem}#{f}", info.width, info.height, frame=f)
                         for f in order]  # fmt: skip
        preds = predict_batches(instances, be.input_size, k, be.batch_fn, be.batch_size, be.device,
                                workers=0) if instances else None  # fmt: skip
    n = len(instances)
    whole = np.array([0.0, 0.0, info.width, info.height])
    return {
        "frame": np.array([int(i.frame) for i in instances], dtype=np.int64),
        "keypoints": preds.keypoints() if preds is not None else np.zeros((0, k, 3)),
        "box": np.array([i.bbox if i.bbox is not None else whole for i in instances]).reshape(n, 4),
        "score": np.array([1.0 if i.score is None else float(i.score) for i in instances]),
        "missing": np.array(ch.missing, dtype=np.int64),
        "span": np.array([ch.start, ch.stop], dtype=np.int64),
    }


def _load_chunks(folder: Path, k: int) -> tuple[list[FrameDetections], int, int]:
    """Every chunk of a video read back: a FrameDetections per frame (empty where nothing was found or the frame
    did not decode), the frames in the video, the frames that did not decode."""
    parts = []
    index = 0
    while _chunk_path(folder, index).is_file():
        with np.load(_chunk_path(folder, index)) as z:
            parts.append({key: z[key] for key in z.files})
        index += 1
    n_frames = int(parts[-1]["span"][1]) if parts else 0
    frames = [FrameDetections.empty(k) for _ in range(n_frames)]
    for p in parts:
        for f in np.unique(p["frame"]):
            sel = p["frame"] == f
            frames[int(f)] = FrameDetections(p["keypoints"][sel], p["box"][sel], p["score"][sel])
    return frames, n_frames, int(sum(len(p["missing"]) for p in parts))
