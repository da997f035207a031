"""Submission writers round-trip through `read_predictions` and `evaluate`; the validator catches every problem."""

from __future__ import annotations

import json

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


def write_template(path, names=NAMES, columns=None) -> None:
    columns = columns or csv_header(SCHEMA)
    rows = [",".join(columns)] + [",".join([n] + ["0"] * (len(columns) - 1)) for n in names]
    path.write_text("\n".join(rows) + "\n")


# ---------------------------------------------------------------------------------------------- writers
def test_csv_round_trip_without_template(tmp_path):
    p = preds(score=True)
    write_csv(tmp_path / "sub.csv", p, SCHEMA)
    head = (tmp_path / "sub.csv").read_text().splitlines()[0].split(",")
    assert head == csv_header(SCHEMA)  # schema order, no score columns
    back = read_predictions(tmp_path / "sub.csv", SCHEMA)
    assert list(back) == NAMES
    for n in NAMES:
        assert back[n].shape == (K, 2)
        np.testing.assert_allclose(back[n], p[n][:, :2], atol=5e-4)


def test_csv_follows_the_template_columns_and_row_order(tmp_path):
    columns = ["image"] + [f"{n}_{c}" for n in reversed(SCHEMA.keypoints) for c in ("y", "x")]
    order = [NAMES[2], NAMES[0], NAMES[3], NAMES[1]]
    write_template(tmp_path / "template.csv", [n.removesuffix(".jpg") for n in order], columns)  # stems only
    p = preds()
    write_csv(tmp_path / "sub.csv", p, SCHEMA, template=tmp_path / "template.csv")
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert lines[0].split(",") == columns
    assert [line.split(",")[0] for line in lines[1:]] == [n.removesuffix(".jpg") for n in order]
    first = lines[1].split(",")
    assert float(first[1]) == pytest.approx(p[NAMES[2]][K - 1, 1], abs=5e-4)  # hip_y of cow_2
    assert float(first[2]) == pytest.approx(p[NAMES[2]][K - 1, 0], abs=5e-4)
    back = read_predictions(tmp_path / "sub.csv", SCHEMA)
    for n in NAMES:
        np.testing.assert_allclose(back[n.removesuffix(".jpg")], p[n], atol=5e-4)
    assert validate_submission(tmp_path / "sub.csv", tmp_path / "template.csv", None) == []


def test_template_image_without_prediction_is_an_error_listing_them(tmp_path):
    write_template(tmp_path / "template.csv", [*NAMES, "ghost_1.jpg", "ghost_2.jpg"])
    with pytest.raises(UserError) as e:
        write_csv(tmp_path / "sub.csv", preds(), SCHEMA, template=tmp_path / "template.csv")
    assert "2 template image(s)" in e.value.message and "ghost_1.jpg, ghost_2.jpg" in e.value.message
    assert e.value.path == str(tmp_path / "template.csv")
    assert not (tmp_path / "sub.csv").exists()


def test_template_with_unknown_columns_is_refused(tmp_path):
    write_template(tmp_path / "template.csv", columns=[*csv_header(SCHEMA), "tail_x"])
    with pytest.raises(UserError, match="'tail_x'"):
        write_csv(tmp_path / "sub.csv", preds(), SCHEMA, template=tmp_path / "template.csv")


def test_predictions_not_in_the_template_are_left_out_with_a_warning(tmp_path):
    write_template(tmp_path / "template.csv", NAMES[:2])
    with pytest.warns(UserWarning, match="2 predicted image"):
        write_csv(tmp_path / "sub.csv", preds(), SCHEMA, template=tmp_path / "template.csv")
    assert list(read_predictions(tmp_path / "sub.csv", SCHEMA)) == NAMES[:2]


def test_adk_json_round_trip(tmp_path):
    p = preds(score=True)
    paths = {n: f"/data/test/images/{n}" for n in NAMES}
    write_adk_json(tmp_path / "sub.json", p, SCHEMA, latency=0.0125, image_paths=paths)
    doc = json.loads((tmp_path / "sub.json").read_text())
    assert doc["latency"] == 0.0125 and [a["ID"] for a in doc["annotations"]] == [1, 2, 3, 4]
    assert doc["annotations"][0]["img_path"] == paths[NAMES[0]]
    assert np.asarray(doc["annotations"][0]["joint_self"]).shape == (K, 2)
    back = read_predictions(tmp_path / "sub.json", SCHEMA)  # format guessed from the JSON's shape
    assert list(back) == list(paths.values())  # keyed by the whole img_path: two folders may share a file name
    for n in NAMES:
        np.testing.assert_allclose(back[paths[n]], p[n][:, :2], atol=5e-4)


