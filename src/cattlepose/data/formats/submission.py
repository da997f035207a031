"""Prediction files: the writers (wide CSV, long CSV, ADK JSON, COCO results) and their one reader;
`validate.py` checks them. Every writer takes `Pose`s, one per animal, in order.

- CSV (`csv`): `image, <kp>_x, <kp>_y, ...` in schema order, or, given a sample-submission template, exactly its
  columns and its row order; one animal per image (a competition's file): an image with several is refused,
  by name, before anything is predicted. The template's first column names the image; the others must be
  `<kp>_x` / `<kp>_y` of schema keypoints. A template may list images by file name or by stem; both are matched.
- Long CSV (`long-csv`, `long_csv.py`): one row per animal, with its image, id in the image, category, score,
  box and keypoints with their scores.
- ADK JSON: `{"latency": seconds_per_image, "annotations": [{"ID", "img_path", "joint_self": [[x, y] * K]}]}`;
  an image with several animals has one annotation per animal, in order, each naming the image.
- COCO results: `[{image_id, category_id, keypoints: [x, y, score] * K, score, bbox}]`, one per animal; `bbox`
  is the region the keypoints were predicted in (the box, or the whole image).

Images are named by their path under the data root (`matching.image_name`: `farm A/photo_000.jpg`), so two
photographs of one name in two folders stay two. COCO results carry each animal's `category_id` (from a COCO
input) and, for images without a COCO id (a folder of images), the image's `file_name`, so `evaluate` can find
the image against any ground truth.

`read_predictions` reads any of them back as `Pose`s whose instance names the image as the file does: by its
name (CSV, long CSV, ADK JSON: the whole `img_path`) or by image id (COCO results, which keep their `score`,
`category_id` and `file_name`); `matching.locate` places them in the ground truth's images.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open, unreadable, write_json
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.formats import long_csv
from cattlepose.data.formats.common import check_box, load_json
from cattlepose.data.formats.matching import image_name, listing, match_names
from cattlepose.data.formats.poses import check_prediction, file_names
from cattlepose.data.formats.wide_csv import format_coord, parse_number, read_rows
from cattlepose.data.records import Instance, Pose

SUBMISSION_FORMATS = ("csv", long_csv.FORMAT, "adk-json", "coco")


def check_format(fmt: str, field: str = "--format") -> str:
    """`fmt` when it is one of SUBMISSION_FORMATS, else a UserError listing them."""
    if fmt not in SUBMISSION_FORMATS:
        raise UserError(f"unknown format '{fmt}'; use one of {', '.join(SUBMISSION_FORMATS)}", field=field)
    return fmt


def check_writable(fmt: str, instances: Sequence[Instance]) -> None:
    """What a format cannot hold, found before anything is predicted: the wide CSV holds one animal per image
    and, like the long CSV, names each image by its name alone (`poses.file_names`)."""
    if check_format(fmt) in ("csv", long_csv.FORMAT):
        file_names(instances, fmt, one_per_image=fmt == "csv")


def write_predictions(
    fmt: str,
    path: str | Path,
    poses: Sequence[Pose],
    schema: KeypointSchema,
    template: Path | None = None,
    latency: float = 0.0,
) -> None:
    """Predicted animals in one of SUBMISSION_FORMATS (`latency`: seconds per image, for ADK JSON)."""
    if check_format(fmt) == "coco":
        write_coco_results(path, poses)
    elif fmt == long_csv.FORMAT:
        long_csv.write(path, poses, schema)
    elif fmt == "csv":
        write_csv(path, poses, schema, template=template)
    else:
        write_adk_json(path, poses, schema, latency=latency)


# ---------------------------------------------------------------------------------------------- writers
def csv_header(schema: KeypointSchema) -> list[str]:
    return ["image"] + [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y")]


def write_csv(
    path: str | Path,
    poses: Sequence[Pose],
    schema: KeypointSchema,
    template: Path | None = None,
) -> None:
    """One animal per image as a wide CSV, rows by image name (`matching.image_name`); with a template, its
    columns and row order.

    Template rows are matched to predictions as `matching.match_names` matches names (a stem, a file name or a
    path). Every template image needs a prediction (a UserError lists the missing ones); predictions for images
    the template does not list are left out with a warning.
    """
    names = file_names([p.instance for p in poses], "csv", one_per_image=True)
    arrays = {n: check_prediction(n, p.keypoints, schema.num_keypoints) for n, p in zip(names, poses, strict=True)}
    if template is None:
        head = csv_header(schema)
        rows = [[name] + [format_coord(c) for c in arr[:, :2].reshape(-1)] for name, arr in arrays.items()]
    else:
        head, ids = _read_template(template, schema)
        found, missing = match_names(ids, arrays, template, what="template image")
        if missing:
            raise UserError(f"no prediction for {len(missing)} template image(s): {listing(missing)}",
                            path=template, field=head[0])  # fmt: skip
        used = set(found.values())
        extra = [k for k in arrays if k not in used]
        if extra:
            warnings.warn(
                f"{len(extra)} predicted image(s) are not in the template {template} and were left out: "
                f"{listing(extra)}",
                stacklevel=2,
            )
        index = {c: schema.keypoints.index(c[:-2]) for c in head[1:]}
        rows = []
        for i in ids:
            arr = arrays[found[i]]
            rows.append([i] + [format_coord(arr[index[c], 0 if c.endswith("_x") else 1]) for c in head[1:]])
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)


def write_adk_json(path: str | Path, poses: Sequence[Pose], schema: KeypointSchema, latency: float) -> None:
    """The ADK2021 submission JSON: one annotation per animal, IDs counting from 1 in order, `img_path` the
    image's path (an image with several animals is named by each of them)."""
    if not (isinstance(latency, (int, float)) and math.isfinite(latency) and latency >= 0):
        raise UserError(f"latency {latency!r} must be a finite number of seconds >= 0", field="latency")
    anns = []
    for i, pose in enumerate(poses, start=1):
        arr = check_prediction(pose.instance.key, pose.keypoints, schema.num_keypoints)
        joints = [[_plain_num(x), _plain_num(y)] for x, y in arr[:, :2]]
        anns.append({"ID": i, "img_path": str(pose.instance.image), "joint_self": joints})
    write_json(path, {"latency": float(latency), "annotations": anns})


