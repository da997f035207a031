"""ADK2021 per-image JSON: `annotations/<stem>.json` beside `images/<stem>.jpg`, one animal per file.

Quirks of the real competition data handled here:
- `file_name` that does not exist while an image with the JSON's own stem does: that image is used, and one
  warning with the count is issued.
- placeholder boxes unrelated to the image (every box `[0, 0, 125, 291]`): with `bbox="auto"` a box that does
  not fit inside the image, or that misses the animal's labelled keypoints, is replaced by the whole image.
  (Checking only the fit is not enough: on the larger images the placeholder fits and would crop a strip.)
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import write_json
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.formats.common import (
    ErrorSink,
    box_fits,
    check_box,
    check_box_overlaps,
    check_image_size,
    check_keypoints,
    find_by_stem,
    keypoints_inside,
    load_json,
    report_or_raise,
    resolve_inside,
    validate_samples,
)
from cattlepose.data.images import image_size
from cattlepose.data.records import Origin, Sample

BoxMode = Literal["auto", "annotation", "image"]
CATEGORY_NAMES = {1: "cattle", 2: "nuptial", 3: "calf"}
_RESERVED_IMAGE_KEYS = ("file_name", "width", "height")
_BOX_FIELD = "label_info.annotations[0].bbox"
_KPS_FIELD = "label_info.annotations[0].keypoints"


def layout(root: str | Path) -> tuple[Path, Path]:
    """(annotation folder, image folder) of an ADK root, which may also be the annotation folder itself."""
    root = Path(root)
    if (root / "annotations").is_dir():
        ann = root / "annotations"
        img = root / "images" if (root / "images").is_dir() else root
        return ann, img
    if root.is_dir():
        img = root.parent / "images" if (root.parent / "images").is_dir() else root
        return root, img
    if root.exists():
        raise UserError("an ADK data set is a folder of per-image JSON files, not a file", path=root)
    raise UserError("ADK data folder not found", path=root)


def read(
    root: str | Path,
    num_keypoints: int | None = None,
    images: str | Path | None = None,
    bbox: BoxMode = "auto",
    check_images: bool = True,
    on_error: ErrorSink | None = None,
) -> list[Sample]:
    """Read every `*.json` under the annotation folder into Samples (sorted by file name).

    Image sizes come from the image headers (no pixel decoding). With `on_error`, a bad file is reported there
    and skipped instead of raising.
    """
    samples, _ = read_detailed(root, num_keypoints, images, bbox, check_images, on_error)
    return samples


def read_detailed(
    root: str | Path,
    num_keypoints: int | None = None,
    images: str | Path | None = None,
    bbox: BoxMode = "auto",
    check_images: bool = True,
    on_error: ErrorSink | None = None,
) -> tuple[list[Sample], dict[str, int]]:
    """`read`, plus counts of the quirks it repaired: `renamed_images`, `placeholder_boxes`."""
    if bbox not in ("auto", "annotation", "image"):
        raise UserError(f"bbox mode '{bbox}' must be auto, annotation or image", field="data.bbox")
    ann_dir, img_dir = layout(root)
    if images is not None:
        img_dir = Path(images)
        if not img_dir.is_dir():
            raise UserError("image folder not found", path=img_dir, field="images")
    files = sorted(ann_dir.glob("*.json"))
    if not files:
        report_or_raise(UserError("the data set is empty: no annotation files (*.json)", path=ann_dir), on_error)
        return [], {"renamed_images": 0, "placeholder_boxes": 0}
    samples: list[Sample] = []
    stats = {"renamed_images": 0, "placeholder_boxes": 0}
    owner: dict[Path, Path] = {}  # photograph (resolved image file) -> the annotation file that claimed it first
    for f in files:
        try:
            sample, used_stem, placeholder = _read_one(f, img_dir, num_keypoints, bbox, check_images)
            first = owner.setdefault(sample.image.resolve(), f)
            if first != f:
                raise UserError(
                    f"duplicate image: {sample.image.name} is already annotated by {first.name} (one photograph, "
                    "one animal, one file)",
                    path=f,
                    field="label_info.image.file_name",
                )
        except UserError as e:
            report_or_raise(e, on_error)
            continue
        stats["renamed_images"] += used_stem
        stats["placeholder_boxes"] += placeholder
        samples.append(sample)
    if stats["renamed_images"]:
        warnings.warn(
            f"{ann_dir}: {stats['renamed_images']} annotation file(s) name a file_name that does not exist; "
            "used the image with the annotation's own stem instead",
            stacklevel=3,
        )
    try:
        validate_samples(samples, source=ann_dir, num_keypoints=num_keypoints)
    except UserError as e:
        report_or_raise(e, on_error)
    return samples, stats


def read_category(root: str | Path) -> dict[str, Any]:
    """The keypoint category of an ADK set as a COCO-style category ({name, keypoints, skeleton 1-indexed}),
    taken from the first annotation file's `categories[].keypoints_name`; for `schema: from_data`."""
    ann_dir, _ = layout(root)
    files = sorted(ann_dir.glob("*.json"))
    if not files:
        raise UserError("the data set is empty: no annotation files (*.json)", path=ann_dir)
    info = load_json(files[0])
    cats = info.get("label_info", {}).get("categories") if isinstance(info, dict) else None
    for c in cats if isinstance(cats, list) else []:
        if isinstance(c, dict) and isinstance(c.get("keypoints_name"), list) and c["keypoints_name"]:
            return {"name": c.get("name", "adk"), "keypoints": c["keypoints_name"], "skeleton": c.get("skeleton")}
    raise UserError(
        "no category with a 'keypoints_name' list, so the data cannot serve as its own schema; "
        "name a schema (e.g. adk17) instead",
        path=files[0],
        field="label_info.categories[].keypoints_name",
    )


