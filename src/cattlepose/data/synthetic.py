"""`cattlepose synth`: the procedural cattle data set, written in the ADK2021 layout.

    OUT/train/images/synth_train_000001.jpg   OUT/train/annotations/synth_train_000001.json
    OUT/test/images/...                        OUT/test/annotations/...   (ground truth kept apart)
    OUT/sample_submission.csv                  written last: its presence means the set is complete

Annotations go through the ADK writer, so the ADK reader serves synthetic and real data alike; each records
its farm (`farm_name`, the group for k-fold), `farm_env`, `time`, `body_type`, the ADK category and the
image's occluded keypoint fraction. The test split is drawn from the same eight farms as the training split,
as in the competition; group k-fold inside the training split is what measures generalisation to new farms.

Every image has its own generator seeded by (seed, split, index), so a file depends on nothing but those:
same seed, same bytes; and rendering order or a partial rerun cannot change a file.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open, check_output, write_text
from cattlepose.core.schema import KeypointSchema, load_schema
from cattlepose.data.formats import adk
from cattlepose.data.records import Sample
from cattlepose.data.synth import parts
from cattlepose.data.synth.render import Rendered, render, sample_scene
from cattlepose.data.synth.target import check_target

SPLITS = {"train": 1, "test": 2}
_OWN_FILE = re.compile(r"^synth_(train|test)_\d{6}\.(jpg|json)$")


def synthesize(
    out: Path,
    n_train: int = 1500,
    n_test: int = 300,
    seed: int = 0,
    occlusion: float = 1.0,
    preview: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the synthetic set under `out`; return a flat summary (counts, speed, occlusion statistics).

    `occlusion` scales how often foreground objects appear (0: none, only self-occlusion; 1: default; 2: heavy).
    """
    out = Path(out)
    schema = load_schema("adk17")
    check_target(out, n_train, n_test, occlusion, lambda: foreign_files(out, schema), "synth")
    if preview is not None:
        check_output(preview, keep_out=[("the data set", out / split) for split in SPLITS])
    done_marker = out / "sample_submission.csv"
    done_marker.unlink(missing_ok=True)  # the set is incomplete until it is rewritten at the very end

    start = time.perf_counter()
    total = n_train + n_test
    stats: dict[str, list[Any]] = {"occ": [], "self": [], "obj": [], "farm": [], "cat": [], "size": []}
    written: dict[str, list[Sample]] = {}
    count = 0
    for split, n in (("train", n_train), ("test", n_test)):
        root = out / split
        _clear_own_files(root)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        samples = []
        for i in range(1, n + 1):
            rng = np.random.default_rng([seed, SPLITS[split], i])
            r = render(sample_scene(rng, occlusion=occlusion))
            samples.append(_write_image(r, root / "images" / f"synth_{split}_{i:06d}.jpg"))
            _collect(stats, r)
            count += 1
            if progress is not None:
                progress(count, total)
        if samples:  # an empty test split (n_test=0) stays an empty folder; the writer refuses no samples
            adk.write(samples, root, schema)
        written[split] = samples
    _write_sample_submission(done_marker, written["test"], schema)
    seconds = time.perf_counter() - start
    if preview is not None:
        render_preview(written["train"], preview, n=16, schema=schema)
    return _summary(stats, n_train, n_test, seconds)


def foreign_files(out: Path, schema: KeypointSchema) -> list[str]:
    """What under `out` this command did not write, so must not write among: anything in `train/` and `test/`
    but its images and annotations (and the temporary files of a write cut short), a `sample_submission.csv`
    that lists other images, and any other entry of `out` but PNG files (previews) and hidden files."""
    if not out.is_dir():
        return []
    foreign = []
    for entry in sorted(out.iterdir()):
        if entry.name in SPLITS and entry.is_dir():
            foreign += _foreign_in_split(entry)
        elif entry.name == "sample_submission.csv" and entry.is_file():
            if not _own_submission(entry, schema):
                foreign.append(str(entry))
        elif not (entry.name.startswith(".") or (entry.suffix.lower() == ".png" and entry.is_file())):
            foreign.append(str(entry) + ("/" if entry.is_dir() else ""))
    return foreign


def _foreign_in_split(root: Path) -> list[str]:
    foreign = []
    for entry in sorted(root.iterdir()):
        if entry.name not in ("images", "annotations") or not entry.is_dir():
            foreign.append(str(entry) + ("/" if entry.is_dir() else ""))
            continue
        for f in sorted(entry.iterdir()):
            tmp = f.name.startswith(".synth_") and f.name.endswith(".tmp")  # a write a kill cut short
            if not (f.is_file() and (_OWN_FILE.match(f.name) or tmp)):
                foreign.append(str(f) + ("/" if f.is_dir() else ""))
    return foreign


