"""`cattlepose synth-herd`: synthetic multi-animal scenes, the embedded default a detector is tested on.

    OUT/train/annotations.json  OUT/train/images/herd_train_000001.jpg ...
    OUT/test/annotations.json   OUT/test/images/herd_test_000001.jpg ...
    OUT/herd.json               written last: its presence means the set is complete (and what made it)

Each scene is one farm's backdrop (data/synth/scene.py) of at most 640 px on its long side with 0-6 cattle, each
rendered alone by the single-animal renderer (data/synth/render.py, no per-crop occluders), cut out along its
part-label mask, scaled and pasted: animals lower in the frame are nearer, pasted later, and cover the ones behind.
Then the farm's foreground objects (fences, gates, posts, troughs, people, grass: no unlabelled cattle) over the
whole frame, its light and its camera. Every box (the animal's whole silhouette, covered parts included) and every
keypoint is known: a keypoint under a nearer animal or an object becomes v=1 (labelled, occluded), as the
renderer marks self-occlusion. Written as COCO keypoints files (adk17 keypoints, category `cattle`); images with
no animal are listed in `images` with no annotation.

Every scene has its own generator seeded by (seed, split, index): same seed, same bytes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cattlepose.core.files import atomic_open, write_json
from cattlepose.core.schema import load_schema
from cattlepose.data.synth import occluders, parts
from cattlepose.data.synth.geometry import fill
from cattlepose.data.synth.render import render, sample_scene
from cattlepose.data.synth.scene import FARMS, background, camera, lighting
from cattlepose.data.synth.target import check_target

SPLITS = {"train": 1, "test": 2}
MAX_SIDE = 640
MAX_ANIMALS = 6
CATEGORY = "cattle"
DONE = "herd.json"
_OWN_IMAGE = re.compile(r"^herd_(train|test)_\d{6}\.jpg$")


@dataclass
class HerdScene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (n, 4) x, y, w, h
    keypoints: np.ndarray  # (n, 17, 3) x, y, v in adk17 order
    farm: str
    categories: list[str]  # each animal's body type (cow, calf, bull), kept as an attribute


def render_herd(rng: np.random.Generator, occlusion: float = 1.0, max_animals: int = MAX_ANIMALS) -> HerdScene:
    """One scene from a generator (see the module docstring)."""
    farm = FARMS[int(rng.integers(len(FARMS)))]
    width = int(rng.integers(400, MAX_SIDE + 1))
    height = round(width * rng.uniform(0.6, 0.85))
    n = int(rng.integers(0, max_animals + 1))
    canvas = background(rng, farm, width, height).astype(np.uint8)
    owner = np.full((height, width), -1, np.int16)
    placed = []
    for _ in range(n):
        r = render(sample_scene(rng, farm=farm, occlusion=0.0), effects=False)
        long_side = rng.uniform(0.18, 0.5) * width
        s = long_side / max(r.image.shape[:2])
        h, w = max(8, round(r.image.shape[0] * s)), max(8, round(r.image.shape[1] * s))
        h, w = min(h, height), min(w, width)
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        placed.append((y + h, x, y, w, h, r))
    placed.sort(key=lambda p: p[0])  # lower in the frame = nearer = pasted later
    boxes, kps, cats, owners = [], [], [], []
    for i, (_, x, y, w, h, r) in enumerate(placed):
        sx, sy = w / r.image.shape[1], h / r.image.shape[0]
        mask = np.isin(r.labels, parts.ANIMAL).astype(np.uint8)
        img = cv2.resize(r.image, (w, h), interpolation=cv2.INTER_AREA)
        m = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        region = canvas[y : y + h, x : x + w]
        region[m] = img[m]
        owner[y : y + h, x : x + w][m] = i
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            owner[owner == i] = -1
            continue
        boxes.append([x + xs.min(), y + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
        k = r.keypoints.copy()
        k[:, 0] = x + (k[:, 0] + 0.5) * sx - 0.5
        k[:, 1] = y + (k[:, 1] + 0.5) * sy - 0.5
        kps.append(k)
        cats.append(r.scene.anatomy.category)
        owners.append(i)
    cover = np.zeros((height, width), np.uint8)
    kinds = [k for k in occluders.choose(rng, farm.occluders, occlusion) if k != "cattle"]
    for kind in kinds:
        for sh in occluders.MAKERS[kind](rng, width, height, farm.rail, (150.0, 120.0, 90.0)):
            fill(canvas, sh.polys, sh.color)
            fill(cover, sh.polys, 1, aa=False)
    out = camera(rng, farm, lighting(rng, farm, canvas))
    keypoints = np.array(kps, np.float64).reshape(-1, 17, 3)
    for i, k in enumerate(keypoints):
        xi = np.clip(np.round(k[:, 0]).astype(int), 0, width - 1)
        yi = np.clip(np.round(k[:, 1]).astype(int), 0, height - 1)
        hidden = ((owner[yi, xi] >= 0) & (owner[yi, xi] != owners[i])) | (cover[yi, xi] > 0)
        k[hidden & (k[:, 2] > 0), 2] = 1.0
        np.clip(k[:, 0], 0, width - 1, out=k[:, 0])
        np.clip(k[:, 1], 0, height - 1, out=k[:, 1])
    return HerdScene(out, np.array(boxes, np.float64).reshape(-1, 4), keypoints, farm.name, cats)


def synthesize_herd(
    out: Path,
    n_train: int = 400,
    n_test: int = 100,
    seed: int = 0,
    occlusion: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the herd set under `out`; return a summary (images, animals, seconds)."""
    out = Path(out)
    check_target(out, n_train, n_test, occlusion, lambda: foreign_files(out), "synth-herd")
    (out / DONE).unlink(missing_ok=True)  # incomplete until rewritten at the very end
    schema = load_schema("adk17")
    start = time.perf_counter()
    total, count, animals = n_train + n_test, 0, {"train": 0, "test": 0}
    for split, n in (("train", n_train), ("test", n_test)):
        root = out / split
        images_dir = root / "images"
        if images_dir.is_dir():
            for f in images_dir.iterdir():
                if _OWN_IMAGE.match(f.name):
                    f.unlink()
        images_dir.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [{
            "id": 1, "name": CATEGORY, "supercategory": "animal", "keypoints": list(schema.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton]}]}  # fmt: skip
        for i in range(1, n + 1):
            scene = render_herd(np.random.default_rng([seed, SPLITS[split], i]), occlusion)
            name = f"herd_{split}_{i:06d}.jpg"
            _write_jpeg(images_dir / name, scene.image)
            h, w = scene.image.shape[:2]
            doc["images"].append({"id": i, "file_name": f"images/{name}", "width": w, "height": h,
                                  "farm_name": scene.farm})  # fmt: skip
            for box, k, cat in zip(scene.boxes, scene.keypoints, scene.categories, strict=True):
                doc["annotations"].append({
                    "id": len(doc["annotations"]) + 1, "image_id": i, "category_id": 1,
                    "bbox": [round(float(v), 2) for v in box], "area": round(float(box[2] * box[3]), 2),
                    "iscrowd": 0, "num_keypoints": int((k[:, 2] > 0).sum()), "body_type": cat,
                    "keypoints": [round(float(v), 2) if j % 3 < 2 else int(v) for j, v in enumerate(k.reshape(-1))],
                })  # fmt: skip
            animals[split] += len(scene.boxes)
            count += 1
            if progress is not None:
                progress(count, total)
        write_json(root / "annotations.json", doc, indent=None)
    seconds = time.perf_counter() - start
    summary = {"images": total, "train": n_train, "test": n_test, "animals_train": animals["train"],
               "animals_test": animals["test"], "seed": seed, "occlusion": occlusion, "seconds": round(seconds, 2),
               "images_per_s": round(total / max(seconds, 1e-9), 1)}  # fmt: skip
    write_json(out / DONE, summary)
    return summary


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - cv2 only fails on empty images
        raise RuntimeError(f"JPEG encoding failed for {path}")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())


def foreign_files(out: Path) -> list[str]:
    """What under `out` this command did not write: anything but train/ and test/ (holding images/ of its JPEGs
    and annotations.json), herd.json, and hidden files (temporary files of a write cut short)."""
    if not out.is_dir():
        return []
    foreign = []
    for entry in sorted(out.iterdir()):
        if entry.name.startswith(".") or (entry.name == DONE and entry.is_file() and _own_done(entry)):
            continue
        if entry.name in SPLITS and entry.is_dir():
            for f in sorted(entry.iterdir()):
                if f.name.startswith(".") or (f.name == "annotations.json" and f.is_file()):
                    continue
                if f.name == "images" and f.is_dir():
                    foreign += [str(g) for g in sorted(f.iterdir()) if not (_OWN_IMAGE.match(g.name)
                                                                            or g.name.startswith("."))]  # fmt: skip
                    continue
                foreign.append(str(f) + ("/" if f.is_dir() else ""))
            continue
        foreign.append(str(entry) + ("/" if entry.is_dir() else ""))
    return foreign


def _own_done(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and "animals_train" in doc