def _read_one(
    path: Path, img_dir: Path, num_keypoints: int | None, bbox_mode: BoxMode, check_images: bool
) -> tuple[Sample, bool, bool]:
    """(sample, whether the image was found by the JSON's stem, whether the box was a placeholder)."""
    doc = load_json(path)
    info = doc.get("label_info") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise UserError("missing 'label_info' object", path=path, field="label_info")
    image = info.get("image")
    if not isinstance(image, dict):
        raise UserError("missing 'label_info.image' object", path=path, field="label_info.image")
    anns = info.get("annotations")
    if not isinstance(anns, list) or not anns:
        raise UserError("needs at least one annotation", path=path, field="label_info.annotations")
    if len(anns) > 1:
        raise UserError(
            f"holds {len(anns)} animals; the ADK format has one per image (use COCO for several)",
            path=path,
            field="label_info.annotations",
        )
    ann = anns[0]
    if not isinstance(ann, dict):
        raise UserError("an annotation must be an object", path=path, field="label_info.annotations[0]")

    img_path, used_stem = _image_path(path, image.get("file_name"), img_dir)
    kps = check_keypoints(ann.get("keypoints"), num_keypoints, path, _KPS_FIELD)
    check_image_size(image, path, "label_info.image")
    width, height = image.get("width"), image.get("height")
    if check_images or not (_positive_int(width) and _positive_int(height)):
        width, height = image_size(img_path)
    box, placeholder = _box(ann.get("bbox"), kps, int(width), int(height), bbox_mode, path)

    meta = {k: v for k, v in image.items() if k not in _RESERVED_IMAGE_KEYS}
    meta["file_name"] = img_path.relative_to(img_dir).as_posix()  # the image's name under the data root
    cat = ann.get("category_id")
    if cat is not None:
        meta["category_id"] = cat
        meta["category"] = _category_name(info.get("categories"), cat)
    if "occluded_fraction" in ann:
        meta["occluded_fraction"] = ann["occluded_fraction"]
    farm = meta.get("farm_name")
    sample = Sample(
        image=img_path,
        keypoints=kps,
        bbox=box,
        image_id=path.stem,
        group=None if farm is None else str(farm),
        width=int(width),
        height=int(height),
        meta=meta,
        origin=Origin(path),
    )
    return sample, used_stem, placeholder


def _image_path(path: Path, file_name: Any, img_dir: Path) -> tuple[Path, bool]:
    field = "label_info.image.file_name"
    if file_name is None or file_name == "":
        alt = find_by_stem(img_dir, path.stem)
        if alt is None:
            raise UserError(f"no file_name and no image named {path.stem}.* in {img_dir}", path=path, field=field)
        return alt, False
    img_path = resolve_inside(img_dir, file_name, source=path, field=field)
    if img_path.is_file():
        return img_path, False
    alt = find_by_stem(img_dir, path.stem)
    if alt is None:
        raise UserError(f"image not found: {img_path}", path=path, field=field)
    return alt, True


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _category_name(categories: Any, cat_id: Any) -> str:
    if isinstance(categories, list):
        for c in categories:
            if isinstance(c, dict) and c.get("id") == cat_id and "name" in c:
                return str(c["name"])
    return CATEGORY_NAMES.get(cat_id, str(cat_id)) if isinstance(cat_id, int) else str(cat_id)


