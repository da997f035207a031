"""Folds follow the photograph (issue 39, item 1): for every way one photograph can appear several times in a
training set, folds.csv keeps it in one fold; and keypoints of a multi-file set map by name (item 2).

folds.csv is written by `RunDir.prepare`, as training writes it, from the samples `load_training_data` reads:
no network is trained, so each case costs a fraction of a second.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cattlepose.core.config import load_config
from cattlepose.core.errors import UserError
from cattlepose.core.ui import Log
from cattlepose.data.fingerprint import take
from cattlepose.data.folds import assign_folds, fold_groups, merged_groups
from cattlepose.data.photos import FRAME, duplicate_animals, photos, several_ids
from cattlepose.data.records import Sample
from cattlepose.data.source import load_training_data
from cattlepose.runs.rundir import RunDir
from conftest import csv_rows

pytestmark = pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")


def _folds_csv(tmp_path: Path, sets: list[str], folds: int = 2) -> tuple[list[Sample], dict[str, int]]:
    """The training samples `sets` configure, and the fold of each (key -> fold) as folds.csv records it."""
    cfg = load_config(None, [f"train.folds={folds}", *sets])
    samples, schema = load_training_data(cfg, Log(quiet=True))
    run = tmp_path / "runs" / "r"
    RunDir.prepare(run, cfg, schema, samples, list(range(folds)), False, take(samples))
    rows = csv_rows(run / "folds.csv")
    assert sorted(r["key"] for r in rows) == sorted(s.key for s in samples)
    return samples, {r["key"]: int(r["fold"]) for r in rows}


def _folds_per_photo(samples: list[Sample], fold: dict[str, int]) -> dict[Path, set[int]]:
    out: dict[Path, set[int]] = {}
    for s, photo in zip(samples, photos(samples), strict=True):
        out.setdefault(photo.file, set()).add(fold[s.key])
    return out


def _split_by_animal(path: Path) -> tuple[Path, Path]:
    """Two COCO files beside `path` over the same photographs, file names and image ids: `first.json` holds
    each photo's first animal, `rest.json` the others (a set split by species, say, with mixed photos)."""
    doc = json.loads(path.read_text())
    firsts: dict[int, dict] = {}
    for a in doc["annotations"]:
        firsts.setdefault(a["image_id"], a)
    first_ids = {id(a) for a in firsts.values()}
    out = []
    for name, keep in (("first", True), ("rest", False)):
        part = {**doc, "annotations": [a for a in doc["annotations"] if (id(a) in first_ids) == keep]}
        out.append(path.parent / f"{name}.json")
        out[-1].write_text(json.dumps(part))
    return out[0], out[1]


COCO = ["data.format=coco", "data.schema=from_data"]


@pytest.mark.parametrize("group_by", ["image", "farm_name", "source", "category"])
def test_one_photograph_in_two_coco_files_stays_in_one_fold(make_coco, tmp_path, group_by):
    """The probe's case: same file names and ids in two files of a set (18 of 24 photos straddled folds)."""
    a, b = _split_by_animal(make_coco(n_images=12, animals=2, k=5))
    doc = json.loads(b.read_text())
    doc["categories"][0]["name"] = "horse"  # the first file's animals are `animal`, the others' `horse`
    b.write_text(json.dumps(doc))
    sets = [*COCO, f"data.train=[{a},{b}]", f"data.group_by={group_by}"]
    if group_by in ("source", "category"):  # two groups sharing every photograph are one: too few for 2 folds
        with pytest.raises(UserError, match=r"2 of them share photographs and count as 1"):
            _folds_csv(tmp_path, sets)
        assert not (tmp_path / "runs").exists()
        return
    samples, fold = _folds_csv(tmp_path, sets)
    assert len(samples) == 24 and {s.meta["source"] for s in samples} == {"first", "rest"}
    per_photo = _folds_per_photo(samples, fold)
    assert len(per_photo) == 12 and all(len(k) == 1 for k in per_photo.values())
    assert sorted(Counter(fold.values()).values()) == [12, 12]  # six photographs (12 animals) in each fold


def test_groups_sharing_a_photograph_become_one_group(make_coco, tmp_path):
    """Three sources; x and y share a photograph (each holds one of its animals): they are one group, and z
    fills the other fold."""
    path = make_coco(n_images=6, animals=2, k=5)  # photo 10: animals 1, 2; photo 20: 3, 4; ...
    doc = json.loads(path.read_text())
    parts = {"x": {1, 2, 3}, "y": {4, 5, 6}, "z": {7, 8, 9, 10, 11, 12}}
    files = []
    for name, ids in parts.items():
        files.append(path.parent / f"{name}.json")
        files[-1].write_text(json.dumps({**doc, "annotations": [a for a in doc["annotations"] if a["id"] in ids]}))
    sets = [*COCO, f"data.train=[{','.join(map(str, files))}]", "data.group_by=source"]
    samples, fold = _folds_csv(tmp_path, sets)
    assert merged_groups(samples, "source") == [["x", "y"]]
    assert set(fold_groups(samples, "source")) == {"x", "z"}
    assert len({fold[s.key] for s in samples if s.meta["source"] in ("x", "y")}) == 1
    assert {fold[s.key] for s in samples if s.meta["source"] == "x"} != {fold[s.key] for s in samples
                                                                          if s.meta["source"] == "z"}  # fmt: skip
    assert all(len(k) == 1 for k in _folds_per_photo(samples, fold).values())


