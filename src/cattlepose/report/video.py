"""The labelled video of `cattlepose video`: every frame of the input with each track's skeleton in the track's
colour, its id beside it, keypoints below `video.draw_min_score` (and every keypoint of a frame filled in
rather than detected) drawn hollow. Written by OpenCV with the first codec of mp4v (.mp4) and MJPG (.avi) that
this OpenCV build writes (`pick_codec`), read back frame for frame. A frame of the input that does not decode
is written black with a line saying so, so the labelled video keeps the input's frame numbers.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.ui import Log
from cattlepose.data.formats.tracks_csv import VideoTrack
from cattlepose.data.video import VideoInfo, chunks

CODECS = {"mp4v": ".mp4", "MJPG": ".avi"}
# one colour per track (BGR), Tableau's ten, repeated
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]  # fmt: skip


@functools.cache
def _writes(fourcc: str) -> bool:
    import cv2

    with tempfile.TemporaryDirectory(prefix="cattlepose-codec-") as tmp:
        path = str(Path(tmp) / f"probe{CODECS[fourcc]}")
        w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10, (32, 32))
        ok = w.isOpened()
        if ok:
            w.write(np.zeros((32, 32, 3), np.uint8))
        w.release()
        return ok and Path(path).stat().st_size > 0


def pick_codec(choice: str = "auto") -> tuple[str, str]:
    """(fourcc, file suffix) of the labelled video: `choice`, or under auto the first of CODECS this OpenCV
    build writes; a UserError naming `video.codec` when none (or not the chosen one) does."""
    options = list(CODECS) if choice == "auto" else [choice]
    for fourcc in options:
        if _writes(fourcc):
            return fourcc, CODECS[fourcc]
    raise UserError(f"this OpenCV build writes none of {', '.join(options)}; use --no-labelled", field="video.codec")


def write_labelled(
    path: Path,
    info: VideoInfo,
    tracks: Sequence[VideoTrack],
    skeleton: Sequence[tuple[int, int]],
    fourcc: str,
    chunk: int,
    draw_min_score: float,
    log: Log | None = None,
) -> int:
    """Decode the video again and write it labelled to `path` (its suffix the codec's); returns the frames
    written."""
    import cv2

    by_frame: dict[int, list[tuple[int, np.ndarray, bool]]] = {}
    for tr in tracks:
        for t, frame in enumerate(tr.frames):
            if not np.isnan(tr.smoothed[t, :, 0]).all():
                by_frame.setdefault(int(frame), []).append((tr.track, tr.smoothed[t], bool(tr.interpolated[t])))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), info.fps, (info.width, info.height))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write {fourcc} here", path=path, field="video.codec")
    written = 0
    log = log or Log(quiet=True)
    try:
        with log.task(f"labelled {info.path.name}", total=info.frames) as bar:
            for ch in chunks(info.path, chunk, total=info.frames):
                for frame in range(ch.start, ch.stop):
                    image = ch.frames.get(frame)
                    if image is None:
                        canvas = np.zeros((info.height, info.width, 3), np.uint8)
                        cv2.putText(canvas, f"frame {frame}: not decoded", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
                    else:
                        canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                        if canvas.shape[:2] != (info.height, info.width):  # a stream that changes size mid-way
                            canvas = cv2.resize(canvas, (info.width, info.height))
                    for track_id, kp, filled in by_frame.get(frame, ()):
                        draw_pose(canvas, kp, skeleton, PALETTE[(track_id - 1) % len(PALETTE)], track_id,
                                  draw_min_score, filled)  # fmt: skip
                    writer.write(canvas)
                    written += 1
                bar.update(ch.stop - ch.start)
    finally:
        writer.release()
    return written


def draw_pose(
    canvas: np.ndarray,
    kp: np.ndarray,
    skeleton: Sequence[tuple[int, int]],
    colour: tuple[int, int, int],
    track_id: int,
    min_score: float,
    filled_in: bool = False,
) -> None:
    """One animal on a BGR image: bones, keypoints (hollow when unsure or filled in), its track id."""
    import cv2

    size = max(canvas.shape[:2])
    radius = max(2, size // 200)
    thick = max(1, size // 400)
    ok = ~np.isnan(kp[:, 0])
    pts = np.round(np.nan_to_num(kp[:, :2])).astype(int)
    for a, b in skeleton:
        if ok[a] and ok[b]:
            cv2.line(canvas, tuple(pts[a]), tuple(pts[b]), colour, thick, cv2.LINE_AA)
    for k in np.flatnonzero(ok):
        sure = kp[k, 2] >= min_score and not filled_in
        cv2.circle(canvas, tuple(pts[k]), radius, colour, -1 if sure else thick, cv2.LINE_AA)
    if ok.any():
        x, y = pts[ok].min(axis=0)
        cv2.putText(canvas, str(track_id), (int(x), max(12, int(y) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.4, size / 1200), colour, thick + 1, cv2.LINE_AA)  # fmt: skip


def count_frames(path: Path) -> int:
    """Frames in a video as decoded one by one (not the container's claim)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n
