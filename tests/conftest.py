"""Shared test fixtures.

- `fixtures_dir`: the real sample data in `../shared/fixtures` (ADK2021 cattle, COCO animal files); tests that
  use it are skipped where it is absent (never copy it into this repository).
- `make_adk`: a factory writing a tiny, valid ADK2021-layout data set with drawn images into tmp_path.
- `make_coco`: the same as one COCO keypoints file, several animals per image.
- `synth_set`, `csv_rows`, `history_numbers`, `kill_after_rows`: helpers for the end-to-end training tests
  (a small synthetic set per module, run artefacts read back, a run killed with SIGKILL mid-training).
- `detector_herd`, `detector_run`, `detector_onnx`: the one real detector run of the test session (trained by
  `cattlepose train -c configs/detector.yaml` for two optimizer steps a fold on a tiny synthetic herd of cattle
  and calves) and its ONNX export, for tests/test_detector.py and tests/test_whole_image.py.

Both factories write the files by hand (not through cattlepose's writers), so reader tests do not depend on
the code they test. Corrupt what you need afterwards: each factory returns the paths it wrote.
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

ADK17 = [
    "fore_head", "neck", "fore_spine",
    "fore_right_shoulder", "fore_right_knee", "fore_right_foot",
    "fore_left_shoulder", "fore_left_knee", "fore_left_foot",
    "rear_spine",
    "rear_right_shoulder", "rear_right_knee", "rear_right_foot",
    "rear_left_shoulder", "rear_left_knee", "rear_left_foot",
    "hip",
]  # fmt: skip
ADK17_SKELETON_1 = [
    [1, 2], [2, 3], [3, 4], [3, 7], [3, 10], [4, 5], [5, 6], [7, 8], [8, 9], [10, 11], [10, 14], [11, 12],
    [12, 13], [14, 15], [15, 16], [10, 17],
]  # fmt: skip


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """`/work/shared/fixtures` (beside the repository); skips the test when it is not there."""
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


def draw_animal(path: Path, size: tuple[int, int], keypoints: np.ndarray, seed: int = 0) -> None:
    """A small drawn 'animal' (a body ellipse and a dot per labelled keypoint) saved to `path` (format by suffix)."""
    rng = np.random.default_rng(seed)
    w, h = size
    bg = tuple(int(c) for c in rng.integers(60, 200, 3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    d.ellipse([w * 0.15, h * 0.25, w * 0.85, h * 0.7], fill=(120, 80, 40))
    for x, y, v in keypoints:
        if v > 0:
            d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 255, 255) if v == 2 else (255, 0, 0))
    im.save(path)


def random_keypoints(rng: np.random.Generator, k: int, w: int, h: int, occluded_every: int = 5) -> np.ndarray:
    """(k, 3) integer keypoints inside a w x h image; every `occluded_every`-th is v=1, the rest v=2."""
    xy = np.stack([rng.integers(2, w - 2, k), rng.integers(2, h - 2, k)], axis=1).astype(np.float64)
    v = np.full((k, 1), 2.0)
    if occluded_every:
        v[::occluded_every] = 1.0
    return np.concatenate([xy, v], axis=1)


@pytest.fixture
def make_adk(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make_adk(name="adk", n=4, size=(96, 64), farms=("farm_a", "farm_b"), seed=0) -> root`.

    Writes `root/images/adk_000.jpg ...` and `root/annotations/adk_000.json ...` in the ADK2021 per-image
    layout with the adk17 keypoints: integer coordinates inside the image, v=2 except every fifth keypoint
    (v=1), a real box around the keypoints, farm names alternating over `farms`, category 1 (cattle).
    """

    def make(
        name: str = "adk",
        n: int = 4,
        size: tuple[int, int] = (96, 64),
        farms: tuple[str, ...] = ("farm_a", "farm_b"),
        seed: int = 0,
    ) -> Path:
        root = tmp_path / name
        (root / "images").mkdir(parents=True)
        (root / "annotations").mkdir()
        rng = np.random.default_rng(seed)
        w, h = size
        categories = [
            {"supercategory": "livestock_cow", "id": cid, "name": cname, "keypoints_name": ADK17,
             "skeleton": ADK17_SKELETON_1}
            for cid, cname in ((1, "cattle"), (2, "nuptial"), (3, "calf"))
        ]  # fmt: skip
        for i in range(n):
            stem = f"adk_{i:03d}"
            kps = random_keypoints(rng, len(ADK17), w, h)
            draw_animal(root / "images" / f"{stem}.jpg", size, kps, seed=seed + i)
            x0, y0 = kps[:, :2].min(axis=0) - 1
            x1, y1 = kps[:, :2].max(axis=0) + 1
            doc = {
                "label_info": {
                    "image": {"file_name": f"{stem}.jpg", "width": w, "height": h, "farm_name": farms[i % len(farms)]},
                    "annotations": [
                        {
                            "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
                            "keypoints": [int(v) for v in kps.reshape(-1)],
                            "category_id": 1,
                        }
                    ],
                    "categories": categories,
                }
            }
            (root / "annotations" / f"{stem}.json").write_text(json.dumps(doc), encoding="utf-8")
        return root

    return make


