"""`cattlepose validate`: every problem of a submission CSV, against its template (a wide CSV) or on its own (a
wide CSV without one, or a long CSV), and, optionally, against the images."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from cattlepose.core.errors import UserError
from cattlepose.data.formats import long_csv
from cattlepose.data.formats.submission import find_name, name_lookup
from cattlepose.data.formats.wide_csv import read_rows


def validate_submission(
    path: str | Path,
    template: Path | None,
    image_sizes: Mapping[str, tuple[int, int]] | None,
) -> list[str]:
    """Every problem of a submission CSV, one human-readable line each (empty list = valid).

    Checked: missing, extra and reordered columns; rows missing, repeated, out of order; images the template
    (or, given `image_sizes` (file name -> (width, height)), the image folder) does not know; empty,
    non-numeric, NaN or infinite cells; coordinates off the image. Rows count as in a spreadsheet (header = 1).
    A long CSV (a row per animal) has no template: its columns, its animals (each once) and its cells are checked.
    """
    path = Path(path)
    try:
        head, body = read_rows(path)
    except UserError as e:
        return [str(e)]
    if long_csv.is_long(head):
        return _long_problems(head, body, template, image_sizes)
    problems: list[str] = []
    t_head: list[str] | None = None
    t_ids: list[str] = []
    if template is not None:
        try:
            t_head, t_body = read_rows(template)
        except UserError as e:
            return [f"template: {e}"]
        t_ids = list(dict.fromkeys(cells[0].strip() if cells else "" for _, cells in t_body))
        problems += _column_problems(head, t_head)
    sizes = name_lookup(image_sizes) if image_sizes is not None else None
    problems += _row_problems(head, body, t_ids if template is not None else None, sizes)
    problems += _cell_problems(head, body, sizes, image_sizes)
    return problems


def _row_problems(
    head: list[str], body: list[tuple[int, list[str]]], t_ids: list[str] | None, sizes: Mapping[str, str] | None
) -> list[str]:
    """Rows ragged, repeated, unknown (to the template or the image folder), missing, or out of order."""
    problems: list[str] = []
    id_col = head[0] if head else "image"
    ids: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    template_set = set(t_ids or [])
    for row, cells in body:
        if len(cells) != len(head):
            problems.append(f"row {row}: has {len(cells)} cells, the header has {len(head)}")
        name = cells[0].strip() if cells else ""
        if not name:
            problems.append(f"row {row}, column '{id_col}': no image name")
            continue
        if name in seen:
            problems.append(f"row {row}: extra row, image '{name}' already appears in row {seen[name]}")
            continue
        seen[name] = row
        if t_ids is not None and name not in template_set:
            problems.append(f"row {row}: unknown image '{name}' (not in the template)")
        elif sizes is not None and find_name(sizes, name) is None:
            problems.append(f"row {row}: unknown image '{name}' (not in the image folder)")
        ids.append((row, name))
    if t_ids is None:
        return problems
    problems += [f"missing row for image '{name}' (in the template)" for name in t_ids if name and name not in seen]
    order = [name for _, name in ids if name in template_set]
    expected = [i for i in t_ids if i in seen]
    if order != expected:
        k = next(j for j, (a, b) in enumerate(zip(order, expected, strict=True)) if a != b)
        problems.append(
            f"row {seen[order[k]]}: rows are out of order: image '{order[k]}' where the template has "
            f"'{expected[k]}' (rows must follow the template's order)"
        )
    return problems


def _long_problems(
    head: list[str],
    body: list[tuple[int, list[str]]],
    template: Path | None,
    image_sizes: Mapping[str, tuple[int, int]] | None,
) -> list[str]:
    """A long CSV's columns (the animal's, the box's, x, y and score of each keypoint), each animal once, the
    image known (given `image_sizes`), numbers in every numeric cell, boxes of positive size, positions on
    the image."""
    problems = [] if template is None else ["template: a long CSV has a row per animal found and no template"]
    missing = [c for c in (*long_csv.ANIMAL_COLUMNS, *long_csv.BOX_COLUMNS) if c not in head]
    if missing:
        problems.append(f"header: missing column(s) {', '.join(missing)}")
    dup = sorted({c for c in head if head.count(c) > 1})
    if dup:
        problems.append(f"header: duplicate column(s) {', '.join(dup)}")
    points = [c for c in head if c not in (*long_csv.ANIMAL_COLUMNS, *long_csv.BOX_COLUMNS)]
    kinds: dict[str, set[str]] = {}
    for c in points:
        name, _, kind = c.rpartition("_")
        if kind not in ("x", "y", "score") or not name:
            problems.append(f"header: column '{c}' is not <keypoint>_x, <keypoint>_y or <keypoint>_score")
        else:
            kinds.setdefault(name, set()).add(kind)
    for name, have in kinds.items():
        if have != {"x", "y", "score"}:
            lacking = ", ".join(f"{name}_{k}" for k in ("x", "y", "score") if k not in have)
            problems.append(f"header: keypoint '{name}' lacks {lacking}")
    if missing:
        return problems
    col = {c: i for i, c in enumerate(head)}
    sizes = name_lookup(image_sizes) if image_sizes is not None else None
    seen: dict[tuple[str, str], int] = {}
    for row, cells in body:
        if len(cells) != len(head):
            problems.append(f"row {row}: has {len(cells)} cells, the header has {len(head)}")
            continue
        image, instance = cells[col["image"]].strip(), cells[col["instance"]].strip()
        if not image:
            problems.append(f"row {row}, column 'image': no image name")
        elif (image, instance) in seen:
            problems.append(f"row {row}: animal '{instance}' of image '{image}' already appears in row "
                            f"{seen[image, instance]}")  # fmt: skip
        elif sizes is not None and find_name(sizes, image) is None:
            problems.append(f"row {row}: unknown image '{image}' (not in the image folder)")
        seen.setdefault((image, instance), row)
        for c in ("box_w", "box_h"):
            try:
                if float(cells[col[c]]) <= 0:
                    problems.append(f"row {row}, column '{c}': the box must have a positive size")
            except ValueError:
                pass  # named by the cell check
    numeric = ["score", *long_csv.BOX_COLUMNS, *points]
    whole = [(row, cells) for row, cells in body if len(cells) == len(head)]
    return problems + _cell_problems(head, whole, sizes, image_sizes, numeric, image_column="image")


def _cell_problems(
    head: list[str],
    body: list[tuple[int, list[str]]],
    sizes: Mapping[str, str] | None,
    image_sizes: Mapping[str, tuple[int, int]] | None,
    numeric: Sequence[str] | None = None,
    image_column: str | None = None,
) -> list[str]:
    """Cells empty, not numbers, not finite, or coordinates off the image. `numeric`: the columns that hold
    numbers (all but the first when None); `image_column`: the one naming the image (the first when None)."""
    problems: list[str] = []
    col = {c: i for i, c in enumerate(head)}
    at = col[image_column] if image_column is not None else 0
    for row, cells in body:
        name = cells[at].strip() if len(cells) > at else ""
        key = find_name(sizes, name) if sizes is not None and name else None
        size = image_sizes[key] if key is not None and image_sizes is not None else None
        for c in head[1:] if numeric is None else numeric:
            if col[c] >= len(cells):
                continue  # reported as a short row
            text = cells[col[c]].strip()
            try:
                value = float(text)
            except ValueError:
                what = "empty cell" if not text else f"'{text}' is not a number"
                problems.append(f"row {row}, column '{c}': {what}")
                continue
            if not math.isfinite(value):
                problems.append(f"row {row}, column '{c}': {text} is not a finite number")
            elif size is not None and c.endswith(("_x", "_y")):
                limit = size[0] if c.endswith("_x") else size[1]
                if not 0 <= value <= limit:
                    axis = "width" if c.endswith("_x") else "height"
                    problems.append(f"row {row}, column '{c}': {text} is off the image ({axis} {limit}) of '{name}'")
    return problems


def _column_problems(head: list[str], t_head: list[str]) -> list[str]:
    problems = []
    missing = [c for c in t_head if c not in head]
    extra = [c for c in head if c not in t_head]
    dup = sorted({c for c in head if head.count(c) > 1})
    if missing:
        problems.append(f"header: missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"header: extra column(s) {', '.join(extra)} (not in the template)")
    if dup:
        problems.append(f"header: duplicate column(s) {', '.join(dup)}")
    common = [c for c in head if c in t_head]
    if not dup and common != [c for c in t_head if c in head]:
        problems.append("header: columns are in a different order than the template's")
    elif head and t_head and head[0] != t_head[0] and not missing:
        problems.append(f"header: the first column must be '{t_head[0]}'")
    return problems
