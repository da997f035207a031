"""`check_data` / `render`: the summary of a data set and every problem in it, found in one pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from cattlepose.data.check import DataReport, check_data, render

pytestmark = pytest.mark.filterwarnings("ignore:.*no OKS sigmas:UserWarning")


def _text(report: DataReport) -> str:
    console = Console(width=250, record=True, file=open("/dev/null", "w"))  # noqa: SIM115 - closed with console
    console.print(render(report))
    text = console.export_text()
    console.file.close()
    return text


def test_adk2021_sample_summary(fixtures_dir):
    report = check_data(fixtures_dir / "adk2021_sample")
    assert report.ok and report.format == "adk" and report.schema.name == "adk17"
    assert (report.images, report.animals) == (26, 26)
    assert report.labelled == [26] * 17
    assert sum(report.occluded) == 1 and report.occluded[report.keypoint_names.index("hip")] == 1
    assert report.width_range == (52, 469) and report.height_range == (46, 323)
    assert report.farms == {"yangpyeong": 26} and report.categories == {"cattle": 26}
    notes = " ".join(report.notes)
    assert "26 placeholder box(es)" in notes and "1 annotation file(s) name a file_name" in notes
    text = _text(report)
    assert "no problems found" in text and "fore_spine" in text and "52 .. 469 px" in text
    json.dumps(report.to_dict())


@pytest.mark.parametrize("name, animals", [("ap10k", 2), ("animalpose", 2), ("horse10", 3), ("macaque", 2)])
def test_coco_fixtures_check_clean(fixtures_dir, name, animals):
    (path,) = (fixtures_dir / "coco_animal_samples" / name).glob("*.json")
    report = check_data(path, schema_spec="from_data")
    assert report.ok, report.problems
    assert report.format == "coco" and report.animals == animals
    assert len(report.labelled) == report.schema.num_keypoints


def test_every_problem_is_collected_not_just_the_first(make_adk):
    root = make_adk(n=6)
    ann = root / "annotations"
    doc = json.loads((ann / "adk_001.json").read_text())
    doc["label_info"]["annotations"][0]["keypoints"][2] = 7  # bad visibility
    (ann / "adk_001.json").write_text(json.dumps(doc))
    (root / "images" / "adk_003.jpg").unlink()  # missing image
    img = root / "images" / "adk_004.jpg"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])  # truncated: only decoding finds it
    (ann / "adk_005.json").write_text("{")  # not JSON

    report = check_data(root)
    found = sorted((p.file.split("/")[-1], p.field) for p in report.problems)
    assert found == [
        ("adk_001.json", "label_info.annotations[0].keypoints"),
        ("adk_003.json", "label_info.image.file_name"),
        ("adk_004.jpg", None),
        ("adk_005.json", None),
    ]
    assert report.animals == 3  # the good files and the truncated image's annotation are still summarised
    text = _text(report)
    assert "4 problem(s)" in text
    for name in ("adk_001.json", "adk_003.json", "adk_004.jpg", "adk_005.json"):
        assert name in text


def test_a_bad_image_shared_by_several_animals_is_one_problem(make_coco):
    path = make_coco(n_images=2, animals=3)
    (path.parent / "img_0.png").unlink()
    report = check_data(path, schema_spec="from_data")
    assert len(report.problems) == 1 and report.problems[0].field == "images[0].file_name"
    assert report.animals == 3


def test_skipped_annotations_and_outside_keypoints_are_notes_not_problems(make_coco):
    path = make_coco(n_images=1, animals=3)
    doc = json.loads(path.read_text())
    doc["annotations"][0]["iscrowd"] = 1
    doc["annotations"][1]["keypoints"][0] = 140  # x just beyond the 128 px wide image (an animal leaving it)
    path.write_text(json.dumps(doc))
    report = check_data(path, schema_spec="from_data")
    assert report.ok
    notes = " ".join(report.notes)
    assert "skipped 1 crowd" in notes and "1 labelled keypoint(s) lie outside their image" in notes
    doc["annotations"][1]["keypoints"][0] = 500  # far beyond: a typo, refused by training (data.outside)
    path.write_text(json.dumps(doc))
    report = check_data(path, schema_spec="from_data")
    assert len(report.problems) == 1 and "far outside" in report.problems[0].message


def test_a_schema_that_does_not_fit_is_a_problem_with_the_file_named(make_adk):
    report = check_data(make_adk(n=2), schema_spec="animalpose20")
    assert len(report.problems) == 1 and report.problems[0].file.endswith("adk_000.json")
    assert report.animals == 0 and "problem" in _text(report)


def test_progress_is_reported_per_image(make_adk):
    seen = []
    check_data(make_adk(n=3), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_check_names_the_shipped_schema_it_recognised(tmp_path):
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "animalpose_sheep_horse"
    if not (shared / "annotations.json").is_file():
        pytest.skip("shared sheep and horse photographs not found")
    doc = json.loads((shared / "annotations.json").read_text())
    doc["annotations"] = doc["annotations"][:5]
    doc["images"] = [i for i in doc["images"] if i["id"] in {a["image_id"] for a in doc["annotations"]}]
    path = tmp_path / "few.json"
    path.write_text(json.dumps(doc))
    report = check_data(path, schema_spec="from_data", images=shared / "images")
    assert not report.problems
    assert report.notes and report.notes[0].startswith("keypoints recognised as animalpose20")


def test_several_coco_files_are_checked_as_one_set_and_photographs_under_several_ids_noted(make_coco):
    """Two files over the same photographs (each with one of a photo's animals), and one photo listed again
    under another id: legal, noted; an animal in two files or a keypoint name matching nothing: problems."""
    path = make_coco(n_images=3, animals=2, k=5)
    doc = json.loads(path.read_text())
    a, b = path.parent / "a.json", path.parent / "b.json"
    a.write_text(json.dumps({**doc, "annotations": doc["annotations"][0::2]}))
    doc["images"].append({**doc["images"][0], "id": 77})
    b.write_text(json.dumps({**doc, "annotations": [{**x, "image_id": 77 if x["image_id"] == 10 else x["image_id"]}
                                                    for x in doc["annotations"][1::2]]}))  # fmt: skip
    report = check_data([a, b], schema_spec="from_data")
    assert report.ok, report.problems
    assert report.animals == 6 and report.images == 3 and report.more_paths == [b]
    (note,) = [n for n in report.notes if "several image ids" in n]
    assert note.startswith("3 photograph(s)") and "img_0.png (ids a/10, b/77)" in note
    assert f"{a}, {b}" in _text(report)
    doc = json.loads(b.read_text())
    doc["annotations"].append({**json.loads(a.read_text())["annotations"][1], "id": 50})  # a's animal again
    doc["categories"][0]["keypoints"][4] = "hoof"
    b.write_text(json.dumps(doc))
    report = check_data([a, b], schema_spec="from_data")
    assert [(Path(p.file).name, p.field) for p in report.problems] == [("b.json", "categories[].keypoints")]
    doc["categories"][0]["keypoints"][4] = "kp4"
    b.write_text(json.dumps(doc))
    report = check_data([a, b], schema_spec="from_data")
    assert [(Path(p.file).name, p.field) for p in report.problems] == [("b.json", "annotations[3]")]
    assert "a.json, annotations[1]" in report.problems[0].message