@pytest.fixture
def make_coco(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make_coco(name="coco", n_images=2, animals=2, size=(128, 96), k=17, seed=0) -> json path`.

    Writes `folder/img_0.png ...` and `folder/data.json`: a standard COCO keypoints file with `animals`
    annotations per image (ids 1, 2, ...; image ids 10, 20, ...), one category `animal` (id 1) naming
    `kp0 ... kp{k-1}`, boxes around each animal's keypoints, v in {0, 2} (the last keypoint unlabelled).
    """

    def make(
        name: str = "coco",
        n_images: int = 2,
        animals: int = 2,
        size: tuple[int, int] = (128, 96),
        k: int = 17,
        seed: int = 0,
    ) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        w, h = size
        images, annotations = [], []
        for i in range(n_images):
            image_id = 10 * (i + 1)
            all_kps = []
            for _ in range(animals):
                kps = random_keypoints(rng, k, w, h, occluded_every=0)
                kps[-1] = 0.0  # an unlabelled keypoint, stored as 0, 0, 0 as COCO does
                all_kps.append(kps)
                lab = kps[kps[:, 2] > 0, :2]
                x0, y0 = lab.min(axis=0)
                x1, y1 = lab.max(axis=0)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": 1,
                        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                        "area": float((x1 - x0) * (y1 - y0)),
                        "iscrowd": 0,
                        "num_keypoints": int((kps[:, 2] > 0).sum()),
                        "keypoints": [int(v) for v in kps.reshape(-1)],
                    }
                )
            draw_animal(folder / f"img_{i}.png", size, np.concatenate(all_kps), seed=seed + i)
            images.append({"id": image_id, "file_name": f"img_{i}.png", "width": w, "height": h})
        doc = {
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": 1, "name": "animal", "supercategory": "animal", "keypoints": [f"kp{j}" for j in range(k)],
                 "skeleton": [[j, j + 1] for j in range(1, k)]}
            ],
        }  # fmt: skip
        path = folder / "data.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    return make


def _assert_same_samples(a: list, b: list, meta: bool = True, image_ids: bool = True, same_file: bool = True) -> None:
    """Two Sample lists hold the same animals in the same order: image file (or only its name, when
    `same_file` is False: images copied elsewhere), size, keypoints, box and (by default) ids, group and
    metadata. Keypoints and boxes must match exactly (round trips lose nothing)."""
    assert len(a) == len(b), f"{len(a)} samples vs {len(b)}"
    for x, y in zip(a, b, strict=True):
        if same_file:
            assert x.image.resolve() == y.image.resolve(), (x.key, y.key)
        else:
            assert x.image.name == y.image.name, (x.key, y.key)
        assert (x.width, x.height) == (y.width, y.height), x.key
        assert np.array_equal(x.keypoints, y.keypoints), x.key
        assert (x.bbox is None) == (y.bbox is None), x.key
        if x.bbox is not None:
            assert np.array_equal(x.bbox, y.bbox), x.key
        if image_ids:
            assert (x.image_id, x.ann_id, x.group) == (y.image_id, y.ann_id, y.group)
        if meta:
            assert x.meta == y.meta, x.key


@pytest.fixture
def same_samples() -> Callable[..., None]:
    """`same_samples(a, b, meta=True, image_ids=True, same_file=True)`: assert two Sample lists are equal."""
    return _assert_same_samples


def synth_set(tmp_path_factory: pytest.TempPathFactory, n_train: int, n_test: int, seed: int) -> Path:
    """A synthetic ADK-layout set in a fresh temporary folder (for module-scoped fixtures)."""
    from cattlepose.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, n_train=n_train, n_test=n_test, seed=seed)
    return root


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV artefact (history.csv, oof.csv, folds.csv) as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def history_numbers(path: Path) -> list[dict[str, str]]:
    """history.csv without its wall-clock columns: what must repeat exactly between two runs."""
    from cattlepose.engine.fit import TIMING_COLUMNS

    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv_rows(path)]


def kill_after_rows(proc: subprocess.Popen, history: Path, rows: int, kill: Callable[[], None]) -> None:
    """Wait until `history` holds `rows` epochs, then `kill()` the run and reap it; fails if the run ended
    first (then the test needs a longer run) or took more than 4 minutes to get there."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(csv_rows(history)) >= rows:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    kill()
    proc.wait()


# ---------------------------------------------------------------------------------------------- the detector run
# `cattlepose train -c configs/detector.yaml` overrides of the session's detector run: 64 px, no ImageNet weights,
# 2 folds of 1 epoch (10 photographs: 5 per fold, batch 4, two optimizer steps a fold), one thread
DETECTOR_TINY = ["model.input_size=[64,64]", "model.pretrained=null", "train.folds=2", "train.epochs=1",
                 "train.batch_size=4", "train.workers=0", "train.threads=1", "train.val_every=1",
                 "data.schema=adk17"]  # fmt: skip
CALF_ID = 3  # the calves' COCO category id in `detector_herd` (cattle: 1), as in ADK2021 and the synthetic set


@pytest.fixture(scope="session")
def detector_herd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cattlepose synth-herd`'s training file of 10 photographs (and 2 test ones beside it), its calves (the
    animals whose `body_type` is calf) made category `calf`, id 3: two categories whose COCO ids (cattle 1,
    calf 3) are not their places in the detector's sorted list (calf first, cattle second)."""
    from cattlepose.data.synth.herd import synthesize_herd

    root = tmp_path_factory.mktemp("herd")
    synthesize_herd(root, n_train=10, n_test=2, seed=1)
    path = root / "train" / "annotations.json"
    doc = json.loads(path.read_text())
    doc["categories"].append({**doc["categories"][0], "id": CALF_ID, "name": "calf"})
    for a in doc["annotations"]:
        if a["body_type"] == "calf":
            a["category_id"] = CALF_ID
    assert {a["category_id"] for a in doc["annotations"]} == {1, CALF_ID}, "the herd needs cattle and calves"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="session")
def detector_run(detector_herd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real detector run (task: detect, Lite0 CenterNet, categories calf and cattle) trained on `detector_herd`
    by the command line, both folds done. Barely trained: tests that need its boxes ask for them with
    `score_threshold=0` (every peak) and assert what holds of any box; finding animals is a slow test's."""
    from typer.testing import CliRunner

    from cattlepose.cli import app

    runs = tmp_path_factory.mktemp("detector_runs")
    args = ["train", "-c", "configs/detector.yaml", "-s", f"data.train={detector_herd}",
            *[a for o in DETECTOR_TINY for a in ("-s", o)], "--runs-dir", str(runs), "--name", "det", "-q"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return runs / "det"


@pytest.fixture(scope="session")
def detector_onnx(detector_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`detector_run`'s folds exported by `cattlepose export` (float, flip as the run's config has it)."""
    from typer.testing import CliRunner

    from cattlepose.cli import app

    out = tmp_path_factory.mktemp("detector_export") / "det.onnx"
    r = CliRunner().invoke(app, ["export", str(detector_run), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return out
