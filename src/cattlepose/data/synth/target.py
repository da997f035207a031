"""The checks every synthetic set writer (`synth`, `synth-herd`) makes before it draws anything: the sizes, the
occlusion level, and an output folder that is empty or holds only what the same command wrote earlier."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cattlepose.core.errors import UserError


def check_target(out: Path, n_train: int, n_test: int, occlusion: float, foreign: Callable[[], list[str]],
                 command: str) -> None:  # fmt: skip
    """Refuse bad sizes, a bad occlusion level, and an output that is a file or holds files `command` did not
    write (`foreign` lists them; it is called only once `out` is known to be a folder or absent)."""
    if n_train < 1 or n_test < 0:
        raise UserError("need at least one training image and a non-negative test count", field="n_train/n_test")
    if not np.isfinite(occlusion) or occlusion < 0:
        raise UserError(f"occlusion level must be >= 0, got {occlusion}", field="occlusion")
    if out.exists() and not out.is_dir():
        raise UserError("the output must be a folder", path=out)
    found = foreign()
    if found:
        shown = ", ".join(found[:5]) + (f" ... ({len(found) - 5} more)" if len(found) > 5 else "")
        raise UserError(f"holds {len(found)} file(s) cattlepose {command} did not write ({shown}); give an empty "
                        f"folder, or one an earlier {command} wrote", path=out)  # fmt: skip
