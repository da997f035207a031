"""Wide CSV: one animal per row, `image, <kp>_x, <kp>_y[, <kp>_v], ...` in schema order.

Columns beyond `image` and the coordinates are optional:
- `<kp>_v`: visibility 0/1/2 (default 2 when the column is absent; empty x and y cells mean unlabelled, v=0);
- `width`, `height`: image size (read from the image header when absent);
- `bbox_x, bbox_y, bbox_w, bbox_h`: the box, all four or none; empty cells in a row mean the whole image;
- `group`: the fold group (a farm name), so group k-fold works on CSV data too; empty means none.
Other columns are ignored, except `<name>_x` / `<name>_y` of a keypoint the schema does not have, which is
an error (a schema mismatch). The writer emits every optional column, so `read(write(samples))` gives the
samples back exactly (image, size, keypoints, box, group).

Images: `image` is a file name relative to the image folder: `images=` when given, else whichever of
`<csv folder>/images`, `<csv folder>`, `<csv folder>/../images` holds the first row's image.
Row numbers in messages count as a spreadsheet does: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.formats.common import (
    PROBE_IMAGES,
    check_box,
    drop_duplicate_animals,
    image_root,
    resolve_inside,
    validate_samples,
)
from cattlepose.data.images import image_size
from cattlepose.data.records import Origin, Sample

IMAGE_COLUMN = "image"
SIZE_COLUMNS = ("width", "height")
BOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
GROUP_COLUMN = "group"


def header(schema: KeypointSchema, visibility: bool = True, extras: bool = True) -> list[str]:
    """The writer's column list: image, x, y (and v) per keypoint in schema order, then size and box."""
    cols = [IMAGE_COLUMN]
    for name in schema.keypoints:
        cols += [f"{name}_x", f"{name}_y"] + ([f"{name}_v"] if visibility else [])
    if extras:
        cols += [*SIZE_COLUMNS, *BOX_COLUMNS, GROUP_COLUMN]
    return cols


