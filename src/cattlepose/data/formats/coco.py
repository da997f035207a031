"""COCO keypoints JSON: `images`, `annotations` (several animals per image), `categories` with keypoint names.

One Sample per annotation: `image_id` is the COCO image id as a string, `ann_id` the annotation id, `group`
the image entry's `farm_name` when it has one (folds otherwise keep each photograph's animals together,
data/photos.py), and `meta` keeps `category_id`, `category`, `coco_image_id`, `file_name` and any extra fields
of the image entry (AP-10K's `background`, a farm name...). An animal annotated twice on one photograph (the
same keypoints or box, under one image id or two) is an error naming both annotations.
Crowd annotations and annotations without a labelled keypoint are skipped and counted.
Several categories are read together when they share one keypoint list (AP-10K: 54 species, 17 joints).
Given a schema whose keypoints the file names in another spelling or order (`left_ear` for `L_EarBase`), the
keypoints are read by name into the schema's order; `by_name` (a file of a multi-file set) makes that the
only way: a keypoint name that matches none of the schema's is an error listing them, never a read by position.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import write_json
from cattlepose.core.schema import KeypointSchema, match_keypoint_names
from cattlepose.data.formats.common import (
    PROBE_IMAGES,
    ErrorSink,
    check_box,
    check_box_overlaps,
    check_image_size,
    check_keypoints,
    drop_duplicate_animals,
    image_root,
    report_or_raise,
    resolve_inside,
    validate_samples,
)
from cattlepose.data.images import image_size
from cattlepose.data.records import Origin, Sample

BoxMode = Literal["auto", "annotation", "image"]
# Image-entry keys that describe the file itself; every other key of an image entry travels in Sample.meta.
_IMAGE_KEYS = ("id", "file_name", "width", "height")
# Sample.meta keys that belong to the annotation (or identify the image) rather than to the image entry.
_ANN_META = ("category_id", "category", "occluded_fraction", "coco_image_id", "file_name", "area")


def read(
    path: str | Path,
    num_keypoints: int | KeypointSchema | None = None,
    images: str | Path | None = None,
    bbox: BoxMode = "auto",
    category: int | str | None = None,
    on_error: ErrorSink | None = None,
) -> list[Sample]:
    """Samples of every keypoint annotation in a COCO file, in file order.

    `num_keypoints` may be a schema: its keypoint count is enforced; names that are the schema's in another
    spelling or order are read into the schema's order, other differing names are warned about.
    `images` defaults to the JSON's folder, or an `images/` folder beside it (or beside its parent) when the
    files are there. `bbox`: auto/annotation keep the annotation box (auto also treats a whole-image box as
    no box); image ignores boxes. `category`: an id or name to read only that category. With `on_error`, a bad
    image or annotation is reported there and skipped instead of raising.
    """
    samples, _ = read_detailed(path, num_keypoints, images, bbox, category, on_error)
    return samples


def read_detailed(
    path: str | Path,
    num_keypoints: int | KeypointSchema | None = None,
    images: str | Path | None = None,
    bbox: BoxMode = "auto",
    category: int | str | None = None,
    on_error: ErrorSink | None = None,
    boxes_only: bool = False,
    by_name: bool = False,
    keypoint_map: dict[str, str] | None = None,
) -> tuple[list[Sample], dict[str, int]]:
    """`read`, plus counts: `crowd`, `no_keypoints`, `other_category` (skipped annotations), `size_mismatch`
    (images whose header size differs from the JSON's width/height; the header wins).

    `boxes_only`: the animals to predict (detections or ground truth): every non-crowd annotation with a box,
    keypoints not read (zeros, v = 0) and `categories` optional. `by_name`: the file's keypoints must map by
    name onto the schema (`keypoint_map`: file name -> schema name, for names no spelling rule matches)."""
    path = Path(path)
    if bbox not in ("auto", "annotation", "image"):
        raise UserError(f"bbox mode '{bbox}' must be auto, annotation or image", field="data.bbox")
    doc = load(path, require_categories=not boxes_only)
    reader = _AnnotationReader(path, doc, num_keypoints, images, "annotation" if boxes_only else bbox, category,
                               boxes_only, by_name, keypoint_map)  # fmt: skip
    samples: list[Sample] = []
    for i, ann in enumerate(doc["annotations"]):
        try:
            sample = reader.read(i, ann)
        except UserError as e:
            report_or_raise(e, on_error)
            continue
        if sample is not None:
            samples.append(sample)
    stats = reader.stats
    if stats["crowd"] + stats["no_keypoints"]:
        warnings.warn(
            f"{path}: skipped {stats['crowd']} crowd annotation(s) and {stats['no_keypoints']} with no labelled "
            "keypoint",
            stacklevel=3,
        )
    try:
        validate_samples(samples, source=path, num_keypoints=reader.k)
    except UserError as e:
        report_or_raise(e, on_error)
    if not boxes_only:  # detections to predict may repeat a box; labelled animals may not
        samples = drop_duplicate_animals(samples, on_error)
    return samples, stats


class _AnnotationReader:
    """One COCO file's context (categories, images, keypoint order) and the reading of one annotation."""

    def __init__(
        self,
        path: Path,
        doc: dict[str, Any],
        num_keypoints: int | KeypointSchema | None,
        images: str | Path | None,
        bbox: BoxMode,
        category: int | str | None,
        boxes_only: bool,
        by_name: bool = False,
        keypoint_map: dict[str, str] | None = None,
    ):
        self.path, self.bbox, self.boxes_only = path, bbox, boxes_only
        self.cats = _categories(doc, path, category)
        self.all_ids = {c["id"] for c in doc["categories"]}
        if boxes_only:  # the keypoint lists of the file do not matter: nothing is read from them
            self.k = num_keypoints.num_keypoints if isinstance(num_keypoints, KeypointSchema) else num_keypoints
            self.order = None
        else:
            self.k, self.order = _expected_keypoints(self.cats, num_keypoints, path, by_name, keypoint_map)
        self.image_entries = _images(doc, path)
        self.root = _image_root(path, images, self.image_entries)
        self.stats = {"crowd": 0, "no_keypoints": 0, "other_category": 0, "size_mismatch": 0}
        self.sizes: dict[Any, tuple[Path, int, int] | UserError] = {}
        self.seen: set[Any] = set()

    def read(self, i: int, ann: Any) -> Sample | None:
        """The annotation's Sample, None when it is skipped (and counted), or a UserError naming the field."""
        path, field = self.path, f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise UserError("an annotation must be an object", path=path, field=field)
        cat_id = self._category(ann, field)
        if cat_id not in self.cats:
            self.stats["other_category"] += 1
            return None
        if ann.get("iscrowd"):
            self.stats["crowd"] += 1
            return None
        kps = self._keypoints(ann, field)
        if kps is None:
            self.stats["no_keypoints"] += 1
            return None
        ann_id = ann.get("id", i)
        if not isinstance(ann_id, (int, str)):
            raise UserError(f"annotation id {ann_id!r} must be a number or string", path=path, field=f"{field}.id")
        if ann_id in self.seen:
            raise UserError(f"duplicate annotation id {ann_id!r}", path=path, field=f"{field}.id")
        self.seen.add(ann_id)
        image_id = ann.get("image_id")
        if not isinstance(image_id, (int, str)) or image_id not in self.image_entries:
            raise UserError(f"image_id {image_id!r} is not in 'images'", path=path, field=f"{field}.image_id")
        img_path, width, height = _image_size(self.sizes, self.image_entries[image_id], self.root, path, self.stats)
        box = _box(ann.get("bbox"), width, height, self.bbox, path, f"{field}.bbox")
        _, entry = self.image_entries[image_id]
        meta = {key: v for key, v in entry.items() if key not in _IMAGE_KEYS}
        meta.update(category_id=cat_id, category=str(self.cats[cat_id].get("name", cat_id)),
                    coco_image_id=image_id, file_name=entry["file_name"])  # fmt: skip
        if "occluded_fraction" in ann:
            meta["occluded_fraction"] = ann["occluded_fraction"]
        if _is_area(ann.get("area")):
            meta["area"] = float(ann["area"])  # what COCO's OKS scales by (a segmentation's area, when it has one)
        farm = entry.get("farm_name")
        return Sample(image=img_path, keypoints=kps, bbox=box, image_id=str(image_id),
                      group=None if farm is None else str(farm), width=width, height=height, ann_id=str(ann_id),
                      meta=meta, origin=Origin(path, field))  # fmt: skip

    def _category(self, ann: dict[str, Any], field: str) -> Any:
        cat_id = ann.get("category_id")
        if self.boxes_only and not self.all_ids:  # a detections file without categories
            cat_id = cat_id if isinstance(cat_id, (int, str)) else None
            self.cats.setdefault(cat_id, {})
        elif not isinstance(cat_id, (int, str)) or cat_id not in self.all_ids:
            raise UserError(f"category_id {cat_id!r} is not in 'categories'", path=self.path,
                            field=f"{field}.category_id")  # fmt: skip
        return cat_id

    def _keypoints(self, ann: dict[str, Any], field: str) -> np.ndarray | None:
        """(K, 3) in the schema's order; None when no keypoint is labelled."""
        if self.boxes_only:
            if ann.get("bbox") is None:
                raise UserError("an animal to predict needs a bbox", path=self.path, field=f"{field}.bbox")
            return np.zeros((self.k or 0, 3))
        if ann.get("num_keypoints") == 0:
            return None
        kps = check_keypoints(ann.get("keypoints"), self.k, self.path, f"{field}.keypoints")
        if self.order is not None:
            kps = kps[self.order]
        return kps if (kps[:, 2] > 0).any() else None


def read_unscored(path: str | Path, schema: KeypointSchema) -> tuple[dict[str, str], list[Sample]]:
    """What COCO's protocol counts besides the animals `read` gives: every image of the file, its id (as text)
    -> its `file_name` (a detection in an image without an animal is a false positive), and the annotations
    `read` skips, crowds and those with no labelled keypoint, as Samples with `meta["iscrowd"]` (COCOeval
    ignores them: a detection on one counts neither way). Read after `read`, which has checked the file."""
    path = Path(path)
    doc = load(path)
    cats = _categories(doc, path, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `read` has warned about the names already
        k, order = _expected_keypoints(cats, schema, path)
    entries = _images(doc, path)
    ignored = []
    for i, ann in enumerate(doc["annotations"]):
        ids = [ann.get(f) for f in ("category_id", "image_id")] if isinstance(ann, dict) else [None]
        if not all(isinstance(v, (int, str)) for v in ids) or ids[0] not in cats or ids[1] not in entries:
            continue
        try:
            kps = check_keypoints(ann.get("keypoints"), k, path, f"annotations[{i}].keypoints")
        except UserError:
            kps = np.zeros((k or schema.num_keypoints, 3))  # a crowd region without keypoints
        if order is not None:
            kps = kps[order]
        if not (ann.get("iscrowd") or ann.get("num_keypoints") == 0 or not (kps[:, 2] > 0).any()):
            continue
        _, entry = entries[ann["image_id"]]
        try:
            box = check_box(ann.get("bbox"), path, f"annotations[{i}].bbox")
        except UserError:
            box = None
        meta = {"category_id": ann["category_id"], "iscrowd": int(bool(ann.get("iscrowd")))}
        if _is_area(ann.get("area")):
            meta["area"] = float(ann["area"])
        size = [v if isinstance(v, int) and v > 0 else None for v in (entry.get("width"), entry.get("height"))]
        ignored.append(Sample(image=Path(str(entry["file_name"])), keypoints=kps, bbox=box,
                              image_id=str(ann["image_id"]), width=size[0], height=size[1],
                              ann_id=str(ann.get("id", i)), meta=meta))  # fmt: skip
    return {str(image_id): str(entry["file_name"]) for image_id, (_, entry) in entries.items()}, ignored


def load(path: str | Path, require_categories: bool = True) -> dict[str, Any]:
    """The parsed COCO document, with `images`, `annotations` and `categories` checked to be lists."""
    path = Path(path)
    if not path.is_file():
        raise UserError("COCO annotation file not found", path=path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(doc, dict):
        raise UserError("a COCO file is a JSON object with images, annotations and categories", path=path)
    if "label_info" in doc:
        raise UserError("this is an ADK per-image file; give the folder that holds it (format adk)", path=path)
    if not require_categories:
        doc.setdefault("categories", [])
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise UserError(f"needs a '{key}' list", path=path, field=key)
    return doc


def read_category(path: str | Path, category: int | str | None = None) -> dict[str, Any]:
    """The keypoint category the file would be read with ({name, keypoints, skeleton}), for `from_data`."""
    path = Path(path)
    cats = _categories(load(path), path, category)
    if not cats:
        raise UserError(
            "no category lists keypoint names, so the data cannot serve as its own schema; name a schema instead",
            path=path,
            field="categories[].keypoints",
        )
    first = next(iter(cats.values()))
    name = first.get("name") if len(cats) == 1 else path.stem
    return {"name": str(name or path.stem), "keypoints": first["keypoints"], "skeleton": first.get("skeleton")}


def _categories(doc: dict[str, Any], path: Path, category: int | str | None) -> dict[Any, dict[str, Any]]:
    """id -> category of the keypoint categories to read; they must share one keypoint list."""
    cats: dict[Any, dict[str, Any]] = {}
    for i, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), (int, str)):
            raise UserError("each category needs a number or string 'id'", path=path, field=f"categories[{i}]")
        if c["id"] in cats:
            raise UserError(f"duplicate category id {c['id']!r}", path=path, field=f"categories[{i}].id")
        names = c.get("keypoints")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise UserError("keypoints must be a list of names", path=path, field=f"categories[{i}].keypoints")
        cats[c["id"]] = c
    if category is not None:
        chosen = {cid: c for cid, c in cats.items() if cid == category or c.get("name") == category}
        if not chosen:
            listed = ", ".join(f"{cid} ({c.get('name')})" for cid, c in list(cats.items())[:10])
            raise UserError(f"no category '{category}'; the file has {listed}", path=path, field="categories")
        cats = chosen
    with_names = {cid: c for cid, c in cats.items() if c.get("keypoints")}
    if not with_names:
        return cats  # a file without keypoint names: counts are checked per annotation against the schema
    lists = {tuple(c["keypoints"]) for c in with_names.values()}
    if len(lists) > 1:
        raise UserError(
            f"{len(lists)} different keypoint lists among the categories; read one category at a time (category=...) ",
            path=path,
            field="categories[].keypoints",
        )
    return with_names


def _expected_keypoints(
    cats: dict[Any, dict[str, Any]],
    num_keypoints: int | KeypointSchema | None,
    path: Path,
    by_name: bool = False,
    keypoint_map: dict[str, str] | None = None,
) -> tuple[int | None, list[int] | None]:
    """The keypoint count to enforce, and the data index of each schema keypoint when the data names the
    schema's keypoints in another order or spelling (`left_eye` for `L_Eye`), so they are read by name.

    `by_name`: names that match nothing are an error (listing them), not a read by position with a warning;
    `keypoint_map` renames the file's keypoints (file name -> schema name) before they are matched."""
    names = next((c["keypoints"] for c in cats.values() if c.get("keypoints")), None)
    schema = num_keypoints if isinstance(num_keypoints, KeypointSchema) else None
    k = schema.num_keypoints if schema is not None else num_keypoints
    field = "categories[].keypoints"
    if names is None:
        if by_name and schema is not None:
            raise UserError(
                f"the categories name no keypoints, so they cannot be matched by name to schema '{schema.name}' "
                "(every file of a multi-file set must name its keypoints)",
                path=path,
                field=field,
            )
        return k, None
    if k is not None and len(names) != k:
        which = f"schema '{schema.name}'" if schema is not None else "schema"
        raise UserError(f"the category lists {len(names)} keypoints, the {which} has {k}", path=path, field=field)
    renamed = [(keypoint_map or {}).get(n, n) for n in names]
    if schema is None or tuple(renamed) == schema.keypoints:
        return len(names), None
    matched = match_keypoint_names(renamed, schema.keypoints)
    if len(matched) == len(names) and len(set(matched.values())) == len(names):
        order = [renamed.index(matched[n]) for n in schema.keypoints]
        return len(names), None if order == list(range(len(names))) else order
    if by_name:
        taken = set(matched.values())
        lost = [n for n, r in zip(names, renamed, strict=True) if r not in taken]
        free = [n for n in schema.keypoints if n not in matched]
        raise UserError(
            f"keypoint(s) {', '.join(lost)} match no keypoint of schema '{schema.name}' by name (its keypoints "
            f"left without a partner: {', '.join(free)}); a multi-file set maps keypoints by name, never by "
            "position: rename them in the file, or map them with data.keypoint_map (file name: schema name)",
            path=path,
            field=field,
        )
    diff = next(i for i, (a, b) in enumerate(zip(names, schema.keypoints, strict=True)) if a != b)
    warnings.warn(
        f"{path}: keypoint {diff} is '{names[diff]}' in the data and '{schema.keypoints[diff]}' in schema "
        f"'{schema.name}'; the schema's names are used",
        stacklevel=4,
    )
    return len(names), None


def _images(doc: dict[str, Any], path: Path) -> dict[Any, tuple[int, dict[str, Any]]]:
    """COCO image id -> (index in `images`, entry). Ids must be unique."""
    out: dict[Any, tuple[int, dict[str, Any]]] = {}
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise UserError("each image needs 'id' and 'file_name'", path=path, field=f"images[{i}]")
        if not isinstance(im["id"], (int, str)):
            raise UserError("an image id must be a number or a string", path=path, field=f"images[{i}].id")
        if im["id"] in out:
            first = out[im["id"]][0]
            raise UserError(
                f"duplicate image id {im['id']!r} (also images[{first}])", path=path, field=f"images[{i}].id"
            )
        out[im["id"]] = (i, im)
    return out


def _image_root(path: Path, images: str | Path | None, entries: dict[Any, tuple[int, dict[str, Any]]]) -> Path:
    here = path.parent
    names = [im["file_name"] for _, im in itertools.islice(entries.values(), PROBE_IMAGES)]
    return image_root(path, images, names, [here, here / "images", here.parent / "images"], here)


def _image_size(
    cache: dict[Any, tuple[Path, int, int] | UserError],
    item: tuple[int, dict[str, Any]],
    root: Path,
    path: Path,
    stats: dict[str, int],
) -> tuple[Path, int, int]:
    """(image path, width, height) from the header, once per image; a bad image is one error, reported once
    by its first annotation and re-raised (uncounted) for the others so they are skipped too."""
    i, entry = item
    key = entry["id"]
    if key not in cache:
        field = f"images[{i}].file_name"
        try:
            check_image_size(entry, path, f"images[{i}]")
            img_path = resolve_inside(root, entry["file_name"], source=path, field=field)
            if not img_path.is_file():
                raise UserError(f"image not found: {img_path}", path=path, field=field)
            try:
                w, h = image_size(img_path)
            except UserError as e:
                raise UserError(f"{e.message}: {img_path}", path=path, field=field) from None
            if (entry.get("width"), entry.get("height")) not in ((None, None), (w, h)):
                stats["size_mismatch"] += 1
            cache[key] = (img_path, w, h)
        except UserError as e:
            cache[key] = e
            raise
    hit = cache[key]
    if isinstance(hit, UserError):
        raise _AlreadyReported(hit)
    return hit


class _AlreadyReported(UserError):
    """The same bad image, met again by another annotation of it: raised to skip the annotation, and
    recognised by `data check`'s collector through `already_reported` so the problem is listed once."""

    already_reported = True

    def __init__(self, original: UserError):
        super().__init__(original.message, path=original.path, field=original.field)


def _box(raw: Any, width: int, height: int, mode: BoxMode, path: Path, field: str) -> np.ndarray | None:
    if mode == "image" or raw is None:
        return None
    box = check_box(raw, path, field)
    check_box_overlaps(box, width, height, path, field)
    if mode == "auto" and np.array_equal(box, [0, 0, width, height]):
        return None  # the whole image, which is what None means (and what `write` stores for None)
    return box


def write(samples: Sequence[Sample], path: str | Path, schema: KeypointSchema) -> None:
    """A COCO keypoints file that `read` gives back exactly (with `images=` when the image files do not lie
    under the output's folder). Checked completely before the file is (atomically) written."""
    path = Path(path)
    validate_samples(samples, source="<samples to write>", num_keypoints=schema.num_keypoints)
    out_dir = path.parent.resolve()
    image_ids = _assign_ids([_image_key(s) for s in samples])
    ann_keys = [s.ann_id if s.ann_id is not None else f"#{i}" for i, s in enumerate(samples)]
    if len(set(ann_keys)) < len(ann_keys):  # ids that number the animals within each image: renumbered
        ann_keys = [(image_id, k) for image_id, k in zip(image_ids, ann_keys, strict=True)]
    ann_ids = _assign_ids(ann_keys)
    images: dict[Any, dict[str, Any]] = {}
    files: dict[Any, Path] = {}
    categories: dict[Any, str] = {}
    annotations = []
    for s, image_id, ann_id in zip(samples, image_ids, ann_ids, strict=True):
        source = f"sample {s.key}"
        kps = check_keypoints(s.keypoints, schema.num_keypoints, source, "keypoints")
        if image_id in files and files[image_id] != s.image:
            raise UserError(f"image id {image_id} names two files: {files[image_id]} and {s.image}", path=source)
        files[image_id] = s.image
        width, height = (s.width, s.height) if s.width and s.height else image_size(s.image)
        if image_id not in images:
            entry: dict[str, Any] = {
                "id": image_id,
                "file_name": _file_name(s, out_dir),
                "width": int(width),
                "height": int(height),
            }
            entry.update({k: _plain(v) for k, v in s.meta.items() if k not in _ANN_META and k not in _IMAGE_KEYS})
            images[image_id] = entry
        cat_id = _plain(s.meta.get("category_id", 1))
        categories.setdefault(cat_id, str(s.meta.get("category", schema.name)))
        box = [0.0, 0.0, float(width), float(height)] if s.bbox is None else check_box(list(s.bbox), source, "bbox")
        ann: dict[str, Any] = {
            "id": ann_id,
            "image_id": image_id,
            "category_id": cat_id,
            "bbox": [_num(v) for v in box],
            "area": _num(s.meta["area"] if _is_area(s.meta.get("area")) else float(box[2]) * float(box[3])),
            "iscrowd": 0,
            "keypoints": [_num(v) for v in kps.reshape(-1)],
            "num_keypoints": int((kps[:, 2] > 0).sum()),
        }
        if "occluded_fraction" in s.meta:
            ann["occluded_fraction"] = _plain(s.meta["occluded_fraction"])
        annotations.append(ann)
    doc = {
        "images": list(images.values()),
        "annotations": annotations,
        "categories": [
            {
                "id": cid,
                "name": name,
                "supercategory": "animal",
                "keypoints": list(schema.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton],
            }
            for cid, name in categories.items()
        ],
    }
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise UserError(f"sample metadata cannot be written as JSON ({e})", path=path, field="meta") from None
    write_json(path, doc, indent=None)


def _image_key(s: Sample) -> Any:
    """The COCO id an image had (kept when it is an integer), else its string id."""
    cid = s.meta.get("coco_image_id")
    return _plain(cid) if cid is not None else s.image_id


def _assign_ids(keys: Sequence[Any]) -> list[int]:
    """Integer ids: integer-like keys keep their value; other keys get fresh numbers above the largest one,
    the same key always the same number."""

    def as_int(k: Any) -> int | None:
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            return int(k)
        if isinstance(k, str) and k.isdigit():
            return int(k)
        return None

    taken = {v for v in map(as_int, keys) if v is not None}
    nxt = max(taken, default=0) + 1
    fresh: dict[Any, int] = {}
    out = []
    for k in keys:
        v = as_int(k)
        if v is None:
            if k not in fresh:
                fresh[k] = nxt
                nxt += 1
            v = fresh[k]
        out.append(v)
    return out


def _file_name(s: Sample, out_dir: Path) -> str:
    """The image's path relative to the output folder when it lies inside it; else the name it had in its
    COCO file (read back with `images=`), else its base name."""
    rel = os.path.relpath(s.image.resolve(), out_dir)
    if not rel.startswith(".."):
        return Path(rel).as_posix()
    name = s.meta.get("file_name")
    return name if isinstance(name, str) and name else s.image.name


def _is_area(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _num(v: float) -> int | float:
    f = float(v)
    return int(f) if f.is_integer() else f
