"""Keypoint schemas: the built-ins are consistent, bad schema files fail with a message naming the field,
and `from_data` infers sensible left/right partners."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml

from cattlepose.core.errors import UserError
from cattlepose.core.schema import (
    DEFAULT_SIGMA,
    builtin_schemas,
    infer_pairs,
    keypoint_key,
    load_schema,
    match_keypoint_names,
    recognise_schema,
    recognition_note,
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


# The Animal-Pose keypoints as its public COCO release spells and orders them (../shared/datasets/
# animalpose_sheep_horse/annotations.json); animalpose20 spells them L_Eye, L_EarBase, L_F_Elbow, ...
ANIMALPOSE_COCO_NAMES = [
    "left_eye", "right_eye", "nose", "left_ear", "right_ear",
    "left_front_elbow", "right_front_elbow", "left_back_elbow", "right_back_elbow",
    "left_front_knee", "right_front_knee", "left_back_knee", "right_back_knee",
    "left_front_paw", "right_front_paw", "left_back_paw", "right_back_paw",
    "throat", "withers", "tailbase",
]  # fmt: skip
# the same 20 keypoints in the shipped schema's spelling, by data name
ANIMALPOSE_SHIPPED = {
    "left_eye": "L_Eye", "right_eye": "R_Eye", "nose": "Nose", "left_ear": "L_EarBase", "right_ear": "R_EarBase",
    "left_front_elbow": "L_F_Elbow", "right_front_elbow": "R_F_Elbow",
    "left_back_elbow": "L_B_Elbow", "right_back_elbow": "R_B_Elbow",
    "left_front_knee": "L_F_Knee", "right_front_knee": "R_F_Knee",
    "left_back_knee": "L_B_Knee", "right_back_knee": "R_B_Knee",
    "left_front_paw": "L_F_Paw", "right_front_paw": "R_F_Paw", "left_back_paw": "L_B_Paw", "right_back_paw": "R_B_Paw",
    "throat": "Throat", "withers": "Withers", "tailbase": "TailBase",
}  # fmt: skip


@pytest.mark.parametrize(
    "a, b",
    [
        ("L_Eye", "left_eye"),
        ("L_EarBase", "left_ear"),
        ("L_EarBase", "ear_base_left"),
        ("L_F_Elbow", "left_front_elbow"),
        ("L_F_Elbow", "FrontLeftElbow"),
        ("R_B_Paw", "right-hind-paw"),
        ("R_B_Paw", "rear right paw"),
        ("fore_left_knee", "L_F_Knee"),
        ("TailBase", "tailbase"),
        ("TailBase", "tail_base"),
        ("TailBase", "root_of_tail"),
        ("LEye", "eyeLeft"),
    ],
)
def test_keypoint_key_equates_spellings(a, b):
    assert keypoint_key(a) == keypoint_key(b)


@pytest.mark.parametrize(
    "a, b",
    [("L_Eye", "R_Eye"), ("L_F_Paw", "L_B_Paw"), ("left_ear", "left_eye"), ("tail_tip", "tailbase"), ("nose", "neck")],
)
def test_keypoint_key_keeps_different_keypoints_apart(a, b):
    assert keypoint_key(a) != keypoint_key(b)


def test_match_keypoint_names_is_one_to_one():
    # exact names first; then by key; a key two names share on one side is ambiguous and matches nothing
    got = match_keypoint_names(["L_Eye", "left_eye", "R_Eye", "Nose", "tail"], ["left_eye", "right_eye", "nose", "paw"])
    assert got == {"left_eye": "left_eye", "right_eye": "R_Eye", "nose": "Nose"}
    assert match_keypoint_names(["L_Eye", "Left-Eye"], ["left_eye"]) == {}
    assert match_keypoint_names(["L_Eye"], ["left_eye", "LeftEye"]) == {}


def _check_animalpose(s, names):
    """`s` is the data's schema for `names` (Animal-Pose keypoints in the data's spelling and order)."""
    ap = load_schema("animalpose20")
    assert s.keypoints == tuple(names)  # the data's order, not the shipped one
    assert s.recognised_as == "animalpose20"
    assert dict(s.name_map) == {n: ANIMALPOSE_SHIPPED[n] for n in names}
    assert [a for a, _ in s.name_map] == list(names)
    for j, n in enumerate(names):
        shipped = ap.index(ANIMALPOSE_SHIPPED[n])
        assert s.sigmas[j] == ap.sigmas[shipped], n
        partner = s.keypoints[s.flip_index[j]]
        assert ANIMALPOSE_SHIPPED[partner] == ap.keypoints[ap.flip_index[shipped]], n
    named_pairs = {frozenset((s.keypoints[a], s.keypoints[b])) for a, b in s.pairs}
    assert len(named_pairs) == 8 and frozenset(("left_ear", "right_ear")) in named_pairs
    assert frozenset(("left_back_paw", "right_back_paw")) in named_pairs
    assert [s.keypoints[i] for i in s.pck_pair] == ["withers", "tailbase"]
    to_shipped = [ANIMALPOSE_SHIPPED[n] for n in names]
    assert {to_shipped[i] for i in s.upper} == {ap.keypoints[i] for i in ap.upper}
    assert {to_shipped[i] for i in s.lower} == {ap.keypoints[i] for i in ap.lower}
    edges = {frozenset((to_shipped[a], to_shipped[b])) for a, b in s.skeleton}
    assert edges == {frozenset((ap.keypoints[a], ap.keypoints[b])) for a, b in ap.skeleton}
    # the sigmas the issue was about: not one default value for all
    assert s.sigmas[names.index("left_eye")] == 0.025 and s.sigmas[names.index("left_back_paw")] == 0.089


def test_from_data_recognises_animalpose20_from_the_coco_release_names():
    cat = {"name": "sheep", "keypoints": ANIMALPOSE_COCO_NAMES, "skeleton": [[1, 2], [19, 20]]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recognised: no default-sigma warning
        s = schema_from_coco_category(cat, source="annotations.json")
    assert s.name == "sheep"
    _check_animalpose(s, ANIMALPOSE_COCO_NAMES)
    assert s.sigmas != (DEFAULT_SIGMA,) * 20
    note = recognition_note(s)
    assert note is not None and note.startswith("keypoints recognised as animalpose20 (20 matched by name")
    assert "left_ear->L_EarBase" in note


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_from_data_recognises_animalpose20_in_any_order(seed):
    names = [ANIMALPOSE_COCO_NAMES[i] for i in np.random.default_rng(seed).permutation(20)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = schema_from_coco_category({"keypoints": names})
    _check_animalpose(s, names)


def test_a_shuffled_shipped_list_is_recognised_with_its_own_names():
    ap = load_schema("animalpose20")
    names = list(reversed(ap.keypoints))
    s = schema_from_coco_category({"keypoints": names})
    assert s.recognised_as == "animalpose20" and all(a == b for a, b in s.name_map)
    assert s.sigmas == tuple(reversed(ap.sigmas)) and s.pck_pair == (19 - ap.pck_pair[0], 19 - ap.pck_pair[1])
    assert (
        recognition_note(s)
        == "keypoints recognised as animalpose20 (20 matched by name; the data's keypoint order is kept)"
    )


@pytest.mark.parametrize(
    "names",
    [
        [*ANIMALPOSE_COCO_NAMES[:19], "tail_tip"],  # 19 of 20: one keypoint the schema does not have
        ANIMALPOSE_COCO_NAMES[:10],  # a subset
        [*ANIMALPOSE_COCO_NAMES, "chin"],  # a superset
        [*ANIMALPOSE_COCO_NAMES[:19], "L_Eye"],  # 20 names, two of them the left eye
    ],
)
def test_a_partial_match_is_not_recognised(names):
    assert recognise_schema(names) is None
    with pytest.warns(UserWarning, match="no OKS sigmas"):
        s = schema_from_coco_category({"keypoints": names}, source="x.json")
    assert s.recognised_as is None and s.name_map == () and s.sigmas == (DEFAULT_SIGMA,) * len(names)
    assert s.pck_pair is None and recognition_note(s) is None


def test_ap10k_names_are_not_taken_for_animalpose():
    ap10k = load_schema("ap10k17")
    shipped, to_shipped = recognise_schema(list(ap10k.keypoints))
    assert shipped.name == "ap10k17" and all(a == b for a, b in to_shipped.items())


def test_recognised_schema_round_trips_through_its_dict():
    s = schema_from_coco_category({"name": "horse", "keypoints": ANIMALPOSE_COCO_NAMES})
    d = s.to_dict()
    assert d["recognised_as"] == "animalpose20" and d["name_map"]["left_ear"] == "L_EarBase"
    assert schema_from_dict(yaml.safe_load(yaml.safe_dump(d, sort_keys=False))) == s
    assert "recognised_as" not in load_schema("adk17").to_dict()  # unrecognised schemas read as before
    with pytest.raises(UserError) as e:
        schema_from_dict({**d, "name_map": {"no_such": "L_Eye"}})
    assert e.value.field == "name_map"
