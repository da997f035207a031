"""Render one synthetic animal crop: colours, a part-id label map, and adk17 keypoints with visibility.

`sample_scene(rng, ...)` draws every random choice of one image into a `Scene` (anatomy, pose, coat, farm,
crop size, and integer seeds for the background, occluders and camera); `render(scene, mirror=...)` is then a
pure function of it. `mirror=True` renders the mirrored (chiral) animal in the mirrored scene: the same
picture flipped left-right, whose near-side legs now belong to the other anatomical side. The flip test
compares it with a flipped render whose left/right labels are swapped.

Visibility is read off the label map: a keypoint is v=1 exactly when the id under it (rounded pixel) is one of
`parts.cover_ids(depth)` of its depth class (far legs, centre line, near legs), v=2 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cattlepose.core.schema import load_schema
from cattlepose.data.synth import occluders, parts
from cattlepose.data.synth.anatomy import Anatomy, sample_anatomy, sample_category
from cattlepose.data.synth.geometry import chaikin, ellipse, fill, leaf, stroke
from cattlepose.data.synth.occluders import Shape
from cattlepose.data.synth.pose import Pose, joints, near_side, project, sample_pose, side_to_anatomy
from cattlepose.data.synth.scene import FARMS, Farm, background, camera, lighting

ADK17 = load_schema("adk17").keypoints  # the order every rendered keypoint array follows
CENTRE = ("fore_head", "neck", "fore_spine", "rear_spine", "hip")

# coat families: base colours (RGB) the per-animal colour is jittered around, from white to black
COATS = {
    "white": (236, 232, 222),
    "tan": (205, 158, 102),
    "brown": (135, 82, 46),
    "dark": (78, 50, 33),
    "black": (34, 31, 30),
}
HOOF = (40, 36, 34)


@dataclass(frozen=True)
class Coat:
    family: str
    base: tuple[float, float, float]
    patch: tuple[float, float, float] | None  # piebald patch colour
    n_patches: int
    white_face: bool


@dataclass(frozen=True)
class Scene:
    anatomy: Anatomy
    pose: Pose
    coat: Coat
    farm: Farm
    long_side: int  # crop size before aspect: the longer side in pixels
    margins: tuple[float, float, float, float]  # left, top, right, bottom, as fractions of the long side
    occluder_kinds: tuple[str, ...]
    seed: int  # background, occluders, patches and camera noise all derive from it
    jpeg_quality: int


@dataclass
class Rendered:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    keypoints: np.ndarray  # (17, 3) x, y, v in adk17 order
    labels: np.ndarray  # (H, W) uint8 part ids (see parts.py)
    depth: tuple[str, ...]  # depth class per keypoint: far / centre / near
    scene: Scene
    near: str  # the anatomical side facing the camera
    occluded_by: list[int] = field(default_factory=list)  # label id under each keypoint

    @property
    def occluded_fraction(self) -> float:
        return float(np.mean(self.keypoints[:, 2] == 1))


def sample_coat(rng: np.random.Generator, weights: dict[str, float]) -> Coat:
    names = list(weights)
    p = np.array([weights[n] for n in names])
    family = names[int(rng.choice(len(names), p=p / p.sum()))]
    patch = None
    n = 0
    if family == "piebald":
        dark = rng.random() < 0.7
        base = COATS["black"] if dark else COATS["brown"]
        patch = COATS["white"]
        n = int(rng.integers(3, 9))
    else:
        base = COATS[family]
        if rng.random() < 0.1:
            patch, n = COATS["white"], int(rng.integers(1, 4))
    jitter = rng.uniform(0.88, 1.12, 3) * rng.uniform(0.9, 1.1)
    col = tuple(float(np.clip(c * j, 0, 255)) for c, j in zip(base, jitter, strict=True))
    white_face = family in ("brown", "tan", "dark") and rng.random() < 0.12
    return Coat(family, col, patch, n, white_face)  # type: ignore[arg-type]


LONG_SIDE = (50, 480)  # range of `crop_long_side`
# margins per side, as fractions of the long side: uniform(0, HIGH) ** POW * K, mostly tight, some loose
_MARGIN_HIGH, _MARGIN_POW, _MARGIN_K = 0.1, 1.5, 3.2
MAX_MARGIN = _MARGIN_HIGH**_MARGIN_POW * _MARGIN_K
MIN_CROP_SIDE = 50  # `_layout` scales a smaller crop up to this


def max_crop_side() -> int:
    """The largest crop side `_layout` can produce.

    The long side spans the animal's longer extent plus that axis's margins; across it come the animal's
    shorter extent (at most as long) plus the other two margins, so a squarish animal with wide margins across
    gets a side of up to (1 + 2 * MAX_MARGIN) times the largest long side. (A crop scaled up to MIN_CROP_SIDE
    stays far below it: that would take an animal about ten times longer than tall.)
    """
    return int(np.ceil(LONG_SIDE[1] * (1 + 2 * MAX_MARGIN)))


def _margins(rng: np.random.Generator) -> tuple[float, float, float, float]:
    m = rng.uniform(0.0, _MARGIN_HIGH, 4) ** _MARGIN_POW * _MARGIN_K
    return float(m[0]), float(m[1]), float(m[2]), float(m[3])


def crop_long_side(rng: np.random.Generator) -> int:
    """Competition-like crop sizes: mostly 150-400 px on the long side, `LONG_SIDE` in all (see `max_crop_side`
    for the other side)."""
    return int(np.clip(np.exp(rng.normal(np.log(250), 0.38)), *LONG_SIDE))


def sample_scene(
    rng: np.random.Generator, farm: Farm | None = None, occlusion: float = 1.0, facing: int | None = None
) -> Scene:
    farm = farm if farm is not None else FARMS[int(rng.integers(len(FARMS)))]
    category = sample_category(rng, farm.categories or None)
    return Scene(
        anatomy=sample_anatomy(rng, category),
        pose=sample_pose(rng, facing),
        coat=sample_coat(rng, farm.coats or {"tan": 1.0}),
        farm=farm,
        long_side=crop_long_side(rng),
        margins=_margins(rng),
        occluder_kinds=tuple(occluders.choose(rng, farm.occluders, occlusion)),
        seed=int(rng.integers(2**31)),
        jpeg_quality=int(rng.integers(farm.jpeg[0], farm.jpeg[1] + 1)),
    )


# ------------------------------------------------------------------------------------------------ animal shapes
def _shade(c: tuple[float, ...], k: float) -> tuple[float, float, float]:
    return tuple(float(np.clip(v * k, 0, 255)) for v in c)  # type: ignore[return-value]


def _outline(a: Anatomy, z: float, arch: float = 0.0) -> np.ndarray:
    """Side outline of the barrel (neck root to rump) at lateral offset z, smoothed; (N, 3). `arch` raises the
    back line over the loin (`Pose.back_arch`)."""
    L, d, h = a.length, a.depth, a.hump
    ctrl = [
        (0.02, 1.0), (-a.rump, 0.86), (-0.8 * a.rump, 0.62), (0.04, 1 - 0.93 * d), (0.35 * L, 1 - d - 0.02),
        (0.72 * L, 1 - 1.02 * d), (L + 0.04, 1 - 0.94 * d), (L + a.chest, 1 - 0.58 * d), (L + 0.8 * a.chest, 0.86),
        (L + 0.05, 1.0 + h), (L - 0.1, 1.0 + h), (0.6 * L, 0.985), (0.35 * L, 1.0), (0.12 * L, 1.0),
    ]  # fmt: skip
    if arch:  # the back line's last three points, loin highest (ctrl[-2] is over rear_spine)
        ctrl[-3:] = [(x, y + arch * k) for (x, y), k in zip(ctrl[-3:], (0.6, 1.0, 0.55), strict=True)]
    p = chaikin(np.array(ctrl), 2, closed=True)
    return np.column_stack([p, np.full(len(p), z)])


def _animal_shapes(s: Scene, to_px) -> tuple[list[Shape], dict[str, np.ndarray]]:
    """Every animal shape in draw order (far legs first) in crop pixels, and the projected keypoints."""
    a, p, coat = s.anatomy, s.pose, s.coat
    j = joints(a, p)
    lw = a.leg_width
    base = coat.base
    far = _shade(base, 0.7)

    def px(*names: str) -> np.ndarray:
        return to_px(np.stack([j[n] for n in names]))

    def leg(limb: str, side: str, color) -> list[Shape]:
        pre = f"{limb}_{side}_"
        spine = px(pre + "top", pre + "shoulder", pre + "knee", pre + "foot")
        scale = to_px.scale
        widths = np.array([1.7, 1.15, 0.62, 0.52] if limb == "fore" else [2.2, 1.3, 0.62, 0.52]) * lw * scale
        label = {("fore", "near"): parts.NEAR_FORE, ("fore", "far"): parts.FAR_FORE}.get(
            (limb, side), parts.NEAR_HIND if side == "near" else parts.FAR_HIND
        )
        knee, foot, toe = px(pre + "knee", pre + "foot", pre + "toe")
        # the hoof reaches a little up the pastern, so the foot joint lies inside it rather than on an edge
        pastern = foot + 0.15 * (knee - foot)
        hoof = stroke(np.array([pastern, foot, toe]), np.array([0.55, 0.6, 0.45]) * lw * scale, 0)
        hoof_col = HOOF if side == "near" else _shade(HOOF, 0.7)
        # a round knee: smoothing cuts the corner of a sharply bent leg, which could leave the joint outside
        knob = ellipse(knee, 0.5 * widths[2] * 1.15, 0.5 * widths[2] * 1.15, 0.0, 12)
        return [Shape([stroke(spine, widths), knob], color, label), Shape([hoof], hoof_col, label)]

    scale = to_px.scale
    hd = j["_head_dir"][:2]
    hn = np.array([-hd[1], hd[0]])
    beta = float(np.arctan2(hd[1], hd[0]))
    poll = j["poll"]

    def head_bits(zsign: float, color, label: int) -> list[Shape]:
        z = zsign * a.head_width * 0.35
        ear_base = poll + np.array([*(0.08 * a.head_len * hd - 0.1 * a.head_width * hn), z])
        ear_dir = beta + np.pi * 0.8 + zsign * 0.15
        ear = leaf(np.zeros(2), ear_dir, a.ear_len, 0.45 * a.ear_len, 10)
        out = [Shape([to_px(np.column_stack([ear + ear_base[:2], np.full(len(ear), z)]))], color, label)]
        if a.horn_len > 0:
            hb = poll + np.array([*(0.1 * a.head_len * hd + 0.35 * a.head_width * hn), z])
            tip_dir = beta + np.pi / 2 + 0.5
            pts2 = np.array([hb[:2], hb[:2] + 0.6 * a.horn_len * np.array([np.cos(tip_dir), np.sin(tip_dir)])])
            pts2 = np.vstack([pts2, pts2[-1] + 0.5 * a.horn_len * np.array([np.cos(beta + 0.3), np.sin(beta + 0.3)])])
            horn = to_px(np.column_stack([pts2, np.full(3, z)]))
            out.append(Shape([stroke(horn, np.array([0.08, 0.05, 0.015]) * scale)], (215, 205, 180), label))
        return out

    shapes: list[Shape] = []
    shapes += leg("rear", "far", far)
    shapes += leg("fore", "far", far)
    shapes += head_bits(-1.0, far, parts.FAR_HEAD)
    # tail: from the root down the rump, a tuft at the end
    root = j["hip"]
    sw = p.tail_swing
    tail3 = root + np.array([[0, 0, 0], [-0.07, -0.15, 0], [-0.08 + sw, -0.45, 0], [-0.06 + 2 * sw, -a.tail_len, 0]])
    tail = to_px(tail3)
    shapes.append(Shape([stroke(tail, np.array([0.06, 0.045, 0.035, 0.03]) * scale)], _shade(base, 0.85), parts.TAIL))
    tip = tail3[-1]
    tuft = to_px(np.column_stack([ellipse(tip[:2] + np.array([0.0, -0.04]), 0.035, 0.08, 0, 10), np.zeros(10)]))
    shapes.append(Shape([tuft], _shade(base, 0.55), parts.TAIL))
    body = [to_px(_outline(a, zz, p.back_arch)) for zz in (0.7 * a.half_width, -0.7 * a.half_width)]
    shapes.append(Shape(body, base, parts.BODY))
    neck = px("neck_root", "neck_base", "poll")
    nw = a.neck_width * scale
    shapes.append(Shape([stroke(neck, [1.5 * nw, nw, 0.62 * nw])], base, parts.NECK))
    head_pts = to_px(np.stack([poll - 0.06 * j["_head_dir"], j["head_mid"], j["muzzle"]]))
    hw = a.head_width * scale
    face = (236.0, 232.0, 222.0) if coat.white_face else base
    shapes.append(Shape([stroke(head_pts, [hw, 0.85 * hw, 0.62 * hw])], face, parts.HEAD))
    muzzle = j["muzzle"][:2] - 0.05 * a.head_len * hd
    mz = to_px(np.column_stack([ellipse(muzzle, 0.36 * a.head_width, 0.33 * a.head_width, beta, 12), np.zeros(12)]))
    shapes.append(Shape([mz], _shade(face, 0.55) if coat.family != "black" else (70, 60, 60), parts.HEAD))
    eye = to_px(np.column_stack([ellipse(j["eye"][:2], 0.03, 0.025, 0, 8), np.zeros(8)]))
    shapes.append(Shape([eye], (20, 18, 18), parts.HEAD))
    shapes += head_bits(1.0, base, parts.HEAD)
    shapes += leg("rear", "near", base)
    shapes += leg("fore", "near", base)
    return shapes, j


class _ToUnit:
    """Animal (x, y, z) -> view-plane points in animal units, y down: projection, facing mirror, roll.

    Crop pixels are an affine map of these (`_Affine`); since `stroke` and `ellipse` commute with scaling,
    shapes are built once in these units and then mapped.
    """

    scale = 1.0

    def __init__(self, pose: Pose):
        self.pose = pose
        c, s = np.cos(pose.roll), np.sin(pose.roll)
        self.rot = np.array([[c, -s], [s, c]])

    def __call__(self, pts3: np.ndarray) -> np.ndarray:
        q = project(np.atleast_2d(pts3), self.pose)
        q[:, 0] *= self.pose.facing
        q[:, 1] *= -1.0
        return q @ self.rot.T


@dataclass(frozen=True)
class _Affine:
    """Unit-space points -> crop pixels (scale, offset), mirrored as x -> W - 1 - x when `mirror_width` is set."""

    scale: float
    offset: tuple[float, float]
    mirror_width: int | None = None

    def __call__(self, q: np.ndarray) -> np.ndarray:
        out = np.asarray(q, np.float64) * self.scale + np.asarray(self.offset)
        if self.mirror_width is not None:
            out[:, 0] = (self.mirror_width - 1) - out[:, 0]
        return out


# ------------------------------------------------------------------------------------------------ composition
def _layout(s: Scene, shapes: list[Shape]) -> tuple[float, tuple[float, float], int, int]:
    """Scale, offset and crop size so the animal (shapes in units) fills the crop up to the scene's margins."""
    pts = np.vstack([p for sh in shapes for p in sh.polys])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    ext = hi - lo
    ml, mt, mr, mb = s.margins
    long_frac = 1.0 + (ml + mr if ext[0] >= ext[1] else mt + mb)
    scale = s.long_side / (max(ext) * long_frac)
    w = ext[0] * scale + (ml + mr) * s.long_side
    h = ext[1] * scale + (mt + mb) * s.long_side
    if min(w, h) < MIN_CROP_SIDE:  # competition crops are at least ~50 px on a side
        k = MIN_CROP_SIDE / min(w, h)
        scale, w, h = scale * k, w * k, h * k
    width, height = max(MIN_CROP_SIDE, round(w)), max(MIN_CROP_SIDE, round(h))
    offset = (ml * s.long_side - lo[0] * scale, mt * s.long_side - lo[1] * scale)
    return scale, offset, width, height


