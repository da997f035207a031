"""Faults while files are written, interrupts, and exported files checked by content (issue #39, items 6 and 8,
and its minor points), in the style of tests/test_bad_input.py's catalogue: each case asserts the exit code, the
file or key in the message, no traceback, no file that existed before changed, and no temporary file left.

A full disk is made two ways: the writer replaced by one that writes part of the file and then fails as a full
disk does (torch.save's RuntimeError, or OSError ENOSPC), and a real limit on the size of any file the process
writes (RLIMIT_FSIZE, which any user may lower: the kernel then refuses the write with EFBIG) in a subprocess.
"""

# ruff: noqa: F811
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_path
from conftest import csv_rows

# the catalogue's tiny trained run and its helpers; its fixtures, imported, are this module's too (so the
# names below are fixtures, not redefinitions)
from test_bad_input import TINY, _advice, _fails, _predict_args, _sets, _snapshot, run, tiny_data, trained  # noqa: F401

runner = CliRunner()
RUNTIME_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"  # torch.save, disk full


def _leftovers(*roots: Path) -> list[Path]:
    """Temporary files and folders any writer of the project leaves when it does not clean up (`.NAME.*`)."""
    return [p for root in roots for p in root.rglob(".*") if not p.name.endswith(".lock")]


def _interrupted(r, code: int, *named: str) -> str:
    text = r.output.replace("\n", "")
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output, r.output
    assert "interrupted (SIG" in text, r.output
    for n in named:
        assert n in text, (n, r.output)
    return text


def _train_args(data: Path, runs: Path, *extra: str) -> list[str]:
    return ["train", *_sets(*TINY, f"data.train={data / 'train'}", *extra), "--name", "r", "--runs-dir", str(runs),
            "--folds", "0", "-q"]  # fmt: skip


