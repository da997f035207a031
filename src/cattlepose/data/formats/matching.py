"""Which prediction belongs to which ground-truth image: names matched by their path under the data root.

A prediction names its image by a path: relative to the data root (`farm A/photo_000.jpg`, what cattlepose
writes), longer (`/data/test/images/farm A/photo_000.jpg`, an ADK `img_path`) or shorter (`photo_000.jpg`, or
`photo_000` as templates list stems). A name fits an image when one path ends the other, component by
component (the last one also by stem when the name has no suffix); the longest fit wins. A name that fits two
images equally (`photo_000.jpg` against `farm A/photo_000.jpg` and `farm B/photo_000.jpg`) is an error naming
both, never a guess, and so are two spellings that name one image. Several animals of one image name it alike
(a long CSV's rows, an ADK JSON's annotations).

COCO results name images by the ground truth's COCO image id; against ground truth that has none (an ADK
folder, a CSV), by the `file_name` cattlepose writes beside each detection.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from cattlepose.core.errors import UserError
from cattlepose.data.records import Instance, Pose, Sample

BY_PATH = (
    "one prediction per animal: each image's one prediction paired with its one animal, images matched by their "
    "path under the data root"
)
_SHOWN = 10  # names listed in a message before "..."


def image_name(inst: Instance) -> str:
    """The image's path under its data root, as its reader recorded it (`meta["file_name"]`), else its file name."""
    name = inst.meta.get("file_name")
    return "/".join(_parts(name)) if isinstance(name, str) and _parts(name) else inst.image.name


def listing(names: Sequence[str]) -> str:
    """Up to ten names, then how many more."""
    more = f" ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _fit(query: tuple[str, ...], target: tuple[str, ...]) -> tuple[int, int] | None:
    """How well a name fits an image: (components that agree, 1 if the last agrees with its suffix), or None when
    the shorter path does not end the longer one."""
    if not query or not target:
        return None
    if query[-1] == target[-1]:
        exact = 1
    elif query[-1] == PurePosixPath(target[-1]).stem:
        exact = 0
    else:
        return None
    n = min(len(query), len(target))
    if query[len(query) - n : -1] != target[len(target) - n : -1]:
        return None
    return n, exact


def match_names(
    queries: Iterable[str], targets: Iterable[str], source: str | Path, what: str = "prediction"
) -> tuple[dict[str, str], list[str]]:
    """(query -> the target image it names, the queries that name no target), matched as the module says.

    A query that fits several targets equally, and two queries that name one target, are UserErrors naming them."""
    by_last: dict[str, list[str]] = {}
    for t in targets:
        parts = _parts(t)
        if parts:
            for key in {parts[-1], PurePosixPath(parts[-1]).stem}:
                by_last.setdefault(key, []).append(t)
    out: dict[str, str] = {}
    unmatched: list[str] = []
    owner: dict[str, str] = {}
    for q in queries:
        qp = _parts(q)
        fits = {t: f for t in by_last.get(qp[-1] if qp else "", []) if (f := _fit(qp, _parts(t))) is not None}
        if not fits:
            unmatched.append(q)
            continue
        best = max(fits.values())
        chosen = [t for t, f in fits.items() if f == best]
        if len(chosen) > 1:
            raise UserError(
                f"{what} '{q}' fits {len(chosen)} images of the ground truth ({listing(chosen)}); name each image "
                "by its path under the data root",
                path=source,
            )
        target = chosen[0]
        if target in owner:
            raise UserError(f"two {what}s name the image '{target}': '{owner[target]}' and '{q}'", path=source)
        owner[target] = q
        out[q] = target
    return out, unmatched


def check_one_per_image(samples: Sequence[Sample], source: str | Path) -> None:
    """A wide CSV has one row per image: a ground-truth image of several animals, which one row cannot be scored
    against, is a UserError naming it."""
    count = Counter(image_name(s) for s in samples)
    crowded = [name for name, n in count.items() if n > 1]
    if crowded:
        first = crowded[0]
        raise UserError(
            f"the ground truth holds {count[first]} animals in '{first}' ({len(crowded)} such image(s): "
            f"{listing(crowded)}); a wide CSV has one row per image, which cannot be scored against each animal: "
            "write a long CSV or COCO results (cattlepose predict --format long-csv or --format coco)",
            path=source,
        )