def _own_submission(path: Path, schema: KeypointSchema) -> bool:
    """Whether a sample_submission.csv is one this command wrote: its header, and only synthetic test images."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    head = ["image", *[f"{k}_{c}" for k in schema.keypoints for c in ("x", "y")]]
    return bool(rows) and rows[0] == head and all(r and _OWN_FILE.match(r[0]) for r in rows[1:])


def _clear_own_files(root: Path) -> None:
    """Remove files an earlier (possibly larger) run wrote here, and nothing else."""
    for sub in ("images", "annotations"):
        d = root / sub
        if d.is_dir():
            for f in d.iterdir():
                if _OWN_FILE.match(f.name):
                    f.unlink()


def _write_image(r: Rendered, path: Path) -> Sample:
    s = r.scene
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, s.jpeg_quality])
    if not ok:  # pragma: no cover - cv2 only fails on empty images
        raise RuntimeError(f"JPEG encoding failed for {path}")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())
    h, w = r.image.shape[:2]
    kps = r.keypoints.copy()
    kps[:, 0] = np.clip(kps[:, 0], 0, w - 1)  # a guard only: the renderer keeps joints inside the crop
    kps[:, 1] = np.clip(kps[:, 1], 0, h - 1)
    return Sample(
        image=path,
        keypoints=np.round(kps, 2),
        bbox=None,
        image_id=path.stem,
        group=s.farm.name,
        width=w,
        height=h,
        meta={
            "farm_name": s.farm.name,
            "farm_env": s.farm.env,
            "time": s.farm.time,
            "body_type": s.anatomy.category,
            "coat": s.coat.family,
            "occluders": list(s.occluder_kinds),
            "category_id": s.anatomy.category_id,
            "occluded_fraction": round(r.occluded_fraction, 4),
        },
    )


def _collect(stats: dict[str, list[Any]], r: Rendered) -> None:
    v = r.keypoints[:, 2]
    obj = np.array([u in parts.OCCLUDERS for u in r.occluded_by]) & (v == 1)
    stats["occ"].append(float(np.mean(v == 1)))
    stats["obj"].append(float(np.mean(obj)))
    stats["self"].append(float(np.mean((v == 1) & ~obj)))
    stats["farm"].append(r.scene.farm.name)
    stats["cat"].append(r.scene.anatomy.category)
    stats["size"].append(max(r.image.shape[:2]))


def _summary(stats: dict[str, list[Any]], n_train: int, n_test: int, seconds: float) -> dict[str, Any]:
    occ = np.array(stats["occ"])
    cats, counts = np.unique(stats["cat"], return_counts=True)
    return {
        "images": n_train + n_test,
        "train": n_train,
        "test": n_test,
        "seconds": round(seconds, 2),
        "images_per_s": round((n_train + n_test) / max(seconds, 1e-9), 1),
        "keypoints_occluded": float(occ.mean()),
        "keypoints_self_occluded": float(np.mean(stats["self"])),
        "keypoints_object_occluded": float(np.mean(stats["obj"])),
        "images_with_occlusion": float(np.mean(occ > 0)),
        "images_with_object_occlusion": float(np.mean(np.array(stats["obj"]) > 0)),
        "farms": len(set(stats["farm"])),
        "categories": {str(c): int(k) for c, k in zip(cats, counts, strict=True)},
        "median_long_side": int(np.median(stats["size"])),
    }


def _write_sample_submission(path: Path, samples: Sequence[Sample], schema: KeypointSchema) -> None:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["image", *[f"{k}_{c}" for k in schema.keypoints for c in ("x", "y")]])
    for s in samples:
        wr.writerow([s.image.name, *([0] * (2 * schema.num_keypoints))])
    write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------ preview
_SIDE_COLOURS = {"left": (255, 140, 40), "right": (40, 90, 255), "centre": (60, 220, 60)}  # BGR


def render_preview(
    samples_or_dir: Sequence[Sample] | str | Path,
    out_png: str | Path,
    n: int = 16,
    schema: KeypointSchema | None = None,
    cell: int = 224,
) -> Path:
    """A grid of `n` samples (evenly spread) with their skeletons: visible joints as filled dots, occluded
    joints as hollow circles; left-side joints orange, right-side blue, centre line green."""
    schema = schema or load_schema("adk17")
    if isinstance(samples_or_dir, (str, Path)):
        root = Path(samples_or_dir)
        root = root / "train" if (root / "train" / "annotations").is_dir() else root
        samples: Sequence[Sample] = adk.read(root, schema.num_keypoints)
    else:
        samples = samples_or_dir
    if not samples:
        raise UserError("nothing to preview: no samples", path=str(samples_or_dir))
    pick = np.unique(np.linspace(0, len(samples) - 1, min(n, len(samples))).round().astype(int))
    tiles = [_tile(samples[i], schema, cell) for i in pick]
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    grid = np.full((rows * cell, cols * cell, 3), 30, np.uint8)
    for t, tile in enumerate(tiles):
        r, c = divmod(t, cols)
        grid[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = tile
    ok, buf = cv2.imencode(".png", grid)
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    out_png = Path(out_png)
    with atomic_open(out_png, "wb") as f:
        f.write(buf.tobytes())
    return out_png


def _tile(s: Sample, schema: KeypointSchema, cell: int) -> np.ndarray:
    img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError("cannot read image", path=s.image)
    h, w = img.shape[:2]
    k = (cell - 8) / max(h, w)
    img = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    tile = np.full((cell, cell, 3), 30, np.uint8)
    oy, ox = (cell - img.shape[0]) // 2, (cell - img.shape[1]) // 2
    tile[oy : oy + img.shape[0], ox : ox + img.shape[1]] = img
    xy = s.keypoints[:, :2] * k + [ox, oy]
    v = s.keypoints[:, 2]
    pts = [(round(x), round(y)) for x, y in xy]
    for a, b in schema.skeleton:
        if v[a] > 0 and v[b] > 0:
            cv2.line(tile, pts[a], pts[b], (230, 230, 230), 1, cv2.LINE_AA)
    for i, name in enumerate(schema.keypoints):
        if v[i] <= 0:
            continue
        side = "left" if "left" in name else "right" if "right" in name else "centre"
        col = _SIDE_COLOURS[side]
        if v[i] >= 2:
            cv2.circle(tile, pts[i], 3, col, -1, cv2.LINE_AA)
        else:
            cv2.circle(tile, pts[i], 4, col, 1, cv2.LINE_AA)
    label = f"{s.meta.get('farm_name', '')} {s.meta.get('body_type', s.meta.get('category', ''))}"
    cv2.putText(tile, label, (4, cell - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return tile
