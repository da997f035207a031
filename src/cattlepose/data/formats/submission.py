"""Submission files: the writers (wide CSV, ADK JSON, COCO results) and their reader; `validate.py` checks them.

- CSV: `image, <kp>_x, <kp>_y, ...` in schema order, or, given a sample-submission template, exactly its
  columns and its row order. The template's first column names the image; the others must be `<kp>_x` /
  `<kp>_y` of schema keypoints. A template may list images by file name or by stem; both are matched.
- ADK JSON: `{"latency": seconds_per_image, "annotations": [{"ID", "img_path", "joint_self": [[x, y] * K]}]}`.
- COCO results: `[{image_id, category_id, keypoints: [x, y, score] * K, score}]`.

Images are named by their path under the data root (`matching.image_name`: `farm A/photo_000.jpg`), so two
photographs of one name in two folders stay two. COCO results carry each detection's `category_id` (the
animal's, from a COCO input) and, for images without a COCO id (a folder of crops), the image's `file_name`,
so `evaluate` can find the image against any ground truth.

`read_predictions` reads CSV and ADK JSON back keyed by the image names they hold (`matching.pair_rows` pairs
them with ground truth); `read_coco_results` reads COCO results as `Detection`s, scores included.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open, unreadable, write_json
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.formats.common import load_json
from cattlepose.data.formats.matching import image_name, listing, match_names
from cattlepose.data.formats.wide_csv import format_coord, parse_number, read_rows
from cattlepose.data.records import Detection, Sample

SUBMISSION_FORMATS = ("csv", "adk-json", "coco")


def check_format(fmt: str, field: str = "--format") -> str:
    """`fmt` when it is one of SUBMISSION_FORMATS, else a UserError listing them."""
    if fmt not in SUBMISSION_FORMATS:
        raise UserError(f"unknown format '{fmt}'; use one of {', '.join(SUBMISSION_FORMATS)}", field=field)
    return fmt


def write_predictions(
    fmt: str,
    path: str | Path,
    samples: Sequence[Sample],
    preds: Mapping[str, np.ndarray],
    schema: KeypointSchema,
    template: Path | None = None,
    latency: float = 0.0,
) -> None:
    """Predictions (Sample.key -> (K, 3) x, y, score) in one of SUBMISSION_FORMATS. CSV and ADK JSON hold one animal per
    image (rows by file name); COCO results keep every animal under its image id."""
    if check_format(fmt) == "coco":
        image_ids = {s.key: _coco_image_id(s, i) for i, s in enumerate(samples)}
        scores = {k: float(v[:, 2].mean()) for k, v in preds.items()}
        categories = {s.key: s.meta["category_id"] for s in samples if s.meta.get("category_id") is not None}
        names = {s.key: image_name(s) for s in samples if "coco_image_id" not in s.meta}
        write_coco_results(path, preds, image_ids, scores=scores, category_ids=categories, file_names=names)
        return
    names = Counter(image_name(s) for s in samples)
    crowded = [n for n, count in names.items() if count > 1]
    if crowded:
        raise UserError(f"'{crowded[0]}' holds {names[crowded[0]]} animals, and '{fmt}' holds one animal per image; "
                        "use --format coco for several", field="--format")  # fmt: skip
    by_name = {image_name(s): preds[s.key] for s in samples}
    if fmt == "csv":
        write_csv(path, by_name, schema, template=template)
    else:
        paths = {image_name(s): str(s.image) for s in samples}
        write_adk_json(path, by_name, schema, latency=latency, image_paths=paths)


def _coco_image_id(s: Sample, fallback: int) -> int:
    if "coco_image_id" in s.meta:
        return int(s.meta["coco_image_id"])
    return int(s.image_id) if s.image_id.isdigit() else fallback


# ---------------------------------------------------------------------------------------------- writers
def csv_header(schema: KeypointSchema) -> list[str]:
    return ["image"] + [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y")]


def write_csv(
    path: str | Path,
    preds: Mapping[str, np.ndarray],
    schema: KeypointSchema,
    template: Path | None = None,
) -> None:
    """Predictions (image name -> (K, 2|3)) as a wide CSV; with a template, its columns and row order.

    Template rows are matched to predictions as `matching.match_names` matches names (a stem, a file name or a
    path). Every template image needs a prediction (a UserError lists the missing ones); predictions for images
    the template does not list are left out with a warning.
    """
    arrays = {k: check_prediction(k, v, schema.num_keypoints) for k, v in preds.items()}
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


def write_adk_json(
    path: str | Path,
    preds: Mapping[str, np.ndarray],
    schema: KeypointSchema,
    latency: float,
    image_paths: Mapping[str, str],
) -> None:
    """The ADK2021 submission JSON; `image_paths` gives each prediction's `img_path` (same keys as `preds`).
    IDs count annotations from 1 in the order of `preds`."""
    if not (isinstance(latency, (int, float)) and math.isfinite(latency) and latency >= 0):
        raise UserError(f"latency {latency!r} must be a finite number of seconds >= 0", field="latency")
    anns = []
    for i, (key, raw) in enumerate(preds.items(), start=1):
        arr = check_prediction(key, raw, schema.num_keypoints)
        if key not in image_paths:
            raise UserError(f"no image path for prediction '{key}'", field="image_paths")
        joints = [[_plain_num(x), _plain_num(y)] for x, y in arr[:, :2]]
        anns.append({"ID": i, "img_path": str(image_paths[key]), "joint_self": joints})
    write_json(path, {"latency": float(latency), "annotations": anns})


def write_coco_results(
    path: str | Path,
    preds_by_key: Mapping[str, np.ndarray],
    image_ids: Mapping[str, int],
    category_id: int = 1,
    scores: Mapping[str, float] | None = None,
    category_ids: Mapping[str, Any] | None = None,
    file_names: Mapping[str, str] | None = None,
) -> None:
    """COCO keypoint results. Each keypoint's third value is its score (1 when predictions carry none); the
    detection score is `scores[key]`, else the mean keypoint score; the category `category_ids[key]`, else
    `category_id`; `file_names[key]`, where given, is written as the detection's `file_name`."""
    out = []
    for key, raw in preds_by_key.items():
        arr = check_prediction(key, raw, None)
        if key not in image_ids:
            raise UserError(f"no COCO image id for prediction '{key}'", field="image_ids")
        kps = arr if arr.shape[1] == 3 else np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
        score = float(scores[key]) if scores is not None and key in scores else float(kps[:, 2].mean())
        if not math.isfinite(score):
            raise UserError(f"score of prediction '{key}' is not finite", field="scores")
        det = {
            "image_id": int(image_ids[key]),
            "category_id": (category_ids or {}).get(key, category_id),
            "keypoints": [_plain_num(v) for v in kps.reshape(-1)],
            "score": score,
        }
        if file_names is not None and key in file_names:
            det["file_name"] = file_names[key]
        out.append(det)
    write_json(path, out, indent=None)


