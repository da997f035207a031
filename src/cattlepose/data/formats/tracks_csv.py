"""What `cattlepose video` writes for each video, beside the labelled video: the one writer (and reader) of each.

- the tidy CSV (`write_tidy`, `read_tidy`): a row per video, frame, track and keypoint: `video, frame, time,
  track, keypoint, x, y, score` (smoothed), `x_raw, y_raw, score_raw` (as predicted; empty where the frame
  was filled in) and `interpolated` (1: the animal was not detected in that frame, its position filled in
  from the frames around it). Frames a track spans but that were not filled (a gap longer than
  `track.max_gap`) have no rows.
- the summary CSV (`write_summary`): a row per track: first and last frame and time, frames spanned, frames
  detected, frames interpolated, mean keypoint score, distance travelled by the mean of its keypoints (pixels,
  smoothed path), mean speed (pixels per second).
- the DeepLabCut CSV (`write_dlc`): DeepLabCut's multi-animal table as its `to_csv` writes it: four header
  rows `scorer`, `individuals`, `bodyparts`, `coords` (x, y, likelihood per keypoint per individual), then a
  row per frame of the video indexed by the frame number, empty cells where an individual is absent. Values
  are the smoothed ones (DeepLabCut's `_filtered` file), likelihood the keypoint score.
  `pandas.read_csv(path, header=[0, 1, 2, 3], index_col=0)` reads it as DeepLabCut users do.

The writers write the path they are given: the command gives each a temporary name of `core.files.staged`, so a
video's files appear together or not at all.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError

TIDY_COLUMNS = ("video", "frame", "time", "track", "keypoint", "x", "y", "score", "x_raw", "y_raw", "score_raw",
                "interpolated")  # fmt: skip
SUMMARY_COLUMNS = ("video", "track", "first_frame", "last_frame", "first_time", "last_time", "frames", "detected",
                   "interpolated", "mean_score", "distance_px", "speed_px_per_s")  # fmt: skip


@dataclass
class VideoTrack:
    """One animal of a video over frames first .. first + T - 1: raw (T, K, 3) x, y, score as predicted (NaN
    rows where not detected), smoothed (T, K, 3) (NaN where not filled in), interpolated (T,) bool."""

    track: int
    first: int
    raw: np.ndarray
    smoothed: np.ndarray
    interpolated: np.ndarray

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.first, self.first + self.raw.shape[0])


def _num(v: float, digits: int = 3) -> str:
    return "" if not np.isfinite(v) else f"{v:.{digits}f}"


def write_tidy(path: Path, video: str, fps: float, tracks: Sequence[VideoTrack], keypoints: Sequence[str]) -> None:
    """The tidy CSV (rows by frame, then track, then keypoint), written as it is made: a 10-minute video has a
    million rows, which held as strings would be the largest thing in memory."""
    at: dict[int, list[tuple[int, int]]] = {}  # frame -> (position in `tracks`, row of that track), by track id
    for n in sorted(range(len(tracks)), key=lambda n: tracks[n].track):
        tr = tracks[n]
        for t in np.flatnonzero(~np.isnan(tr.smoothed[:, :, 0]).all(axis=1)):
            at.setdefault(int(tr.first + t), []).append((n, int(t)))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TIDY_COLUMNS)
        for frame in sorted(at):
            for n, t in at[frame]:
                tr = tracks[n]
                for k, name in enumerate(keypoints):
                    s, r = tr.smoothed[t, k], tr.raw[t, k]
                    w.writerow([video, str(frame), _num(frame / fps, 4), str(tr.track), name, _num(s[0]),
                                _num(s[1]), _num(s[2], 4), _num(r[0]), _num(r[1]), _num(r[2], 4),
                                str(int(tr.interpolated[t]))])  # fmt: skip


def read_tidy(path: Path) -> list[dict[str, str | float | int | None]]:
    """The tidy CSV's rows, numbers as numbers (an empty value as None); a UserError naming the file, the line
    and the column of a value that is not a number."""
    ints, floats = ("frame", "track"), ("time", "x", "y", "score", "x_raw", "y_raw", "score_raw")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in TIDY_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"not a cattlepose tracks CSV: no column {', '.join(missing)} (the columns are "
                                f"{', '.join(TIDY_COLUMNS)})", path=path)  # fmt: skip
            out = []
            for n, row in enumerate(reader, start=2):
                item: dict[str, str | float | int | None] = {"video": row["video"], "keypoint": row["keypoint"]}
                for c in (*ints, *floats):
                    text = (row[c] or "").strip()
                    try:
                        item[c] = int(text) if c in ints else (float(text) if text else None)
                    except ValueError:
                        raise UserError(f"line {n}: {c} is {text!r}, not a number", path=path, field=c) from None
                if item["time"] is None:
                    raise UserError(f"line {n}: time is empty", path=path, field="time")
                item["interpolated"] = (row["interpolated"] or "0").strip() not in ("0", "")
                out.append(item)
            return out
    except UnicodeDecodeError:
        raise UserError("not a text CSV file (not UTF-8)", path=path) from None
    except csv.Error as e:
        raise UserError(f"not a readable CSV file ({e})", path=path) from None
    except OSError as e:
        raise UserError(f"cannot be read ({e.strerror})", path=path) from None


def write_summary(path: Path, video: str, fps: float, tracks: Sequence[VideoTrack]) -> None:
    """The per-track summary CSV."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SUMMARY_COLUMNS)
        for tr in tracks:
            centre = np.nanmean(tr.smoothed[:, :, :2], axis=1) if tr.smoothed.size else np.zeros((0, 2))
            steps = np.linalg.norm(np.diff(centre, axis=0), axis=1)
            distance = float(np.nansum(steps))
            detected = int((~np.isnan(tr.raw[:, :, 0]).all(axis=1)).sum())
            last = tr.first + tr.raw.shape[0] - 1
            span_s = (last - tr.first) / fps
            score = float(np.nanmean(tr.raw[:, :, 2]))
            w.writerow([video, tr.track, tr.first, last, _num(tr.first / fps, 4), _num(last / fps, 4),
                        tr.raw.shape[0], detected, int(tr.interpolated.sum()), _num(score, 4),
                        _num(distance), _num(distance / span_s if span_s > 0 else 0.0)])  # fmt: skip


def write_dlc(path: Path, scorer: str, frames: int, tracks: Sequence[VideoTrack], keypoints: Sequence[str]) -> None:
    """The DeepLabCut multi-animal CSV, a row for each of the video's `frames`, made row by row (the table is
    frames x every track's columns: a long video with many animals passing would not fit whole)."""
    ind = [f"track{tr.track}" for tr in tracks]
    width = len(keypoints) * 3  # x, y, score per keypoint, per track
    empty = np.full(width, np.nan)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        cells = [(i, k, c) for i in ind for k in keypoints for c in ("x", "y", "likelihood")]
        w.writerow(["scorer", *[scorer] * len(cells)])
        w.writerow(["individuals", *[c[0] for c in cells]])
        w.writerow(["bodyparts", *[c[1] for c in cells]])
        w.writerow(["coords", *[c[2] for c in cells]])
        for frame in range(frames):
            row = np.concatenate([
                tr.smoothed[frame - tr.first].reshape(width) if 0 <= frame - tr.first < tr.smoothed.shape[0] else empty
                for tr in tracks
            ]) if tracks else empty[:0]  # fmt: skip
            w.writerow([frame, *(_num(v, 4 if n % 3 == 2 else 3) for n, v in enumerate(row))])
