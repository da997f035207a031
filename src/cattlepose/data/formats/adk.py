"""ADK2021 per-image JSON: `annotations/<stem>.json` beside `images/<stem>.jpg`, one animal per file.

Quirks of the real competition data handled here:
- `file_name` that does not exist while an image with the JSON's own stem does: that image is used, and one
  warning with the count is issued.
- placeholder boxes unrelated to the image (every box `[0, 0, 125, 291]`): with `bbox="auto"` a box that does
  not fit inside the image is replaced by the whole image.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cattlepose.data.formats.common import (
    check_keypoints,
    find_by_stem,
    resolve_inside,
    validate_samples,
)
from cattlepose.data.images import image_size
from cattlepose.data.records import Sample
from cattlepose.errors import UserError
from cattlepose.io import write_json
from cattlepose.schema import KeypointSchema

BoxMode = Literal["auto", "annotation", "image"]
CATEGORY_NAMES = {1: "cattle", 2: "nuptial", 3: "calf"}


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
    raise UserError("ADK data folder not found", path=root)


def read(
    root: str | Path,
    num_keypoints: int | None = None,
    images: str | Path | None = None,
    bbox: BoxMode = "auto",
    check_images: bool = True,
) -> list[Sample]:
    """Read every `*.json` under the annotation folder into Samples (sorted by file name)."""
    ann_dir, img_dir = layout(root)
    if images is not None:
        img_dir = Path(images)
    files = sorted(ann_dir.glob("*.json"))
    if not files:
        raise UserError("no annotation files (*.json) found", path=ann_dir)
    samples: list[Sample] = []
    renamed = 0
    for f in files:
        sample, used_stem = _read_one(f, img_dir, num_keypoints, bbox, check_images)
        renamed += used_stem
        samples.append(sample)
    if renamed:
        warnings.warn(
            f"{ann_dir}: {renamed} annotation file(s) name a file_name that does not exist; "
            "used the image with the annotation's own stem instead",
            stacklevel=2,
        )
    validate_samples(samples, source=ann_dir, num_keypoints=num_keypoints)
    return samples


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"not valid JSON ({e})", path=path) from None


def _read_one(
    path: Path, img_dir: Path, num_keypoints: int | None, bbox_mode: BoxMode, check_images: bool
) -> tuple[Sample, bool]:
    doc = _load_json(path)
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
    file_name = image.get("file_name")
    used_stem = False
    if isinstance(file_name, str) and file_name:
        img_path = resolve_inside(img_dir, file_name, source=path, field="label_info.image.file_name")
        if not img_path.is_file():
            alt = find_by_stem(img_dir, path.stem)
            if alt is not None:
                img_path, used_stem = alt, True
    else:
        alt = find_by_stem(img_dir, path.stem)
        if alt is None:
            raise UserError("no file_name and no image with this stem", path=path, field="label_info.image.file_name")
        img_path = alt
    if not img_path.is_file():
        raise UserError(f"image not found: {img_path}", path=path, field="label_info.image.file_name")

    kps = check_keypoints(ann.get("keypoints"), num_keypoints, path, "label_info.annotations[0].keypoints")
    width, height = image.get("width"), image.get("height")
    if check_images or not (isinstance(width, int) and isinstance(height, int)):
        width, height = image_size(img_path)
    box = _box(ann.get("bbox"), width, height, bbox_mode, path)
    meta = {k: v for k, v in image.items() if k not in ("file_name", "width", "height")}
    cat = ann.get("category_id")
    if cat is not None:
        meta["category_id"] = cat
        meta["category"] = _category_name(info.get("categories"), cat)
    for extra in ("occluded_fraction",):
        if extra in ann:
            meta[extra] = ann[extra]
    return (
        Sample(
            image=img_path,
            keypoints=kps,
            bbox=box,
            image_id=path.stem,
            group=str(meta["farm_name"]) if meta.get("farm_name") is not None else None,
            width=int(width),
            height=int(height),
            meta=meta,
        ),
        used_stem,
    )


def _category_name(categories: Any, cat_id: Any) -> str:
    if isinstance(categories, list):
        for c in categories:
            if isinstance(c, dict) and c.get("id") == cat_id and "name" in c:
                return str(c["name"])
    return CATEGORY_NAMES.get(cat_id, str(cat_id))


def _box(raw: Any, width: int, height: int, mode: BoxMode, path: Path) -> np.ndarray | None:
    if mode == "image" or raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 4:
        raise UserError("bbox must be [x, y, w, h]", path=path, field="label_info.annotations[0].bbox")
    box = np.asarray(raw, dtype=np.float64)
    if not np.all(np.isfinite(box)):
        raise UserError("bbox has NaN or infinite values", path=path, field="label_info.annotations[0].bbox")
    x, y, w, h = box
    fits = x >= -1 and y >= -1 and x + w <= width + 1 and y + h <= height + 1
    if mode == "auto" and not fits:
        return None  # a placeholder box: the animal fills the crop
    if mode == "auto" and x == 0 and y == 0 and w == width and h == height:
        return None  # the whole image, which is what None means
    if w <= 0 or h <= 0:
        raise UserError(f"zero-area bbox {raw}", path=path, field="label_info.annotations[0].bbox")
    return box


def write(
    samples: Sequence[Sample],
    root: str | Path,
    schema: KeypointSchema,
    copy_images: bool = False,
) -> None:
    """Write `annotations/<image_id>.json` per sample under root. Images are expected in `root/images`
    (the writer records their file names); with `copy_images` they are copied there."""
    root = Path(root)
    ann_dir = root / "annotations"
    img_dir = root / "images"
    ann_dir.mkdir(parents=True, exist_ok=True)
    if copy_images:
        import shutil

        img_dir.mkdir(parents=True, exist_ok=True)
    categories = [
        {
            "supercategory": "livestock_cow",
            "id": cid,
            "name": name,
            "keypoints_name": list(schema.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton],
        }
        for cid, name in CATEGORY_NAMES.items()
    ]
    for s in samples:
        if copy_images and s.image.resolve() != (img_dir / s.image.name).resolve():
            shutil.copyfile(s.image, img_dir / s.image.name)
        meta = dict(s.meta)
        cat_id = meta.pop("category_id", 1)
        meta.pop("category", None)
        occ = meta.pop("occluded_fraction", None)
        image_info: dict[str, Any] = {"file_name": s.image.name, "width": s.width, "height": s.height}
        image_info.update(meta)
        if s.group is not None and "farm_name" not in image_info:
            image_info["farm_name"] = s.group
        ann: dict[str, Any] = {
            "bbox": [0, 0, s.width, s.height] if s.bbox is None else [_num(v) for v in s.bbox],
            "keypoints": [_num(v) for v in s.keypoints.reshape(-1)],
            "category_id": cat_id,
        }
        if occ is not None:
            ann["occluded_fraction"] = occ
        doc = {"label_info": {"image": image_info, "annotations": [ann], "categories": categories}}
        write_json(ann_dir / f"{s.image_id}.json", doc, indent=None)


def _num(v: float) -> int | float:
    """Integers stay integers in the JSON (as in the competition files); other values keep full precision."""
    f = float(v)
    return int(f) if f.is_integer() else f
