"""Pose of one synthetic animal and the 3-D joint positions it gives (same units as `anatomy`).

A pose is a gait (standing or a walking phase), a head carriage (up, level, down, grazing), the view
(facing, a little yaw for 3/4 views, camera elevation, roll). The walking video (`walk.py`) adds lameness
signs (a head bob at stride frequency, an arched back, one side's shorter swing) and a stance in which the hoof
moves back at constant speed, so it can stay planted while the body moves on; all default to off, and a
pose without them gives the same joints as before. `joints()` returns every point the renderer and
the labels need, as (x, y, z) with z toward the camera for the near side (+half width) and away for the far
side. The near side is the animal's right when it faces +x (see `near_side`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cattlepose.data.synth.anatomy import Anatomy

HEADS = ("up", "level", "down", "graze")
HEAD_MIX = (0.25, 0.35, 0.2, 0.2)
# neck angle (degrees above horizontal) and head bend relative to the neck, per carriage: (lo, hi) ranges
NECK_ANGLE = {"up": (28, 50), "level": (5, 28), "down": (-30, -5), "graze": (-68, -45)}
HEAD_BEND = {"up": (75, 100), "level": (60, 90), "down": (45, 70), "graze": (30, 50)}
# walking: phase offsets per leg (fore/rear x left/right). A leg touches down when its own phase (the pose's
# plus its offset) reaches 0.25, so these give the footfall order LF, LH, RF, RH (a diagonal sequence) in the
# still images; the walking video's planted poses run the offsets backwards (`leg_offset`) for the lateral
# sequence of a walking cow, LH, LF, RH, RF.
GAIT_OFFSET = {("rear", "left"): 0.0, ("fore", "left"): 0.25, ("rear", "right"): 0.5, ("fore", "right"): 0.75}
LEGS = (("fore", "near"), ("fore", "far"), ("rear", "near"), ("rear", "far"))
# the anatomical order of `Pose.leg_scale`
ANATOMICAL_LEGS = (("fore", "right"), ("fore", "left"), ("rear", "right"), ("rear", "left"))


@dataclass(frozen=True)
class Pose:
    facing: int  # +1: head toward image right, -1: toward image left
    walking: bool
    phase: float  # gait phase in [0, 1)
    stride: float  # swing amplitude (radians); 0 when standing
    head: str
    neck_angle: float  # radians above horizontal
    head_bend: float  # radians the head turns down from the neck direction
    yaw: float  # radians; > 0 turns the head toward the camera (3/4 view)
    elevation: float  # sine of the camera's look-down angle: the far side shows a little higher
    roll: float  # radians, image-plane rotation
    leg_jitter: tuple[float, ...]  # 8 values: upper/lower angle offsets of the four legs (LEGS order)
    tail_swing: float
    # lameness and the walking video (defaults: none of it, the still images' poses)
    head_bob: float = 0.0  # vertical head oscillation at stride frequency: the poll's amplitude (withers heights)
    back_arch: float = 0.0  # the loin (rear_spine) and the back line over it raised by this (withers heights)
    leg_scale: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # swing amplitude per ANATOMICAL_LEGS
    planted: bool = False  # stance at constant angular speed (video); False: the sine of the still images


def near_side(facing: int) -> str:
    """The animal's side turned to the camera: facing image-right we see its right flank (its head is on our
    right when we stand at its right side); facing left, its left flank."""
    return "right" if facing > 0 else "left"


def sample_pose(rng: np.random.Generator, facing: int | None = None) -> Pose:
    head = HEADS[int(rng.choice(len(HEADS), p=np.array(HEAD_MIX)))]
    walking = bool(rng.random() < 0.45)
    return Pose(
        facing=int(facing if facing is not None else (1 if rng.random() < 0.5 else -1)),
        walking=walking,
        phase=float(rng.random()),
        stride=float(rng.uniform(0.25, 0.5)) if walking else 0.0,
        head=head,
        neck_angle=float(np.radians(rng.uniform(*NECK_ANGLE[head]))),
        head_bend=float(np.radians(rng.uniform(*HEAD_BEND[head]))),
        yaw=float(np.radians(np.clip(rng.normal(0.0, 18.0), -40, 40))),
        elevation=float(rng.uniform(0.05, 0.45)),
        roll=float(np.radians(np.clip(rng.normal(0.0, 6.0), -15, 15))),
        leg_jitter=tuple(float(v) for v in rng.normal(0.0, 0.12, 8)),
        tail_swing=float(rng.normal(0.0, 0.08)),
    )


def _leg_angles(pose: Pose, limb: str, side: str, i: int) -> tuple[float, float]:
    """(upper, lower) segment angles from straight down, positive = forward."""
    anat_side = side_to_anatomy(pose.facing, side)
    j1, j2 = pose.leg_jitter[2 * i], pose.leg_jitter[2 * i + 1]
    swing = lift = 0.0
    if pose.walking:
        u = pose.phase + leg_offset(pose, limb, anat_side)
        t = 2 * np.pi * u
        amp = pose.stride * pose.leg_scale[ANATOMICAL_LEGS.index((limb, anat_side))]
        swing = amp * (stance_sweep(u) if pose.planted and np.cos(t) <= 0 else np.sin(t))
        lift = max(0.0, np.cos(t)) ** 2  # the leg swings forward with its lower part folded
    if limb == "fore":
        upper = swing + j1
        return upper, upper - 1.3 * lift + j2
    upper = -0.28 + swing + 0.35 * lift + j1  # stifle -> hock points down and back
    return upper, 0.10 + swing - 0.6 * lift + j2


def leg_offset(pose: Pose, limb: str, side: str) -> float:
    """The phase offset of a leg (anatomical side): GAIT_OFFSET, negated for planted (video) poses."""
    offset = GAIT_OFFSET[(limb, side)]
    return -offset if pose.planted else offset


def stance_sweep(u: float) -> float:
    """The planted stance: the leg's swing goes from +1 (hoof down, u = 0.25) to -1 (hoof up, u = 0.75) linearly
    in time, so the hoof moves back under the body at a constant speed, which the body's own speed cancels."""
    return 1.0 - 4.0 * min((u - 0.25) % 1.0, 0.5)


