"""`cattlepose synth-video`: a video of cattle walking across a farm, with its ground truth beside it.

    OUT/walk.mp4     the video (MPEG-4 part 2, fourcc mp4v: this OpenCV writes and reads it back)
    OUT/truth.json   the ground truth: this module is its one writer (`synthesize_video`) and reader (`read_truth`)

truth.json:

    {"format": "cattlepose-synth-video", "version": 1, "video": "walk.mp4", "fps": 25.0, "width": 640,
     "height": 360, "frames": 100, "seed": 0, "keypoints": [the 17 ADK17 names],
     "animals": [{"track": 1, "facing": 1 (walks to the right) or -1, "category": "cow", "farm": "hillside",
                  "lameness": {"head_bob": .., "back_arch": .. (withers heights), "short_side": "left" | "right"
                               | null, "short": .. (fraction of that side's swing lost)},
                  "scale_px": pixels per withers height, "body_length_px": withers to tail root,
                  "head_bob_px", "back_arch_px", "back_line_bl" (the loin above the withers-tail root line,
                  conformation and lameness together), "stride_duration_s", "stride_length_px", "speed_px_s",
                  "footfalls": {"fore_right_foot": [fractional frame numbers of touch-down], ...}}],
     "annotations": [{"frame": 0, "track": 1, "box": [x, y, w, h], "keypoints": [[x, y, v] x 17]}, ...]}

Frames count from 0; the frame at index f shows time f / fps. A box is the whole animal's extent, hidden parts
included, clipped to the frame; keypoints keep their true positions, v = 2 visible, 1 hidden (by its own body,
a nearer animal or a foreground object), 0 outside the frame. An animal wholly outside a frame has no
annotation for it.

Same arguments, same files: everything is drawn from generators seeded by `seed`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import staged, writing
from cattlepose.data.synth.anatomy import sample_category
from cattlepose.data.synth.occluders import Shape
from cattlepose.data.synth.scene import Farm
from cattlepose.data.synth.walk import (
    ADK17,
    WALK_FARMS,
    Lameness,
    Walker,
    lameness_px,
    make_walker,
    render_frame,
    scenery,
    stride_truth,
)

FORMAT = "cattlepose-synth-video"
VERSION = 1
VIDEO = "walk.mp4"
TRUTH = "truth.json"
FOURCC = "mp4v"
MAX_SIDE = 4096


def draw_lameness(rng: np.random.Generator) -> Lameness:
    """A random animal's lameness: most show a little of each sign, about half a shorter side."""
    short_side = ("left", "right")[int(rng.integers(2))] if rng.random() < 0.5 else None
    return Lameness(
        head_bob=round(float(rng.uniform(0.0, 0.06)), 4),
        back_arch=round(float(rng.uniform(0.0, 0.06)), 4),
        short_side=short_side,
        short=round(float(rng.uniform(0.1, 0.35)), 4) if short_side else 0.0,
    )