def check_prediction(key: str, raw: Any, k: int | None) -> np.ndarray:
    """One animal's prediction as a (K, 2|3) float array, its shape and finiteness checked."""
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or (k is not None and arr.shape[0] != k):
        want = f"({k}, 2) or ({k}, 3)" if k is not None else "(K, 2) or (K, 3)"
        raise UserError(f"prediction for '{key}' has shape {arr.shape}; expected {want}")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"prediction for '{key}' holds NaN or infinite values")
    return arr


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
    """csv by suffix; a JSON object is an ADK submission, a JSON list COCO results."""
    if not path.is_file():
        raise UserError(unreadable(path, "prediction file"), path=path)
    if path.suffix.lower() == ".csv":
        return "csv"
    doc = load_json(path)
    return "adk-json" if isinstance(doc, dict) else "coco"


def read_predictions(path: str | Path, schema: KeypointSchema, fmt: str | None = None) -> dict[str, np.ndarray]:
    """Predictions of a submission file: image name (the CSV's image cell, the ADK `img_path`, separators as
    `/`) -> (K, 2) for CSV and ADK JSON, `"<image_id>#<n>"` -> (K, 3) (x, y, keypoint score) for COCO results
    (`read_coco_results` keeps their scores and categories). `fmt` None guesses from the suffix and JSON shape."""
    path = Path(path)
    if not path.is_file():
        raise UserError(unreadable(path, "prediction file"), path=path)
    readers = {"csv": _read_csv, "adk-json": _read_adk_json, "coco": _read_coco}
    return readers[check_format(fmt or detect_prediction_format(path), field="format")](path, schema)


def _read_csv(path: Path, schema: KeypointSchema) -> dict[str, np.ndarray]:
    head, body = read_rows(path)
    col = {c: i for i, c in enumerate(head)}
    image_col = "image" if "image" in col else head[0]
    needed = [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y")]
    missing = [c for c in needed if c not in col]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing[:4])}", path=path, field="header")
    out: dict[str, np.ndarray] = {}
    for row, cells in body:
        if len(cells) != len(head):
            raise UserError(f"has {len(cells)} cells, the header has {len(head)}", path=path, field=f"row {row}")
        name = cells[col[image_col]].strip().replace("\\", "/")
        if name in out:
            raise UserError(f"image '{name}' appears twice", path=path, field=f"row {row}, column '{image_col}'")
        values = [parse_number(cells[col[c]].strip(), path, row, c) for c in needed]
        out[name] = np.asarray(values).reshape(schema.num_keypoints, 2)
    return out


def _read_adk_json(path: Path, schema: KeypointSchema) -> dict[str, np.ndarray]:
    doc = load_json(path)
    anns = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(anns, list):
        raise UserError("an ADK submission is an object with an 'annotations' list", path=path, field="annotations")
    out: dict[str, np.ndarray] = {}
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
        if name in out:
            raise UserError(f"image '{name}' appears twice", path=path, field=f"{field}.img_path")
        out[name] = joints[:, :2]
    return out


def _read_coco(path: Path, schema: KeypointSchema) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for d in read_coco_results(path, schema):
        n = count.get(d.image, 0)
        count[d.image] = n + 1
        out[f"{d.image}#{n}"] = d.keypoints
    return out


def read_coco_results(path: str | Path, schema: KeypointSchema) -> list[Detection]:
    """Every detection of a COCO keypoint results file, in file order: its image id (as text), keypoints,
    score (what ranks it in OKS AP: required), category_id and, where given, file_name."""
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, list):
        raise UserError("COCO results are a JSON list of detections", path=path)
    out: list[Detection] = []
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
        score = det.get("score")
        if not (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)):
            raise UserError(f"score {score!r} must be a finite number (it ranks the detections)", path=path,
                            field=f"{field}.score")  # fmt: skip
        file_name = det.get("file_name")
        if file_name is not None and not (isinstance(file_name, str) and file_name.strip()):
            raise UserError(
                f"file_name {file_name!r} must be a non-empty string", path=path, field=f"{field}.file_name"
            )
        out.append(Detection(str(det["image_id"]), kps.reshape(schema.num_keypoints, 3), float(score),
                             det.get("category_id"), file_name, i))  # fmt: skip
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