def locate(
    poses: Sequence[Pose],
    samples: Sequence[Sample],
    fmt: str,
    source: str | Path,
    images: Mapping[str, str] | None = None,
    categories: Iterable[Any] | None = None,
) -> tuple[list[Pose], list[str]]:
    """The predicted animals in the ground truth's images, each with `instance.image_id` set to its image's
    `Sample.image_id`, and a description of each prediction the ground truth has no place for (its image's name
    or id, or its category), in file order.

    COCO results (`fmt` "coco") are placed by each detection's `file_name` where it gives one (what predict writes
    for an image without a COCO id, whose image_id is only its number in the file), else by the ground truth's
    COCO image ids (a ground truth without them needs every `file_name`); the other formats by the name they give
    the image. `images`: every image of the ground truth, id -> name (a COCO file's, those without an animal
    included: a prediction there is a false positive, not an extra); the samples' own images when None.
    `categories`: the ground truth's category ids, when COCO results are scored per category.

    Images with an animal and no prediction at all are, for a wide CSV (a row per image, which has no way to say
    that nothing was found), a UserError naming them: the wrong file, or a run cut short, never scored as if
    nothing had been found. The other formats hold any number of animals per image, none included (a detector
    that found nothing): there they are misses, which the COCO protocol counts; only a file none of whose
    predictions lies in an image of the ground truth is refused."""
    names = {"/".join(_parts(name)): image_id for image_id, name in (images or {}).items()}
    names.update({image_name(s): s.image_id for s in samples})
    extra: list[str] = []
    place: dict[int, str] = {}
    by_name = list(range(len(poses)))
    if fmt == "coco" and all("coco_image_id" in s.meta for s in samples):
        # a detection that names its image's file (predict writes `file_name` for an image without a COCO id,
        # a folder's photograph, whose image_id is then only its number) is placed by it; the others by id
        by_name = [j for j, p in enumerate(poses) if p.instance.meta.get("file_name")]
        known = set(names.values())
        named = set(by_name)
        place = {j: p.instance.image_id for j, p in enumerate(poses) if j not in named and p.instance.image_id in known}
        extra += list(dict.fromkeys(f"image_id {p.instance.image_id}" for j, p in enumerate(poses)
                                    if j not in named and j not in place))  # fmt: skip
    elif fmt == "coco":
        nameless = next((j for j, p in enumerate(poses) if not p.instance.meta.get("file_name")), None)
        if nameless is not None:
            raise UserError(
                "COCO results name images by the ground truth's COCO image ids, and this ground truth (not a "
                "COCO file) has none: each detection needs the 'file_name' of its image (cattlepose predict "
                "writes it), or evaluate against a COCO file",
                path=source,
                field=f"[{nameless}].file_name",
            )
    if by_name:
        coco = fmt == "coco"
        given = [str(poses[j].instance.meta["file_name"]) if coco else poses[j].instance.image_id for j in by_name]
        matched, unknown = match_names(list(dict.fromkeys(given)), names, source,
                                       what="detection file_name" if coco else "prediction")  # fmt: skip
        place.update({j: names[matched[n]] for j, n in zip(by_name, given, strict=True) if n in matched})
        extra += unknown
    kept = [Pose(dataclasses.replace(p.instance, image_id=place[j]), p.keypoints, p.score)
            for j, p in enumerate(poses) if j in place]  # fmt: skip
    found = {p.instance.image_id for p in kept}
    with_animals = list(dict.fromkeys(image_name(s) for s in samples))
    missing = list(dict.fromkeys(image_name(s) for s in samples if s.image_id not in found))
    if missing and (fmt == "csv" or (poses and not kept)):
        raise UserError(f"no prediction for {len(missing)} of {len(with_animals)} ground-truth image(s) with "
                        f"animals: {listing(missing)}", path=source)  # fmt: skip
    if categories is not None:
        wanted = set(categories)
        other = list(dict.fromkeys(str(c) for p in kept if (c := p.instance.meta.get("category_id")) not in wanted))
        if other and all(p.instance.meta.get("category_id") not in wanted for p in kept):
            raise UserError(f"no detection has a category of the ground truth: the results' category_id "
                            f"{', '.join(other)}, the ground truth's {', '.join(map(str, sorted(wanted, key=str)))}",
                            path=source, field="category_id")  # fmt: skip
        extra += [f"category_id {c}" for c in other]
        kept = [p for p in kept if p.instance.meta.get("category_id") in wanted]
    return kept, extra
