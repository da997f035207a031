"""The data fingerprint (data/fingerprint.py): what it notices, what it leaves alone, and what it hashes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cattlepose.core.errors import UserError
from cattlepose.data import fingerprint
from cattlepose.data.fingerprint import DataFingerprint, changes, take
from cattlepose.data.formats import adk


def _read(root: Path):
    return adk.read(root, 17)


def test_the_same_data_read_twice_is_unchanged_and_the_record_round_trips(make_adk):
    root = make_adk(n=4)
    fp = take(_read(root))
    assert fp.root == str(root.resolve())
    assert sorted(fp.files) == [f"annotations/adk_00{i}.json" for i in range(4)]
    assert sorted(fp.images) == [f"images/adk_00{i}.jpg" for i in range(4)]
    assert all(len(v) == 3 and len(v[2]) == 16 for v in fp.images.values())
    assert sorted(fp.animals) == [f"adk_00{i}" for i in range(4)]
    again = take(_read(root))
    assert changes(fp, again) == [] and again.to_dict() == fp.to_dict()
    back = DataFingerprint.from_dict(json.loads(json.dumps(fp.to_dict())), "data.json")
    assert back.to_dict() == fp.to_dict()
    with pytest.raises(UserError, match=r"data\.json"):
        DataFingerprint.from_dict({"version": 99}, "data.json")


def test_an_edited_keypoint_names_the_animal_and_its_file(make_adk):
    root = make_adk(n=4)
    old = take(_read(root))
    path = root / "annotations" / "adk_002.json"
    doc = json.loads(path.read_text())
    doc["label_info"]["annotations"][0]["keypoints"][0] += 1
    path.write_text(json.dumps(doc))
    found = changes(old, take(_read(root)))
    assert [(c.aspect, c.names, c.acceptable) for c in found] == [
        ("animals with other keypoints, box, image, size, group or metadata", ["adk_002"], True),
        ("annotation files changed, added or removed", ["annotations/adk_002.json"], True),
    ]
    assert str(found[0]).endswith("(1): adk_002")


def test_a_reformatted_annotation_file_is_no_change(make_adk):
    root = make_adk(n=2)
    old = take(_read(root))
    path = root / "annotations" / "adk_001.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))  # other bytes, same animal
    new = take(_read(root))
    assert new.files != old.files and changes(old, new) == []


def test_an_image_with_other_bytes_under_the_same_name_is_a_change(make_adk):
    root = make_adk(n=3)
    old = take(_read(root))
    img = root / "images" / "adk_001.jpg"
    shutil.copyfile(root / "images" / "adk_000.jpg", img)  # another photograph, same size in the header
    found = changes(old, take(_read(root)))
    assert [(c.aspect, c.names) for c in found] == [("images with other bytes", ["images/adk_001.jpg"])]


def test_touched_images_are_hashed_again_and_found_the_same_while_untouched_ones_are_not(make_adk, monkeypatch):
    root = make_adk(n=3)
    old = take(_read(root))
    hashed: list[Path] = []
    real = fingerprint._digest_file
    monkeypatch.setattr(fingerprint, "_digest_file", lambda p: hashed.append(p) or real(p))
    assert changes(old, take(_read(root), previous=old)) == [] and hashed == []  # a resume: stat only
    img = root / "images" / "adk_002.jpg"
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    new = take(_read(root), previous=old)
    assert hashed == [img.resolve()] and changes(old, new) == []
    assert new.images["images/adk_002.jpg"][1] == st.st_mtime_ns + 10**9  # the record learns the new time


def test_removed_and_added_animals_and_images(make_adk):
    root = make_adk(n=4)
    old = take(_read(root))
    (root / "annotations" / "adk_003.json").unlink()
    (root / "images" / "adk_003.jpg").unlink()
    found = {c.aspect: (c.names, c.acceptable) for c in changes(old, take(_read(root)))}
    assert found["animals removed"] == (["adk_003"], False)
    assert found["images no longer used"] == (["images/adk_003.jpg"], True)
    assert found["annotation files changed, added or removed"] == (["annotations/adk_003.json"], True)
    found = {c.aspect: c.names for c in changes(take(_read(root)), old)}
    assert found["animals added"] == ["adk_003"] and found["images newly used"] == ["images/adk_003.jpg"]


def test_a_moved_data_set_is_the_same_data(make_adk, tmp_path):
    root = make_adk(n=3)
    old = take(_read(root))
    moved = tmp_path / "elsewhere" / "adk"
    shutil.copytree(root, moved)  # new folder, new modification times, same bytes
    new = take(_read(moved), previous=old)
    assert new.root != old.root and changes(old, new) == []


def test_a_set_regenerated_with_another_seed_is_a_change_in_every_aspect(tmp_path):
    """The probe's case: the same file names, other animals and other pixels."""
    from cattlepose.data.synthetic import synthesize

    synthesize(tmp_path / "a", n_train=6, n_test=0, seed=0)
    old = take(_read(tmp_path / "a" / "train"))
    synthesize(tmp_path / "b", n_train=6, n_test=0, seed=1)
    shutil.rmtree(tmp_path / "a")
    shutil.copytree(tmp_path / "b", tmp_path / "a")
    found = {c.aspect: c.names for c in changes(old, take(_read(tmp_path / "a" / "train")))}
    assert len(found["animals with other keypoints, box, image, size, group or metadata"]) == 6
    assert len(found["images with other bytes"]) == 6
    assert "animals added" not in found and "animals removed" not in found
