"""`cattlepose data check`: what a data set holds and every problem in it, found in one pass.

Unlike the readers, which stop at the first bad file, this collects all problems, and it decodes every image
(readers only read headers), so truncated and corrupt files are found before a training run meets them.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cattlepose.core.config import DataConfig
from cattlepose.core.errors import UserError, escape_controls
from cattlepose.core.schema import KeypointSchema, recognition_note
from cattlepose.data.formats import read_detailed, repeated_files, resolve_format, resolve_schema, source_labels
from cattlepose.data.formats.common import drop_duplicate_animals, outside_policy
from cattlepose.data.images import load_image
from cattlepose.data.photos import several_ids
from cattlepose.data.records import Sample

MAX_LISTED = 200  # problems shown in the table; the count always covers all of them (plain output lists all)
# Reader counts that no reader warning already reports (the file-name quirk and skipped annotations are warned
# about by the readers, and those warnings become notes too).
_STAT_NOTES = {
    "placeholder_boxes": "placeholder box(es) (outside the image or missing the keypoints) read as the whole image",
    "other_category": "annotation(s) of other categories skipped",
    "size_mismatch": "image(s) whose width/height in the JSON differ from the file (the file's size is used)",
}


@dataclass
class Problem:
    file: str
    field: str | None
    message: str

    def __post_init__(self) -> None:  # names from a data file may hold NUL or ESC: shown escaped, never raw
        self.file = escape_controls(self.file)
        self.field = None if self.field is None else escape_controls(self.field)
        self.message = escape_controls(self.message, keep_newlines=True)

    def __str__(self) -> str:
        where = self.file + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"

    def line(self) -> str:
        """`path: field: problem` (`path: problem` without a field) on one line, the path whole: for logs."""
        return ": ".join(x for x in (self.file, self.field, _one_line(self.message)) if x)


@dataclass
class DataReport:
    path: Path  # the (first) file or folder checked
    format: str
    schema: KeypointSchema | None
    keypoint_names: list[str]
    images: int = 0  # distinct image files
    animals: int = 0  # samples (annotated animals)
    labelled: list[int] = field(default_factory=list)  # per keypoint: v > 0
    occluded: list[int] = field(default_factory=list)  # per keypoint: v == 1
    width_range: tuple[int, int] | None = None
    height_range: tuple[int, int] | None = None
    categories: dict[str, int] = field(default_factory=dict)  # animals per category
    farms: dict[str, int] = field(default_factory=dict)  # animals per farm (ADK farm_name)
    notes: list[str] = field(default_factory=list)  # repaired quirks and skipped annotations: not problems
    problems: list[Problem] = field(default_factory=list)
    more_paths: list[Path] = field(default_factory=list)  # the other files of a multi-file set, read as one

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "paths": [str(p) for p in (self.path, *self.more_paths)],
            "format": self.format,
            "schema": None if self.schema is None else self.schema.name,
            "images": self.images,
            "animals": self.animals,
            "keypoints": {
                n: {"labelled": lab, "occluded": occ}
                for n, lab, occ in zip(self.keypoint_names, self.labelled, self.occluded, strict=True)
            },
            "width_range": self.width_range,
            "height_range": self.height_range,
            "categories": self.categories,
            "farms": self.farms,
            "notes": self.notes,
            "problems": [str(p) for p in self.problems],
        }


def check_data(
    path: str | Path | Sequence[str | Path],
    fmt: str | None = None,
    schema_spec: str = "adk17",
    images: str | Path | None = None,
    bbox: str = "auto",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DataReport:
    """Read a data set collecting every problem, decode every image, and summarise.

    `path`: one file or folder, or several COCO files checked as training reads them as one set (keypoints
    mapped by name onto the first file's schema, an animal in two files found). A missing path or unknown
    format is raised as a UserError; everything found inside the data becomes a `Problem` in the report.
    `progress(done, total)` is called as images are decoded.
    """
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    fmt = resolve_format(fmt, paths[0])
    several = len(paths) > 1
    if several and fmt != "coco":
        raise UserError("several files are checked as one set only when they are COCO files", path=paths[1])
    if several and images is not None:
        raise UserError("--images names one folder; with several files, each file's images are found beside it",
                        field="--images")  # fmt: skip
    problems: list[Problem] = []

    def collect(e: UserError) -> None:
        if not getattr(e, "already_reported", False):
            problems.append(Problem(e.path or str(paths[0]), e.field, e.message))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema: KeypointSchema | None
        try:
            schema = resolve_schema(fmt, paths[0], schema_spec)
        except UserError as e:
            collect(e)
            schema = None
        samples: list[Sample] = []
        stats: Counter[str] = Counter()
        repeats = repeated_files(paths, field="PATH") if several else {}
        for e in repeats.values():
            collect(e)
        for i, (p, label) in enumerate(zip(paths, source_labels(paths), strict=True)):
            if schema is None or i in repeats:
                continue
            try:
                read, counts = read_detailed(fmt, p, schema, images=images, bbox=bbox, on_error=collect,
                                             by_name=several)  # fmt: skip
            except UserError as e:  # a file that cannot be read at all (its keypoints, its layout): the next one can
                collect(e)
                continue
            stats.update(counts)
            for s in read:
                if several:
                    s.image_id, s.meta["source"] = f"{label}/{s.image_id}", label
            samples += read
        if several:
            samples = drop_duplicate_animals(samples, collect)
    notes = [f"{n} {_STAT_NOTES[k]}" for k, n in stats.items() if n and k in _STAT_NOTES]
    notes += [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    recognised = recognition_note(schema) if schema is not None else None
    if recognised:
        notes.insert(0, recognised)
    notes += _several_ids_note(samples)

    problems += _decode_all(sorted({s.image for s in samples}), workers, progress)
    notes += _outside_notes(samples)
    problems += _far_outside(samples, schema.keypoints if schema is not None else ())
    names = list(schema.keypoints) if schema is not None else []
    report = DataReport(path=paths[0], format=fmt, schema=schema, keypoint_names=names, notes=notes,
                        problems=problems, more_paths=paths[1:])  # fmt: skip
    _summarise(report, samples)
    return report


def _several_ids_note(samples: list[Sample], shown: int = 5) -> list[str]:
    """Photographs that appear under several image ids: legal (training keeps each photograph's animals in one
    fold), but usually a file merged twice or a photograph copied between sets."""
    found = several_ids(samples)
    if not found:
        return []
    listed = "; ".join(f"{label} (ids {', '.join(ids)})" for label, ids in found[:shown])
    more = f"; ... {len(found) - shown} more" if len(found) > shown else ""
    return [f"{len(found)} photograph(s) appear under several image ids (training keeps each photograph in one "
            f"fold): {listed}{more}"]  # fmt: skip


def require_decodable(samples: list[Sample]) -> None:
    """Every image of `samples` decodes (threads), else one UserError listing the files: training checks this
    before it writes its run folder, not an epoch in."""
    problems = _decode_all(sorted({s.image for s in samples}), None, None)
    if problems:
        shown = "\n  ".join(f"{p.file}: {p.message}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise UserError(f"{len(problems)} image(s) cannot be decoded; fix or remove them:\n  {shown}{more}")


def _decode_all(paths: list[Path], workers: int | None, progress: Callable[[int, int], None] | None) -> list[Problem]:
    """Decode every image (threads: PIL releases the GIL while decoding); one problem per unreadable file."""

    def decode(p: Path) -> Problem | None:
        try:
            load_image(p)
        except UserError as e:
            return Problem(str(p), None, e.message)
        return None

    found: list[Problem] = []
    n_workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for i, result in enumerate(pool.map(decode, paths), 1):
            if result is not None:
                found.append(result)
            if progress is not None:
                progress(i, len(paths))
    return found


def _far_outside(samples: list[Sample], names: Sequence[str]) -> list[Problem]:
    """Keypoints that training refuses by default (`data.outside: error`): one problem per animal, and the count."""
    margin = DataConfig.model_fields["outside_margin"].default
    found = []
    for s in samples:
        try:
            outside_policy([s], "error", margin, names)
        except UserError as e:
            found.append(Problem(e.path or str(s.image), e.field, e.message))
    return found


def _outside_notes(samples: list[Sample], tolerance: float = 1.0) -> list[str]:
    """Labelled keypoints outside their image: legal (an animal can leave the frame) but worth a look."""
    n = 0
    for s in samples:
        if s.width is None or s.height is None:
            continue
        k = s.keypoints[s.keypoints[:, 2] > 0]
        out = (k[:, 0] < -tolerance) | (k[:, 1] < -tolerance)
        out |= (k[:, 0] > s.width + tolerance) | (k[:, 1] > s.height + tolerance)
        n += int(out.sum())
    return [f"{n} labelled keypoint(s) lie outside their image"] if n else []


def _summarise(report: DataReport, samples: list[Sample]) -> None:
    report.animals = len(samples)
    report.images = len({s.image for s in samples})
    counts = Counter(s.num_keypoints for s in samples)
    k = len(report.keypoint_names) or (counts.most_common(1)[0][0] if counts else 0)
    if not report.keypoint_names:
        report.keypoint_names = [f"keypoint {i}" for i in range(k)]
    same = [s.keypoints for s in samples if s.num_keypoints == k]
    vis = np.stack([kp[:, 2] for kp in same]) if same else np.zeros((0, k))
    report.labelled = [int(v) for v in (vis > 0).sum(axis=0)]
    report.occluded = [int(v) for v in (vis == 1).sum(axis=0)]
    widths = [s.width for s in samples if s.width is not None]
    heights = [s.height for s in samples if s.height is not None]
    if widths and heights:
        report.width_range = (min(widths), max(widths))
        report.height_range = (min(heights), max(heights))
    cats = Counter(str(s.meta.get("category", s.meta.get("category_id", "-"))) for s in samples)
    report.categories = dict(cats.most_common())
    farms = Counter(str(s.meta["farm_name"]) for s in samples if s.meta.get("farm_name") is not None)
    report.farms = dict(farms.most_common())


def render(report: DataReport, plain: bool = False) -> RenderableType:
    """Rich tables: summary, per-keypoint counts, notes, problems.

    `plain` is for output to a file or a pipe: notes and problems then come one per line (`note: ...`,
    `path: field: problem`) with whole paths and every problem listed, so a log can be searched with grep.
    """
    summary = Table(title="data check", title_justify="left", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", overflow="fold")
    schema = "-" if report.schema is None else f"{report.schema.name} ({report.schema.num_keypoints} keypoints)"
    rows = [
        ("data", ", ".join(str(p) for p in (report.path, *report.more_paths))),
        ("format", report.format),
        ("schema", schema),
        ("images", str(report.images)),
        ("animals", str(report.animals)),
    ]
    if report.width_range and report.height_range:
        (w0, w1), (h0, h1) = report.width_range, report.height_range
        rows.append(("image width", f"{w0} .. {w1} px"))
        rows.append(("image height", f"{h0} .. {h1} px"))
    if report.categories:
        rows.append(("categories", _counts(report.categories)))
    if report.farms:
        rows.append(("farms", _counts(report.farms)))
    for name, value in rows:
        summary.add_row(name, Text(value))  # paths and farm names literally, never as rich markup

    parts: list[RenderableType] = [summary]
    if report.animals:
        kp = Table(title="keypoints", title_justify="left")
        for c in ("keypoint", "labelled", "visible", "occluded", "occluded %"):
            kp.add_column(c, justify="left" if c == "keypoint" else "right")
        for name, lab, occ in zip(report.keypoint_names, report.labelled, report.occluded, strict=True):
            pct = f"{100 * occ / lab:.1f}" if lab else "-"
            kp.add_row(Text(name), str(lab), str(lab - occ), str(occ), pct)
        parts.append(kp)
    for note in report.notes:
        parts.append(Text(f"note: {_one_line(note) if plain else note}", style="yellow"))
    if report.ok:
        parts.append(Text("no problems found", style="bold green"))
        return Group(*parts)
    title = f"{len(report.problems)} problem(s)"
    if plain:
        parts.append(Text(f"{title}:", style="bold red"))
        parts += [Text(p.line()) for p in report.problems]
        return Group(*parts)
    table = Table(title=title, title_justify="left", title_style="bold red")
    table.add_column("file", overflow="fold")
    table.add_column("field", overflow="fold")
    table.add_column("problem", overflow="fold")
    for p in report.problems[:MAX_LISTED]:
        # Text cells: file names and messages are shown literally, never read as rich markup
        table.add_row(Text(_short(p.file, report.path)), Text(p.field or ""), Text(p.message))
    parts.append(table)
    if len(report.problems) > MAX_LISTED:
        parts.append(Text(f"... and {len(report.problems) - MAX_LISTED} more", style="red"))
    return Group(*parts)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _counts(d: dict[str, int], limit: int = 8) -> str:
    items = list(d.items())
    text = ", ".join(f"{k}: {v}" for k, v in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _short(file: str, root: Path) -> str:
    """A file named relative to the data root when it lies inside it (tables stay narrow)."""
    base = root if root.is_dir() else root.parent
    try:
        return str(Path(file).relative_to(base))
    except ValueError:
        return file
