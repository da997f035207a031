"""The files of `cattlepose gait`: the tidy keypoint-track CSV it reads, the stride and summary tables it writes.

The tidy CSV (written by `cattlepose video`): one row per frame, track and keypoint, columns

    video, frame, time, track, keypoint, x, y, score[, kind][, interpolated]

`kind` is `raw` or `smoothed` (both may be present: the smoothed rows are read unless `kind` says otherwise);
`interpolated` is a flag the gait does not need. An empty x, y or score is a keypoint not seen. Tracks of
several videos in one file are told apart as `VIDEO:TRACK`.

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
from cattlepose.tracks.gait import STRIDE_COLUMNS, SUMMARY_COLUMNS, KeypointTrack, TrackGait

TIDY_COLUMNS = ("video", "frame", "time", "track", "keypoint", "x", "y", "score")
KINDS = ("raw", "smoothed")
STRIDES, SUMMARY = "strides.csv", "summary.csv"


def read_tidy(path: str | Path, kind: str | None = None) -> tuple[list[str], list[KeypointTrack], float | None]:
    """(keypoint names in first-seen order, one track per video and track id, the frame rate the time column
    implies or None). `kind`: which rows to read when the file has a `kind` column (default: smoothed if any)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(unreadable(path, "the tracks file"), path=path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in TIDY_COLUMNS if c not in header]
            if missing:
                raise UserError(f"not a tidy keypoint-track CSV: no column {', '.join(missing)} (the columns are "
                                f"{', '.join(TIDY_COLUMNS)}, kind, interpolated)", path=path)  # fmt: skip
            rows = list(reader)
    except UnicodeDecodeError:
        raise UserError("not a text CSV file (not UTF-8)", path=path) from None
    except csv.Error as e:
        raise UserError(f"not a readable CSV file ({e})", path=path) from None
    if "kind" in header:
        present = sorted({r["kind"] for r in rows})
        bad = [k for k in present if k not in KINDS]
        if bad:
            raise UserError(f"unknown kind {bad[0]!r} (known: {', '.join(KINDS)})", path=path, field="kind")
        chosen = kind or ("smoothed" if "smoothed" in present else "raw")
        if chosen not in present:
            raise UserError(f"no {chosen} rows (the file holds {', '.join(present) or 'none'})", path=path,
                            field="kind")  # fmt: skip
        rows = [r for r in rows if r["kind"] == chosen]
    elif kind not in (None, "raw"):
        raise UserError(f"no kind column, so no {kind} rows", path=path, field="kind")
    if not rows:
        raise UserError("no keypoint rows", path=path)
    names: dict[str, int] = {}
    per_track: dict[tuple[str, str], list[tuple[int, float, int, float, float, float]]] = {}
    for line, r in enumerate(rows, start=2):
        k = names.setdefault(r["keypoint"], len(names))
        frame = _number(r, "frame", path, line, integer=True)
        values = (_number(r, "time", path, line), _number(r, "x", path, line), _number(r, "y", path, line),
                  _number(r, "score", path, line))  # fmt: skip
        per_track.setdefault((r["video"], r["track"]), []).append((int(frame), values[0], k, *values[1:]))
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
        tracks.append(KeypointTrack(f"{video}:{track}" if len(videos) > 1 else track, frames, kp))
    fps = float(np.median(steps)) if steps else None
    return list(names), tracks, fps


def _number(row: dict[str, str], key: str, path: Path, line: int, integer: bool = False) -> float:
    text = (row.get(key) or "").strip()
    if text == "" and not integer:
        return float("nan")
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise UserError(f"line {line}: {key} is {text!r}, not a number", path=path, field=key) from None
    if not integer and not np.isfinite(value):
        raise UserError(f"line {line}: {key} is {text!r}", path=path, field=key)
    return float(value)


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
