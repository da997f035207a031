"""Walking cattle for video: animals that cross a farm frame at a steady walk, each with a known lameness.

A `Walker` is one animal's whole walk: its scene (anatomy, coat, base pose), its `Lameness`, its stride
duration, speed, size and path across the frame. `walker_pose(w, t)` is its pose at time `t` (the gait phase
advances by t / period) and `walker_to_px(w, t)` maps its 3-D joints to frame pixels; `render_frame` paints every
walker (far ones first) and the foreground objects into one frame and reads off each walker's keypoints, box and
visibility; `stride_truth` gives each walker's true stride events.

Planted hooves: the stance uses `Pose.planted` (the leg sweeps back at a constant angular speed), each leg's
swing amplitude is scaled so fore and rear hooves sweep the same distance under the body, and the body moves at
that sweep per half stride, so a hoof in stance stays where it landed up to the small error of a sine against
its angle (and the lame side, which sweeps less, slips by the difference). Vertically the body rides on its
lowest hoof (it rises a little over a leg at mid-stance, as a walking animal does), so one hoof always stands
on the ground and the others in stance stand within a few hundredths of the withers height above it (a
straight leg swinging about a fixed joint cannot keep two hooves on the ground at once). Stride length is the
body's travel in one stride whatever the slip: a hoof lands once per stride, at the same place relative to the
body.

Lameness (all in withers heights, the anatomy's unit):
- head bob: the poll's vertical oscillation at stride frequency (`Pose.head_bob`);
- back arch: the loin (rear_spine) raised above the withers-tail root line (`Pose.back_arch`);
- a short side: that side's legs swing `short` less (`Pose.leg_scale`), so its steps are shorter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from cattlepose.data.synth import parts
from cattlepose.data.synth.anatomy import sample_anatomy
from cattlepose.data.synth.geometry import fill
from cattlepose.data.synth.occluders import Shape, fence, post
from cattlepose.data.synth.pose import (
    ANATOMICAL_LEGS,
    LEGS,
    Pose,
    joints,
    leg_offset,
    near_side,
)
from cattlepose.data.synth.render import (
    ADK17,
    Scene,
    _Affine,
    _animal_shapes,
    _keypoints,
    _ToUnit,
    sample_coat,
)
from cattlepose.data.synth.scene import FARMS, Farm, background, lighting

HOOVES = tuple(f"{limb}_{side}_foot" for limb, side in ANATOMICAL_LEGS)
WALK_FARMS = tuple(f for f in FARMS if f.kind in ("pasture", "dirt"))  # open ground the animals stand on


@dataclass(frozen=True)
class Lameness:
    head_bob: float = 0.0  # poll amplitude, withers heights
    back_arch: float = 0.0  # loin raised, withers heights
    short_side: str | None = None  # "left" or "right": the side whose swing is shorter
    short: float = 0.0  # fraction of the swing amplitude that side loses

    def as_dict(self) -> dict[str, object]:
        return {"head_bob": self.head_bob, "back_arch": self.back_arch, "short_side": self.short_side,
                "short": self.short}  # fmt: skip


@dataclass(frozen=True)
class Walker:
    track: int
    scene: Scene  # its pose is the pose at t = 0
    lameness: Lameness
    period: float  # stride duration, seconds
    speed: float  # withers heights per second
    scale: float  # pixels per withers height
    ground: float  # pixel row of the ground under it (lower = nearer the camera)
    x0: float  # pixel column of the animal's origin (tail root) at t = 0


def _hoof_reach(pose: Pose, scene: Scene, leg: int, s: float) -> float:
    """x of one hoof relative to the body (withers heights) when its swing sits at `s` (+1 forward, -1 back)."""
    limb, side = ANATOMICAL_LEGS[leg]
    near = near_side(pose.facing)
    view = "near" if side == near else "far"
    u = 0.25 + (0.0 if s > 0 else 0.5) - leg_offset(pose, limb, side)  # the leg's own phase: touch-down / lift-off
    j = joints(scene.anatomy, replace(pose, phase=u % 1.0))
    return float(j[f"{limb}_{view}_foot"][0])


def leg_scales(pose: Pose, scene: Scene, lameness: Lameness) -> tuple[tuple[float, float, float, float], float]:
    """Per-leg swing scales that make every sound leg sweep as far as the fore legs do, the short side's scaled
    down by `lameness.short`; and the sound sweep (withers heights), which sets the body's speed."""
    base = replace(pose, leg_scale=(1.0, 1.0, 1.0, 1.0))
    sweeps = [_hoof_reach(base, scene, i, 1.0) - _hoof_reach(base, scene, i, -1.0) for i in range(4)]
    target = 0.5 * (sweeps[0] + sweeps[1])
    scales = []
    for i, (_, side) in enumerate(ANATOMICAL_LEGS):
        k = target / sweeps[i]
        if side == lameness.short_side:
            k *= 1.0 - lameness.short
        scales.append(float(k))
    return (scales[0], scales[1], scales[2], scales[3]), target


