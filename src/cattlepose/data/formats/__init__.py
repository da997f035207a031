"""One entry point for every annotation format: `read_samples`, `write_samples`, `detect_format`.

Formats: `adk` (folder of per-image JSON), `coco` (COCO keypoints JSON), `csv` (wide `image,<kp>_x,<kp>_y,...`).
The schema is named (`adk17`, a YAML path) or `from_data`: built from the COCO category, the ADK files'
`categories[].keypoints_name`, or the CSV header's `<kp>_x` columns, and recognised as a shipped schema when
its keypoint names are one's in another spelling or order (`schema.recognise_schema`).
"""

from __future__ import annotations

import csv as _csv
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cattlepose.core.errors import UserError
from cattlepose.core.files import unreadable
from cattlepose.core.schema import KeypointSchema, load_schema, match_keypoint_names, schema_from_coco_category
from cattlepose.data.formats import adk, coco
from cattlepose.data.formats.common import ErrorSink, drop_duplicate_animals, subsample
from cattlepose.data.records import Sample

DATA_FORMATS = ("adk", "coco", "csv")
FROM_DATA = "from_data"


def detect_format(path: str | Path) -> str:
    """`adk` for a folder with `annotations/` or `*.json` files, `coco` for a `.json` file, `csv` for `.csv`."""
    p = Path(path)
    if p.is_dir():
        if (p / "annotations").is_dir() or next(p.glob("*.json"), None) is not None:
            return "adk"
        raise UserError("folder holds neither an annotations/ folder nor *.json files", path=p)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix == ".csv":
            return "csv"
        raise UserError(f"cannot tell the format of '{p.name}'; give it (adk, coco or csv)", path=p, field="format")
    raise UserError(unreadable(p, "data"), path=p)


def read_samples(
    fmt: str | None,
    path: str | Path,
    schema_spec: str = "adk17",
    images: str | Path | None = None,
    bbox: str = "auto",
    max_samples: int | None = None,
    category: str | int | None = None,
) -> tuple[list[Sample], KeypointSchema]:
    """Read a data set and its schema. `fmt` None (or "auto") detects the format.

    `max_samples` keeps an evenly spread subset (quick experiments); `category` (COCO) reads one category.
    Any problem is a UserError naming the file and field; image sizes come from headers (run `cattlepose data
    check` to decode every image).
    """
    fmt = resolve_format(fmt, path)
    if category is not None and fmt != "coco":
        raise UserError("only COCO files hold several categories to choose from", path=path, field="data.category")
    schema = resolve_schema(fmt, path, schema_spec)
    samples, _ = read_detailed(fmt, path, schema, images=images, bbox=bbox, category=category)
    return subsample(samples, max_samples), schema