def write_coco_results(path: str | Path, poses: Sequence[Pose]) -> None:
    """COCO keypoint results, one per animal. Each keypoint's third value is its score (1 when a prediction
    carries none); `score` is the animal's. The image id is the one the image had in its COCO file, else its
    name when that is a number, else its number in order of appearance; the category id likewise, else 1. An
    image without a COCO id also gets its `file_name` (`matching.image_name`), which `evaluate` finds it by."""
    numbers: dict[tuple[Path, int | None], int] = {}
    out = []
    for pose in poses:
        inst = pose.instance
        arr = check_prediction(inst.key, pose.keypoints, None)
        kps = arr if arr.shape[1] == 3 else np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
        if not math.isfinite(pose.score):
            raise UserError(f"score of prediction '{inst.key}' is not finite", field="score")
        number = numbers.setdefault((inst.image, inst.frame), len(numbers))
        det = {
            "image_id": _coco_image_id(inst, number),
            "category_id": _coco_category_id(inst),
            "keypoints": [_plain_num(v) for v in kps.reshape(-1)],
            "score": float(pose.score),
            "bbox": [_plain_num(v) for v in inst.crop_box()],
        }
        if "coco_image_id" not in inst.meta:
            det["file_name"] = image_name(inst)
        out.append(det)
    write_json(path, out, indent=None)


def _coco_image_id(inst: Instance, fallback: int) -> int:
    if "coco_image_id" in inst.meta:
        return int(inst.meta["coco_image_id"])
    return int(inst.image_id) if inst.image_id.isdigit() else fallback