def make_walker(
    rng: np.random.Generator,
    track: int,
    facing: int,
    lameness: Lameness,
    size: tuple[int, int],
    depth: float,
    duration: float,
    farm: Farm,
    category: str = "cow",
) -> Walker:
    """One animal walking across a `size` (W, H) frame, facing +1 (to the right) or -1, at `depth` in [0, 1]
    (0 far, 1 near), centred in the frame at mid-`duration`."""
    w, h = size
    anatomy = sample_anatomy(rng, category)
    stride = float(rng.uniform(0.45, 0.55))
    pose = Pose(
        facing=facing, walking=True, phase=float(rng.random()), stride=stride, head="level",
        neck_angle=float(np.radians(rng.uniform(8, 22))), head_bend=float(np.radians(rng.uniform(65, 85))),
        yaw=0.0, elevation=float(rng.uniform(0.08, 0.2)), roll=0.0, leg_jitter=(0.0,) * 8, tail_swing=0.0,
        head_bob=lameness.head_bob, back_arch=lameness.back_arch, planted=True,
    )  # fmt: skip
    scene = Scene(anatomy=anatomy, pose=pose, coat=sample_coat(rng, farm.coats or {"tan": 1.0}), farm=farm,
                  long_side=0, margins=(0.0, 0.0, 0.0, 0.0), occluder_kinds=(), seed=int(rng.integers(2**31)),
                  jpeg_quality=95)  # fmt: skip
    scales, sweep = leg_scales(pose, scene, lameness)
    scene = replace(scene, pose=replace(pose, leg_scale=scales))
    period = float(rng.uniform(1.0, 1.3))  # cattle walk at about one stride a second
    speed = sweep / (0.5 * period)
    scale = h * (0.24 + 0.12 * depth)
    ground = h * (0.62 + 0.33 * depth)
    # the body's middle (origin + half its length) crosses the frame's middle at mid-duration
    x0 = w / 2 - facing * (0.5 * anatomy.length + speed * duration / 2) * scale + rng.uniform(-0.15, 0.15) * w
    return Walker(track, scene, lameness, period, speed, scale, ground, float(x0))


def walker_pose(w: Walker, t: float) -> Pose:
    base = w.scene.pose
    return replace(base, phase=float((base.phase + t / w.period) % 1.0))


class _FramePx:
    """Animal (x, y, z) at time t -> frame pixels: the renderer's projection, then scale and the walk's offset."""

    def __init__(self, w: Walker, t: float):
        pose = walker_pose(w, t)
        self.to_unit = _ToUnit(pose)
        ox = w.x0 + pose.facing * w.speed * t * w.scale
        # the body rides on its lowest hoof: that one stands on the ground (y = 0), the others at or above it
        j = joints(w.scene.anatomy, pose)
        rise = -min(float(j[f"{limb}_{side}_foot"][1]) for limb, side in LEGS)
        self.affine = _Affine(w.scale, (ox, w.ground - rise * w.scale))
        self.scale = w.scale

    def __call__(self, pts3: np.ndarray) -> np.ndarray:
        return self.affine(self.to_unit(pts3))


