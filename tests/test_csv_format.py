"""The wide CSV format: exact round trips, optional columns, and every bad cell named by row and column."""

from __future__ import annotations

import numpy as np
import pytest

from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema, schema_from_dict
from cattlepose.data.formats import adk, read_samples, wide_csv

SCHEMA = load_schema("adk17")


def test_round_trip_is_exact_with_fractions_unlabelled_and_no_box(make_adk, tmp_path, same_samples):
    root = make_adk(n=3)
    original = adk.read(root, 17)
    original[0].keypoints[0] = [10.25, 3.5, 1]
    original[0].keypoints[1] = [0, 0, 0]
    original[1].bbox = None
    original[2].bbox = np.array([1.5, 2.25, 40.125, 30.0])
    out = tmp_path / "labels.csv"
    wide_csv.write(original, out, SCHEMA)
    back = wide_csv.read(out, SCHEMA, images=root / "images")
    same_samples(original, back, meta=False)


def test_images_are_found_beside_the_csv(make_adk):
    root = make_adk(n=2)
    original = adk.read(root, 17)
    wide_csv.write(original, root / "labels.csv", SCHEMA)  # root/images holds the files
    back = wide_csv.read(root / "labels.csv", SCHEMA)
    assert [s.image for s in back] == [s.image for s in original]


def test_minimal_columns_default_to_visible_and_header_sizes(make_adk):
    root = make_adk(n=1)
    s = adk.read(root, 17)[0]
    cols = ["image"] + [f"{n}_{c}" for n in SCHEMA.keypoints for c in ("x", "y")]
    cells = [s.image.name] + [str(int(v)) for v in s.keypoints[:, :2].reshape(-1)]
    cells[1:3] = ["", ""]  # the first keypoint unlabelled
    path = root / "min.csv"
    path.write_text(",".join(cols) + "\n" + ",".join(cells) + "\n")
    (back,) = wide_csv.read(path, SCHEMA)
    assert back.bbox is None and (back.width, back.height) == (96, 64)
    assert back.keypoints[0].tolist() == [0, 0, 0]
    assert (back.keypoints[1:, 2] == 2).all()
    assert np.array_equal(back.keypoints[1:, :2], s.keypoints[1:, :2])


def test_from_data_schema_and_dispatcher(make_adk):
    root = make_adk(n=2)
    wide_csv.write(adk.read(root, 17), root / "labels.csv", SCHEMA)
    samples, schema = read_samples("csv", root / "labels.csv", "from_data")
    assert schema.keypoints == SCHEMA.keypoints and len(samples) == 2


def _written(make_adk):
    root = make_adk(n=2)
    path = root / "labels.csv"
    wide_csv.write(adk.read(root, 17), path, SCHEMA)
    return path


def _set_cell(path, row: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    cells = lines[row - 1].split(",")
    cells[head.index(column)] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("neck_x", "abc", "not a number"),
        ("neck_y", "nan", "not a finite number"),
        ("hip_v", "3", "must be 0, 1 or 2"),
        ("width", "-4", "positive whole number"),
        ("bbox_w", "0", "zero-area bbox"),
        ("image", "../../etc/passwd", "escapes the data root"),
        ("image", "nope.jpg", "image not found"),
    ],
)
def test_a_bad_cell_names_file_row_and_column(make_adk, column, value, message):
    path = _written(make_adk)
    _set_cell(path, 3, column, value)
    with pytest.raises(UserError) as e:
        wide_csv.read(path, SCHEMA)
    assert message in e.value.message
    assert e.value.path == str(path)
    assert e.value.field.startswith("row 3") and column in e.value.field


def test_header_problems_name_the_header(make_adk, tmp_path):
    path = _written(make_adk)
    text = path.read_text()
    (tmp_path / "no_hip.csv").write_text(text.replace("hip_x", "hipx"))
    (tmp_path / "stray.csv").write_text(text.replace("hip_v", "tail_x"))
    (tmp_path / "no_image.csv").write_text(text.replace("image,", "file,", 1))
    for name, message in [("no_hip", "missing column(s) hip_x"), ("stray", "'tail_x'"), ("no_image", "'image'")]:
        with pytest.raises(UserError) as e:
            wide_csv.read(tmp_path / f"{name}.csv", SCHEMA, images=path.parent / "images")
        assert message in e.value.message and e.value.field == "header", name


def test_ragged_rows_duplicates_and_empty_files(make_adk, tmp_path):
    path = _written(make_adk)
    lines = path.read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join([lines[0], lines[1].rsplit(",", 1)[0]]) + "\n")
    with pytest.raises(UserError) as e:
        wide_csv.read(tmp_path / "short.csv", SCHEMA, images=path.parent / "images")
    assert e.value.field == "row 2"
    (tmp_path / "dup.csv").write_text("\n".join([lines[0], lines[1], lines[1]]) + "\n")
    with pytest.raises(UserError, match="duplicate"):
        wide_csv.read(tmp_path / "dup.csv", SCHEMA, images=path.parent / "images")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        wide_csv.read(tmp_path / "empty.csv", SCHEMA)


def test_writer_refuses_nan_and_two_animals_of_one_image(make_adk, tmp_path):
    samples = adk.read(make_adk(n=2), 17)
    samples[1].keypoints[3, 1] = np.inf
    with pytest.raises(UserError, match="NaN or infinite"):
        wide_csv.write(samples, tmp_path / "x.csv", SCHEMA)
    assert not (tmp_path / "x.csv").exists()
    samples[1].keypoints[3, 1] = 5
    samples[1].image = samples[0].image.with_name(samples[0].image.name)
    samples[1].image_id = "other"
    with pytest.raises(UserError, match="one animal per image"):
        wide_csv.write(samples, tmp_path / "x.csv", SCHEMA)


def test_other_schemas_use_their_own_names(tmp_path):
    from PIL import Image

    schema = schema_from_dict({"name": "tiny", "keypoints": ["left_eye", "right_eye"]})
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    (tmp_path / "t.csv").write_text("image,left_eye_x,left_eye_y,right_eye_x,right_eye_y,score\na.png,1,2,3.5,4,0.9\n")
    (s,) = wide_csv.read(tmp_path / "t.csv", schema)
    assert s.keypoints.tolist() == [[1, 2, 2], [3.5, 4, 2]] and (s.width, s.height) == (20, 10)