def synthesize_video(
    out: Path,
    animals: int = 3,
    seconds: float = 4.0,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    lameness: Sequence[Lameness] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write OUT/walk.mp4 and OUT/truth.json (see the module docstring); return a short summary.

    `lameness` gives each animal's (else drawn at random); animals alternate direction and spread in depth."""
    out = Path(out)
    _check_args(animals, seconds, fps, size, lameness)
    if out.exists() and not out.is_dir():
        raise UserError("the output must be a folder", path=out)
    foreign = foreign_files(out)
    if foreign:
        raise UserError(f"holds {len(foreign)} file(s) cattlepose synth-video did not write "
                        f"({', '.join(foreign[:5])}); give an empty folder, or one an earlier synth-video wrote",
                        path=out)  # fmt: skip
    plan = plan_video(animals, seconds, fps, size, seed, lameness)
    n_frames, duration = plan.frames, plan.frames / fps
    noise = np.random.default_rng([seed, 38])

    annotations: list[dict[str, Any]] = []
    out.mkdir(parents=True, exist_ok=True)
    video, truth = out / VIDEO, out / TRUTH
    with staged(video, truth) as (tmp_video, tmp_truth):
        part = tmp_video.with_name(tmp_video.name + ".mp4")  # OpenCV picks the container by the suffix
        try:
            with writing(video):
                writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
                if not writer.isOpened():
                    raise UserError(f"OpenCV cannot write {FOURCC} video here", path=video)
                try:
                    for f in range(n_frames):
                        frame, seen = render_frame(
                            plan.walkers, f / fps, plan.background, plan.foreground, plan.farm, plan.light_seed, noise
                        )
                        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                        annotations += [_annotation(f, a) for a in sorted(seen, key=lambda a: a.track)]
                        if progress is not None:
                            progress(f + 1, n_frames)
                finally:
                    writer.release()
                os.replace(part, tmp_video)
        finally:
            part.unlink(missing_ok=True)
        doc = {
            "format": FORMAT, "version": VERSION, "video": VIDEO, "fps": float(fps), "width": size[0],
            "height": size[1], "frames": n_frames, "seed": seed, "keypoints": list(ADK17),
            "animals": [_animal(w, plan.farm.name, duration, fps) for w in plan.walkers],
            "annotations": annotations,
        }  # fmt: skip
        with writing(truth), open(tmp_truth, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
            fh.write("\n")
    return {"video": str(video), "truth": str(truth), "frames": n_frames, "fps": float(fps), "animals": animals,
            "farm": plan.farm.name, "annotations": len(annotations)}  # fmt: skip


@dataclass(frozen=True)
class VideoPlan:
    """Everything a video's frames are drawn from: its walkers, farm, still scenery and light."""

    walkers: list[Walker]
    farm: Farm
    background: np.ndarray
    foreground: list[Shape]
    light_seed: int
    frames: int


def plan_video(
    animals: int, seconds: float, fps: float, size: tuple[int, int], seed: int,
    lameness: Sequence[Lameness] | None = None,
) -> VideoPlan:  # fmt: skip
    """The walkers and scenery of `synthesize_video` for these arguments (the same ones every time)."""
    rng = np.random.default_rng([seed, 37])
    farm = WALK_FARMS[int(rng.integers(len(WALK_FARMS)))]
    n_frames = max(1, round(seconds * fps))
    duration = n_frames / fps
    walkers = []
    for i in range(animals):
        lame = lameness[i] if lameness is not None else draw_lameness(rng)
        depth = 0.5 if animals == 1 else i / (animals - 1)
        facing = 1 if i % 2 == 0 else -1
        category = sample_category(rng, farm.categories or None)
        walkers.append(make_walker(rng, i + 1, facing, lame, size, depth, duration, farm, category))
    bg, fg, light_seed = scenery(rng, farm, size)
    return VideoPlan(walkers, farm, bg, fg, light_seed, n_frames)


def _check_args(
    animals: int, seconds: float, fps: float, size: tuple[int, int], lameness: Sequence[Lameness] | None
) -> None:
    if animals < 1:
        raise UserError(f"need at least one animal, got {animals}", field="animals")
    if not (np.isfinite(seconds) and seconds > 0):
        raise UserError(f"seconds must be a positive number, got {seconds}", field="seconds")
    if not (np.isfinite(fps) and 1 <= fps <= 240):
        raise UserError(f"fps must be between 1 and 240, got {fps}", field="fps")
    w, h = size
    if not (32 <= w <= MAX_SIDE and 32 <= h <= MAX_SIDE) or w % 2 or h % 2:
        raise UserError(f"frame size must be even numbers from 32 to {MAX_SIDE} pixels, got {w}x{h}", field="size")
    if lameness is not None and len(lameness) != animals:
        raise UserError(f"{len(lameness)} lameness settings for {animals} animals", field="lameness")


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"size must look like 640x360, got {text!r}", field="--size") from None
    return w, h


def _annotation(frame: int, a: Any) -> dict[str, Any]:
    kps = [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in a.keypoints]
    return {"frame": frame, "track": a.track, "box": [round(float(v), 2) for v in a.box], "keypoints": kps}


def _animal(w: Any, farm: str, duration: float, fps: float) -> dict[str, Any]:
    return {
        "track": w.track, "facing": w.scene.pose.facing, "category": w.scene.anatomy.category, "farm": farm,
        "lameness": w.lameness.as_dict(), "scale_px": w.scale, **lameness_px(w), **stride_truth(w, duration, fps),
    }  # fmt: skip


def foreign_files(out: Path) -> list[str]:
    """What under `out` synth-video did not write: anything but its video, a truth.json of this format and hidden
    files (temporary files of a write cut short)."""
    if not out.is_dir():
        return []
    foreign = []
    for entry in sorted(out.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name == VIDEO and entry.is_file():
            continue
        if entry.name == TRUTH and entry.is_file() and _is_truth(entry):
            continue
        foreign.append(str(entry) + ("/" if entry.is_dir() else ""))
    return foreign


def _is_truth(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# ------------------------------------------------------------------------------------------------ reader
@dataclass(frozen=True)
class TruthTrack:
    track: int
    frames: np.ndarray  # (N,) frame numbers, increasing
    boxes: np.ndarray  # (N, 4) x, y, w, h
    keypoints: np.ndarray  # (N, 17, 3) x, y, v
    animal: dict[str, Any]  # the animal's entry: lameness, strides, footfalls, sizes


@dataclass(frozen=True)
class VideoTruth:
    path: Path
    video: Path
    fps: float
    width: int
    height: int
    frames: int
    keypoints: tuple[str, ...]
    tracks: dict[int, TruthTrack]


def read_truth(path: str | Path) -> VideoTruth:
    """Read a truth.json written by `synthesize_video`; a file of another kind or a damaged one is a UserError."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise UserError(f"cannot read the truth file ({e.strerror or e})", path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"not a JSON file ({e})", path=path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f'not a synth-video truth file (no "format": "{FORMAT}")', path=path, field="format")
    if doc.get("version") != VERSION:
        raise UserError(f"truth file version {doc.get('version')!r}; this reader knows {VERSION}", path=path,
                        field="version")  # fmt: skip
    try:
        names = tuple(doc["keypoints"])
        by_track: dict[int, list[dict[str, Any]]] = {int(a["track"]): [] for a in doc["animals"]}
        for ann in doc["annotations"]:
            by_track[int(ann["track"])].append(ann)
        tracks = {}
        for animal in doc["animals"]:
            rows = sorted(by_track[int(animal["track"])], key=lambda r: r["frame"])
            kps = np.array([r["keypoints"] for r in rows], np.float64).reshape(len(rows), len(names), 3)
            tracks[int(animal["track"])] = TruthTrack(
                track=int(animal["track"]),
                frames=np.array([int(r["frame"]) for r in rows], np.int64),
                boxes=np.array([r["box"] for r in rows], np.float64).reshape(len(rows), 4),
                keypoints=kps,
                animal=animal,
            )
        return VideoTruth(path, path.parent / str(doc["video"]), float(doc["fps"]), int(doc["width"]),
                          int(doc["height"]), int(doc["frames"]), names, tracks)  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"damaged truth file ({type(e).__name__}: {e})", path=path) from None