def _map_shapes(shapes: list[Shape], f) -> list[Shape]:
    return [Shape([f(p) for p in sh.polys], sh.color, sh.label) for sh in shapes]


def render(s: Scene, mirror: bool = False, effects: bool = True) -> Rendered:
    """Render a scene (see module docstring). `effects=False` skips light, blur and noise (for tests)."""
    to_unit = _ToUnit(s.pose)
    unit_shapes, j = _animal_shapes(s, to_unit)
    scale, offset, w, h = _layout(s, unit_shapes)
    to_px = _Affine(scale, offset, w if mirror else None)
    shapes = _map_shapes(unit_shapes, to_px)
    rng = np.random.default_rng(s.seed)
    bg = background(rng, s.farm, w, h)
    img = bg[:, ::-1].copy() if mirror else bg
    labels = np.zeros((h, w), np.uint8)
    for sh in shapes:
        fill(img, sh.polys, sh.color)
        fill(labels, sh.polys, sh.label, aa=False)
    _coat_effects(img, labels, s, rng, mirror)

    fg: list[Shape] = []
    for kind in s.occluder_kinds:
        fg += occluders.MAKERS[kind](rng, w, h, s.farm.rail, s.coat.base)
    if mirror:
        fg = _map_shapes(fg, _Affine(1.0, (0.0, 0.0), w))
    for sh in fg:
        fill(img, sh.polys, sh.color)
        fill(labels, sh.polys, sh.label, aa=False)

    if effects:
        lit = lighting(rng, s.farm, img[:, ::-1] if mirror else img)
        out = camera(rng, s.farm, lit)
        img = out[:, ::-1].copy() if mirror else out

    near = near_side(-s.pose.facing if mirror else s.pose.facing)
    kps, depth, under = _keypoints(j, lambda p3: to_px(to_unit(p3)), labels, near)
    return Rendered(img, kps, labels, depth, s, near, under)


