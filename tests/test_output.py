"""Output that holds up in logs and pipes: written to a file (not a terminal), every problem, note, error and table
row stays on one line with its path whole, so `grep` of the log for a file name finds it.

Paths here are made longer than 100 characters on purpose: rich wraps at 80 columns when it is not writing to a
terminal unless told otherwise.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.schema import load_schema
from cattlepose.core.ui import PLAIN_WIDTH, Log, make_console

runner = CliRunner()
LONG = "a_rather_long_folder_name_that_makes_every_path_in_this_test_longer_than_one_hundred_characters"


def _lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _adk_with_long_names(make_adk) -> tuple[Path, Path]:
    """An ADK set in a long folder whose second image has a long file name; returns (root, that image)."""
    root = make_adk(name=LONG, n=3)
    stem = "livestock_cow_keypoints_" + "0" * 40 + "9004"
    image = root / "images" / f"{stem}.jpg"
    (root / "images" / "adk_001.jpg").rename(image)
    ann = root / "annotations" / "adk_001.json"
    doc = json.loads(ann.read_text())
    doc["label_info"]["image"]["file_name"] = image.name
    (root / "annotations" / f"{stem}.json").write_text(json.dumps(doc))
    ann.unlink()
    assert len(str(image)) > 100
    return root, image


def test_data_check_to_a_log_file_keeps_each_problem_and_its_path_on_one_line(make_adk, tmp_path):
    """`cattlepose data check DIR > log 2>&1`: the truncated image's whole path is on one line of the log."""
    root, image = _adk_with_long_names(make_adk)
    _truncate(image)
    log = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    with open(log, "w") as f:
        args = [sys.executable, "-m", "cattlepose", "data", "check", str(root)]
        proc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, env=env)
    assert proc.returncode == 2
    text = log.read_text()
    (line,) = _lines_with(text, image.name)
    assert line.startswith(f"{image}: ") and "cannot read image" in line  # `path: problem`
    assert "\x1b[" not in text  # no colour codes in a file
    (err,) = _lines_with(text, "error:")
    assert err == f"error: {root}: 1 problem(s) found; see above"
    assert _lines_with(text, str(root))  # the summary table's data row holds the whole root path too


def test_plain_problems_name_their_field(make_adk):
    root = make_adk(name=LONG, n=3)
    doc = json.loads((root / "annotations" / "adk_002.json").read_text())
    doc["label_info"]["annotations"][0]["keypoints"][2] = 7  # bad visibility
    (root / "annotations" / "adk_002.json").write_text(json.dumps(doc))
    (root / "images" / "adk_000.jpg").unlink()
    result = runner.invoke(app, ["data", "check", str(root)])  # CliRunner's output is not a terminal
    assert result.exit_code == 2, result.output
    ann = root / "annotations"
    (bad_v,) = _lines_with(result.output, "adk_002.json: ")
    assert bad_v.startswith(f"{ann / 'adk_002.json'}: label_info.annotations[0].keypoints: ")
    (missing,) = _lines_with(result.output, "adk_000.json: ")
    assert missing.startswith(f"{ann / 'adk_000.json'}: label_info.image.file_name: ")
    assert "2 problem(s):" in result.output


def test_notes_are_one_line_each(fixtures_dir, tmp_path):
    root = tmp_path / LONG / "adk2021_sample"
    shutil.copytree(fixtures_dir / "adk2021_sample", root)
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0, result.output
    (note,) = _lines_with(result.output, "annotation file(s) name a file_name")
    assert note.startswith(f"note: {root / 'annotations'}: ") and note.endswith("own stem instead")


def test_user_error_is_one_line_with_the_whole_path(tmp_path):
    missing = tmp_path / LONG / "nowhere"
    result = runner.invoke(app, ["data", "check", str(missing)])
    assert result.exit_code == 2
    assert _lines_with(result.output, "error:")[0].startswith(f"error: {missing}")


def test_synth_summary_table_keeps_the_output_path_whole(tmp_path):
    out = tmp_path / LONG / "synth"
    result = runner.invoke(app, ["synth", str(out), "--n-train", "2", "--n-test", "0"])
    assert result.exit_code == 0, result.output
    assert _lines_with(result.output, str(out))  # the table's title
    assert _lines_with(result.output, "median_long_side")  # the table itself still prints


