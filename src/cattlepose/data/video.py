"""Video input: a file checked before any work (`probe`), decoded by OpenCV in chunks of frames (`chunks`), so
memory holds one chunk however long the video is, and the frames of the chunk being predicted held where the
crop dataset and a detector read them (`holding`; `image_of` gives the pixels of an image source or instance,
a file or a held frame): an instance of a video frame names the video file and the frame index
(`ImageSource.frame`), and its pixels come from here, not from a file.

Frames are RGB, as `images.load_image` gives a photograph. A frame that does not decode in the middle of a
stream is reported missing (the chunk lists it) and reading goes on; several in a row end the stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import unreadable
from cattlepose.data.images import load_image

# containers OpenCV's FFmpeg reads; anything else is refused by name before the work
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".mts"})
# failed reads in a row taken as the end of the stream (a corrupt stretch shorter than this is skipped)
MAX_BAD_RUN = 8


class FrameReader(Protocol):
    """What `chunks` reads: OpenCV's `VideoCapture` (BGR frames), or a test's stand-in."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def grab(self) -> bool: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frames: int  # as the container says (OpenCV's count; the stream may end earlier)
    fps: float
    width: int
    height: int
    fps_known: bool = True  # False: the stream holds no rate and `fps` is the nominal 25


@dataclass
class Chunk:
    """Frames start .. start + len - 1 of a video: each decoded one (RGB, by index) and the ones that failed."""

    index: int
    start: int
    stop: int  # one past the last frame read or attempted
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


def open_capture(path: Path) -> FrameReader:
    import cv2

    return cv2.VideoCapture(str(path))


def probe(path: Path) -> VideoInfo:
    """The video's frame count, rate and size; a UserError naming the file when it is absent, not a video OpenCV
    reads (an unknown extension, a corrupt container, an unknown codec) or holds no decodable frame."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise UserError(unreadable(path, "video"), path=path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"not a video file this tool reads (videos are {', '.join(sorted(VIDEO_SUFFIXES))})",
                        path=path)  # fmt: skip
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError("cannot be opened as a video (corrupt, truncated or an unknown codec)", path=path)
        ok, frame = cap.read()
        if not ok or frame is None:
            raise UserError("holds no decodable frame (empty, or a codec OpenCV cannot decode)", path=path)
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    known = bool(np.isfinite(fps) and fps > 0)
    fps = fps if known else 25.0  # a stream without a rate: times are then nominal
    return VideoInfo(path, max(count, 1), fps, int(frame.shape[1]), int(frame.shape[0]), known)


def chunks(
    path: Path, size: int, first: int = 0, total: int | None = None, reader: FrameReader | None = None
) -> Iterator[Chunk]:
    """The video's frames in chunks of `size`, from chunk `first` on (the frames before it are grabbed, not
    decoded into images: a resumed run skips its finished chunks cheaply). `total`: the frame count the
    container claims; a stream is read to its end whatever it claims."""
    import cv2

    cap = reader if reader is not None else open_capture(path)
    try:
        frame = 0
        for _ in range(first * size):
            if not cap.grab():
                return
            frame += 1
        index, bad_run = first, 0
        while True:
            chunk = Chunk(index, frame, frame)
            while chunk.stop - chunk.start < size:
                ok, image = cap.read()
                if ok and image is not None:
                    chunk.frames[frame] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                    bad_run = 0
                else:
                    bad_run += 1
                    # past the claimed end, or too many failures in a row: the stream has ended
                    if bad_run >= MAX_BAD_RUN or (total is not None and frame >= total):
                        break
                    chunk.missing.append(frame)
                frame += 1
                chunk.stop = frame
            ended = chunk.stop - chunk.start < size
            if ended:  # the failed reads at the end were the end of the stream, not missing frames
                while chunk.missing and chunk.missing[-1] >= max(chunk.frames, default=chunk.start - 1):
                    chunk.stop = chunk.missing.pop()
            if chunk.frames or chunk.missing:
                yield chunk
            if ended:
                return
            index += 1
    finally:
        cap.release()


_HELD: dict[tuple[Path, int], np.ndarray] = {}


@contextlib.contextmanager
def holding(path: Path, frames: Mapping[int, np.ndarray]) -> Iterator[None]:
    """Within the block, `held_frame(path, i)` gives these frames: how the crop dataset and a detector, which
    take instances and image sources naming (video file, frame), read a chunk held in memory. Loader worker
    processes forked inside the block see them too."""
    keys = [(Path(path), int(i)) for i in frames]
    _HELD.update(zip(keys, frames.values(), strict=True))
    try:
        yield
    finally:
        for key in keys:
            _HELD.pop(key, None)


def image_of(path: Path, frame: int | None) -> np.ndarray:
    """The pixels of an image source or instance (RGB uint8): its file decoded, or for a video frame the frame
    as `holding` put it. What every reader of instances' pixels calls (the crop dataset, a detector)."""
    return load_image(path) if frame is None else held_frame(path, frame)


def held_frame(path: Path, frame: int) -> np.ndarray:
    """Frame `frame` of the video `path` (RGB uint8), as `holding` put it; a UserError when it is not held."""
    image = _HELD.get((Path(path), int(frame)))
    if image is None:
        raise UserError(f"frame {frame} is not decoded (only the chunk being predicted is held)", path=path)
    return image
