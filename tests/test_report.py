"""`cattlepose report` and the occlusion-failures notebook on a tiny trained run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cattlepose.core.config import load_config
from cattlepose.engine.kfold import run_training

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "occlusion_failures.ipynb"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from cattlepose.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("report")
    synthesize(root / "synth", n_train=24, n_test=2, seed=3)
    cfg = load_config(
        None,
        [f"data.train={root / 'synth' / 'train'}", "model.input_size=[64,64]", "train.folds=2", "train.epochs=1",
         "train.batch_size=8", "train.workers=0", "train.threads=2", "infer.batch_size=16"],
    )  # fmt: skip
    run = root / "run"
    run_training(cfg, run)
    return run


def test_report_writes_page_and_every_figure(tiny_run):
    from cattlepose.report.page import build_report

    page = build_report(tiny_run, n_worst=3)
    text = page.read_text()
    for name in ("learning_curves.png", "per_keypoint.png", "visibility.png", "occluded_fraction.png",
                 "error_vs_size.png", "swap_rates.png", "worst_00.png", "worst_02.png"):  # fmt: skip
        assert (page.parent / name).stat().st_size > 1000, name
        assert name in text
    assert "occluded" in text and "swap" in text


def test_report_headline_pck_is_cv_json_s(tiny_run):
    """One PCK definition: the report's out-of-fold PCK@0.35 is cv.json's pck_torso@0.35 for the same run."""
    from cattlepose.report.page import compute_tables, load_run_analysis

    ra = load_run_analysis(tiny_run)
    cv = json.loads((tiny_run / "cv.json").read_text())
    assert ra.pck_name == "pck_torso@0.35"
    assert compute_tables(ra)["overall_pck"] == pytest.approx(cv["overall"]["pck_torso@0.35"], abs=1e-12)
    visible = compute_tables(ra)["visibility"]["visible"]["pck@0.35"]
    assert visible == pytest.approx(cv["by_visibility"]["visible"]["pck_torso@0.35"], abs=1e-12)


def test_notebook_runs_top_to_bottom(tiny_run, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    figures = tmp_path / "figs"
    env = {"CATTLEPOSE_RUN": str(tiny_run), "CATTLEPOSE_FIGURES": str(figures), "MPLBACKEND": "Agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for name in ("learning_curves.png", "visibility.png", "per_keypoint.png", "occluded_fraction.png",
                 "error_vs_size.png", "swap_rates.png", "worst_00.png"):  # fmt: skip
        assert (figures / name).is_file(), name
