"""`cattlepose info model`: parameters, MACs and the PSA share of the network a config builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cattlepose.core.config import load_config
from cattlepose.core.schema import load_schema
from cattlepose.models.info import model_info

FROM_DATA_KEYPOINTS = 17  # a `from_data` schema is known only with the data: count the head as ADK's


def run_info_model(config: Path | None, overrides: list[str], measure: bool) -> dict[str, Any]:
    cfg = load_config(config, overrides)
    spec = cfg.data.schema_
    k = load_schema(spec).num_keypoints if spec != "from_data" else FROM_DATA_KEYPOINTS
    return model_info(cfg, k, measure=measure)
