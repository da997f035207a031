"""The names of the metrics, which of them a run can select its best epoch by, and which way each is better.

Known before any prediction exists, so a run checks its settings at start and a run folder's best fold can be
told from the numbers it saved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cattlepose.core.errors import UserError
from cattlepose.core.schema import KeypointSchema

if TYPE_CHECKING:
    from cattlepose.core.config import Config

OKS_KEYS = ("oks_ap", "oks_ap50", "oks_ap75", "oks_ar")
PIXEL_ERRORS = ("rmse", "median_error", "mean_error")  # the only metrics where lower is better


def pck_key(kind: str, a: float) -> str:
    """`pck_torso@0.35`, `pck_bbox@0.1`: the metric's name for threshold `a`."""
    return f"pck_{kind}@{a:g}"


def metric_names(schema: KeypointSchema, pck_torso: Sequence[float], pck_bbox: Sequence[float]) -> list[str]:
    """The keys of `evaluate(...)["overall"]`, in order: PCK (torso only where the schema names a torso pair),
    OKS, pixel errors."""
    torso = [pck_key("torso", a) for a in pck_torso] if schema.pck_pair is not None else []
    return [*torso, *(pck_key("bbox", a) for a in pck_bbox), *OKS_KEYS, *PIXEL_ERRORS]


def lower_is_better(metric: str) -> bool:
    return metric in PIXEL_ERRORS


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Whether `value` beats `best` (None or non-finite: any finite value does) in `metric`'s direction."""
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best if lower_is_better(metric) else value > best


def selection_metric(cfg: Config, schema: KeypointSchema) -> str:
    """The metric that picks a run's best epoch (`train.best_metric`), with `auto` resolved: PCK@0.35 of the
    torso where the schema names a torso pair, OKS AP otherwise. One this schema and the configured thresholds
    cannot produce is a UserError, raised before any training step."""
    wanted = cfg.train.best_metric
    names = metric_names(schema, cfg.eval.pck_torso, cfg.eval.pck_bbox)
    if wanted == "auto":
        return "pck_torso@0.35" if "pck_torso@0.35" in names else "oks_ap"
    if wanted not in names:
        why = " (the schema names no torso pair: set pck_normalizer in it)" if wanted.startswith("pck_torso") else ""
        raise UserError(
            f"'{wanted}' is not a validation metric of this run{why}; choose auto or one of {', '.join(names)}",
            field="train.best_metric",
        )
    return wanted
