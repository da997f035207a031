"""Where the shipped configs and schemas are: `configs/` of the source tree (the package is installed editable)."""

from __future__ import annotations

from pathlib import Path


def configs_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "configs"
