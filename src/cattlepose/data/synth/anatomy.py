"""Body proportions of one synthetic animal, drawn per category (calf, cow, bull).

Units: the withers height of the animal is 1, the ground is y = 0, the animal faces +x and the tail root sits at
x = 0. Keypoint positions were set from real ADK2021 side views (fixtures/adk2021_sample): the fore "shoulder"
is at elbow height just above the belly line, the rear "shoulder" is the stifle at about 0.6 of the height near
the back of the body, "neck" is the throat at the front of the chest, "fore_head" the forehead near the poll.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Category ids as the ADK writer names them (1 cattle, 2 nuptial = breeding bull, 3 calf).
CATEGORIES = {"cow": 1, "bull": 2, "calf": 3}
CATEGORY_MIX = {"cow": 0.6, "bull": 0.2, "calf": 0.2}


@dataclass(frozen=True)
class Anatomy:
    category: str
    length: float  # tail root to withers, along x
    depth: float  # barrel depth (back line to belly)
    half_width: float  # half the body width: lateral offset of the legs (for 3/4 views)
    chest: float  # chest front beyond the withers
    rump: float  # rump behind the tail root
    neck_len: float
    neck_width: float  # at the base; the neck narrows to 0.6 of this at the head
    head_len: float
    head_width: float  # at the poll; the muzzle is narrower
    ear_len: float
    horn_len: float  # 0 = polled
    leg_width: float  # upper leg; cannon and pastern are thinner
    tail_len: float
    hump: float  # extra height over the withers (bulls)

    @property
    def category_id(self) -> int:
        return CATEGORIES[self.category]


def sample_category(rng: np.random.Generator, mix: dict[str, float] | None = None) -> str:
    mix = mix or CATEGORY_MIX
    names = list(mix)
    p = np.array([mix[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_anatomy(rng: np.random.Generator, category: str) -> Anatomy:
    """Proportions with per-animal jitter around the category's means (calves: long legs, big head;
    bulls: deep chest, thick neck, often horned)."""

    def j(mean: float, rel: float = 0.07) -> float:
        return float(mean * (1.0 + rel * rng.standard_normal()))

    if category == "calf":
        base = dict(length=0.88, depth=0.40, half_width=0.13, neck_len=0.36, neck_width=0.26, head_len=0.40,
                    head_width=0.21, leg_width=0.085, tail_len=0.55, hump=0.0, horn=0.0)  # fmt: skip
    elif category == "bull":
        base = dict(length=1.10, depth=0.56, half_width=0.20, neck_len=0.40, neck_width=0.42, head_len=0.42,
                    head_width=0.24, leg_width=0.13, tail_len=0.70, hump=0.05, horn=0.6)  # fmt: skip
    elif category == "cow":
        base = dict(length=1.05, depth=0.50, half_width=0.18, neck_len=0.44, neck_width=0.32, head_len=0.42,
                    head_width=0.20, leg_width=0.11, tail_len=0.75, hump=0.0, horn=0.3)  # fmt: skip
    else:
        raise ValueError(f"unknown category {category!r}")
    horned = rng.random() < base["horn"]
    return Anatomy(
        category=category,
        length=j(base["length"], 0.1),
        depth=j(base["depth"], 0.1),
        half_width=j(base["half_width"]),
        chest=j(0.22),
        rump=j(0.07),
        neck_len=j(base["neck_len"], 0.12),
        neck_width=j(base["neck_width"]),
        head_len=j(base["head_len"], 0.08),
        head_width=j(base["head_width"]),
        ear_len=j(0.13, 0.15),
        horn_len=j(0.16, 0.3) if horned else 0.0,
        leg_width=j(base["leg_width"]),
        tail_len=j(base["tail_len"]),
        hump=max(0.0, j(base["hump"], 0.5)) if base["hump"] else 0.0,
    )
