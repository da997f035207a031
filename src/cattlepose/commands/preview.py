"""`cattlepose preview-aug`: a grid of augmented training crops of the config's data."""

from __future__ import annotations

from pathlib import Path

from cattlepose.core.config import load_config
from cattlepose.core.ui import Log
from cattlepose.data.source import load_training_data
from cattlepose.report.preview import preview_augmentations


def run_preview(config: Path | None, overrides: list[str], n: int, out: Path, log: Log) -> None:
    cfg = load_config(config, overrides)
    samples, schema = load_training_data(cfg, log)
    preview_augmentations(cfg, samples, schema, n, out)
    log.info(f"wrote {out}")
