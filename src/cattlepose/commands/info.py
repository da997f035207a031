"""`cattlepose info model`: parameters, MACs and the PSA share of the network a config (or a run) builds; for a
detector (task: detect) its input, stride and categories, and for a run its folds and cross-validated box AP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cattlepose.core.config import load_config
from cattlepose.core.schema import load_schema
from cattlepose.models.info import detector_info, model_info
from cattlepose.runs.rundir import CV, RunDir

FROM_DATA_KEYPOINTS = 17  # a `from_data` schema is known only with the data: count the head as ADK's


def run_info_model(
    config: Path | None, overrides: list[str], measure: bool, run_dir: Path | None = None
) -> dict[str, Any]:
    if run_dir is not None:
        return _run_info(RunDir.open(run_dir), measure)
    cfg = load_config(config, overrides)
    if cfg.task == "detect":
        return detector_info(cfg, [], measure=measure)
    spec = cfg.data.schema_
    k = load_schema(spec).num_keypoints if spec != "from_data" else FROM_DATA_KEYPOINTS
    return model_info(cfg, k, measure=measure)


def _run_info(run: RunDir, measure: bool) -> dict[str, Any]:
    """A trained run's network, which folds have weights, and its cross-validation numbers when it has them."""
    trained = [k for k in range(run.cfg.train.folds) if run.checkpoint(k).is_file()]
    cv = json.loads((run.path / CV).read_text(encoding="utf-8")) if (run.path / CV).is_file() else {}
    if run.task == "detect":
        categories = cv.get("categories")
        if categories is None and trained:
            from cattlepose.engine.detect import load_fold_detector

            categories = load_fold_detector(run, trained[0])[1]
        info = detector_info(run.cfg, list(categories or []), measure=measure)
        keys = ("bbox_ap", "bbox_ap50", "bbox_ar")
    else:
        info = model_info(run.cfg, run.schema.num_keypoints, measure=measure)
        keys = ("pck_torso@0.35", "oks_ap")
    info = {"run": str(run.path), **info, "folds with best.pt": ", ".join(map(str, trained)) or "none"}
    overall = cv.get("overall", {})
    for key in keys:
        if overall.get(key) is not None:
            info[f"cross-validated {key}"] = overall[key]
    for name, part in (cv.get("by_category") or {}).items() if run.task == "detect" else ():
        info[f"  {name}: bbox_ap / bbox_ap50 / animals"] = (
            f"{part.get('bbox_ap')} / {part.get('bbox_ap50')} / {part.get('animals')}"
        )
    return info
