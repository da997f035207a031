"""Where the shipped configs and schemas are: in the source tree, or bundled inside an installed wheel."""

from __future__ import annotations

from pathlib import Path


def configs_dir() -> Path:
    bundled = Path(__file__).parent / "_configs"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parents[2] / "configs"
