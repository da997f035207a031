"""Which prediction belongs to which ground-truth image: names matched by their path under the data root.

A prediction names its image by a path: relative to the data root (`farm A/photo_000.jpg`, what cattlepose
writes), longer (`/data/test/images/farm A/photo_000.jpg`, an ADK `img_path`) or shorter (`photo_000.jpg`, or
`photo_000` as templates list stems). A name fits an image when one path ends the other, component by
component (the last one also by stem when the name has no suffix); the longest fit wins. A name that fits two
images equally (`photo_000.jpg` against `farm A/photo_000.jpg` and `farm B/photo_000.jpg`) is an error naming
both, never a guess, and so are two predictions for one image.

COCO results name images by the ground truth's COCO image id; against ground truth that has none (an ADK
folder, a CSV), by the `file_name` cattlepose writes beside each detection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.data.records import Detection, Sample

BY_PATH = "one prediction per image, matched to the ground truth by the image's path under the data root"
_SHOWN = 10  # names listed in a message before "..."


def image_name(s: Sample) -> str:
    """The image's path under its data root, as its reader recorded it (`meta["file_name"]`), else its file name."""
    name = s.meta.get("file_name")
    return "/".join(_parts(name)) if isinstance(name, str) and _parts(name) else s.image.name


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


def pair_rows(
    preds: Mapping[str, np.ndarray], samples: Sequence[Sample], source: str | Path, fmt: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Sample.key -> prediction from a file of one row per image (wide CSV, ADK JSON), and the names of the rows
    for images the ground truth does not hold. A ground-truth image of several animals (one row cannot be
    scored against each of them) and images without a row are UserErrors naming them."""
    by_image: dict[str, list[Sample]] = {}
    for s in samples:
        by_image.setdefault(image_name(s), []).append(s)
    crowded = [name for name, group in by_image.items() if len(group) > 1]
    if crowded:
        first = crowded[0]
        raise UserError(
            f"the ground truth holds {len(by_image[first])} animals in '{first}' ({len(crowded)} such image(s): "
            f"{listing(crowded)}); a {fmt} file has one row per image, which cannot be scored against each "
            "animal: write COCO results (cattlepose predict --format coco)",
            path=source,
        )
    matched, extra = match_names(preds, by_image, source)
    missing = sorted(set(by_image) - set(matched.values()))
    if missing:
        raise UserError(f"no prediction for {len(missing)} of {len(by_image)} ground-truth image(s): "
                        f"{listing(missing)}", path=source)  # fmt: skip
    return {by_image[target][0].key: preds[name] for name, target in matched.items()}, extra


def assign_detections(
    dets: Sequence[Detection],
    samples: Sequence[Sample],
    image_ids: Sequence[str],
    source: str | Path,
    categories: Iterable[Any] | None = None,
) -> tuple[list[Detection], list[str]]:
    """The detections of the ground truth's images, each with `image` set to that image's `Sample.image_id`,
    and a description of each image (or category) that is not the ground truth's. `image_ids`: every image of
    the ground truth, those without an animal included (detections there are false positives, not extras);
    `categories`: the ground truth's category ids, when detections are scored per category.

    Images with an animal and no detection at all are a UserError naming them: the wrong file, or a run cut
    short, and never scored as if the detector had missed."""
    coco_ids = all("coco_image_id" in s.meta for s in samples)
    extra: list[str] = []
    if coco_ids:
        known = {str(i) for i in image_ids}
        image_of = {d.index: d.image for d in dets if d.image in known}
        extra += sorted({f"image_id {d.image}" for d in dets if d.image not in known})
    else:
        nameless = next((d for d in dets if not d.file_name), None)
        if nameless is not None:
            raise UserError(
                "COCO results name images by the ground truth's COCO image ids, and this ground truth (not a COCO "
                "file) has none: each detection needs the 'file_name' of its image (cattlepose predict writes it), "
                "or evaluate against a COCO file",
                path=source,
                field=f"[{nameless.index}].file_name",
            )
        names = {image_name(s): s.image_id for s in samples}
        matched, unknown = match_names(sorted({d.file_name for d in dets if d.file_name}), names, source,
                                       what="detection file_name")  # fmt: skip
        image_of = {d.index: names[matched[d.file_name]] for d in dets if d.file_name in matched}
        extra += unknown
    kept = [Detection(image_of[d.index], d.keypoints, d.score, d.category_id, d.file_name, d.index)
            for d in dets if d.index in image_of]  # fmt: skip
    found = {d.image for d in kept}
    missing = sorted({image_name(s) for s in samples if s.image_id not in found})
    if missing:
        raise UserError(f"no detection in {len(missing)} ground-truth image(s) with animals: {listing(missing)}",
                        path=source)  # fmt: skip
    if categories is not None:
        wanted = set(categories)
        other = sorted({str(d.category_id) for d in kept if d.category_id not in wanted})
        if other and all(d.category_id not in wanted for d in kept):
            raise UserError(f"no detection has a category of the ground truth: the results' category_id "
                            f"{', '.join(other)}, the ground truth's {', '.join(map(str, sorted(wanted, key=str)))}",
                            path=source, field="category_id")  # fmt: skip
        extra += [f"category_id {c}" for c in other]
        kept = [d for d in kept if d.category_id in wanted]
    return kept, extra