@pytest.mark.parametrize("group_by", ["image", "farm_name"])
def test_one_photograph_under_two_ids_in_one_file_stays_in_one_fold(make_coco, tmp_path, group_by):
    """Each photo is listed twice in `images` (ids 10 and 1010), each entry with one of its animals."""
    path = make_coco(n_images=10, animals=2, k=5)
    doc = json.loads(path.read_text())
    doc["images"] += [{**im, "id": im["id"] + 1000} for im in doc["images"]]
    for a in doc["annotations"][1::2]:
        a["image_id"] += 1000
    path.write_text(json.dumps(doc))
    samples, fold = _folds_csv(tmp_path, [*COCO, f"data.train={path}", f"data.group_by={group_by}"])
    assert len({s.image_id for s in samples}) == 20
    per_photo = _folds_per_photo(samples, fold)
    assert len(per_photo) == 10 and all(len(k) == 1 for k in per_photo.values())
    assert len(several_ids(samples)) == 10


def test_one_photograph_under_two_names_in_a_csv_stays_in_one_fold(make_adk, tmp_path):
    """A CSV's rows name a photo and a link to it, each row with another animal of the photo."""
    from cattlepose.core.schema import load_schema
    from cattlepose.data.formats import adk, wide_csv

    root = make_adk(n=8)
    samples = adk.read(root, 17)
    for s in samples[4:]:  # rows 4..7: the photos of rows 0..3 under other names, other animals
        first = samples[samples.index(s) - 4]
        s.image.unlink()
        os.symlink(first.image.name, s.image)
    wide_csv.write(samples, root / "images" / "labels.csv", load_schema("adk17"))
    read, fold = _folds_csv(tmp_path, ["data.format=csv", f"data.train={root / 'images' / 'labels.csv'}",
                                       "data.group_by=image"])  # fmt: skip
    per_photo = _folds_per_photo(read, fold)
    assert len(read) == 8 and len(per_photo) == 4 and all(len(k) == 1 for k in per_photo.values())


def test_many_photographs_many_ways_never_straddle_folds(make_coco, tmp_path):
    """A set of 30 photos spread at random over 3 files, under random ids, some photos in two files: for every
    grouping but none, each photograph is in one fold; per animal (null) it may not be."""
    path = make_coco(n_images=30, animals=2, k=5, seed=3)
    doc = json.loads(path.read_text())
    rng = np.random.default_rng(0)
    home = {a["id"]: int(rng.integers(0, 3)) for a in doc["annotations"]}  # each animal in one file
    files = []
    for f in range(3):
        anns = [a for a in doc["annotations"] if home[a["id"]] == f]
        used = {a["image_id"] for a in anns}
        offset = 1000 * (f + 1) if f == 2 else 0  # the third file numbers its images differently
        images = [{**im, "id": im["id"] + offset, "farm_name": f"farm{im['id'] // 10 % 4}"} for im in doc["images"]
                  if im["id"] in used]  # fmt: skip
        anns = [{**a, "image_id": a["image_id"] + offset} for a in anns]
        files.append(path.parent / f"part{f}.json")
        files[-1].write_text(json.dumps({**doc, "images": images, "annotations": anns}))
    names = f"[{','.join(map(str, files))}]"
    samples, _ = load_training_data(load_config(None, [*COCO, f"data.train={names}"]), Log(quiet=True))
    shared = sum(len({s.meta["source"] for s in samples if s.image == p}) > 1 for p in {s.image for s in samples})
    assert shared >= 10  # the photographs in two or three files
    for group_by in ("image", "farm_name"):
        samples, fold = _folds_csv(tmp_path / group_by, [*COCO, f"data.train={names}", f"data.group_by={group_by}"],
                                   folds=3)  # fmt: skip
        assert all(len(k) == 1 for k in _folds_per_photo(samples, fold).values()), group_by
    # per animal (null), as documented, the animals of one photograph may part
    samples, fold = _folds_csv(tmp_path / "null", [*COCO, f"data.train={names}", "data.group_by=null"], folds=3)
    assert any(len(k) > 1 for k in _folds_per_photo(samples, fold).values())


