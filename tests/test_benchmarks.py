"""The benchmark scripts, run on the CPU at a tiny size: they must work when someone runs `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_says_so_and_exits_0_without_cuda():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    assert out.returncode == 0 and "no CUDA device" in out.stdout


def test_bench_gpu_prints_each_row_as_it_is_measured(tmp_path):
    """The CPU rehearsal (`--device cpu --compile-backend aot_eager`): the first row reaches the reader while the
    script is still measuring, so a run cut short by a time limit keeps what it measured."""
    cmd = [sys.executable, "-u", str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--config",
           str(ROOT / "configs" / "default.yaml"), "--steps", "1", "--variants", "eager,regional",
           "--skip", "loader,train,predict", "-s", "train.batch_size=2", "-s", "model.input_size=[32,32]",
           "--compile-backend", "aot_eager"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    rows, running_at_first_row = [], None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("| network step"):
            if running_at_first_row is None:
                running_at_first_row = proc.poll() is None
            rows.append(line)
    assert proc.wait(timeout=600) == 0
    assert running_at_first_row, "the first row came only when the script had ended"
    names = [r.split("|")[1].strip() for r in rows]
    assert names == [f"network step, PSA {p}, {v}" for v in ("eager", "regional") for p in ("none", "parallel")]
    assert all("s compiling" in r for r in rows[2:])  # each compiled variant says how long it compiled


@pytest.mark.slow
def test_bench_gpu_script_runs_end_to_end_on_cpu(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--config",
           str(ROOT / "configs" / "default.yaml"), "--images", "48", "--steps", "1", "--epochs", "2", "--folds", "2",
           "-s", "train.batch_size=8", "-s", "model.input_size=[64,64]", "-s", "train.threads=2",
           "--compile-backend", "aot_eager", "--variants", "eager,regional", "--predict-compile", "auto"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[1:]]
    for wanted in ("network step, PSA parallel, regional", "training loader alone", "one item: augment",
                   "cattlepose train (default.yaml, PSA parallel, compile on)", "PSA ÷ none, cattlepose train, "
                   "compile on", "predict, 2 folds + flip, 48 crops, compile auto"):  # fmt: skip
        assert wanted in names, names
    values = {n: line.split("|")[2].strip() for n, line in zip(names, table[1:], strict=True)}
    assert float(values["training loader alone"].replace(",", "")) > 0


CPU_BENCHMARKS = {
    "bench_backbones.py": (
        ["--sizes", "64", "--rounds", "1", "--batch", "2", "--variants", "lite0"],
        "| 64² | lite0 |",
    ),
    "bench_predict.py": (["--images", "16", "--rounds", "1"], "pipeline / bare"),
    "bench_export.py": (
        [
            "--untrained",
            "--images",
            "4",
            "--rounds",
            "1",
            "--train-images",
            "4",
            "-s",
            "model.input_size=[64,64]",
            "-s",
            "train.folds=2",
        ],
        "int8 / fp32",
    ),
    "bench_model.py": (["--rounds", "1"], "goals of the default, parallel"),
    "bench_loader.py": (["--images", "40", "--steps", "1"], "ratio loader / train"),
    "bench_synth.py": (["--n-train", "8", "--n-test", "8"], "mean pose"),
    "bench_fingerprint.py": (["--synthetic", "8", "--rounds", "1"], "fingerprint first start / decoding"),
    "bench_gait.py": (["--animals", "6", "--seconds", "3", "--noise", "0,3"], "| noise px | strides |"),
    "bench_sides.py": (["--animals", "3", "--seconds", "3", "--noise", "0"], "| noise px | hooves kept on"),
    "bench_smoothing.py": (
        ["--animals", "2", "--seconds", "1", "--noise", "0,3", "--grid"],
        "| min_cutoff Hz | beta | d_cutoff Hz | score |",
    ),
    "bench_compile.py": (
        ["--mode", "block", "--backend", "aot_eager", "--config", "configs/default.yaml", "--size", "32"],
        "| block |",
    ),
    "bench_augment.py": (["--before", "HEAD", "--crops", "4", "--rounds", "1"], "| this tree |"),
    "bench_psa_ops.py": (["--channels", "8", "--size", "8", "--batch", "2", "--rounds", "1"], "| parallel | after |"),
}


SLOW_BENCHMARKS = {"bench_psa_ops.py"}  # compiles PSA blocks with inductor's C++ backend: minutes here


@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_BENCHMARKS else s for s in sorted(CPU_BENCHMARKS)]
)
def test_make_bench_scripts_run_at_a_tiny_size(script, tmp_path):
    """`make bench` runs every benchmarks/bench_*.py; each must finish and print its ratio line."""
    args, wanted = CPU_BENCHMARKS[script]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "2"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert wanted in out.stdout, out.stdout[-3000:]


def _transfer():
    """benchmarks/transfer.py as a module (the benchmarks folder is not a package)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import transfer
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return transfer


def _finished_run(runs: Path, name: str, epochs: int, ap: float) -> None:
    fold = runs / name / "fold1"
    fold.mkdir(parents=True)
    rows = ["epoch,seconds,val_pck_bbox@0.1,val_oks_ap"]
    rows += [f"{e},10.0,," for e in range(1, epochs)] + [f"{epochs},10.0,{ap + 0.3},{ap}"]
    (fold / "history.csv").write_text("\n".join(rows) + "\n")
    (fold / "done.json").write_text("{}")