def _box(
    raw: Any, kps: np.ndarray, width: int, height: int, mode: BoxMode, path: Path
) -> tuple[np.ndarray | None, bool]:
    if mode == "image" or raw is None:
        return None, False
    box = check_box(raw, path, _BOX_FIELD)
    if mode == "annotation":  # the box as given: one with no pixel in the image is an error, not a placeholder
        check_box_overlaps(box, width, height, path, _BOX_FIELD)
        return box, False
    if not box_fits(box, width, height) or not keypoints_inside(box, kps):
        return None, True  # a placeholder box: the animal fills the crop
    if np.array_equal(box, [0, 0, width, height]):
        return None, False  # the whole image, which is what None means
    return box, False


def write(
    samples: Sequence[Sample],
    root: str | Path,
    schema: KeypointSchema,
    copy_images: bool = False,
) -> None:
    """Write `annotations/<image_id>.json` per sample under root. Images are expected in `root/images`
    (the writer records their file names); with `copy_images` they are copied there.

    Every sample is checked and every document built before the first file is written, so bad input leaves
    nothing behind; each file is written atomically.
    """
    root = Path(root)
    docs = _documents(samples, schema)
    ann_dir = root / "annotations"
    img_dir = root / "images"
    ann_dir.mkdir(parents=True, exist_ok=True)
    if copy_images:
        img_dir.mkdir(parents=True, exist_ok=True)
        for s in samples:
            dest = img_dir / s.image.name
            if s.image.resolve() != dest.resolve():
                shutil.copyfile(s.image, dest)
    for image_id, doc in docs:
        write_json(ann_dir / f"{image_id}.json", doc, indent=None)


def _documents(samples: Sequence[Sample], schema: KeypointSchema) -> list[tuple[str, dict[str, Any]]]:
    validate_samples(samples, source="<samples to write>", num_keypoints=schema.num_keypoints)
    names = [s.image.name for s in samples]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"ADK holds one animal per image; several samples share {dup[:3]}", field="image")
    cat_names = dict(CATEGORY_NAMES)
    for s in samples:
        cid, cname = s.meta.get("category_id"), s.meta.get("category")
        if isinstance(cid, int) and cname is not None:
            cat_names.setdefault(cid, str(cname))
    categories = [
        {
            "supercategory": "livestock_cow",
            "id": cid,
            "name": name,
            "keypoints_name": list(schema.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton],
        }
        for cid, name in sorted(cat_names.items())
    ]
    docs = []
    for s in samples:
        source = f"sample {s.key}"
        if not s.image_id or any(c in s.image_id for c in "/\\") or s.image_id in (".", ".."):
            raise UserError(f"image id '{s.image_id}' cannot be a file name", path=source, field="image_id")
        check_keypoints(s.keypoints, schema.num_keypoints, source, "keypoints")
        width, height = (s.width, s.height) if s.width and s.height else image_size(s.image)
        meta = {k: _plain(v) for k, v in s.meta.items() if k not in _RESERVED_IMAGE_KEYS}
        cat_id = meta.pop("category_id", 1)
        meta.pop("category", None)
        occ = meta.pop("occluded_fraction", None)
        image_info: dict[str, Any] = {"file_name": s.image.name, "width": int(width), "height": int(height)}
        image_info.update(meta)
        if s.group is not None and "farm_name" not in image_info:
            image_info["farm_name"] = s.group
        box = [0, 0, int(width), int(height)]
        if s.bbox is not None:
            box = [_num(v) for v in check_box(list(s.bbox), source, "bbox")]
        ann: dict[str, Any] = {
            "bbox": box,
            "keypoints": [_num(v) for v in s.keypoints.reshape(-1)],
            "category_id": cat_id,
        }
        if occ is not None:
            ann["occluded_fraction"] = occ
        doc = {"label_info": {"image": image_info, "annotations": [ann], "categories": categories}}
        try:
            json.dumps(doc, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise UserError(f"metadata cannot be written as JSON ({e})", path=source, field="meta") from None
        docs.append((s.image_id, doc))
    return docs


def _plain(v: Any) -> Any:
    """numpy scalars (from computed metadata) as plain Python numbers, so they serialise."""
    return v.item() if isinstance(v, np.generic) else v


def _num(v: float) -> int | float:
    """Integers stay integers in the JSON (as in the competition files); other values keep full precision."""
    f = float(v)
    return int(f) if f.is_integer() else f