def test_duplicate_animals_and_video_frames():
    image = Path(__file__)
    kps = np.array([[1.0, 2.0, 2.0], [3.0, 4.0, 0.0]])
    a = Sample(image=image, keypoints=kps, bbox=np.array([0, 0, 5, 5]), image_id="1", ann_id="1")
    same_kps = Sample(image=image, keypoints=kps.copy(), image_id="2", ann_id="1")
    same_box = Sample(image=image, keypoints=kps + 1, bbox=np.array([0, 0, 5, 5]), image_id="1", ann_id="2")
    other = Sample(image=image, keypoints=kps + 2, bbox=np.array([1, 0, 5, 5]), image_id="1", ann_id="3")
    found = duplicate_animals([a, same_kps, same_box, other])
    assert [(x.key, y.key, what) for x, y, what in found] == [("1#1", "2#1", "keypoints"), ("1#1", "1#2", "box")]
    # frames of one video file are different photographs; the same frame under two ids is one
    frames = [Sample(image=image, keypoints=kps, image_id=str(i), meta={FRAME: f}) for i, f in enumerate((0, 1, 0))]
    assert [p.frame for p in photos(frames)] == [0, 1, 0]
    groups = fold_groups(frames, "image")
    assert groups[0] == groups[2] != groups[1] and groups[1].endswith("@1")
    assert duplicate_animals(frames)[0][:2] == (frames[0], frames[2])


def test_null_keeps_animals_apart_and_labels_do_not_depend_on_where_the_data_lies(make_coco, tmp_path):
    path = make_coco(n_images=4, animals=2, k=5)
    cfg = load_config(None, [*COCO, f"data.train={path}"])
    samples, _ = load_training_data(cfg, Log(quiet=True))
    moved = tmp_path / "elsewhere"
    shutil.copytree(path.parent, moved)
    cfg2 = load_config(None, [*COCO, f"data.train={moved / path.name}"])
    samples2, _ = load_training_data(cfg2, Log(quiet=True))
    assert fold_groups(samples, "image") == fold_groups(samples2, "image") == [f"img_{i // 2}.png" for i in range(8)]
    assert assign_folds(samples, 2, "image", 0) == assign_folds(samples2, 2, "image", 0)
    assert fold_groups(samples, None) == [s.key for s in samples]


# ------------------------------------------------------------------------------------------ keypoints by name
def _reordered(path: Path, name: str, order: list[int], names: list[str]) -> Path:
    """A copy of a COCO file holding its keypoints in `order` (values moved alike), under `names`."""
    doc = json.loads(path.read_text())
    doc["categories"][0].update(keypoints=names, skeleton=[])
    for a in doc["annotations"]:
        a["keypoints"] = np.array(a["keypoints"]).reshape(-1, 3)[order].reshape(-1).tolist()
    out = path.parent / f"{name}.json"
    out.write_text(json.dumps(doc))
    return out


def test_keypoints_of_a_multi_file_set_map_by_name(make_coco):
    """The second file names the keypoints in another order and spelling: each value lands on its own keypoint."""
    names = ["left_eye", "right_eye", "nose", "tail_base", "withers"]
    path = _reordered(make_coco(name="a", n_images=2, animals=2, k=5), "a2", [0, 1, 2, 3, 4], names)
    other = make_coco(name="b", n_images=2, animals=2, k=5, seed=9)
    shuffled = _reordered(other, "b2", [3, 0, 4, 2, 1], ["TailBase", "L_Eye", "withers", "Nose", "R_Eye"])
    samples, schema = load_training_data(load_config(None, [*COCO, f"data.train=[{path},{shuffled}]"]),
                                         Log(quiet=True))  # fmt: skip
    assert schema.keypoints == tuple(names)
    original = json.loads(other.read_text())["annotations"]
    for s, a in zip(samples[4:], original, strict=True):  # file b's values, back in the schema's order
        assert np.array_equal(s.keypoints, np.array(a["keypoints"], dtype=float).reshape(-1, 3))


def test_a_keypoint_map_in_the_config_maps_what_no_spelling_rule_does(make_coco):
    """The probe's case: another order and one renamed keypoint. Without a map it is an error (never a read
    by position); with `data.keypoint_map` every value lands on its own keypoint."""
    path = make_coco(name="a", n_images=2, animals=2, k=5)
    other = make_coco(name="b", n_images=2, animals=2, k=5, seed=9)
    renamed = _reordered(other, "b2", [4, 3, 2, 1, 0], ["tailbase", "kp3", "kp2", "kp1", "kp0"])
    base = [*COCO, f"data.train=[{path},{renamed}]"]
    with pytest.raises(UserError) as e:
        load_training_data(load_config(None, base), Log(quiet=True))
    assert "tailbase" in str(e.value) and "kp4" in str(e.value) and "b2.json" in str(e.value)
    samples, _ = load_training_data(load_config(None, [*base, "data.keypoint_map={tailbase: kp4}"]), Log(quiet=True))
    original = json.loads(other.read_text())["annotations"]
    for s, a in zip(samples[4:], original, strict=True):
        assert np.array_equal(s.keypoints, np.array(a["keypoints"], dtype=float).reshape(-1, 3))