def read_rows(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(row number, cells)]) of a CSV file; blank lines skipped. Excel's BOM is tolerated."""
    path = Path(path)
    if not path.is_file():
        raise UserError("CSV file not found", path=path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise UserError(f"not a UTF-8 text file ({e.reason})", path=path) from None
    except csv.Error as e:
        raise UserError(f"not a valid CSV file ({e})", path=path) from None
    except OSError as e:
        raise UserError(f"cannot read CSV ({e.strerror})", path=path) from None
    if not rows:
        raise UserError("the CSV file is empty (no header)", path=path, field="header")
    head = [c.strip() for c in rows[0]]
    body = [(i, r) for i, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    return head, body


def parse_number(cell: str, path: str | Path, row: int, column: str) -> float:
    """A finite number from a cell, or a UserError naming the file, row and column."""
    try:
        value = float(cell)
    except ValueError:
        raise UserError(f"'{cell}' is not a number", path=path, field=f"row {row}, column '{column}'") from None
    if not math.isfinite(value):
        raise UserError(f"'{cell}' is not a finite number", path=path, field=f"row {row}, column '{column}'")
    return value


def read(path: str | Path, schema: KeypointSchema, images: str | Path | None = None) -> list[Sample]:
    """Samples of a wide CSV (one per row, in file order). Each bad cell is a UserError naming row and column."""
    path = Path(path)
    head, body = read_rows(path)
    col = _columns(head, schema, path)
    if not body:
        raise UserError("the data set is empty: the CSV has a header and no rows", path=path)
    i = col[IMAGE_COLUMN]
    img_dir = _image_root(path, images, [cells[i] for _, cells in body[:PROBE_IMAGES] if i < len(cells)])
    samples = []
    for row, cells in body:
        if len(cells) != len(head):
            raise UserError(f"has {len(cells)} cells, the header has {len(head)}", path=path, field=f"row {row}")
        samples.append(_sample(cells, col, schema, img_dir, path, row))
    validate_samples(samples, source=path, num_keypoints=schema.num_keypoints)
    return drop_duplicate_animals(samples)  # one photograph under two names (a link), annotated alike


def _columns(head: list[str], schema: KeypointSchema, path: Path) -> dict[str, int]:
    dup = sorted({c for c in head if head.count(c) > 1})
    if dup:
        raise UserError(f"duplicate column(s) {dup}", path=path, field="header")
    col = {c: i for i, c in enumerate(head)}
    if IMAGE_COLUMN not in col:
        raise UserError(f"needs an '{IMAGE_COLUMN}' column naming each image file", path=path, field="header")
    needed = [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y")]
    missing = [c for c in needed if c not in col]
    if missing:
        raise UserError(
            f"missing column(s) {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
            f"for schema '{schema.name}'",
            path=path,
            field="header",
        )
    known = set(needed) | {f"{n}_v" for n in schema.keypoints} | set(BOX_COLUMNS)
    stray = [c for c in head if c.endswith(("_x", "_y")) and c not in known]
    if stray:
        raise UserError(
            f"column '{stray[0]}' names a keypoint that schema '{schema.name}' does not have", path=path, field="header"
        )
    box_cols = [c for c in BOX_COLUMNS if c in col]
    if box_cols and len(box_cols) != 4:
        raise UserError(f"give all four box columns {', '.join(BOX_COLUMNS)} or none", path=path, field="header")
    if sum(c in col for c in SIZE_COLUMNS) == 1:
        raise UserError("give both 'width' and 'height' columns or neither", path=path, field="header")
    return col


def _image_root(path: Path, images: str | Path | None, names: list[str]) -> Path:
    here = path.parent
    default = here / "images" if (here / "images").is_dir() else here
    return image_root(path, images, names, [here / "images", here, here.parent / "images"], default)


def _sample(
    cells: list[str], col: dict[str, int], schema: KeypointSchema, img_dir: Path, path: Path, row: int
) -> Sample:
    def cell(name: str) -> str:
        return cells[col[name]].strip()

    def number(name: str) -> float:
        return parse_number(cell(name), path, row, name)

    img_path = resolve_inside(img_dir, cell(IMAGE_COLUMN), source=path, field=f"row {row}, column '{IMAGE_COLUMN}'")
    rel = img_path.relative_to(img_dir).as_posix()  # the image's name under the data root
    if not img_path.is_file():
        raise UserError(f"image not found: {img_path}", path=path, field=f"row {row}, column '{IMAGE_COLUMN}'")
    kps = np.zeros((schema.num_keypoints, 3))
    for k, name in enumerate(schema.keypoints):
        xc, yc, vc = f"{name}_x", f"{name}_y", f"{name}_v"
        v = number(vc) if vc in col and cell(vc) else None
        if v is not None and v not in (0, 1, 2):
            raise UserError(f"visibility {cell(vc)} must be 0, 1 or 2", path=path, field=f"row {row}, column '{vc}'")
        if not cell(xc) and not cell(yc) and v in (None, 0):
            continue  # unlabelled
        kps[k] = [number(xc), number(yc), 2.0 if v is None else v]
    if SIZE_COLUMNS[0] in col and cell("width") and cell("height"):
        width, height = (int(_positive_int(cell(c), path, row, c)) for c in SIZE_COLUMNS)
    else:
        width, height = image_size(img_path)
    box = None
    if BOX_COLUMNS[0] in col:
        raw = [cell(c) for c in BOX_COLUMNS]
        if any(raw):
            values = [number(c) for c in BOX_COLUMNS]
            box = check_box(values, path, f"row {row}, columns {', '.join(BOX_COLUMNS)}")
    group = cell(GROUP_COLUMN) if GROUP_COLUMN in col else ""
    # `farm A/photo.jpg` and `farm B/photo.jpg` are two images: the id keeps the folders (the stem when there are none)
    return Sample(image=img_path, keypoints=kps, bbox=box, image_id=str(PurePosixPath(rel).with_suffix("")),
                  width=width, height=height, group=group or None, meta={"file_name": rel},
                  origin=Origin(path, f"row {row}"))  # fmt: skip


def _positive_int(cell: str, path: Path, row: int, column: str) -> int:
    value = parse_number(cell, path, row, column)
    if value <= 0 or not value.is_integer():
        raise UserError(f"'{cell}' must be a positive whole number", path=path, field=f"row {row}, column '{column}'")
    return int(value)


def write(samples: Sequence[Sample], path: str | Path, schema: KeypointSchema) -> None:
    """One row per sample with every optional column; checked completely before the file is (atomically) written.

    The image column holds the file name: `read` finds it in `images/` beside the CSV, or in `images=`.
    """
    validate_samples(samples, source="<samples to write>", num_keypoints=schema.num_keypoints)
    names = [s.image.name for s in samples]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"a wide CSV holds one animal per image; several samples share {dup[:3]}", field="image")
    rows = []
    for s in samples:
        source = f"sample {s.key}"
        kps = s.keypoints
        if not np.all(np.isfinite(kps)):
            raise UserError("keypoints hold NaN or infinite values", path=source, field="keypoints")
        width, height = (s.width, s.height) if s.width and s.height else image_size(s.image)
        row: list[Any] = [s.image.name]
        for x, y, v in kps:
            row += [format_number(x), format_number(y), int(v)]
        row += [int(width), int(height)]
        if s.bbox is None:
            row += [""] * 4
        else:
            row += [format_number(v) for v in check_box(list(s.bbox), source, "bbox")]
        row.append("" if s.group is None else s.group)
        rows.append(row)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header(schema))
        w.writerows(rows)


def format_number(v: float) -> str:
    """Integers without a decimal point, other values in the shortest text that reads back exactly."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def format_coord(v: float) -> str:
    """Coordinates to 1/1000 px: far below any metric's resolution, and it keeps the file readable."""
    return format_number(round(float(v), 3))