def _coco_category_id(inst: Instance) -> int:
    cid = inst.meta.get("category_id")
    return int(cid) if isinstance(cid, (int, np.integer)) and not isinstance(cid, bool) else 1


def _plain_num(v: float) -> float:
    return round(float(v), 3)


# ---------------------------------------------------------------------------------------------- template
def _read_template(template: Path, schema: KeypointSchema) -> tuple[list[str], list[str]]:
    """(columns, image ids in row order) of a sample submission, its columns checked against the schema."""
    head, body = read_rows(template)
    if len(head) < 2:
        raise UserError("a template needs an image column and coordinate columns", path=template, field="header")
    for c in head[1:]:
        if not (c.endswith(("_x", "_y")) and c[:-2] in schema.keypoints):
            raise UserError(
                f"column '{c}' is not <keypoint>_x / <keypoint>_y of schema '{schema.name}'",
                path=template,
                field="header",
            )
    ids = [cells[0].strip() if cells else "" for _, cells in body]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise UserError(f"lists image(s) twice: {dup[:5]}", path=template, field=head[0])
    return head, ids


def name_lookup(keys: Mapping[str, Any] | Sequence[str]) -> dict[str, str]:
    """Every spelling of an image key (as given, base name, stem) -> the key; first key wins a clash."""
    out: dict[str, str] = {}
    for key in keys:
        p = Path(str(key).replace("\\", "/"))
        for alias in (str(key), p.name, p.stem):
            out.setdefault(alias, key)
    return out


def find_name(lookup: Mapping[str, str], name: str) -> str | None:
    p = Path(name.replace("\\", "/"))
    for alias in (name, p.name, p.stem):
        if alias in lookup:
            return lookup[alias]
    return None


# ---------------------------------------------------------------------------------------------- reader
def detect_prediction_format(path: Path) -> str:
    """A CSV by suffix, long when its header has the animal and box columns; a JSON object is an ADK
    submission, a JSON list COCO results."""
    if not path.is_file():
        raise UserError(unreadable(path, "prediction file"), path=path)
    if path.suffix.lower() == ".csv":
        return long_csv.FORMAT if long_csv.is_long(read_rows(path)[0]) else "csv"
    doc = load_json(path)
    return "adk-json" if isinstance(doc, dict) else "coco"


def read_predictions(path: str | Path, schema: KeypointSchema, fmt: str | None = None) -> list[Pose]:
    """The animals of a prediction file, in file order. Their keypoints are (K, 2) x, y for CSV and ADK JSON,
    (K, 3) x, y, score for the long CSV and COCO results; their instance's `image_id` is how the file names the
    image (its name, separators as `/`, or its COCO image id). COCO results need each detection's `score` (it
    ranks them) and keep `category_id` and `file_name` in the instance's `meta` and their `bbox`, when given,
    as the instance's box (as the long CSV's box columns are). `fmt` None guesses from the suffix, header and
    JSON shape."""
    path = Path(path)
    if not path.is_file():
        raise UserError(unreadable(path, "prediction file"), path=path)
    readers = {"csv": _read_csv, long_csv.FORMAT: long_csv.read, "adk-json": _read_adk_json, "coco": _read_coco}
    return readers[check_format(fmt or detect_prediction_format(path), field="format")](path, schema)


def _named(image: str, keypoints: np.ndarray, ann_id: str | None = None) -> Pose:
    """A pose read from a file that names its image by file name and gives no score."""
    return Pose(Instance(Path(image), image_id=image, ann_id=ann_id), keypoints, 1.0)


