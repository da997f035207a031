"""The long CSV of predictions (`--format long-csv`): one row per animal, so an image holds any number of them.

Columns: `image` (the file name), `instance` (the animal's id in its image: its annotation id where the box
came from an annotation, else its number in the image from 0), `category` (empty when unknown), `score` (the
animal's), `box_x, box_y, box_w, box_h` (the region its keypoints were predicted in: its box, or the whole
image), then `<kp>_x, <kp>_y, <kp>_score` for every keypoint in schema order. All positions are in original
image pixels. An image in which no animal was found has no row.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open
from cattlepose.core.schema import KeypointSchema
from cattlepose.data.formats.poses import check_prediction, file_names
from cattlepose.data.formats.wide_csv import format_coord, format_number, parse_number, read_rows
from cattlepose.data.records import Instance, Pose

FORMAT = "long-csv"
ANIMAL_COLUMNS = ("image", "instance", "category", "score")
BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")


def header(schema: KeypointSchema) -> list[str]:
    return [*ANIMAL_COLUMNS, *BOX_COLUMNS] + [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y", "score")]


def is_long(head: Sequence[str]) -> bool:
    """A long CSV's header, rather than a wide one's: it has the animal and box columns."""
    return {"instance", *BOX_COLUMNS} <= set(head)


def write(path: str | Path, poses: Sequence[Pose], schema: KeypointSchema) -> None:
    names = file_names([p.instance for p in poses], FORMAT, one_per_image=False)
    numbers: dict[str, int] = {}
    rows = []
    for pose, name in zip(poses, names, strict=True):
        inst = pose.instance
        kps = check_prediction(inst.key, pose.keypoints, schema.num_keypoints)
        if kps.shape[1] != 3:
            raise UserError(f"prediction for '{inst.key}' has no keypoint scores; '{FORMAT}' writes them")
        n = numbers[name] = numbers.get(name, -1) + 1
        animal = [name, inst.ann_id if inst.ann_id is not None else str(n), inst.category or "", _score(pose.score)]
        box = [format_coord(v) for v in inst.crop_box()]
        points = [f(v) for x, y, s in kps for f, v in ((format_coord, x), (format_coord, y), (_score, s))]
        rows.append(animal + box + points)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header(schema))
        w.writerows(rows)


def read(path: Path, schema: KeypointSchema) -> list[Pose]:
    """Every row's animal, in file order; a missing column, a bad number or an animal listed twice is a
    UserError naming the row and column."""
    head, body = read_rows(path)
    col = {c: i for i, c in enumerate(head)}
    missing = [c for c in header(schema) if c not in col]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing[:4])}", path=path, field="header")
    points = [f"{n}_{c}" for n in schema.keypoints for c in ("x", "y", "score")]
    seen: dict[tuple[str, str], int] = {}
    out = []
    for row, cells in body:
        if len(cells) != len(head):
            raise UserError(f"has {len(cells)} cells, the header has {len(head)}", path=path, field=f"row {row}")
        image, instance, category = (cells[col[c]].strip() for c in ANIMAL_COLUMNS[:3])
        if not image:
            raise UserError("no image name", path=path, field=f"row {row}, column 'image'")
        if (image, instance) in seen:
            raise UserError(f"animal '{instance}' of image '{image}' already appears in row {seen[image, instance]}",
                            path=path, field=f"row {row}")  # fmt: skip
        seen[image, instance] = row

        def number(c: str, cells: list[str] = cells, row: int = row) -> float:
            return parse_number(cells[col[c]].strip(), path, row, c)

        box = np.array([number(c) for c in BOX_COLUMNS])
        kps = np.array([number(c) for c in points]).reshape(schema.num_keypoints, 3)
        inst = Instance(Path(image), box, image_id=image, ann_id=instance or None,
                        meta={"category": category} if category else {})  # fmt: skip
        out.append(Pose(inst, kps, number("score")))
    return out


def _score(v: float) -> str:
    """Scores to 1/10000: finer than any ranking needs."""
    return format_number(round(float(v), 4))