def _coat_effects(img: np.ndarray, labels: np.ndarray, s: Scene, rng: np.random.Generator, mirror: bool) -> None:
    """Piebald patches and top-lit shading, on the animal's pixels only (in place)."""
    animal = (labels >= parts.FAR_HIND) & (labels <= parts.NEAR_FORE)
    ys, xs = np.nonzero(animal)
    h, w = labels.shape
    if len(ys) == 0:
        return
    y0, y1 = ys.min(), ys.max() + 1
    x0, x1 = xs.min(), xs.max() + 1
    sub = (slice(y0, y1), slice(x0, x1))
    if s.coat.patch is not None:
        # patches are placed in the unmirrored frame and the mask flipped, so a mirrored render matches
        cx0, cx1 = (w - x1, w - x0) if mirror else (x0, x1)
        mask = np.zeros((h, w), np.uint8)
        for _ in range(s.coat.n_patches):
            c = (rng.uniform(cx0, cx1), rng.uniform(y0, y1))
            r = rng.uniform(0.08, 0.25) * (cx1 - cx0)
            poly = chaikin(ellipse(c, r, r * rng.uniform(0.5, 1.2), rng.uniform(0, np.pi), 8)
                           * rng.uniform(0.85, 1.15, (8, 1)) + 0.0, 1)  # fmt: skip
            fill(mask, [poly - np.mean(poly, 0) + c], 1, aa=False)
        if mirror:
            mask = mask[:, ::-1]
        on = (mask[sub] > 0) & animal[sub]
        far = on & np.isin(labels[sub], parts.FAR_SIDE)
        region = img[sub]
        region[on] = np.asarray(s.coat.patch, np.uint8)
        region[far] = (np.asarray(s.coat.patch) * 0.7).astype(np.uint8)
    # shading: lighter back, darker belly and legs
    rows = np.linspace(1.12, 0.78, y1 - y0, dtype=np.float32)[:, None, None]
    region = img[sub].astype(np.float32)
    shaded = np.where(animal[sub][..., None], region * rows, region)
    img[sub] = np.clip(shaded, 0, 255).astype(np.uint8)