def _read_csv(path: Path, schema: KeypointSchema) -> list[Pose]:
    head, body = read_rows(path)
    col = {c: i for i, c in enumerate(head)}
    image_col = "image" if "image" in col else head[0]
    needed = [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y")]
    missing = [c for c in needed if c not in col]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing[:4])}", path=path, field="header")
    out: dict[str, Pose] = {}
    for row, cells in body:
        if len(cells) != len(head):
            raise UserError(f"has {len(cells)} cells, the header has {len(head)}", path=path, field=f"row {row}")
        name = cells[col[image_col]].strip().replace("\\", "/")
        if name in out:
            raise UserError(f"image '{name}' appears twice", path=path, field=f"row {row}, column '{image_col}'")
        values = [parse_number(cells[col[c]].strip(), path, row, c) for c in needed]
        out[name] = _named(name, np.asarray(values).reshape(schema.num_keypoints, 2))
    return list(out.values())


def _read_adk_json(path: Path, schema: KeypointSchema) -> list[Pose]:
    doc = load_json(path)
    anns = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(anns, list):
        raise UserError("an ADK submission is an object with an 'annotations' list", path=path, field="annotations")
    out = []
    count: dict[str, int] = {}
    for i, ann in enumerate(anns):
        field = f"annotations[{i}]"
        if not isinstance(ann, dict) or not isinstance(ann.get("img_path"), str):
            raise UserError("each annotation needs an 'img_path' string", path=path, field=field)
        joints = _array(ann.get("joint_self"), path, f"{field}.joint_self")
        if joints.shape[0] != schema.num_keypoints or joints.shape[1] < 2:
            raise UserError(
                f"joint_self has shape {joints.shape}; expected {schema.num_keypoints} [x, y] pairs",
                path=path,
                field=f"{field}.joint_self",
            )
        name = ann["img_path"].replace("\\", "/")  # the whole path: two folders may hold one file name
        n = count[name] = count.get(name, -1) + 1  # the animals of one image, counted in file order
        out.append(_named(name, joints[:, :2], str(n)))
    return out


def _read_coco(path: Path, schema: KeypointSchema) -> list[Pose]:
    doc = load_json(path)
    if not isinstance(doc, list):
        raise UserError("COCO results are a JSON list of detections", path=path)
    out = []
    count: dict[str, int] = {}
    for i, det in enumerate(doc):
        field = f"[{i}]"
        if not isinstance(det, dict) or not isinstance(det.get("image_id"), (int, str)):
            raise UserError("each detection needs an 'image_id'", path=path, field=f"{field}.image_id")
        kps = _array(det.get("keypoints"), path, f"{field}.keypoints").reshape(-1)
        if kps.size != 3 * schema.num_keypoints:
            raise UserError(
                f"has {kps.size} values; expected {3 * schema.num_keypoints} (x, y, score per keypoint)",
                path=path,
                field=f"{field}.keypoints",
            )
        kps = kps.reshape(schema.num_keypoints, 3)
        score = det.get("score")
        if not (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)):
            raise UserError(f"score {score!r} must be a finite number (it ranks the detections)", path=path,
                            field=f"{field}.score")  # fmt: skip
        file_name = det.get("file_name")
        if file_name is not None and not (isinstance(file_name, str) and file_name.strip()):
            raise UserError(
                f"file_name {file_name!r} must be a non-empty string", path=path, field=f"{field}.file_name"
            )
        meta = {"category_id": det.get("category_id")} | ({} if file_name is None else {"file_name": file_name})
        box = None if det.get("bbox") is None else check_box(det["bbox"], path, f"{field}.bbox")  # box AP's
        image_id = str(det["image_id"])
        n = count[image_id] = count.get(image_id, -1) + 1
        inst = Instance(Path(image_id), box, image_id=image_id, ann_id=str(n), meta=meta)
        out.append(Pose(inst, kps, float(score)))
    return out


def _array(raw: Any, path: Path, field: str) -> np.ndarray:
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError("must be a list of numbers", path=path, field=field) from None
    if arr.ndim == 0 or arr.size == 0:
        raise UserError("must be a non-empty list of numbers", path=path, field=field)
    if not np.all(np.isfinite(arr)):
        raise UserError("holds NaN or infinite values", path=path, field=field)
    return arr if arr.ndim == 2 else arr.reshape(-1, 1)