def read_sources(
    fmt: str | None,
    paths: Sequence[str | Path],
    schema_spec: str = "adk17",
    images: Sequence[str | Path | None] | None = None,
    bbox: str = "auto",
    max_samples: int | None = None,
    category: str | int | Sequence[str | int] | None = None,
    keypoint_map: dict[str, str] | None = None,
) -> tuple[list[Sample], KeypointSchema]:
    """One or several COCO files read as one data set (public sets to pretrain on: Animal-Pose's sheep and
    horses with its dogs and cats), each with its own image folder (`images[i]`, None: found beside the file).

    The schema is the first file's (or the named one); every file's keypoints map onto it by name, or the file
    is refused listing the names that match nothing (`keypoint_map`, file name -> schema name, renames those).
    With several files each sample keeps, in `meta["source"]`, a label of the file it came from, and image ids
    are prefixed with it, so ids that two files share stay apart (`group_by: source` or `category` can make
    them folds; a photograph in two files is still one photograph for the folds). A file listed twice, or an
    animal annotated in two files, is an error naming both. `category`: one category (name or id), or a list
    of them, kept from whichever files hold them.
    """
    paths = [Path(p) for p in paths]
    several = not isinstance(category, (str, int)) and category is not None
    if keypoint_map and resolve_format(fmt, paths[0]) != "coco":
        raise UserError("keypoint names are mapped in COCO files only (data.format: coco)", field="data.keypoint_map")
    if len(paths) == 1 and not several and not keypoint_map:
        return read_samples(fmt, paths[0], schema_spec, None if images is None else images[0], bbox, max_samples,
                            category)  # fmt: skip
    fmt = resolve_format(fmt, paths[0])
    if fmt != "coco":
        raise UserError("several training files or categories need COCO files (data.format: coco)", field="data.train")
    if images is not None and len(images) != len(paths):
        raise UserError(f"{len(images)} image folders for {len(paths)} training files", field="data.images")
    for error in repeated_files(paths).values():
        raise error
    schema = resolve_schema(fmt, paths[0], schema_spec)
    _check_keypoint_map(keypoint_map, schema)
    samples: list[Sample] = []
    for path, label, root in zip(paths, source_labels(paths), images or [None] * len(paths), strict=True):
        for s in coco.read_detailed(path, schema, root, bbox, by_name=True, keypoint_map=keypoint_map)[0]:  # type: ignore[arg-type]
            if len(paths) > 1:
                s.image_id = f"{label}/{s.image_id}"
                s.meta["source"] = label
            samples.append(s)
    drop_duplicate_animals(samples)  # each file was checked alone; this finds an animal in two of them
    if category is not None:
        wanted = [category] if isinstance(category, (str, int)) else list(category)
        found = sorted({str(s.meta.get("category")) for s in samples})
        held = {s.meta.get("category") for s in samples} | {s.meta.get("category_id") for s in samples}
        missing = [c for c in wanted if c not in held]
        samples = [s for s in samples if s.meta.get("category") in wanted or s.meta.get("category_id") in wanted]
        if missing:
            raise UserError(f"no category {', '.join(map(str, missing))} in the data; it holds {', '.join(found)}",
                            field="data.category")  # fmt: skip
    return subsample(samples, max_samples), schema


def repeated_files(paths: Sequence[Path], field: str = "data.train") -> dict[int, UserError]:
    """The same file listed twice (however spelled) would read every animal twice: an error per repeat, by
    its index in `paths`, naming both entries."""
    seen: dict[Path, int] = {}
    errors = {}
    for i, p in enumerate(paths):
        first = seen.setdefault(p.resolve(), i)
        if first != i:
            same = "" if str(paths[first]) == str(p) else f" ({paths[first]} and {p} are one file)"
            errors[i] = UserError(
                f"{field} lists the same file twice, as entries {first} and {i}{same}: every animal in it would "
                "be read twice; list it once",
                path=p,
                field=f"{field}[{i}]",
            )
    return errors


def _check_keypoint_map(keypoint_map: dict[str, str] | None, schema: KeypointSchema) -> None:
    wrong = [t for t in (keypoint_map or {}).values() if t not in schema.keypoints]
    if wrong:
        raise UserError(
            f"maps onto {', '.join(map(repr, wrong))}, which schema '{schema.name}' does not have; its keypoints: "
            f"{', '.join(schema.keypoints)}",
            field="data.keypoint_map",
        )


def source_labels(paths: Sequence[Path]) -> list[str]:
    """A short, distinct label per file: its stem, or its folder's name where stems repeat
    (`animalpose_dog_cat/annotations.json`), else its position."""
    for label in ([p.stem for p in paths], [p.parent.name for p in paths]):
        if len(set(label)) == len(paths) and all(label):
            return label
    return [str(i) for i in range(len(paths))]


def read_detailed(
    fmt: str,
    path: str | Path,
    schema: KeypointSchema,
    images: str | Path | None = None,
    bbox: str = "auto",
    on_error: ErrorSink | None = None,
    category: str | int | None = None,
    by_name: bool = False,
) -> tuple[list[Sample], dict[str, int]]:
    """Samples plus the reader's counts of repaired quirks and skipped annotations (see each format).
    `by_name` (COCO): the file's keypoints map onto the schema by name or the file is refused."""
    fmt = resolve_format(fmt, path)
    if fmt == "adk":
        return adk.read_detailed(path, schema.num_keypoints, images, bbox, on_error=on_error)  # type: ignore[arg-type]
    if fmt == "coco":
        return coco.read_detailed(path, schema, images, bbox, category, on_error=on_error,  # type: ignore[arg-type]
                                  by_name=by_name)  # fmt: skip
    from cattlepose.data.formats import wide_csv

    try:
        samples = wide_csv.read(path, schema, images=images)
    except UserError as e:
        if on_error is None:
            raise
        on_error(e)
        return [], {}
    if bbox == "image":
        for s in samples:
            s.bbox = None
    return samples, {}


