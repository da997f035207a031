"""`cattlepose gait`: gait signals of every track of a tidy keypoint-track CSV (or of a synth-video truth file):
OUT/strides.csv, OUT/summary.csv and a figure per track, OUT/gait_<track>.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import check_output
from cattlepose.data.synth_video import FORMAT, read_truth
from cattlepose.report.figures import save
from cattlepose.report.gait import gait_figure
from cattlepose.tracks.gait import KeypointTrack, gait_table
from cattlepose.tracks.gait_io import STRIDES, SUMMARY, read_tidy, write_tables


def truth_tracks(path: Path) -> tuple[list[str], list[KeypointTrack], float]:
    """A synth-video truth.json as tracks: keypoints inside the frame scored 1, outside it unseen."""
    truth = read_truth(path)
    tracks = []
    for t in truth.tracks.values():
        kp = t.keypoints.copy()
        kp[..., 2] = (kp[..., 2] > 0).astype(np.float64)
        tracks.append(KeypointTrack(str(t.track), t.frames, kp))
    return list(truth.keypoints), tracks, truth.fps


def _is_truth(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        return FORMAT.encode() in f.read(200)


def run_gait(
    tracks_file: Path, out: Path, fps: float | None = None, kind: str | None = None, min_score: float = 0.3,
    plots: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Read the tracks, compute every track's gait, write the tables (and figures); return the summary rows."""
    tracks_file, out = Path(tracks_file), Path(out)
    if out.exists() and not out.is_dir():
        raise UserError("the output must be a folder", path=out)
    if not 0.0 <= min_score <= 1.0:
        raise UserError(f"min score must be between 0 and 1, got {min_score}", field="--min-score")
    for name in (STRIDES, SUMMARY):
        check_output(out / name, protect=[("the tracks file", tracks_file)])
    if tracks_file.is_file() and _is_truth(tracks_file):
        names, tracks, file_fps = truth_tracks(tracks_file)
    else:
        names, tracks, file_fps = read_tidy(tracks_file, kind)
    fps = fps if fps is not None else file_fps
    if fps is None:
        raise UserError("no frame rate: give --fps (the file's time column does not give one)", path=tracks_file)
    results = gait_table(tracks, names, fps, min_score)
    out.mkdir(parents=True, exist_ok=True)
    strides, summary = write_tables(out, results)
    figures = []
    if plots:
        for g in results:
            figures.append(save(gait_figure(g, fps), out / f"gait_{_safe(g.track)}.png"))
    return {"strides": strides, "summary": summary, "figures": figures, "fps": fps,
            "tracks": [g.summary for g in results]}  # fmt: skip


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "track"
