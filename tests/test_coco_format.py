"""The COCO keypoints reader/writer on real animal data sets and on drawn multi-animal files."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema, schema_from_dict
from cattlepose.data.formats import coco, read_samples

pytestmark = pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")

# data set -> (samples, keypoints, built-in schema with the same keypoints or None)
COCO_FIXTURES = {
    "ap10k": (2, 17, "ap10k17"),
    "animalpose": (2, 20, "animalpose20"),
    "horse10": (3, 22, None),
    "macaque": (2, 17, None),
}


def _fixture_json(fixtures_dir, name):
    (path,) = (fixtures_dir / "coco_animal_samples" / name).glob("*.json")
    return path


@pytest.mark.parametrize("name", sorted(COCO_FIXTURES))
def test_every_fixture_reads_with_its_own_schema(fixtures_dir, name):
    n, k, _ = COCO_FIXTURES[name]
    path = _fixture_json(fixtures_dir, name)
    samples, schema = read_samples("coco", path, "from_data")
    assert len(samples) == n and schema.num_keypoints == k
    doc = json.loads(path.read_text())
    assert [int(s.ann_id) for s in samples] == [a["id"] for a in doc["annotations"]]
    for s, a in zip(samples, doc["annotations"], strict=True):
        assert s.image_id == str(a["image_id"]) and s.group is None  # folds group by photograph, not by id
        assert s.keypoints.reshape(-1).tolist() == pytest.approx(a["keypoints"])
        assert s.bbox.tolist() == pytest.approx(a["bbox"])
        assert s.meta["category_id"] == a["category_id"] and s.meta["coco_image_id"] == a["image_id"]
        assert s.image.is_file() and s.image.name == s.meta["file_name"]
        assert (s.width, s.height) == next(
            (im["width"], im["height"]) for im in doc["images"] if im["id"] == a["image_id"]
        )
    assert all(schema.flip_index[schema.flip_index[i]] == i for i in range(k))


@pytest.mark.parametrize("name", [n for n, v in COCO_FIXTURES.items() if v[2]])
def test_fixture_reads_with_the_matching_builtin_schema(fixtures_dir, name):
    path = _fixture_json(fixtures_dir, name)
    builtin = COCO_FIXTURES[name][2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same names: no warning of any kind
        samples, schema = read_samples("coco", path, builtin)
        assert len(samples) == COCO_FIXTURES[name][0]
        data_schema = read_samples("coco", path, "from_data")[1]
    assert schema == load_schema(builtin)
    # the schema built from the data agrees with the hand-written one where it matters
    assert data_schema.keypoints == schema.keypoints and data_schema.flip_index == schema.flip_index
    assert data_schema.sigmas == schema.sigmas


def test_ap10k_reads_several_species_that_share_the_keypoints(fixtures_dir):
    samples = coco.read(_fixture_json(fixtures_dir, "ap10k"), load_schema("ap10k17"))
    assert {s.meta["category"] for s in samples} == {"jaguar", "antelope"}
    only = coco.read(_fixture_json(fixtures_dir, "ap10k"), 17, category="jaguar")
    assert [s.meta["category"] for s in only] == ["jaguar"]


def test_horse10_near_and_off_sides_pair_up(fixtures_dir):
    _, schema = read_samples("coco", _fixture_json(fixtures_dir, "horse10"), "from_data")
    pairs = [(schema.keypoints[a], schema.keypoints[b]) for a, b in schema.pairs]
    assert len(pairs) == 6
    for a, b in pairs:  # Near = the horse's left, Off = its right, same joint
        near, off = sorted((a, b), key=lambda n: not n.startswith("Near"))
        assert near.startswith("Near") and off == "Off" + near[len("Near") :]
    unpaired = {schema.keypoints[i] for i in range(22) if schema.flip_index[i] == i}
    assert {"Nose", "Eye", "Wither", "Girth"} <= unpaired


def test_fixture_round_trip_is_exact(fixtures_dir, tmp_path, same_samples):
    path = _fixture_json(fixtures_dir, "ap10k")
    samples, schema = read_samples("coco", path, "ap10k17")
    out = tmp_path / "ap10k_copy.json"
    coco.write(samples, out, schema)
    same_samples(samples, coco.read(out, schema, images=path.parent))


def test_several_animals_per_image(make_coco, same_samples):
    path = make_coco(n_images=2, animals=3)
    samples = coco.read(path, 17)
    assert len(samples) == 6
    assert [s.image_id for s in samples] == ["10"] * 3 + ["20"] * 3 and {s.group for s in samples} == {None}
    assert len({s.key for s in samples}) == 6 and samples[0].key == "10#1"
    assert samples[0].image == samples[2].image
    assert (samples[0].keypoints[-1] == 0).all()
    # written beside its images, the file reads back without being told where the images are
    schema = schema_from_dict({"name": "animal", "keypoints": [f"kp{j}" for j in range(17)]})
    coco.write(samples, path.parent / "copy.json", schema)
    same_samples(samples, coco.read(path.parent / "copy.json", 17))


def test_crowd_and_unlabelled_annotations_are_skipped_and_counted(make_coco):
    path = make_coco(n_images=1, animals=4)
    doc = json.loads(path.read_text())
    doc["annotations"][0]["iscrowd"] = 1
    doc["annotations"][1]["num_keypoints"] = 0
    doc["annotations"][2]["keypoints"] = [0] * 51  # no num_keypoints field saying so: counted from v
    del doc["annotations"][2]["num_keypoints"]
    path.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="skipped 1 crowd annotation.* and 2 with no labelled keypoint"):
        samples, stats = coco.read_detailed(path, 17)
    assert [s.ann_id for s in samples] == ["4"]
    assert stats["crowd"] == 1 and stats["no_keypoints"] == 2


def test_categories_with_different_keypoints_need_a_choice(make_coco):
    path = make_coco(n_images=1, animals=2)
    doc = json.loads(path.read_text())
    doc["categories"].append({"id": 2, "name": "bird", "keypoints": ["beak", "tail"]})
    doc["annotations"][1]["category_id"] = 2
    doc["annotations"][1]["keypoints"] = [5, 5, 2, 9, 9, 2]
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="read one category at a time") as e:
        coco.read(path)
    assert e.value.path == str(path)
    animals, stats = coco.read_detailed(path, 17, category="animal")
    birds = coco.read(path, 2, category=2)
    assert len(animals) == 1 and stats["other_category"] == 1 and len(birds) == 1


@pytest.mark.parametrize("layout", ["images_beside", "images_beside_parent"])
def test_image_folder_is_found_beside_the_json(make_coco, layout):
    path = make_coco(n_images=1, animals=1)
    folder = path.parent
    if layout == "images_beside":
        (folder / "images").mkdir()
        shutil.move(folder / "img_0.png", folder / "images" / "img_0.png")
        json_path = path
    else:  # COCO's own layout: annotations/x.json and images/ beside annotations/
        (folder / "images").mkdir()
        (folder / "annotations").mkdir()
        shutil.move(folder / "img_0.png", folder / "images" / "img_0.png")
        json_path = shutil.move(path, folder / "annotations" / "data.json")
    (s,) = coco.read(json_path, 17)
    assert s.image == folder / "images" / "img_0.png"


def test_explicit_image_folder(make_coco, tmp_path):
    path = make_coco(n_images=1, animals=1)
    elsewhere = tmp_path / "pixels"
    elsewhere.mkdir()
    shutil.move(path.parent / "img_0.png", elsewhere / "img_0.png")
    (s,) = coco.read(path, 17, images=elsewhere)
    assert s.image == elsewhere / "img_0.png"


def test_whole_image_box_means_no_box_and_image_mode_ignores_boxes(make_coco):
    path = make_coco(n_images=1, animals=1, size=(128, 96))
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"] = [0, 0, 128, 96]
    path.write_text(json.dumps(doc))
    assert coco.read(path, 17)[0].bbox is None
    assert coco.read(path, 17, bbox="annotation")[0].bbox.tolist() == [0, 0, 128, 96]
    assert coco.read(make_coco(name="b"), 17, bbox="image")[0].bbox is None


def test_keypoint_count_of_category_and_schema_must_agree(make_coco):
    path = make_coco(k=20)
    with pytest.raises(UserError) as e:
        read_samples("coco", path, "ap10k17")
    assert e.value.path == str(path) and e.value.field == "categories[].keypoints"
    assert "20" in e.value.message and "17" in e.value.message


def test_adk_samples_written_as_coco_get_integer_ids_and_keep_their_metadata(make_adk, tmp_path):
    samples, schema = read_samples("adk", make_adk(n=3), "adk17")
    out = tmp_path / "adk.json"
    coco.write(samples, out, schema)
    doc = json.loads(out.read_text())
    assert [im["id"] for im in doc["images"]] == [1, 2, 3]
    assert all(isinstance(a["id"], int) for a in doc["annotations"])
    back = coco.read(out, schema)
    assert [s.meta["farm_name"] for s in back] == [s.meta["farm_name"] for s in samples]
    assert all(np.array_equal(a.keypoints, b.keypoints) for a, b in zip(samples, back, strict=True))
    assert [s.image for s in back] == [s.image for s in samples]


def test_animals_numbered_within_each_image_get_distinct_annotation_ids(make_adk, tmp_path):
    # a track or detection number is an id within its image: "1" in every frame must not become id 1 twice
    samples, schema = read_samples("adk", make_adk(n=3), "adk17")
    for s in samples:
        s.ann_id = "1"
    out = tmp_path / "frames.json"
    coco.write(samples, out, schema)
    ids = [a["id"] for a in json.loads(out.read_text())["annotations"]]
    assert sorted(ids) == [1, 2, 3]
    back = coco.read(out, schema)  # the reader refuses a duplicate id: the file must read back
    assert all(np.array_equal(a.keypoints, b.keypoints) for a, b in zip(samples, back, strict=True))


SHEEP_HORSE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "animalpose_sheep_horse"


@pytest.fixture(scope="module")
def sheep_horse_subset(tmp_path_factory):
    """The first 6 sheep and 6 horses of the shared Animal-Pose set as their own COCO file (in a temporary
    folder; the images stay where they are), with the source annotations by id."""
    if not (SHEEP_HORSE / "annotations.json").is_file():
        pytest.skip(f"shared data set not found at {SHEEP_HORSE}")
    doc = json.loads((SHEEP_HORSE / "annotations.json").read_text())
    anns = [a for a in doc["annotations"] if a["category_id"] == 3][:6]
    anns += [a for a in doc["annotations"] if a["category_id"] == 4][:6]
    image_ids = {a["image_id"] for a in anns}
    subset = {
        "images": [im for im in doc["images"] if im["id"] in image_ids],
        "annotations": anns,
        "categories": doc["categories"],
    }
    path = tmp_path_factory.mktemp("sheep_horse") / "sheep_horse.json"
    path.write_text(json.dumps(subset))
    return path, {a["id"]: a for a in anns}


def test_sheep_and_horses_read_as_one_set_recognised_as_animalpose20(sheep_horse_subset):
    path, source = sheep_horse_subset
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recognised: no default-sigma warning; same lists: no name warning
        samples, schema = read_samples("coco", path, "from_data", images=SHEEP_HORSE / "images")
    assert schema.name == "sheep_horse" and schema.recognised_as == "animalpose20"
    assert schema.keypoints[:4] == ("left_eye", "right_eye", "nose", "left_ear")  # the file's order
    assert len(samples) == 12
    assert [s.meta["category"] for s in samples] == ["sheep"] * 6 + ["horse"] * 6
    for s in samples:
        a = source[int(s.ann_id)]
        assert s.meta["category_id"] == a["category_id"]
        assert s.keypoints.reshape(-1).tolist() == pytest.approx(a["keypoints"])
        assert s.bbox.tolist() == pytest.approx(a["bbox"])
        assert s.image == SHEEP_HORSE / "images" / s.meta["file_name"] and s.image_id == str(a["image_id"])
    horses = coco.read(path, schema, images=SHEEP_HORSE / "images", category="horse")
    assert [int(s.ann_id) for s in horses] == [int(s.ann_id) for s in samples[6:]]


def test_sheep_and_horses_read_with_the_shipped_schema_are_reordered_by_name(sheep_horse_subset):
    path, _ = sheep_horse_subset
    as_data, data_schema = read_samples("coco", path, "from_data", images=SHEEP_HORSE / "images")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the names are animalpose20's in another spelling: nothing to warn about
        shipped, schema = read_samples("coco", path, "animalpose20", images=SHEEP_HORSE / "images")
    assert schema == load_schema("animalpose20")
    to_shipped = dict(data_schema.name_map)
    for a, b in zip(as_data, shipped, strict=True):
        for j, name in enumerate(data_schema.keypoints):
            assert b.keypoints[schema.index(to_shipped[name])].tolist() == a.keypoints[j].tolist(), name
    # e.g. the data's 3rd keypoint (nose) is animalpose20's 5th
    assert shipped[0].keypoints[4].tolist() == as_data[0].keypoints[2].tolist()


def _two_files(make_coco) -> tuple[Path, Path]:
    """Two COCO files with the same image ids (10, 20) and annotation ids, categories `sheep` and `dog`."""
    paths = []
    for name, category in (("farm_a", "sheep"), ("farm_b", "dog")):
        path = make_coco(name=name, n_images=2, animals=2, k=5, seed=len(paths))
        doc = json.loads(path.read_text())
        doc["categories"][0]["name"] = category
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths[0], paths[1]


def test_a_list_of_coco_files_reads_as_one_set(make_coco):
    from cattlepose.data.folds import assign_folds
    from cattlepose.data.formats import read_sources

    a, b = _two_files(make_coco)
    one, _ = read_samples("coco", a, "from_data")
    both, schema = read_sources("coco", [a, b], "from_data")
    assert schema.num_keypoints == 5 and len(both) == 8 and len({s.key for s in both}) == 8
    assert [s.meta["source"] for s in both] == ["farm_a"] * 4 + ["farm_b"] * 4
    assert [s.meta["category"] for s in both] == ["sheep"] * 4 + ["dog"] * 4
    assert [s.image_id for s in both[:4]] == [f"farm_a/{s.image_id}" for s in one]  # same ids, kept apart
    pairs = zip(both[:4], one, strict=True)
    assert all(np.array_equal(s.keypoints, t.keypoints) and s.image == t.image for s, t in pairs)
    folds = assign_folds(both, 2, "source", seed=0)
    assert sorted({(s.meta["source"], k) for s, k in zip(both, folds, strict=True)}) in (
        [("farm_a", 0), ("farm_b", 1)], [("farm_a", 1), ("farm_b", 0)])  # fmt: skip
    dogs, _ = read_sources("coco", [a, b], "from_data", category="dog")
    assert len(dogs) == 4 and {s.meta["source"] for s in dogs} == {"farm_b"}
    listed, _ = read_sources("coco", [a, b], "from_data", category=["dog", "sheep"])
    assert len(listed) == 8
    with pytest.raises(UserError, match="no category horse in the data; it holds dog, sheep"):
        read_sources("coco", [a, b], "from_data", category="horse")


def test_a_list_of_files_in_the_config(make_coco, tmp_path):
    from cattlepose.core.config import load_config
    from cattlepose.core.ui import Log
    from cattlepose.data.source import load_training_data

    a, b = _two_files(make_coco)
    cfg = load_config(None, ["data.format=coco", f"data.train=[{a},{b}]", "data.schema=from_data",
                             "data.group_by=category"])  # fmt: skip
    samples, _ = load_training_data(cfg, Log(quiet=True))
    assert len(samples) == 8
    with pytest.raises(UserError, match=r"data\.images lists 1 folders for 2 training files"):
        load_config(None, ["data.format=coco", f"data.train=[{a},{b}]", f"data.images=[{tmp_path}]"])
    with pytest.raises(UserError, match="must be COCO files"):
        load_config(None, [f"data.train=[{a},{b}]"])  # the default format is adk