class _FailingSave:
    """torch.save that works `ok` times, then writes part of the file and fails as on a full disk; it records
    the checkpoint it was replacing (its bytes before the failure) to compare afterwards."""

    def __init__(self, ok: int, error: BaseException | None = None, sig: int | None = None):
        self.ok, self.error, self.sig = ok, error, sig
        self.real = torch.save
        self.calls = 0
        self.target: Path | None = None
        self.before: bytes | None = None

    def __call__(self, obj, f, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.ok:
            return self.real(obj, f, *args, **kwargs)
        by_path = isinstance(f, (str, os.PathLike))
        tmp = Path(f if by_path else f.name)
        self.target = tmp.parent / tmp.name[1:].split(".tmp")[0].rsplit(".", 1)[0]  # .last.pt.abc123.tmp
        self.before = self.target.read_bytes() if self.target.is_file() else None
        if by_path:
            tmp.write_bytes(b"PK\x03\x04 half a checkpoint")
        else:
            f.write(b"PK\x03\x04 half a checkpoint")
        if self.sig is not None:
            os.kill(os.getpid(), self.sig)
            time.sleep(5)  # the handler raises here
            raise AssertionError("the signal did not interrupt the save")
        raise self.error


# ------------------------------------------------------------------------------------------ item 8: full disk
@pytest.mark.parametrize(
    "error, words",
    [(OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
     (RuntimeError(RUNTIME_FULL), "the writer stopped")],
    ids=["oserror", "torch-runtimeerror"],
)  # fmt: skip
def test_a_full_disk_while_a_checkpoint_is_saved_is_exit_2_and_keeps_the_previous_file(
    tiny_data, tmp_path, monkeypatch, error, words
):
    runs = tmp_path / "runs"
    save = _FailingSave(ok=2, error=error)  # epoch 1 saves best.pt and last.pt; epoch 2's first save fails
    monkeypatch.setattr(torch, "save", save)
    text = _fails(_train_args(tiny_data, runs, "train.epochs=2"), "fold0/", words, unchanged=(tiny_data,))
    assert save.target is not None and str(save.target) in text
    assert save.target.read_bytes() == save.before  # the previous checkpoint is whole
    assert "an earlier version stays whole" in text
    assert not _leftovers(runs)


def _limited(max_bytes: int):
    def limit() -> None:  # in the child, before exec: any file it writes stops at max_bytes (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cattlepose", *args]


def test_a_real_file_size_limit_while_training_is_exit_2_naming_the_checkpoint(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    r = subprocess.run(_cli(*_train_args(tiny_data, runs)), env=env, capture_output=True, text=True, timeout=300,
                       preexec_fn=_limited(200_000))  # fmt: skip
    err = r.stderr.replace("\n", "")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert str(runs / "r" / "fold0" / "best.pt") in err and "File too large" in err, r.stderr
    assert not (runs / "r" / "fold0" / "best.pt").exists()
    assert not _leftovers(runs)


def test_a_real_file_size_limit_during_export_names_the_onnx_and_keeps_the_previous_pair(run, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous model")
    out.with_suffix(".json").write_text("{}")
    before = _snapshot(run, out, out.with_suffix(".json"))
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    r = subprocess.run(_cli("export", str(run), "-o", str(out), "-q"), env=env, capture_output=True, text=True,
                       timeout=300, preexec_fn=_limited(200_000))  # fmt: skip
    err = r.stderr.replace("\n", "")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{out}: cannot write the file (File too large" in err, r.stderr
    assert _snapshot(run, out, out.with_suffix(".json")) == before
    assert not _leftovers(tmp_path)


def test_a_full_disk_writing_the_sidecar_names_the_sidecar(run, tmp_path, monkeypatch):
    from pathlib import Path as P

    out = tmp_path / "m.onnx"
    real = P.write_text

    def full(self, *a, **k):
        if self.name.startswith(".m.json."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(P, "write_text", full)
    _fails(["export", str(run), "-o", str(out), "-q"], f"{out.with_suffix('.json')}: cannot write",
           "No space left", unchanged=(run,))  # fmt: skip
    assert not out.exists() and not out.with_suffix(".json").exists()  # the pair or nothing
    assert not _leftovers(tmp_path)


def test_a_write_failure_that_is_a_bug_keeps_its_traceback_and_still_cleans_up(tmp_path):
    target = tmp_path / "a.pt"
    with pytest.raises(RuntimeError, match="a bug"), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("a bug, not the disk")
    with pytest.raises(UserError, match=r"a\.pt: cannot write the file \(the writer stopped"), atomic_path(target):
        raise RuntimeError(RUNTIME_FULL)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ item 8: interrupts
def test_sigterm_during_a_checkpoint_save_leaves_no_temporary_file_and_the_advised_resume_works(
    tiny_data, tmp_path, monkeypatch
):
    runs = tmp_path / "runs"
    save = _FailingSave(ok=2, sig=signal.SIGTERM)
    monkeypatch.setattr(torch, "save", save)
    handler = signal.getsignal(signal.SIGINT)
    r = runner.invoke(app, _train_args(tiny_data, runs, "train.epochs=2"), env={"COLUMNS": "400"})
    text = _interrupted(r, 143, "SIGTERM", "--resume")
    assert save.target is not None and save.target.read_bytes() == save.before
    assert not _leftovers(runs)
    assert signal.getsignal(signal.SIGINT) is handler  # the command's handlers are gone again
    monkeypatch.setattr(torch, "save", save.real)
    r = runner.invoke(app, [*_advice(text), "-q"])
    assert r.exit_code == 0, r.output
    assert (runs / "r" / "fold0" / "done.json").is_file()
    assert len(csv_rows(runs / "r" / "fold0" / "history.csv")) == 2


def test_a_signal_while_a_temporary_file_is_created_or_renamed_waits_for_the_end_of_that_step(tmp_path):
    from cattlepose.core.signals import Interrupted, held, interrupts_raise

    steps = []
    with pytest.raises(Interrupted) as e, interrupts_raise():
        with held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # Python runs the handler here: it waits
            steps.append("held step done")
        steps.append("after")
    assert steps == ["held step done"] and e.value.exit_code == 143
    with pytest.raises(Interrupted), interrupts_raise(), atomic_path(tmp_path / "a.pt") as tmp:
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_predict_writes_nothing_and_says_so(run, tiny_data, tmp_path, monkeypatch, sig, code):
    from cattlepose.commands import predict

    def interrupted(*a, **k):
        os.kill(os.getpid(), sig)
        time.sleep(5)
        raise AssertionError("not interrupted")

    monkeypatch.setattr(predict, "predict_samples", interrupted)
    out = tmp_path / "sub.csv"
    out.write_text("the previous submission\n")
    before = _snapshot(run, tmp_path)
    r = runner.invoke(app, _predict_args(run, tiny_data, out), env={"COLUMNS": "400"})
    _interrupted(r, code, signal.Signals(sig).name, "nothing was written", "rerun")
    assert _snapshot(run, tmp_path) == before
    assert not _leftovers(tmp_path)


def test_an_interrupted_export_keeps_the_previous_pair_and_leaves_no_temporary_file(run, tmp_path, monkeypatch):
    from cattlepose.engine import export

    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous model")
    out.with_suffix(".json").write_text("{}")
    real = export.to_onnx

    def interrupted(graph, path, *a, **k):
        real(graph, path, *a, **k)  # the temporary file is written whole, then the signal comes
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    monkeypatch.setattr(export, "to_onnx", interrupted)
    before = _snapshot(run, tmp_path)
    r = runner.invoke(app, ["export", str(run), "-o", str(out), "-q", "--int8", "--calibration", "2"])
    _interrupted(r, 130, "SIGINT", "nothing was written")
    assert _snapshot(run, tmp_path) == before
    assert not _leftovers(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_a_training_process_prints_the_resume_line_and_the_resume_finishes(tiny_data, tmp_path, sig, code):
    from conftest import kill_after_rows

    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    args = _cli(*_train_args(tiny_data, runs, "train.epochs=4"))
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    kill_after_rows(proc, runs / "r" / "fold0" / "history.csv", 1, lambda: proc.send_signal(sig))
    err = proc.stderr.read()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"interrupted ({signal.Signals(sig).name})" in lines[0], err
    assert not _leftovers(runs)
    resume = _advice(lines[0])
    assert resume == ["train", "--name", "r", "--runs-dir", str(runs), "--resume", "--folds", "0"]
    r = runner.invoke(app, [*resume, "-q"])
    assert r.exit_code == 0, r.output
    assert len(csv_rows(runs / "r" / "fold0" / "history.csv")) == 4


# ------------------------------------------------------------------------------------------ item 6: ONNX by content
@pytest.fixture
def exported(run, tmp_path) -> Path:
    out = tmp_path / "onnx" / "m.onnx"
    r = runner.invoke(app, ["export", str(run), "-o", str(out), "-q", "--folds", "0"])
    assert r.exit_code == 0, r.output
    return out


def _onnx_predict(run: Path, data: Path, onnx: Path, out: Path) -> list[str]:
    return [*_predict_args(run, data, out), "--backend", "onnx", "--onnx", str(onnx)]


def test_another_exports_onnx_under_this_sidecar_is_exit_2_and_the_advice_works(run, tiny_data, exported, tmp_path):
    other = tmp_path / "other.onnx"
    r = runner.invoke(app, ["export", str(run), "-o", str(other), "-q", "--folds", "1"])
    assert r.exit_code == 0, r.output
    shutil.copyfile(other, exported)  # fold 1's graph under fold 0's sidecar: same sizes, other weights
    out = tmp_path / "sub.csv"
    text = _fails(_onnx_predict(run, tiny_data, exported, out), str(exported), "field 'graph_sha256'",
                  "not the graph its sidecar", unchanged=(run, exported.parent))  # fmt: skip
    assert not out.exists()
    advice = _advice(text)
    assert advice == ["export", str(run), "-o", str(exported), "--folds", "0"]
    assert runner.invoke(app, [*advice, "-q"]).exit_code == 0
    r = runner.invoke(app, _onnx_predict(run, tiny_data, exported, out))
    assert r.exit_code == 0, r.output


def test_an_export_older_than_the_runs_weights_is_exit_2(run, tiny_data, exported, tmp_path):
    best = run / "fold0" / "best.pt"
    state = torch.load(best, weights_only=True)
    next(iter(state["model"].values())).add_(0.01)  # retrained: other weights in the same place
    torch.save(state, best)
    out = tmp_path / "sub.csv"
    text = _fails(_onnx_predict(run, tiny_data, exported, out), str(exported.with_suffix(".json")),
                  "field 'checkpoints'", str(best), unchanged=(run, exported.parent))  # fmt: skip
    assert not out.exists()
    assert runner.invoke(app, [*_advice(text), "-q"]).exit_code == 0
    assert runner.invoke(app, _onnx_predict(run, tiny_data, exported, out)).exit_code == 0


def test_another_runs_pair_and_an_older_sidecar_are_refused(run, tiny_data, exported, tmp_path):
    sidecar = exported.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    out = tmp_path / "sub.csv"
    # the pair of a run with the same settings and other weights: its checkpoints differ from this run's
    sidecar.write_text(json.dumps({**info, "checkpoints": {"0": "0" * 64}}))
    _fails(_onnx_predict(run, tiny_data, exported, out), "field 'checkpoints'", "another run", unchanged=(run,))
    # a sidecar from before fingerprints
    old = {k: v for k, v in info.items() if k not in ("graph_sha256", "checkpoints")}
    sidecar.write_text(json.dumps({**old, "format": "cattlepose-onnx/1"}))
    _fails(_onnx_predict(run, tiny_data, exported, out), "field 'format'", "cattlepose-onnx/1", "export again",
           unchanged=(run,))  # fmt: skip
    assert not out.exists()
    # a deployment with the run's config and not its weights: predicted, with a warning that says what is unchecked
    sidecar.write_text(json.dumps(info))
    (run / "fold0" / "best.pt").unlink()
    r = runner.invoke(app, _onnx_predict(run, tiny_data, exported, out), env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert "cannot be checked against the run's weights" in r.output.replace("\n", "") and out.is_file()


# ------------------------------------------------------------------------------------------ minor points
def _relative_run(run: Path, tiny_data: Path, project: Path, train: str = "data/train") -> Path:
    """The run as trained from `project` with `-s data.train=data/train`: a relative path in its config."""
    if train == "data/train":
        shutil.copytree(tiny_data / "train", project / "data" / "train")
    moved = project / "runs" / "t"
    shutil.copytree(run, moved)
    cfg = moved / "config.yaml"
    lines = cfg.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.strip().startswith("train: /"))
    lines[i] = lines[i].split("train:")[0] + f"train: {train}"
    cfg.write_text("\n".join(lines) + "\n")
    return moved


def test_export_int8_finds_relative_data_where_the_run_recorded_it(run, tiny_data, tmp_path, monkeypatch):
    """Trained from the data's parent folder with `-s data.train=train`; the run lies elsewhere: data.json's
    record of where the files were tells the folder the path was relative to."""
    moved = _relative_run(run, tiny_data, tmp_path / "project", train="train")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "q.onnx"
    r = runner.invoke(app, ["export", str(moved), "-o", str(out), "--int8", "--calibration", "2", "--folds", "0"])
    assert r.exit_code == 0, r.output
    assert f"relative to {tiny_data}," in r.output.replace("\n", "")


def test_export_int8_from_another_folder_reads_the_runs_relative_data(run, tiny_data, tmp_path, monkeypatch):
    moved = _relative_run(run, tiny_data, tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "q.onnx"
    r = runner.invoke(app, ["export", str(moved), "-o", str(out), "--int8", "--calibration", "2", "--folds", "0"])
    assert r.exit_code == 0, r.output
    assert f"relative to {tmp_path / 'project'}" in r.output.replace("\n", "")
    assert json.loads(out.with_suffix(".json").read_text())["calibration_images"] == 2
    assert not list(elsewhere.iterdir())  # nothing generated or written where the command ran


def test_export_int8_with_relative_data_found_nowhere_says_what_to_do(run, tiny_data, tmp_path, monkeypatch):
    moved = _relative_run(run, tiny_data, tmp_path / "project")
    shutil.rmtree(tmp_path / "project" / "data")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "q.onnx"
    _fails(["export", str(moved), "-o", str(out), "--int8", "--folds", "0", "-q"], str(moved / "config.yaml"),
           "field 'data.train'", "data/train is relative to the folder the run was trained from",
           unchanged=(moved,))  # fmt: skip
    assert not out.exists() and not _leftovers(tmp_path / "runs")


def test_one_unfindable_first_image_is_reported_alone(make_coco):
    path = make_coco(n_images=3, animals=1)
    images = path.parent / "images"  # images in a folder beside the file, found by probing
    images.mkdir()
    for p in path.parent.glob("img_*.png"):
        p.rename(images / p.name)
    (images / "img_0.png").unlink()
    r = runner.invoke(app, ["data", "check", str(path), "--schema", "from_data"], env={"COLUMNS": "400"})
    assert r.exit_code == 2, r.output
    problems = [ln for ln in r.output.splitlines() if "image not found" in ln]
    assert len(problems) == 1 and "img_0.png" in problems[0], r.output


def test_control_characters_in_a_file_name_are_printed_escaped(make_coco, tmp_path):
    path = make_coco(n_images=2, animals=1)
    doc = json.loads(path.read_text())
    doc["images"][0]["file_name"] = "img\u0000\u001b[31m.png"
    path.write_text(json.dumps(doc))
    text = _fails(["data", "check", str(path), "--schema", "from_data"], "img\\x00\\x1b[31m.png")
    assert "\x00" not in text and "\x1b" not in text
    e = UserError("image not found: a\x00b\r\nc", path="x\ty.json", field="images[0]\x07")
    assert str(e) == "x\\ty.json, field 'images[0]\\x07': image not found: a\\x00b\\r\nc"