@dataclass(frozen=True)
class FrameAnimal:
    track: int
    box: tuple[float, float, float, float]  # x, y, w, h: the whole animal's extent, clipped to the frame
    keypoints: np.ndarray  # (17, 3) x, y, v in ADK17 order; v 0: outside the frame, 1: hidden, 2: visible


def scenery(rng: np.random.Generator, farm: Farm, size: tuple[int, int]) -> tuple[np.ndarray, list[Shape], int]:
    """The still parts of a video: the backdrop, the foreground objects (posts, sometimes a fence) and the seed
    of the light (fixed for the whole video)."""
    w, h = size
    bg = background(rng, farm, w, h)
    fg: list[Shape] = []
    for _ in range(int(rng.integers(1, 3))):
        fg += post(rng, w, h, farm.rail, (0.0, 0.0, 0.0))
    if rng.random() < 0.5:
        fg += [s for s in fence(rng, w, h, farm.rail, (0.0, 0.0, 0.0)) if s.label == parts.FENCE][:1]
    return bg, fg, int(rng.integers(2**31))


def render_frame(
    walkers: Sequence[Walker],
    t: float,
    bg: np.ndarray,
    fg: Sequence[Shape],
    farm: Farm,
    light_seed: int,
    noise: np.random.Generator | None = None,
) -> tuple[np.ndarray, list[FrameAnimal]]:
    """One RGB frame at time `t` and the walkers in it (any part inside the frame), nearest last.

    Visibility: a keypoint is hidden (v=1) when the pixel under it shows a foreground object, a nearer animal,
    or a part of its own animal that hides its depth class (`parts.cover_ids`); outside the frame it is v=0.
    """
    h, w = bg.shape[:2]
    img = bg.copy()
    labels = np.zeros((h, w), np.uint8)
    owner = np.zeros((h, w), np.uint8)  # 1 + draw position of the animal painted there; 255 foreground
    order = sorted(range(len(walkers)), key=lambda i: walkers[i].ground)
    drawn = []
    for pos, i in enumerate(order):
        wk = walkers[i]
        to_px = _FramePx(wk, t)
        scene = replace(wk.scene, pose=walker_pose(wk, t))
        unit_shapes, j = _animal_shapes(scene, to_px.to_unit)
        pts = []
        for sh in unit_shapes:
            polys = [to_px.affine(p) for p in sh.polys]
            pts += polys
            for p in polys:
                fill(img, [p], sh.color)
                fill(labels, [p], sh.label, aa=False)
                fill(owner, [p], pos + 1, aa=False)
        allp = np.vstack(pts)
        lo, hi = allp.min(axis=0), allp.max(axis=0)
        x0, y0 = max(0.0, lo[0]), max(0.0, lo[1])
        x1, y1 = min(w - 1.0, hi[0]), min(h - 1.0, hi[1])
        if x1 <= x0 or y1 <= y0:
            continue  # wholly outside the frame
        near = near_side(scene.pose.facing)
        kps, depth, _ = _keypoints(j, to_px, labels, near)
        drawn.append((pos, wk.track, (x0, y0, x1 - x0, y1 - y0), kps, depth))
    for sh in fg:
        fill(img, sh.polys, sh.color)
        fill(labels, sh.polys, sh.label, aa=False)
        fill(owner, sh.polys, 255, aa=False)
    out = lighting(np.random.default_rng(light_seed), farm, img)
    if noise is not None:
        out += noise.normal(0.0, float(np.mean(farm.noise)), out.shape[:2]).astype(np.float32)[..., None]
    frame = np.clip(out, 0, 255).astype(np.uint8)
    animals = []
    for pos, track, box, kps, depth in drawn:
        animals.append(FrameAnimal(track, box, _visibility(kps, depth, pos + 1, labels, owner)))
    return frame, animals


