"""`cattlepose train`: the run's config (a resumed or collected run remembers its own), then its folds trained
(`engine/kfold.py`) or, with `--collect`, only the report assembled from finished folds (`engine/crossval.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cattlepose.core.config import load_config
from cattlepose.core.ui import Log
from cattlepose.data.folds import parse_fold_list
from cattlepose.engine import crossval, kfold
from cattlepose.runs.rundir import CONFIG, require_run, train_line


def train_run_dir(config: Path | None, name: str | None, runs_dir: Path) -> Path:
    """RUNS_DIR/NAME, the name defaulting to the config file's stem, else `default`."""
    return runs_dir / (name or (config.stem if config else "default"))


def run_train(
    config: Path | None,
    overrides: list[str],
    name: str | None,
    folds: str | None,
    resume: bool,
    collect: bool,
    runs_dir: Path,
    log: Log,
    accept_data_change: bool = False,
) -> tuple[Path, dict[str, Any] | None]:
    """The run folder and, once every fold is done, the cross-validation report (None while folds remain)."""
    run_dir = train_run_dir(config, name, runs_dir)
    if config is None and (run_dir / CONFIG).is_file() and (resume or collect):
        config = run_dir / CONFIG  # resuming needs no -c: the run remembers its config
    if config is None and (resume or collect):
        require_run(run_dir, "--collect" if collect else "--resume")
    if collect:
        report = crossval.collect(run_dir, log=log, accept_data_change=accept_data_change)
    else:
        cfg = load_config(config, overrides)
        report = kfold.run_training(cfg, run_dir, parse_fold_list(folds, cfg.train.folds), resume=resume, log=log,
                                    accept_data_change=accept_data_change)  # fmt: skip
    if report is None:
        log.info(f"requested folds finished; run `{train_line(run_dir)} --collect` once all are done")
    return run_dir, report
