"""Keypoint schemas: the built-ins are consistent, bad schema files fail with a message naming the field,
and `from_data` infers sensible left/right partners."""

from __future__ import annotations

import warnings

import pytest
import yaml

from cattlepose.errors import UserError
from cattlepose.schema import (
    DEFAULT_SIGMA,
    builtin_schemas,
    infer_pairs,
    load_schema,
    schema_from_coco_category,
    schema_from_dict,
)


@pytest.mark.parametrize("name, k", [("adk17", 17), ("ap10k17", 17), ("animalpose20", 20)])
def test_builtin_schema_is_consistent(name, k):
    s = load_schema(name)
    assert s.num_keypoints == k and len(s.sigmas) == k
    assert all(s.flip_index[s.flip_index[i]] == i for i in range(k))  # an involution
    assert set(s.upper) | set(s.lower) == set(range(k)) and not set(s.upper) & set(s.lower)
    assert s.pck_pair is not None
    # the hand-written partners are exactly the ones the names imply
    assert sorted(infer_pairs(s.keypoints)) == s.pairs
    # to_dict is a valid schema that rebuilds the same object
    assert schema_from_dict(s.to_dict(), source=name) == s


def test_adk17_matches_the_competition():
    s = load_schema("adk17")
    assert s.keypoints[0] == "fore_head" and s.keypoints[-1] == "hip"
    assert [s.keypoints[i] for i in s.pck_pair] == ["fore_spine", "rear_spine"]
    assert s.keypoints[s.flip_index[s.index("fore_left_knee")]] == "fore_right_knee"
    assert len(s.pairs) == 6 and len(s.skeleton) == 16
    assert set(builtin_schemas()) >= {"adk17", "ap10k17", "animalpose20"}


def test_schema_file_by_path(tmp_path):
    p = tmp_path / "tri.yaml"
    p.write_text(yaml.safe_dump({"keypoints": ["l_ear", "r_ear", "nose"], "pairs": [["l_ear", "r_ear"]]}))
    s = load_schema(p)
    assert s.name == "tri" and s.flip_index == (1, 0, 2) and s.sigmas == (DEFAULT_SIGMA,) * 3