def write_samples(fmt: str, samples: Sequence[Sample], path: str | Path, schema: KeypointSchema) -> None:
    """Write samples in a format: an ADK root folder, a COCO JSON file or a CSV file."""
    fmt = resolve_format(fmt, None)
    if fmt == "adk":
        adk.write(samples, path, schema)
    elif fmt == "coco":
        coco.write(samples, path, schema)
    else:
        from cattlepose.data.formats import wide_csv

        wide_csv.write(samples, path, schema)


def resolve_schema(fmt: str, path: str | Path, spec: str | Path) -> KeypointSchema:
    """The named schema, or for `from_data` the one the data describes; checked against the data's own
    keypoint list when it has one (a count mismatch is an error, differing names a warning)."""
    path = Path(path)
    if str(spec) == FROM_DATA:
        category, source = _data_category(fmt, path)
        return schema_from_coco_category(category, source=source)
    schema = load_schema(spec)
    if fmt == "adk":
        _check_adk_names(path, schema)
    # COCO compares the category with the schema while reading; a CSV header is checked by its reader
    return schema


def resolve_format(fmt: str | None, path: str | Path | None) -> str:
    if fmt is None or fmt == "auto":
        if path is None:
            raise UserError("a format is needed here: adk, coco or csv", field="format")
        return detect_format(path)
    if fmt not in DATA_FORMATS:
        raise UserError(f"unknown data format '{fmt}'; use one of {', '.join(DATA_FORMATS)}", field="data.format")
    return fmt


def _data_category(fmt: str, path: Path) -> tuple[dict[str, Any], Path]:
    if fmt == "coco":
        return coco.read_category(path), path
    if fmt == "adk":
        ann_dir, _ = adk.layout(path)
        return adk.read_category(path), next(iter(sorted(ann_dir.glob("*.json"))), ann_dir)
    return _csv_category(path), path


def _csv_category(path: Path) -> dict[str, Any]:
    """Keypoint names from a wide CSV header: every `<kp>_x` column that has a `<kp>_y` partner, in order."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(_csv.reader(f), [])
    except OSError as e:
        raise UserError(f"cannot read CSV ({e.strerror})", path=path) from None
    cols = set(header)
    names = [c[:-2] for c in header if c.endswith("_x") and f"{c[:-2]}_y" in cols and c != "bbox_x"]
    if not names:
        raise UserError(
            "the header has no <keypoint>_x / <keypoint>_y columns to build a schema from",
            path=path,
            field="header",
        )
    return {"name": path.stem, "keypoints": names, "skeleton": []}


def _check_adk_names(path: Path, schema: KeypointSchema) -> None:
    try:
        category = adk.read_category(path)
    except UserError:
        return  # no keypoint names in the files (or no files): counts are still checked per file
    ann_dir, _ = adk.layout(path)
    first = sorted(ann_dir.glob("*.json"))[0]
    names = category["keypoints"]
    if len(names) != schema.num_keypoints:
        raise UserError(
            f"the data names {len(names)} keypoints, schema '{schema.name}' has {schema.num_keypoints}",
            path=first,
            field="label_info.categories[].keypoints_name",
        )
    if tuple(names) != schema.keypoints:
        i = next(i for i, (a, b) in enumerate(zip(names, schema.keypoints, strict=True)) if a != b)
        by_name = match_keypoint_names(names, schema.keypoints)
        if len(by_name) == len(names) and any(by_name[t] != n for t, n in zip(schema.keypoints, names, strict=True)):
            # ADK files are read by position: the schema's keypoints in another order would be read as the wrong ones
            raise UserError(
                f"the files name the keypoints of schema '{schema.name}' in another order (keypoint {i} is "
                f"'{names[i]}' here, '{schema.keypoints[i]}' in the schema); use schema from_data, which keeps the "
                "files' order and is recognised by name",
                path=first,
                field="label_info.categories[].keypoints_name",
            )
        warnings.warn(
            f"{first}: keypoint {i} is '{names[i]}' in the data and '{schema.keypoints[i]}' in schema "
            f"'{schema.name}'; the schema's names are used",
            stacklevel=4,
        )
