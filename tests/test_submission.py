"""Submission writers round-trip through `read_predictions` and `evaluate`; the validator catches every problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema
from cattlepose.data.formats.submission import (
    csv_header,
    read_predictions,
    write_adk_json,
    write_coco_results,
    write_csv,
)
from cattlepose.data.formats.validate import validate_submission
from cattlepose.data.records import Instance, Pose

SCHEMA = load_schema("adk17")
K = SCHEMA.num_keypoints
NAMES = [f"cow_{i}.jpg" for i in range(4)]


def preds(seed: int = 0, names=NAMES, score: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for n in names:
        xy = rng.uniform(0, 75, (K, 2))
        out[n] = np.concatenate([xy, rng.uniform(0, 1, (K, 1))], axis=1) if score else xy
    return out


def poses(p: dict[str, np.ndarray], folder: str = "/data/test/images", **meta) -> list[Pose]:
    """One animal per image file name of `p`."""
    return [Pose.predicted(Instance(Path(folder) / n, meta=dict(meta)), v) if v.shape[1] == 3
            else Pose(Instance(Path(folder) / n, meta=dict(meta)), v, 1.0) for n, v in p.items()]  # fmt: skip


def by_image(read: list[Pose]) -> dict[str, np.ndarray]:
    """The keypoints read back, by the image name the file gives (one animal per image)."""
    out = {r.instance.image_id: r.keypoints for r in read}
    assert len(out) == len(read)
    return out


def write_template(path, names=NAMES, columns=None) -> None:
    columns = columns or csv_header(SCHEMA)
    rows = [",".join(columns)] + [",".join([n] + ["0"] * (len(columns) - 1)) for n in names]
    path.write_text("\n".join(rows) + "\n")


# ---------------------------------------------------------------------------------------------- writers
def test_csv_round_trip_without_template(tmp_path):
    p = preds(score=True)
    write_csv(tmp_path / "sub.csv", poses(p), SCHEMA)
    head = (tmp_path / "sub.csv").read_text().splitlines()[0].split(",")
    assert head == csv_header(SCHEMA)  # schema order, no score columns
    back = by_image(read_predictions(tmp_path / "sub.csv", SCHEMA))
    assert list(back) == NAMES
    for n in NAMES:
        assert back[n].shape == (K, 2)
        np.testing.assert_allclose(back[n], p[n][:, :2], atol=5e-4)


def test_csv_follows_the_template_columns_and_row_order(tmp_path):
    columns = ["image"] + [f"{n}_{c}" for n in reversed(SCHEMA.keypoints) for c in ("y", "x")]
    order = [NAMES[2], NAMES[0], NAMES[3], NAMES[1]]
    write_template(tmp_path / "template.csv", [n.removesuffix(".jpg") for n in order], columns)  # stems only
    p = preds()
    write_csv(tmp_path / "sub.csv", poses(p), SCHEMA, template=tmp_path / "template.csv")
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert lines[0].split(",") == columns
    assert [line.split(",")[0] for line in lines[1:]] == [n.removesuffix(".jpg") for n in order]
    first = lines[1].split(",")
    assert float(first[1]) == pytest.approx(p[NAMES[2]][K - 1, 1], abs=5e-4)  # hip_y of cow_2
    assert float(first[2]) == pytest.approx(p[NAMES[2]][K - 1, 0], abs=5e-4)
    back = by_image(read_predictions(tmp_path / "sub.csv", SCHEMA))
    for n in NAMES:
        np.testing.assert_allclose(back[n.removesuffix(".jpg")], p[n], atol=5e-4)
    assert validate_submission(tmp_path / "sub.csv", tmp_path / "template.csv", None) == []


def test_template_image_without_prediction_is_an_error_listing_them(tmp_path):
    write_template(tmp_path / "template.csv", [*NAMES, "ghost_1.jpg", "ghost_2.jpg"])
    with pytest.raises(UserError) as e:
        write_csv(tmp_path / "sub.csv", poses(preds()), SCHEMA, template=tmp_path / "template.csv")
    assert "2 template image(s)" in e.value.message and "ghost_1.jpg, ghost_2.jpg" in e.value.message
    assert e.value.path == str(tmp_path / "template.csv")
    assert not (tmp_path / "sub.csv").exists()


def test_template_with_unknown_columns_is_refused(tmp_path):
    write_template(tmp_path / "template.csv", columns=[*csv_header(SCHEMA), "tail_x"])
    with pytest.raises(UserError, match="'tail_x'"):
        write_csv(tmp_path / "sub.csv", poses(preds()), SCHEMA, template=tmp_path / "template.csv")


def test_predictions_not_in_the_template_are_left_out_with_a_warning(tmp_path):
    write_template(tmp_path / "template.csv", NAMES[:2])
    with pytest.warns(UserWarning, match="2 predicted image"):
        write_csv(tmp_path / "sub.csv", poses(preds()), SCHEMA, template=tmp_path / "template.csv")
    assert list(by_image(read_predictions(tmp_path / "sub.csv", SCHEMA))) == NAMES[:2]


def test_adk_json_round_trip(tmp_path):
    p = preds(score=True)
    write_adk_json(tmp_path / "sub.json", poses(p), SCHEMA, latency=0.0125)
    doc = json.loads((tmp_path / "sub.json").read_text())
    assert doc["latency"] == 0.0125 and [a["ID"] for a in doc["annotations"]] == [1, 2, 3, 4]
    assert doc["annotations"][0]["img_path"] == f"/data/test/images/{NAMES[0]}"
    assert np.asarray(doc["annotations"][0]["joint_self"]).shape == (K, 2)
    back = by_image(read_predictions(tmp_path / "sub.json", SCHEMA))  # format guessed from the JSON's shape
    assert list(back) == NAMES
    for n in NAMES:
        np.testing.assert_allclose(back[n], p[n][:, :2], atol=5e-4)


def test_coco_results_round_trip_with_scores(tmp_path):
    p = preds(score=True)
    boxes = [[1, 2, 30, 40], [20, 10, 50.5, 30], [0, 0, 60, 70], [5, 5, 10, 10]]
    ids = [(10, 1), (10, 2), (20, 3), (30, 4)]
    written = [Pose.predicted(Instance(Path(f"img_{i // 10}.jpg"), bbox=b, ann_id=str(j),
                                      meta={"coco_image_id": i, "category_id": 3}), v)
               for (i, j), b, v in zip(ids, boxes, p.values(), strict=True)]  # fmt: skip
    written[0].score = 0.75  # a rescored animal
    write_coco_results(tmp_path / "res.json", written)
    doc = json.loads((tmp_path / "res.json").read_text())
    assert [d["image_id"] for d in doc] == [10, 10, 20, 30] and {d["category_id"] for d in doc} == {3}
    assert [d["bbox"] for d in doc] == boxes
    assert doc[0]["score"] == 0.75
    assert doc[1]["score"] == pytest.approx(p[NAMES[1]][:, 2].mean())
    back = read_predictions(tmp_path / "res.json", SCHEMA, fmt="coco")
    # named by image id, the animals of an image numbered in file order
    named = [(r.instance.image_id, r.instance.ann_id) for r in back]
    assert named == [("10", "0"), ("10", "1"), ("20", "0"), ("30", "0")]
    assert [r.score for r in back] == [d["score"] for d in doc]
    for r, v in zip(back, p.values(), strict=True):
        np.testing.assert_allclose(r.keypoints, v, atol=5e-4)


def test_writers_refuse_nan_and_wrong_shapes(tmp_path):
    bad = preds()
    bad[NAMES[1]][3, 0] = np.nan
    with pytest.raises(UserError, match=r"cow_1\.jpg.*NaN"):
        write_csv(tmp_path / "a.csv", poses(bad), SCHEMA)
    with pytest.raises(UserError, match="shape"):
        write_adk_json(tmp_path / "a.json", poses({"x": np.zeros((3, 2))}), SCHEMA, 0.1)
    with pytest.raises(UserError, match="not finite"):
        unsure = Pose(Instance(Path("a.jpg"), bbox=[0, 0, 1, 1]), np.zeros((K, 3)), np.nan)
        write_coco_results(tmp_path / "r.json", [unsure])
    assert not any(tmp_path.iterdir())


def test_reader_names_bad_cells(tmp_path):
    write_csv(tmp_path / "sub.csv", poses(preds()), SCHEMA)
    text = (tmp_path / "sub.csv").read_text().splitlines()
    cells = text[2].split(",")
    cells[3] = "oops"  # neck_x of the second data row (row 3)
    text[2] = ",".join(cells)
    (tmp_path / "sub.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(UserError) as e:
        read_predictions(tmp_path / "sub.csv", SCHEMA)
    assert e.value.field == "row 3, column 'neck_x'"


# ---------------------------------------------------------------------------------------------- validator
SIZES = {n: (100, 80) for n in NAMES}


@pytest.fixture
def valid(tmp_path):
    write_template(tmp_path / "template.csv")
    write_csv(tmp_path / "sub.csv", poses(preds()), SCHEMA, template=tmp_path / "template.csv")
    return tmp_path / "sub.csv", tmp_path / "template.csv"


def edit(path, fn) -> None:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    fn(rows)
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")


def test_a_valid_submission_has_no_problems(valid):
    sub, template = valid
    assert validate_submission(sub, template, SIZES) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: [row.pop(3) for row in r], "header: missing column(s) neck_x"),
        (lambda r: [row.append("9") for row in r], "header: extra column(s) 9"),
        (lambda r: [row.__setitem__(slice(1, 3), row[2:0:-1]) for row in r], "different order"),
        (lambda r: r.pop(2), "missing row for image 'cow_1.jpg'"),
        (lambda r: r.append(list(r[1])), "row 6: extra row, image 'cow_0.jpg' already appears in row 2"),
        (lambda r: r.__setitem__(slice(1, 3), [r[2], r[1]]), "row 2: rows are out of order"),
        (lambda r: r[3].__setitem__(0, "stranger.jpg"), "row 4: unknown image 'stranger.jpg' (not in the template)"),
        (lambda r: r[1].__setitem__(5, "nan"), "row 2, column 'fore_spine_x': nan is not a finite number"),
        (lambda r: r[1].__setitem__(6, "-inf"), "row 2, column 'fore_spine_y': -inf is not a finite number"),
        (lambda r: r[4].__setitem__(1, "12;5"), "row 5, column 'fore_head_x': '12;5' is not a number"),
        (lambda r: r[4].__setitem__(2, ""), "row 5, column 'fore_head_y': empty cell"),
        (lambda r: r[2].__setitem__(1, "100.5"), "row 3, column 'fore_head_x': 100.5 is off the image (width 100)"),
        (lambda r: r[2].__setitem__(2, "-1"), "row 3, column 'fore_head_y': -1 is off the image (height 80)"),
        (lambda r: r[3].pop(), "row 4: has 34 cells, the header has 35"),
    ],
)
def test_each_problem_is_caught_and_named(valid, change, expected):
    sub, template = valid
    edit(sub, change)
    problems = validate_submission(sub, template, SIZES)
    assert any(expected in p for p in problems), problems


def test_unknown_images_of_the_image_folder_and_every_problem_listed(valid):
    sub, template = valid
    sizes = {n: s for n, s in SIZES.items() if n != NAMES[3]}
    problems = validate_submission(sub, None, sizes)
    assert problems == ["row 5: unknown image 'cow_3.jpg' (not in the image folder)"]
    edit(sub, lambda r: [r[1].__setitem__(j, "x") for j in (1, 2, 3)])
    problems = validate_submission(sub, template, SIZES)
    assert len(problems) == 3  # one line per bad cell, not only the first


def test_unreadable_submission_is_one_problem(tmp_path, valid):
    _, template = valid
    assert "not found" in validate_submission(tmp_path / "nope.csv", template, None)[0]


def test_cli_validate_exits_2_on_problems_and_0_when_valid(valid):
    from cattlepose.cli import app

    sub, template = valid
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(sub), "--template", str(template)])
    assert ok.exit_code == 0, ok.output
    edit(sub, lambda r: r[1].__setitem__(1, "nan"))
    bad = runner.invoke(app, ["validate", str(sub), "--template", str(template)])
    assert bad.exit_code == 2
    assert "fore_head_x" in bad.output and "1 problem(s)" in bad.output


# ---------------------------------------------------------------------------------------------- long CSV
def _animals(seed: int = 0) -> list[Pose]:
    """Two animals in cow_0.jpg, one in cow_1.jpg, with boxes, categories and box scores."""
    rng = np.random.default_rng(seed)
    found = [("cow_0.jpg", "0", [1, 2, 40, 30], "cow", 0.9), ("cow_0.jpg", "1", [30, 20, 50.5, 40], "calf", 0.5),
             ("cow_1.jpg", "0", [0, 0, 99, 79], None, None)]  # fmt: skip
    out = []
    for name, ann_id, box, category, score in found:
        kps = np.concatenate([rng.uniform(0, 75, (K, 2)), rng.uniform(0, 1, (K, 1))], axis=1)
        meta = {"category": category} if category else {}
        out.append(Pose.predicted(Instance(Path("/data") / name, box, ann_id=ann_id, score=score, meta=meta), kps))
    return out


def test_long_csv_round_trip(tmp_path):
    from cattlepose.data.formats.submission import detect_prediction_format, write_predictions

    written = _animals()
    write_predictions("long-csv", tmp_path / "p.csv", written, SCHEMA)
    head = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert head[:8] == ["image", "instance", "category", "score", "box_x", "box_y", "box_w", "box_h"]
    assert head[8:11] == ["fore_head_x", "fore_head_y", "fore_head_score"] and len(head) == 8 + 3 * K
    assert detect_prediction_format(tmp_path / "p.csv") == "long-csv"
    back = read_predictions(tmp_path / "p.csv", SCHEMA)
    for w, b in zip(written, back, strict=True):
        assert (b.instance.image_id, b.instance.ann_id) == (w.instance.image.name, w.instance.ann_id)
        assert b.instance.category == w.instance.category
        np.testing.assert_allclose(b.instance.bbox, w.instance.bbox)
        np.testing.assert_allclose(b.keypoints, w.keypoints, atol=5e-4)
        assert b.score == pytest.approx(w.score, abs=5e-5)
    assert back[0].score == pytest.approx(0.9 * written[0].keypoints[:, 2].mean(), abs=5e-5)
    assert validate_submission(tmp_path / "p.csv", None, SIZES) == []


@pytest.mark.parametrize("fmt", ["csv", "long-csv"])
def test_files_that_name_images_by_file_name_refuse_two_images_of_one_name(fmt, tmp_path):
    from cattlepose.data.formats.submission import check_writable, write_predictions

    kps = np.ones((K, 3))
    clash = [Pose.predicted(Instance(Path(d) / "cow.jpg", width=8, height=6), kps) for d in ("/farm_a", "/farm_b")]
    for check in (lambda: check_writable(fmt, [p.instance for p in clash]),
                  lambda: write_predictions(fmt, tmp_path / "p.csv", clash, SCHEMA)):  # fmt: skip
        with pytest.raises(UserError) as e:
            check()
        assert "two images share the file name 'cow.jpg' (/farm_a/cow.jpg and /farm_b/cow.jpg)" in e.value.message
    assert not (tmp_path / "p.csv").exists()
    write_predictions("coco", tmp_path / "p.json", clash, SCHEMA)  # COCO results number the images instead
    assert [d["image_id"] for d in json.loads((tmp_path / "p.json").read_text())] == [0, 1]


def test_long_csv_reader_names_a_bad_cell_and_an_animal_listed_twice(tmp_path):
    from cattlepose.data.formats.submission import write_predictions

    write_predictions("long-csv", tmp_path / "p.csv", _animals(), SCHEMA)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    (tmp_path / "a.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(UserError) as e:
        read_predictions(tmp_path / "a.csv", SCHEMA)
    assert e.value.field == "row 5" and "animal '0' of image 'cow_0.jpg' already appears in row 2" in e.value.message
    cells = lines[2].split(",")
    cells[9] = "oops"  # fore_head_y of row 3
    (tmp_path / "b.csv").write_text("\n".join([lines[0], lines[1], ",".join(cells)]) + "\n")
    with pytest.raises(UserError) as e:
        read_predictions(tmp_path / "b.csv", SCHEMA)
    assert e.value.field == "row 3, column 'fore_head_y'"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.append(list(r[1])), "row 5: animal '0' of image 'cow_0.jpg' already appears in row 2"),
        (lambda r: [row.pop(3) for row in r], "header: missing column(s) score"),
        (lambda r: [row.pop(10) for row in r], "header: keypoint 'fore_head' lacks fore_head_score"),
        (
            lambda r: r[3].__setitem__(0, "stranger.jpg"),
            "row 4: unknown image 'stranger.jpg' (not in the image folder)",
        ),
        (lambda r: r[2].__setitem__(6, "0"), "row 3, column 'box_w': the box must have a positive size"),
        (lambda r: r[1].__setitem__(8, "100.5"), "row 2, column 'fore_head_x': 100.5 is off the image (width 100)"),
        (lambda r: r[1].__setitem__(10, "high"), "row 2, column 'fore_head_score': 'high' is not a number"),
        (lambda r: r[3].pop(), "row 4: has 58 cells, the header has 59"),
    ],
)
def test_the_validator_checks_a_long_csv_on_its_own(tmp_path, change, expected):
    from cattlepose.data.formats.submission import write_predictions

    write_predictions("long-csv", tmp_path / "p.csv", _animals(), SCHEMA)
    edit(tmp_path / "p.csv", change)
    problems = validate_submission(tmp_path / "p.csv", None, SIZES)
    assert any(expected in p for p in problems), problems


def test_cli_validates_a_long_csv_without_a_template(tmp_path):
    from cattlepose.cli import app
    from cattlepose.data.formats.submission import write_predictions

    write_predictions("long-csv", tmp_path / "p.csv", _animals(), SCHEMA)
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(tmp_path / "p.csv")])
    assert ok.exit_code == 0 and "valid" in ok.output, ok.output
    write_template(tmp_path / "template.csv")
    bad = runner.invoke(app, ["validate", str(tmp_path / "p.csv"), "--template", str(tmp_path / "template.csv")])
    assert bad.exit_code == 2 and "a long CSV has a row per animal found and no template" in bad.output


# ---------------------------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("fmt", ["csv", "adk-json"])
def test_perfect_submission_files_score_one_against_adk_ground_truth(fmt, make_adk, tmp_path):
    from cattlepose.commands.evaluate import run_evaluate
    from cattlepose.data.formats import read_samples

    root = make_adk(n=3)
    samples, _ = read_samples("adk", root, "adk17")
    perfect = [Pose(s, s.keypoints[:, :2], 1.0) for s in samples]
    if fmt == "csv":
        out = tmp_path / "sub.csv"
        write_csv(out, perfect, SCHEMA)
    else:
        out = tmp_path / "sub.json"
        write_adk_json(out, perfect, SCHEMA, 0.01)
    r = run_evaluate(out, root)
    assert r["n_samples"] == 3 and r["overall"]["pck_torso@0.35"] == 1.0 and r["overall"]["oks_ap"] == 1.0


@pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")
@pytest.mark.parametrize("fmt", ["coco", "long-csv", "adk-json"])
def test_every_format_with_several_animals_per_image_pairs_them_with_the_ground_truth(fmt, make_coco, tmp_path):
    from cattlepose.commands.evaluate import run_evaluate
    from cattlepose.data.formats import read_samples
    from cattlepose.data.formats.submission import write_predictions

    gt = make_coco(n_images=2, animals=2)
    samples, schema = read_samples("coco", gt, "from_data")
    # written in reverse so the pairing has to find each animal by its keypoints
    perfect = [Pose.predicted(s, np.concatenate([s.keypoints[:, :2], np.ones((17, 1))], axis=1))
               for s in reversed(samples)]  # fmt: skip
    out = tmp_path / ("res.json" if fmt != "long-csv" else "res.csv")
    write_predictions(fmt, out, perfect, schema)
    r = run_evaluate(out, gt, schema_spec="from_data")
    assert r["n_samples"] == 4 and r["overall"]["pck_bbox@0.1"] == 1.0 and r["overall"]["rmse"] == 0