def test_coco_results_round_trip_with_scores(tmp_path):
    p = preds(score=True)
    keys = ["10#1", "10#2", "20#3", "30#4"]
    by_key = dict(zip(keys, p.values(), strict=True))
    ids = {k: int(k.split("#")[0]) for k in keys}
    write_coco_results(tmp_path / "res.json", by_key, ids, category_id=3, scores={"10#1": 0.75})
    doc = json.loads((tmp_path / "res.json").read_text())
    assert [d["image_id"] for d in doc] == [10, 10, 20, 30] and {d["category_id"] for d in doc} == {3}
    assert doc[0]["score"] == 0.75
    assert doc[1]["score"] == pytest.approx(p[NAMES[1]][:, 2].mean())
    back = read_predictions(tmp_path / "res.json", SCHEMA, fmt="coco")
    assert list(back) == ["10#0", "10#1", "20#0", "30#0"]  # <image id>#<n-th detection of that image>
    for k, v in zip(back, p.values(), strict=True):
        np.testing.assert_allclose(back[k], v, atol=5e-4)


def test_writers_refuse_nan_and_wrong_shapes(tmp_path):
    bad = preds()
    bad[NAMES[1]][3, 0] = np.nan
    with pytest.raises(UserError, match=r"cow_1\.jpg.*NaN"):
        write_csv(tmp_path / "a.csv", bad, SCHEMA)
    with pytest.raises(UserError, match="shape"):
        write_adk_json(tmp_path / "a.json", {"x": np.zeros((3, 2))}, SCHEMA, 0.1, {"x": "x"})
    with pytest.raises(UserError, match="image id"):
        write_coco_results(tmp_path / "r.json", preds(), {})
    assert not any(tmp_path.iterdir())


def test_reader_names_bad_cells(tmp_path):
    write_csv(tmp_path / "sub.csv", preds(), SCHEMA)
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
    write_csv(tmp_path / "sub.csv", preds(), SCHEMA, template=tmp_path / "template.csv")
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


# ---------------------------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("fmt", ["csv", "adk-json"])
def test_perfect_submission_files_score_one_against_adk_ground_truth(fmt, make_adk, tmp_path):
    from cattlepose.data.formats import read_samples
    from cattlepose.engine.evaluate import run_evaluate

    root = make_adk(n=3)
    samples, _ = read_samples("adk", root, "adk17")
    by_name = {s.image.name: s.keypoints[:, :2] for s in samples}
    if fmt == "csv":
        out = tmp_path / "sub.csv"
        write_csv(out, by_name, SCHEMA)
    else:
        out = tmp_path / "sub.json"
        write_adk_json(out, by_name, SCHEMA, 0.01, {s.image.name: str(s.image) for s in samples})
    r = run_evaluate(out, root)
    assert r["n_samples"] == 3 and r["overall"]["pck_torso@0.35"] == 1.0 and r["overall"]["oks_ap"] == 1.0


@pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")
def test_coco_results_pair_several_animals_per_image(make_coco, tmp_path):
    from cattlepose.data.formats import read_samples
    from cattlepose.engine.evaluate import run_evaluate

    gt = make_coco(n_images=2, animals=2)
    samples, _ = read_samples("coco", gt, "from_data")
    # written in reverse so the pairing has to find each animal by its keypoints
    by_key = {s.key: np.concatenate([s.keypoints[:, :2], np.ones((17, 1))], axis=1) for s in reversed(samples)}
    ids = {s.key: int(s.meta["coco_image_id"]) for s in samples}
    write_coco_results(tmp_path / "res.json", by_key, ids)
    r = run_evaluate(tmp_path / "res.json", gt, schema_spec="from_data")
    assert r["n_samples"] == 4 and r["overall"]["pck_bbox@0.1"] == 1.0 and r["overall"]["rmse"] == 0