def _visibility(kps: np.ndarray, depth: Sequence[str], me: int, labels: np.ndarray, owner: np.ndarray) -> np.ndarray:
    h, w = labels.shape
    out = kps.copy()
    for k, d in enumerate(depth):
        xi, yi = int(np.floor(kps[k, 0] + 0.5)), int(np.floor(kps[k, 1] + 0.5))
        if not (0 <= xi < w and 0 <= yi < h):
            out[k, 2] = 0.0
            continue
        who = int(owner[yi, xi])
        # its own part that hides this depth class, or a foreground object (255) or an animal painted after it
        hidden = int(labels[yi, xi]) in parts.cover_ids(d) if who == me else who > me
        out[k, 2] = 1.0 if hidden else 2.0
    return out


def stride_truth(w: Walker, duration: float, fps: float) -> dict[str, object]:
    """A walker's true gait: stride duration and length, and each hoof's footfalls (touch-down: the leg's own
    phase reaching 0.25, where the planted stance starts) as fractional frame numbers within `duration`."""
    phase0 = w.scene.pose.phase
    footfalls: dict[str, list[float]] = {}
    for limb, side in ANATOMICAL_LEGS:
        first = (0.25 - leg_offset(w.scene.pose, limb, side) - phase0) % 1.0  # in strides from t = 0
        times = (first + np.arange(int(duration / w.period) + 2)) * w.period
        footfalls[f"{limb}_{side}_foot"] = [round(float(t * fps), 3) for t in times if t < duration]
    return {
        "stride_duration_s": w.period,
        "stride_length_px": w.speed * w.period * w.scale,
        "speed_px_s": w.speed * w.scale,
        "footfalls": footfalls,
    }


def lameness_px(w: Walker) -> dict[str, float]:
    """The lameness in frame pixels and body lengths (body length: withers to tail root at rest, in pixels), and
    the animal's back line: `back_line_bl`, the loin's (rear_spine) height above the withers-tail root line over
    that line's length, of its own spine as drawn (side view, no camera). That is what a back-arch measure on
    keypoints sees: the conformation (a bull's hump, a calf's proportions) and the lameness raise together, so
    animals of mixed build rank by it and not by the raise alone."""
    j = joints(w.scene.anatomy, replace(w.scene.pose, head_bob=0.0, back_arch=0.0))
    body = float(np.linalg.norm(j["fore_spine"][:2] - j["hip"][:2])) * w.scale
    arched = joints(w.scene.anatomy, replace(w.scene.pose, head_bob=0.0))
    tail, withers, loin = (arched[k][:2] for k in ("hip", "fore_spine", "rear_spine"))
    axis = withers - tail
    up = np.array([-axis[1], axis[0]]) / np.linalg.norm(axis)  # the animal frame's y is up; axis points forward
    return {
        "body_length_px": body,
        "head_bob_px": w.lameness.head_bob * w.scale,
        "back_arch_px": w.lameness.back_arch * w.scale,
        "back_line_bl": round(float((loin - tail) @ up / np.linalg.norm(axis)), 6),
    }


def true_keypoints(w: Walker, times: Sequence[float]) -> np.ndarray:
    """(N, 17, 2) the walker's keypoints in frame pixels at `times` (seconds), ADK17 order, without rendering."""
    blank = np.zeros((1, 1), np.uint8)
    out = []
    for t in times:
        pose = walker_pose(w, float(t))
        kps, _, _ = _keypoints(joints(w.scene.anatomy, pose), _FramePx(w, float(t)), blank, near_side(pose.facing))
        out.append(kps[:, :2])
    return np.array(out)


__all__ = ["ADK17", "HOOVES", "WALK_FARMS", "FrameAnimal", "Lameness", "Walker", "lameness_px", "make_walker",
           "render_frame", "scenery", "stride_truth", "true_keypoints", "walker_pose"]  # fmt: skip
