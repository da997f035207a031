"""`cattlepose report` and the occlusion-failures notebook on a tiny trained run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cattlepose.config import load_config
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
    from cattlepose.report import build_report

    page = build_report(tiny_run, n_worst=3)
    text = page.read_text()
    for name in ("learning_curves.png", "per_keypoint.png", "visibility.png", "occluded_fraction.png",
                 "error_vs_size.png", "swap_rates.png", "worst_00.png", "worst_02.png"):  # fmt: skip
        assert (page.parent / name).stat().st_size > 1000, name
        assert name in text
    assert "occluded" in text and "swap" in text


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
