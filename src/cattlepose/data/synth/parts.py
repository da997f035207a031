"""Part ids of the label map every synthetic image is rendered with, and which parts hide which keypoints.

The renderer paints in depth order (far legs first, foreground objects last) and writes, next to the colours,
the id of the topmost thing at every pixel. A keypoint is occluded (v=1) exactly when the id under it is one of
the ids that can hide it:

- far-side leg joints: anything of the animal nearer to the camera (tail, body, neck, head, near legs);
- centre-line points (head, neck, spine, tail root): the near legs (e.g. a grazing head behind a foreleg);
- near-side leg joints: nothing of the animal itself;
- and every keypoint: any foreground object (fences, gates, posts, troughs, other cattle, people, tall grass).
"""

from __future__ import annotations

BACKGROUND = 0
FAR_HIND = 1
FAR_FORE = 2
FAR_HEAD = 3  # the far ear and far horn, seen behind the head
TAIL = 4
BODY = 5
NECK = 6
HEAD = 7
NEAR_HIND = 8
NEAR_FORE = 9

FENCE = 16
GATE = 17
POST = 18
TROUGH = 19
CATTLE = 20
PERSON = 21
GRASS = 22

ANIMAL = (FAR_HIND, FAR_FORE, FAR_HEAD, TAIL, BODY, NECK, HEAD, NEAR_HIND, NEAR_FORE)
OCCLUDERS = (FENCE, GATE, POST, TROUGH, CATTLE, PERSON, GRASS)
OCCLUDER_NAMES = {
    FENCE: "fence",
    GATE: "gate",
    POST: "post",
    TROUGH: "trough",
    CATTLE: "cattle",
    PERSON: "person",
    GRASS: "grass",
}
FAR_SIDE = (FAR_HIND, FAR_FORE, FAR_HEAD)

# Which parts of the animal hide a keypoint of each depth class (foreground objects hide every class).
SELF_COVER = {
    "far": (TAIL, BODY, NECK, HEAD, NEAR_HIND, NEAR_FORE),
    "centre": (NEAR_HIND, NEAR_FORE),
    "near": (),
}


def cover_ids(depth: str) -> tuple[int, ...]:
    """The label ids that occlude a keypoint of depth class `depth` ('far', 'centre' or 'near')."""
    return SELF_COVER[depth] + OCCLUDERS