def side_to_anatomy(facing: int, side: str) -> str:
    """'near'/'far' -> the anatomical side ('right'/'left') for this facing."""
    near = near_side(facing)
    return near if side == "near" else ("left" if near == "right" else "right")


def _down(angle: float) -> np.ndarray:
    return np.array([np.sin(angle), -np.cos(angle)])


def joints(a: Anatomy, p: Pose) -> dict[str, np.ndarray]:
    """Named 3-D points (x, y, z): keypoints plus the extra control points the shapes are built from.

    Leg points are named `<limb>_<near|far>_<joint>`; the renderer maps near/far to right/left with
    `side_to_anatomy`.
    """
    L, d, h = a.length, a.depth, a.hump
    pts: dict[str, tuple[float, float, float]] = {
        "hip": (0.03, 0.955, 0.0),
        "rear_spine": (0.36 * L, 0.985 + p.back_arch, 0.0),
        "fore_spine": (L, 0.97 + h, 0.0),
    }
    for i, (limb, side) in enumerate(LEGS):
        z = a.half_width * (1 if side == "near" else -1)
        up, lo = _leg_angles(p, limb, side, i)
        if limb == "fore":
            top = np.array([L - 0.02, 1.0 - 0.45 * d])
            sh = np.array([L - 0.05, 1.0 - 0.92 * d])
            upper_len = sh[1] - 0.25
            lower_len = 0.22
        else:
            top = np.array([0.06, 0.92])
            sh = np.array([0.10 + 0.04 * L, 1.0 - 0.75 * d])
            upper_len = (sh[1] - 0.31) / np.cos(0.28)
            lower_len = 0.29
        knee = sh + upper_len * _down(up)
        foot = knee + lower_len * _down(lo)
        pre = f"{limb}_{side}_"
        pts[pre + "top"] = (*top, z)
        pts[pre + "shoulder"] = (*sh, z)
        pts[pre + "knee"] = (*knee, z)
        pts[pre + "foot"] = (*foot, z)
        # the hoof points forward along the ground-ish direction of the lower segment, turned 90 degrees
        toe = foot + 0.06 * np.array([np.cos(lo * 0.5), np.sin(lo * 0.5)])
        pts[pre + "toe"] = (*toe, z)

    base = np.array([L + 0.10, 0.74 + 0.5 * h])
    nd = np.array([np.cos(p.neck_angle), np.sin(p.neck_angle)])
    nn = np.array([-nd[1], nd[0]])  # the upper side of the neck
    poll = base + a.neck_len * nd
    if p.head_bob:
        poll = poll + np.array([0.0, p.head_bob * np.sin(2 * np.pi * p.phase)])
    pts["neck_root"] = (*(base - 0.18 * nd), 0.0)
    pts["neck_base"] = (*base, 0.0)
    pts["poll"] = (*poll, 0.0)
    pts["neck"] = (*(base + 0.22 * a.neck_len * nd - 0.4 * a.neck_width * nn), 0.0)  # the throat
    beta = p.neck_angle - p.head_bend
    hd = np.array([np.cos(beta), np.sin(beta)])
    hn = np.array([-hd[1], hd[0]])  # the forehead side
    pts["head_mid"] = (*(poll + 0.5 * a.head_len * hd), 0.0)
    pts["muzzle"] = (*(poll + a.head_len * hd), 0.0)
    pts["fore_head"] = (*(poll + 0.3 * a.head_len * hd + 0.28 * a.head_width * hn), 0.0)
    pts["eye"] = (*(poll + 0.33 * a.head_len * hd + 0.05 * a.head_width * hn), a.head_width * 0.3)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in pts.items()}
    out["_head_dir"] = np.array([*hd, 0.0])
    out["_neck_dir"] = np.array([*nd, 0.0])
    return out


def project(points: np.ndarray, p: Pose) -> np.ndarray:
    """(N, 3) animal points -> (N, 2) view-plane points (x right, y up) for the pose's yaw and elevation,
    facing +x; the renderer mirrors for facing -1 afterwards."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    c, s = np.cos(p.yaw), np.sin(p.yaw)
    toward = z * c + x * s
    return np.stack([x * c - z * s, y - p.elevation * toward], axis=1)
