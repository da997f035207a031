"""Where a run's training samples come from: the configured files, or the embedded synthetic cattle set.

The synthetic set is generated on first use, under a lock, so fold-parallel processes starting together agree.
"""

from __future__ import annotations

from pathlib import Path

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError
from cattlepose.core.files import file_lock
from cattlepose.core.schema import KeypointSchema, recognition_note
from cattlepose.core.ui import Log
from cattlepose.data.formats import read_samples, read_sources
from cattlepose.data.formats.common import outside_policy
from cattlepose.data.records import Sample


def ensure_synthetic(cfg: Config, log: Log) -> Path:
    """The embedded default data set in `data.synth_dir`, generated once."""
    root = cfg.data.synth_dir
    with file_lock(root.parent / f".{root.name}.lock"):
        if not (root / "sample_submission.csv").is_file():
            from cattlepose.data.synthetic import synthesize

            log.info(f"generating the synthetic cattle set in {root} ({cfg.data.synth_train} + {cfg.data.synth_test})")
            with log.task("synth", total=cfg.data.synth_train + cfg.data.synth_test) as bar:
                synthesize(
                    root,
                    n_train=cfg.data.synth_train,
                    n_test=cfg.data.synth_test,
                    seed=cfg.data.synth_seed,
                    progress=lambda done, total: bar.update(1),
                )
    return root


def load_training_data(cfg: Config, log: Log) -> tuple[list[Sample], KeypointSchema]:
    """The training samples and their schema, as `data` configures them."""
    d = cfg.data
    if d.train is None and d.format != "adk":
        raise UserError(
            f"data.format is {d.format} but data.train is null (the synthetic cattle are ADK); give your file: "
            "-s data.train=FILE",
            field="data.train",
        )
    if d.train is None:
        root = ensure_synthetic(cfg, log)
        return read_samples("adk", root / "train", d.schema_, bbox=d.bbox, max_samples=d.max_samples)
    samples, schema = _read(cfg, log)
    n = outside_policy(samples, d.outside, d.outside_margin, schema.keypoints)
    if n:
        log.info(f"data.outside={d.outside}: {n} keypoint(s) far outside their image were {d.outside}ped")
    return samples, schema


def _read(cfg: Config, log: Log) -> tuple[list[Sample], KeypointSchema]:
    d = cfg.data
    samples, schema = read_sources(
        d.format,
        d.train_files,
        d.schema_,
        images=d.image_folders,
        bbox=d.bbox,
        max_samples=d.max_samples,
        category=d.category,
        keypoint_map=d.keypoint_map,
    )
    note = recognition_note(schema)
    if note:
        log.info(f"{d.train_files[0]}: {note}")
    return samples, schema