def _keypoints(j, to_px, labels: np.ndarray, near: str):
    h, w = labels.shape
    names3: list[str] = []
    depth: list[str] = []
    for name in ADK17:
        if name in CENTRE:
            names3.append(name)
            depth.append("centre")
            continue
        limb, side, joint = name.split("_")
        view = "near" if side == near else "far"
        names3.append(f"{limb}_{view}_{joint}")
        depth.append(view)
    xy = to_px(np.stack([j[n] for n in names3]))  # inside the crop by construction (tested), not clipped
    xi = np.clip(np.floor(xy[:, 0] + 0.5).astype(int), 0, w - 1)
    yi = np.clip(np.floor(xy[:, 1] + 0.5).astype(int), 0, h - 1)
    under = labels[yi, xi]
    v = np.array([1.0 if int(u) in parts.cover_ids(d) else 2.0 for u, d in zip(under, depth, strict=True)])
    return np.column_stack([xy, v]), tuple(depth), [int(u) for u in under]


def render_animal(
    seed: int | np.random.Generator = 0,
    farm: Farm | None = None,
    occlusion: float = 1.0,
    facing: int | None = None,
    mirror: bool = False,
    effects: bool = True,
) -> Rendered:
    """One sample from a seed (or generator): `sample_scene` then `render`."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return render(sample_scene(rng, farm, occlusion, facing), mirror=mirror, effects=effects)


__all__ = ["ADK17", "Rendered", "Scene", "render", "render_animal", "sample_scene", "side_to_anatomy"]