def test_validate_problems_are_path_colon_problem_lines(tmp_path):
    folder = tmp_path / LONG
    folder.mkdir()
    template, sub = folder / "sample_submission.csv", folder / "submission_with_a_long_name.csv"
    header = ["image", "fore_head_x", "fore_head_y"]
    for path, rows in ((template, [["a.jpg", 0, 0], ["b.jpg", 0, 0]]), (sub, [["a.jpg", "nan", 1]])):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    result = runner.invoke(app, ["validate", str(sub), "--template", str(template)])
    assert result.exit_code == 2, result.output
    lines = _lines_with(result.output, f"{sub}: ")
    assert any("row 2, column 'fore_head_x'" in line for line in lines)
    assert any("missing row for image 'b.jpg'" in line for line in lines)
    assert _lines_with(result.output, "error:")[0] == f"error: {sub}: 2 problem(s) in the submission"


def test_evaluate_tables_keep_both_paths_whole(make_adk, tmp_path):
    root = make_adk(name=LONG, n=2)
    names = load_schema("adk17").keypoints
    pred = tmp_path / LONG / "predictions.csv"
    with open(pred, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *[f"{k}_{c}" for k in names for c in ("x", "y")]])
        for i in range(2):
            w.writerow([f"adk_{i:03d}.jpg", *([10] * (2 * len(names)))])
    result = runner.invoke(app, ["evaluate", str(pred), str(root), "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert _lines_with(result.output, f"{pred} vs {root}")
    assert _lines_with(result.output, "fore_head")  # the per-keypoint table
    assert _lines_with(result.output, f"wrote {tmp_path / 'm.json'}")


def test_log_messages_are_literal_and_unwrapped(capsys, tmp_path):
    path = str(tmp_path / LONG / "fold[0]" / "[bold]best.pt")
    log = Log()
    log.info(f"wrote {path}")
    log.warn(f"{path}: looks odd")
    out, err = capsys.readouterr()
    assert f"wrote {path}" in out.splitlines()
    assert f"warning: {path}: looks odd" in err.splitlines()


def test_consoles_wrap_only_on_a_terminal(monkeypatch):
    class Tty:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

        def write(self, s: str) -> int:
            return len(s)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", Tty(False))
    assert make_console().width == PLAIN_WIDTH
    monkeypatch.setattr(sys, "stdout", Tty(True))
    monkeypatch.setenv("COLUMNS", "80")
    terminal = make_console()
    assert terminal.width == 80 and not terminal.soft_wrap  # a terminal keeps rich's usual layout


@pytest.mark.parametrize("plain", [True, False])
def test_check_render_shows_file_names_literally(make_adk, plain):
    from rich.console import Console

    from cattlepose.data.check import check_data, render

    root = make_adk(n=2)
    image = root / "images" / "adk_001.jpg"
    _truncate(image)
    report = check_data(root)
    report.problems[0].message = "[bold]not markup[/bold]"
    console = Console(width=PLAIN_WIDTH if plain else 250, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(report, plain=plain))
    text = console.export_text()
    console.file.close()
    assert "[bold]not markup[/bold]" in text
    assert (f"{image}: [bold]" in text) == plain


def test_plain_output_lists_every_problem_beyond_the_table_limit(tmp_path):
    from rich.console import Console

    from cattlepose.data.check import MAX_LISTED, DataReport, Problem, render

    report = DataReport(path=tmp_path, format="adk", schema=None, keypoint_names=[])
    report.problems = [Problem(str(tmp_path / f"{LONG}_{i}.json"), "label_info", "bad\nvalue") for i in range(250)]
    console = Console(width=PLAIN_WIDTH, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(report, plain=True))
    text = console.export_text()
    console.file.close()
    assert len(report.problems) > MAX_LISTED
    for i in (0, 249):
        assert f"{tmp_path / f'{LONG}_{i}.json'}: label_info: bad value" in text.splitlines()


def test_info_model_leaves_speed_to_make_bench_unless_asked():
    from typer.testing import CliRunner

    from cattlepose.cli import app

    r = CliRunner().invoke(app, ["info", "model", "-s", "model.input_size=[64,64]"])
    assert r.exit_code == 0, r.output
    assert "MACs" in r.output and "images/s" not in r.output
    r = CliRunner().invoke(app, ["info", "model", "-s", "model.input_size=[64,64]", "--measure"])
    assert r.exit_code == 0, r.output
    assert "images/s" in r.output


def test_atomic_files_get_the_modes_open_gives_not_mkstemps_0600(tmp_path):
    from cattlepose.core.files import atomic_open, atomic_path

    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "a.csv") as f:
            f.write("x\n")
        with atomic_path(tmp_path / "m.onnx") as tmp:
            tmp.write_bytes(b"model")
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o644