BASE = {"keypoints": ["left_eye", "right_eye", "nose", "tail"]}


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"pairs": [["left_eye", "left_eye"]]}, "pairs[0]", "cannot be partners"),  # self pair
        ({"pairs": [["left_eye", "right_eye"], ["right_eye", "nose"]]}, "pairs[1]", "at most one partner"),
        ({"flip_index": [1, 2, 0, 3]}, "flip_index", "not symmetric"),  # asymmetric swap
        ({"flip_index": [1, 0, 2]}, "flip_index", "needs 4 entries"),
        ({"flip_index": [1, 0, 2, 9]}, "flip_index", "0..3"),
        ({"pairs": [["left_eye", "right_eye"]], "flip_index": [1, 0, 2, 3]}, "flip_index", "not both"),
        ({"skeleton": [[0, 9]]}, "skeleton[0]", "index 9 out of range 0..3"),
        ({"skeleton": [["nose", "tial"]]}, "skeleton[0]", "did you mean 'tail'"),
        ({"sigmas": [0.1, 0.1, 0.1]}, "sigmas", "needs 4 sigmas"),
        ({"sigmas": [0.1, 0.1, 0.1, -1]}, "sigmas", "positive"),
        ({"pck_normalizer": ["nose", "tale"]}, "pck_normalizer", "unknown keypoint 'tale'"),
        ({"pck_normalizer": ["nose", "nose"]}, "pck_normalizer", "two different"),
        ({"upper": ["noze"]}, "upper", "did you mean 'nose'"),
        ({"keypoints": ["a", "a"]}, "keypoints", "duplicate"),
        ({"keypoints": []}, "keypoints", "non-empty"),
        ({"pairz": []}, "pairz", "did you mean 'pairs'"),
    ],
)
def test_invalid_schema_names_the_field(tmp_path, change, field, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    with pytest.raises(UserError) as e:
        load_schema(path)
    assert e.value.field == field
    assert e.value.path == str(path)
    assert words in e.value.message
    assert "bad.yaml" in str(e.value)


def test_flip_index_form_is_accepted():
    s = schema_from_dict({**BASE, "flip_index": [1, 0, 2, 3]})
    assert s.pairs == [(0, 1)]


def test_unknown_schema_name_lists_the_builtins():
    with pytest.raises(UserError, match="adk17") as e:
        load_schema("adk18")
    assert e.value.field == "data.schema"


def test_invalid_yaml_is_a_user_error(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("keypoints: [a, b\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_schema(p)


@pytest.mark.parametrize(
    "names, expected",
    [
        (["left_eye", "right_eye", "nose"], [("left_eye", "right_eye")]),
        (["L_Eye", "R_Eye", "L_F_Paw", "R_F_Paw"], [("L_Eye", "R_Eye"), ("L_F_Paw", "R_F_Paw")]),
        (["eye_left", "eye_right"], [("eye_left", "eye_right")]),
        (["leftEar", "rightEar"], [("leftEar", "rightEar")]),
        (["frontLeftPaw", "frontRightPaw"], [("frontLeftPaw", "frontRightPaw")]),
        (
            ["Nearknee", "Offknee", "Nearhindfoot", "Offhindfoot"],
            [("Nearknee", "Offknee"), ("Nearhindfoot", "Offhindfoot")],
        ),
        (["left_eye", "nose", "tail"], []),  # no partner, no pair
        (["leftover", "rightover"], [("leftover", "rightover")]),
    ],
)
def test_infer_pairs(names, expected):
    assert [(names[a], names[b]) for a, b in infer_pairs(names)] == expected


def test_from_data_defaults_sigmas_with_a_warning_and_converts_the_skeleton():
    cat = {"name": "lemur", "keypoints": ["nose", "l_ear", "r_ear"], "skeleton": [[1, 2], [1, 3]]}
    with pytest.warns(UserWarning, match="no OKS sigmas"):
        s = schema_from_coco_category(cat, source="x.json")
    assert s.name == "lemur" and s.sigmas == (DEFAULT_SIGMA,) * 3
    assert s.skeleton == ((0, 1), (0, 2)) and s.pairs == [(1, 2)] and s.pck_pair is None


@pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")
def test_from_data_reads_a_zero_based_skeleton_with_a_warning():
    cat = {"keypoints": ["a", "b", "c"], "skeleton": [[0, 1], [1, 2]]}
    with pytest.warns(UserWarning, match="counts keypoints from 0"):
        s = schema_from_coco_category(cat)
    assert s.skeleton == ((0, 1), (1, 2))


def test_from_data_reuses_a_builtin_with_the_same_names():
    ap = load_schema("ap10k17")
    cat = {"name": "cow", "keypoints": list(ap.keypoints), "skeleton": [[1, 2]]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no default-sigma warning
        s = schema_from_coco_category(cat)
    assert s.sigmas == ap.sigmas and s.pck_pair == ap.pck_pair and s.flip_index == ap.flip_index


@pytest.mark.parametrize(
    "cat, field",
    [
        ({"name": "x"}, "categories[].keypoints"),
        ({"keypoints": ["a", "b"], "skeleton": [[1, 3]]}, "categories[].skeleton[0]"),
        ({"keypoints": ["a", "b"], "skeleton": [[0, 2]]}, "categories[].skeleton[0]"),  # 0 and K: no base fits
        ({"keypoints": ["a", "b"], "skeleton": [["a", "b"]]}, "categories[].skeleton[0]"),
    ],
)
def test_from_data_rejects_bad_categories(cat, field):
    with pytest.raises(UserError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema_from_coco_category(cat, source="c.json")
    assert e.value.field == field and e.value.path == "c.json"
