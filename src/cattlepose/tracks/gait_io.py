"""The files of `cattlepose gait`: the tidy keypoint-track CSV it reads, the stride and summary tables it writes.

The tidy CSV is written and read by `data/formats/tracks_csv.py` (`cattlepose video`'s output): the smoothed
values (x, y, score) are used unless `kind` asks for the raw ones (x_raw, y_raw, score_raw); `interpolated` is
a flag the gait does not need. An empty x, y or score is a keypoint not seen. Tracks of several videos in one
file are told apart as `VIDEO:TRACK`.

The tables (`write_tables`): strides.csv (a row per stride of each hoof, `gait.STRIDE_COLUMNS`) and
summary.csv (a row per track, `gait.SUMMARY_COLUMNS`); numbers with up to 5 significant digits, an empty cell
where a signal could not be measured. Both are written together or neither.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import staged, unreadable, writing
from cattlepose.data.formats import tracks_csv
from cattlepose.tracks.gait import STRIDE_COLUMNS, SUMMARY_COLUMNS, KeypointTrack, TrackGait

KINDS = ("raw", "smoothed")
STRIDES, SUMMARY = "strides.csv", "summary.csv"


def read_tidy(path: str | Path, kind: str | None = None) -> tuple[list[str], list[KeypointTrack], float | None]:
    """(keypoint names in first-seen order, one track per video and track id, the frame rate the time column
    implies or None), from the tidy CSV of `cattlepose video` (read by its one reader, `tracks_csv.read_tidy`).
    `kind`: the smoothed values (x, y, score; the default) or the raw ones (x_raw, y_raw, score_raw)."""
    path = Path(path)
    if kind not in (None, *KINDS):
        raise UserError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})", field="--kind")
    if not path.is_file():
        raise UserError(unreadable(path, "the tracks file"), path=path)
    rows = tracks_csv.read_tidy(path)
    if not rows:
        raise UserError("no keypoint rows", path=path)
    cols = ("x_raw", "y_raw", "score_raw") if kind == "raw" else ("x", "y", "score")
    nan = float("nan")
    names: dict[str, int] = {}
    per_track: dict[tuple[str, int], list[tuple[int, float, int, float, float, float]]] = {}
    for r in rows:
        k = names.setdefault(str(r["keypoint"]), len(names))
        x, y, score = (nan if r[c] is None else float(r[c]) for c in cols)  # type: ignore[arg-type]
        per_track.setdefault((str(r["video"]), int(r["track"])), []).append(  # type: ignore[call-overload]
            (int(r["frame"]), float(r["time"]), k, x, y, score))  # type: ignore[arg-type]  # fmt: skip
    videos = {v for v, _ in per_track}
    tracks = []
    steps = []
    for (video, track), items in per_track.items():
        frames = np.array(sorted({i[0] for i in items}), np.int64)
        where = {f: j for j, f in enumerate(frames)}
        kp = np.full((len(frames), len(names), 3), np.nan)
        times = np.full(len(frames), np.nan)
        for frame, t, k, x, y, score in items:
            kp[where[frame], k] = (x, y, score)
            times[where[frame]] = t
        ok = np.isfinite(times)
        if ok.sum() >= 2:
            df, dt = np.diff(frames[ok]), np.diff(times[ok])
            steps += list(df[dt > 0] / dt[dt > 0])
        tracks.append(KeypointTrack(f"{video}:{track}" if len(videos) > 1 else str(track), frames, kp))
    fps = float(np.median(steps)) if steps else None
    return list(names), tracks, fps


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.5g}"
    return str(v)


def _table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r[c]) for c in columns])
    return buf.getvalue()


def write_tables(out: Path, results: Sequence[TrackGait]) -> tuple[Path, Path]:
    """OUT/strides.csv and OUT/summary.csv, renamed into place together."""
    strides, summary = out / STRIDES, out / SUMMARY
    with staged(strides, summary) as (tmp_strides, tmp_summary):
        for tmp, final, text in (
            (tmp_strides, strides, _table(STRIDE_COLUMNS, [r for g in results for r in g.strides])),
            (tmp_summary, summary, _table(SUMMARY_COLUMNS, [g.summary for g in results])),
        ):
            with writing(final), open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(text)
    return strides, summary


def read_table(path: str | Path) -> list[dict[str, str]]:
    """The rows of a strides.csv or summary.csv (strings, as written)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