def test_transfer_groups_each_budget_under_its_variant_and_plots_them(tmp_path):
    transfer = _transfer()
    runs = tmp_path / "runs"
    for name, epochs, ap in [("recipe_b5", 27, 0.43), ("recipe_b1", 9, 0.32), ("recipe_horse_b5", 27, 0.50),
                             ("recipe_horse_b1", 9, 0.46), ("recipe_cattle_b5", 27, 0.44),
                             ("recipe_horse_bb0.3_b5", 27, 0.48), ("default_b1", 9, 0.2)]:  # fmt: skip
        _finished_run(runs, name, epochs, ap)
    (runs / "recipe_b15" / "fold1").mkdir(parents=True)  # unfinished: no done.json
    recipe = transfer.variant_runs(runs, "recipe", 1, "horse")
    assert [(r["epochs"], r["oks_ap"]) for r in recipe] == [(9, 0.32), (27, 0.43)]
    assert [r["oks_ap"] for r in transfer.variant_runs(runs, "recipe+horse", 1, "horse")] == [0.46, 0.5]
    assert recipe[1]["minutes"] == pytest.approx(27 * 10 / 60) and recipe[1]["pck_bbox@0.1"] == pytest.approx(0.73)
    png = tmp_path / "curve.png"
    transfer.plot_budgets(png, runs, ["default", "recipe", "recipe+horse"], 1, "horse")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_transfer_refuses_a_finished_run_of_other_settings_and_reuses_an_equal_one(tmp_path, make_coco, capfd):
    """A pretraining run is shared by every command naming it: one of 10 epochs must not stand in for 20."""
    from cattlepose.core.config import dump_config, load_config

    transfer = _transfer()
    data = make_coco(n_images=4, animals=1)
    config = ROOT / "configs" / "real_small_cpu.yaml"
    sets = [f"data.train={data}", "data.format=coco", "train.folds=2", "train.epochs=10"]
    run = tmp_path / "runs" / "pretrain_species"
    (run / "fold0").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(load_config(config, sets)))
    (run / "fold0" / "done.json").write_text("{}")
    assert transfer.train("pretrain_species", config, tmp_path / "runs", 0, sets) == run  # trains nothing
    assert not (run / "fold0" / "last.pt").exists()
    with pytest.raises(SystemExit) as stop:
        transfer.train("pretrain_species", config, tmp_path / "runs", 0, [*sets, "train.epochs=20"])
    err = capfd.readouterr().err
    assert stop.value.code == 2 and "train.epochs (10 in the run, 20 now)" in err and "disagrees with this" in err
    assert load_config(run / "config.yaml").train.epochs == 10


def _truth_as_tracks(truth, swap_at: int | None = None):
    """The truth's keypoints as `cattlepose video` tracks (score 1); with `swap_at`, the first two animals'
    identities exchanged from that frame on (two identity switches)."""
    import numpy as np

    from cattlepose.data.formats.tracks_csv import VideoTrack

    per_frame: dict[int, dict[int, np.ndarray]] = {}
    for t in truth.tracks.values():
        for f, kp in zip(t.frames, t.keypoints, strict=True):
            per_frame.setdefault(int(f), {})[t.track] = np.concatenate([kp[:, :2], np.ones((len(kp), 1))], axis=1)
    ids = sorted(truth.tracks)
    tracks = []
    for tid in ids:
        other = ids[1] if tid == ids[0] else ids[0] if tid == ids[1] else tid
        rows = {f: a[other if swap_at is not None and f >= swap_at else tid] for f, a in per_frame.items()
                if (other if swap_at is not None and f >= swap_at else tid) in a}  # fmt: skip
        first, last = min(rows), max(rows)
        raw = np.full((last - first + 1, len(truth.keypoints), 3), np.nan)
        for f, kp in rows.items():
            raw[f - first] = kp
        tracks.append(VideoTrack(tid, first, raw, raw.copy(), np.zeros(len(raw), bool)))
    return tracks


def test_video_e2e_scores_the_truth_as_perfect_and_a_swap_as_switches(tmp_path):
    """benchmarks/video_e2e.py's scoring: the truth written as tracks scores IDF1 1, no switch, no error, and
    its gait finds each animal's stride; the same tracks with two identities swapped half-way do not."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from video_e2e import score_video
    finally:
        sys.path.pop(0)
    from cattlepose.data.formats.tracks_csv import write_tidy
    from cattlepose.data.synth_video import read_truth, synthesize_video

    synthesize_video(tmp_path / "walk", animals=2, seconds=5.0, seed=3)
    truth = read_truth(tmp_path / "walk" / "truth.json")
    for swap in (None, truth.frames // 2):
        csv_path = tmp_path / f"tracks{swap}.csv"
        write_tidy(csv_path, "walk", truth.fps, _truth_as_tracks(truth, swap), truth.keypoints)
        r = score_video(truth.path, csv_path, min_visible=9, match=0.25)
        ids = r["ids"]
        if swap is None:
            assert ids["idf1"] == 1.0 and ids["id_switches"] == 0 and ids["gt"] > 0
            assert max(r["err_raw"]) == 0 and max(r["err_smooth"]) == 0
            for a in r["animals"]:  # gait from the true keypoints: the true stride duration
                assert abs(a["stride_s"] / a["true_stride_s"] - 1) < 0.05, a
                assert abs(a["back_arch_bl"] - a["back_line"]) < 0.003, a  # the drawn back line, measured
        else:
            assert ids["id_switches"] >= 1 and ids["idf1"] < 0.9
