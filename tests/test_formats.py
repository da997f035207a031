"""The ADK reader/writer and the format dispatcher: real competition files, quirks, round trips."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema
from cattlepose.data.formats import adk, detect_format, read_samples, resolve_schema, write_samples
from cattlepose.data.records import Sample

QUIRK_STEM = "livestock_cow_keypoints_009001"
pytestmark = pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")


def test_adk2021_sample_reads_26_with_the_file_name_quirk_resolved(fixtures_dir):
    root = fixtures_dir / "adk2021_sample"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples, schema = read_samples("adk", root, "adk17")
    assert len(samples) == 26 and schema.name == "adk17"
    quirk = [w for w in caught if "file_name that does not exist" in str(w.message)]
    assert len(quirk) == 1 and "1 annotation file(s)" in str(quirk[0].message)  # once, with the count
    by_id = {s.image_id: s for s in samples}
    assert by_id[QUIRK_STEM].image.name == f"{QUIRK_STEM}.jpg"
    assert all(s.image.is_file() for s in samples)
    assert all(s.num_keypoints == 17 and s.group == "yangpyeong" for s in samples)
    assert sum(int((s.keypoints[:, 2] == 1).sum()) for s in samples) == 1  # the one occluded keypoint
    assert by_id[QUIRK_STEM].meta["category"] == "cattle"


@pytest.mark.filterwarnings("ignore:.*file_name that does not exist:UserWarning")
def test_adk2021_placeholder_boxes_become_the_whole_image(fixtures_dir):
    """Every box is [0, 0, 125, 291]. On the larger images it fits inside the image, yet misses the animal:
    it must still be treated as a placeholder, or training would crop a strip of the image."""
    root = fixtures_dir / "adk2021_sample"
    samples = adk.read(root, 17)
    assert all(s.bbox is None for s in samples)
    big = [s for s in samples if s.width >= 125 and s.height >= 290]
    assert big, "the fixture has images the placeholder fits in"
    kept = adk.read(root, 17, bbox="annotation")
    assert all(np.array_equal(s.bbox, [0, 0, 125, 291]) for s in kept)


def test_real_boxes_are_kept_and_whole_image_boxes_mean_none(make_adk):
    root = make_adk(n=3)
    samples = adk.read(root, 17)
    assert all(s.bbox is not None for s in samples)
    for s in samples:  # the drawn data's boxes surround the keypoints
        x, y, w, h = s.bbox
        assert (s.keypoints[:, 0] >= x).all() and (s.keypoints[:, 0] <= x + w).all()
        assert (s.keypoints[:, 1] >= y).all() and (s.keypoints[:, 1] <= y + h).all()
    f = root / "annotations" / "adk_000.json"
    doc = json.loads(f.read_text())
    doc["label_info"]["annotations"][0]["bbox"] = [0, 0, 96, 64]
    f.write_text(json.dumps(doc))
    assert adk.read(root, 17)[0].bbox is None
    assert all(s.bbox is None for s in adk.read(root, 17, bbox="image"))
    # a box inside the image that misses the keypoints is a placeholder too, unless boxes are to be trusted
    doc["label_info"]["annotations"][0]["bbox"] = [0, 0, 10, 10]
    f.write_text(json.dumps(doc))
    samples, stats = adk.read_detailed(root, 17)
    assert samples[0].bbox is None and stats["placeholder_boxes"] == 1
    assert adk.read(root, 17, bbox="annotation")[0].bbox.tolist() == [0, 0, 10, 10]


def test_adk_round_trip_is_exact(make_adk, tmp_path, same_samples):
    schema = load_schema("adk17")
    original = adk.read(make_adk(), 17)
    # fractional coordinates, an unlabelled keypoint, no box and extra metadata must survive too
    original[0].keypoints[0] = [10.25, 3.5, 1]
    original[0].keypoints[1] = [0, 0, 0]
    original[1].bbox = None
    original[2].meta["occluded_fraction"] = 0.25
    original[2].meta["category_id"], original[2].meta["category"] = 3, "calf"
    out = tmp_path / "copy"
    adk.write(original, out, schema, copy_images=True)
    back = adk.read(out, 17)
    assert [s.image.parent for s in back] == [out / "images"] * len(back)
    same_samples(original, back, same_file=False)


def test_adk_reads_the_annotation_folder_itself_and_finds_images_by_stem(make_adk):
    root = make_adk(n=2)
    f = root / "annotations" / "adk_001.json"
    doc = json.loads(f.read_text())
    del doc["label_info"]["image"]["file_name"]
    f.write_text(json.dumps(doc))
    samples = adk.read(root / "annotations", 17)
    assert [s.image.name for s in samples] == ["adk_000.jpg", "adk_001.jpg"]


def test_adk_from_data_schema_comes_from_the_files(make_adk):
    schema = read_samples("adk", make_adk(), "from_data")[1]
    adk17 = load_schema("adk17")
    assert schema.keypoints == adk17.keypoints and schema.flip_index == adk17.flip_index
    assert schema.skeleton == adk17.skeleton and schema.sigmas == adk17.sigmas


def test_adk_with_a_schema_of_another_size_names_the_file_and_field(make_adk):
    root = make_adk(n=2)
    with pytest.raises(UserError) as e:
        read_samples("adk", root, "animalpose20")
    assert e.value.path == str(root / "annotations" / "adk_000.json")
    assert e.value.field == "label_info.categories[].keypoints_name"
    assert "20" in e.value.message and "17" in e.value.message


def test_adk_with_same_size_schema_of_other_names_warns(make_adk):
    with pytest.warns(UserWarning, match="fore_head"):
        samples, schema = read_samples("adk", make_adk(n=2), "ap10k17")
    assert schema.name == "ap10k17" and len(samples) == 2


def test_adk_writer_checks_everything_before_writing(make_adk, tmp_path):
    samples = adk.read(make_adk(n=3), 17)
    samples[2].keypoints[4, 0] = np.nan
    out = tmp_path / "out"
    with pytest.raises(UserError, match="NaN"):
        adk.write(samples, out, load_schema("adk17"))
    assert not (out / "annotations").exists() or not any((out / "annotations").iterdir())


@pytest.mark.parametrize("fmt", ["adk", "coco", "csv"])
def test_dispatcher_round_trip(fmt, make_adk, tmp_path, same_samples):
    if fmt == "csv":
        pytest.importorskip("cattlepose.data.formats.wide_csv")
    original, schema = read_samples("adk", make_adk(n=4), "adk17")
    target = {"adk": tmp_path / "out", "coco": tmp_path / "out.json", "csv": tmp_path / "out.csv"}[fmt]
    write_samples(fmt, original, target, schema)
    # ADK and CSV record bare file names (ADK expects images/ beside annotations/); COCO records the path
    # relative to the JSON file, so it needs no image folder here
    images = None if fmt == "coco" else original[0].image.parent
    assert detect_format(target) == fmt
    back, schema2 = read_samples(None, target, "adk17", images=images)
    assert schema2 == schema
    # every format keeps the image, its size, the keypoints and the box; ADK keeps ids and metadata as well
    same_samples(original, back, meta=fmt == "adk", image_ids=fmt == "adk")


def test_max_samples_spreads_over_the_whole_set(make_adk):
    samples, _ = read_samples("adk", make_adk(n=10, farms=tuple("abcde")), "adk17", max_samples=5)
    assert len(samples) == 5
    assert samples[0].image_id == "adk_000" and samples[-1].image_id == "adk_009"
    assert len({s.group for s in samples}) > 1


def test_detect_format(tmp_path, make_adk, make_coco):
    assert detect_format(make_adk()) == "adk"
    assert detect_format(make_coco()) == "coco"
    (tmp_path / "a.csv").write_text("image\n")
    assert detect_format(tmp_path / "a.csv") == "csv"
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    for bad in (tmp_path / "empty", tmp_path / "notes.txt", tmp_path / "missing"):
        with pytest.raises(UserError) as e:
            detect_format(bad)
        assert e.value.path == str(bad)


def test_unknown_format_is_a_user_error(make_adk):
    with pytest.raises(UserError, match="unknown data format 'xml'"):
        read_samples("xml", make_adk(), "adk17")


def test_samples_of_one_image_in_adk_are_refused_before_writing(tmp_path, make_coco):
    samples, schema = read_samples("coco", make_coco(animals=2), "from_data")
    out = tmp_path / "adk"
    with pytest.raises(UserError, match="one animal per image"):
        write_samples("adk", samples, out, schema)
    assert not out.exists()


def test_sample_key_and_crop_box():
    s = Sample(image="x/cow.jpg", keypoints=np.zeros((2, 3)), width=40, height=30)
    assert s.key == "cow" and s.crop_box().tolist() == [0, 0, 40, 30]


def test_csv_header_serves_as_its_own_schema(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "image,left_eye_x,left_eye_y,left_eye_v,right_eye_x,right_eye_y,nose_x,nose_y,bbox_x,bbox_y,bbox_w,bbox_h\n"
    )
    schema = resolve_schema("csv", path, "from_data")
    assert schema.keypoints == ("left_eye", "right_eye", "nose") and schema.pairs == [(0, 1)]
    (tmp_path / "none.csv").write_text("image,score\n")
    with pytest.raises(UserError) as e:
        resolve_schema("csv", tmp_path / "none.csv", "from_data")
    assert e.value.path == str(tmp_path / "none.csv") and e.value.field == "header"
