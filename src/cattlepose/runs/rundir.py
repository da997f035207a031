"""`RunDir`: the one way to create, open, check and load a run directory.

    runs/NAME/config.yaml  schema.yaml  folds.csv  data.json  oof.csv  cv.json
              fold{k}/best.pt  last.pt  history.csv  oof.csv  done.json
    a detector run (task: detect) has detections.json (its held-out photographs' boxes) where a keypoint run has
    oof.csv, at both levels

Training prepares it (under a file lock, so fold-parallel processes agree); predict, collect, report and a
transfer from the run (`model.pretrained: RUN`) open it. Every damaged or mismatched part is a UserError that
names the file and says what to do. Nothing else in the package knows these file names.

`data.json` is the fingerprint of the training data (data/fingerprint.py): a start on a run whose folds have
trained, and a `--collect`, compare the data as read now with it and refuse a change, naming it, unless the
user accepts it (`--accept-data-change`), which the record keeps and cv.json repeats.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from cattlepose.core.config import Config, config_to_dict, dump_config, load_config
from cattlepose.core.errors import UserError, first_line
from cattlepose.core.files import atomic_open, file_lock, try_lock, unreadable, write_json, write_text
from cattlepose.core.schema import KeypointSchema, schema_from_dict
from cattlepose.core.ui import Log
from cattlepose.core.yamlfile import load_yaml
from cattlepose.data.fingerprint import DataFingerprint, changes
from cattlepose.data.folds import assign_folds, read_folds, write_folds
from cattlepose.data.formats.submission import check_prediction
from cattlepose.data.formats.wide_csv import format_coord, format_number, parse_number, read_rows
from cattlepose.data.records import Sample
from cattlepose.metrics.names import lower_is_better, selection_metric

CONFIG, SCHEMA, FOLDS, CV, OOF, DATA = "config.yaml", "schema.yaml", "folds.csv", "cv.json", "oof.csv", "data.json"
DETECTIONS = "detections.json"  # a detector run's out-of-fold boxes, run-level and in each fold{k}/
ACCEPT = "--accept-data-change"
BEST, LAST, HISTORY, DONE = "best.pt", "last.pt", "history.csv", "done.json"  # in each fold{k}/
LOCK = ".lock"  # held while the run is prepared; in fold{k}/ while that fold trains
# What decides a checkpoint's predictions: config.yaml must agree with every checkpoint's own config on these
CONTRACT = (
    "model.backbone", "model.psa", "model.psa_placement", "model.input_size", "codec.kind", "codec.sigma",
    "codec.loss", "codec.decode",
    "codec.blur_kernel", "data.schema", "train.folds",
)  # fmt: skip
_ABSENT = object()


@dataclass
class RunDir:
    path: Path
    cfg: Config
    schema: KeypointSchema

    # ------------------------------------------------------------------------------------------ open
    @classmethod
    def open(cls, path: str | Path, task: str | None = None, flag: str = "RUN_DIR") -> RunDir:
        """An existing run: its config (validated again, it may have been edited) and schema. `task`: the kind
        of run the command needs (`require_task`, checked before anything else of the run is read; `flag` names
        the argument in the message)."""
        path = Path(path)
        cfg = cls.config_of(path, task, flag)
        run = cls(path, cfg, _read_schema(path / SCHEMA))
        run._check_fold_count()
        return run

    @staticmethod
    def config_of(path: Path, task: str | None = None, flag: str = "RUN_DIR") -> Config:
        """A run folder's config alone, and, given `task`, the check that the run is of that kind
        (`require_task`): what a command checks of a run before anything else of it is read."""
        if not path.is_dir():
            why = unreadable(path, "run directory")
            raise UserError(why + (f"; train one with `{train_line(path)}`" if "not found" in why else ""), path=path)
        if not (path / CONFIG).is_file():
            raise UserError("not a run directory (no config.yaml); train one with `cattlepose train`", path=path)
        cfg = load_config(path / CONFIG)
        if task is not None:
            _require_task(path, cfg.task, task, flag)
        return cfg

    @property
    def task(self) -> str:
        """What the run's networks predict (`config.task`): "keypoints" or "detect"."""
        return self.cfg.task

    def require_task(self, task: str, flag: str) -> RunDir:
        """A detector run where a keypoint run belongs, or the reverse, is named before any work."""
        _require_task(self.path, self.task, task, flag)
        return self

    @classmethod
    def prepare(
        cls,
        path: Path,
        cfg: Config,
        schema: KeypointSchema,
        samples: list[Sample],
        folds: list[int],
        resume: bool,
        data: DataFingerprint | None = None,
        accept_data_change: bool = False,
        log: Log | None = None,
    ) -> tuple[RunDir, list[int]]:
        """Create the run (config.yaml, schema.yaml, folds.csv, data.json) or check that an existing one was
        started with this config and this data (`data`, the fingerprint of `samples`; a change is refused unless
        `accept_data_change`); refuses to restart a started fold without `resume`. Returns the run and each
        sample's fold."""
        if not (path / FOLDS).is_file():  # too few groups for the folds: found before the folder is made
            assign_folds(samples, cfg.train.folds, cfg.data.group_by, cfg.train.seed)
        with file_lock(path / LOCK):
            saved = path / CONFIG
            started = started_folds(path)
            fresh = not saved.is_file()
            if not fresh:
                diff = _first_difference(config_to_dict(cfg), config_to_dict(load_config(saved)))
                if diff and started:
                    why = f"this run was started with a different config: {diff}; use a new --name"
                    raise UserError(why, path=saved)
                fresh = bool(diff)  # nothing trained yet: the corrected command takes the folder over
            run = cls(path, cfg, schema)
            for k in folds:
                if (run.fold_dir(k) / LAST).is_file() and not resume:
                    raise UserError(
                        f"fold {k} has already started; pass --resume to continue it, or use a new --name", path=path
                    )
            record = data
            if data is not None and started:  # checked before folds.csv, whose message would say less
                flags = [*(["--resume"] if resume else []), *([f"--folds {','.join(map(str, folds))}"] if folds
                         else [])]  # fmt: skip
                record = run._data_to_record(data, accept_data_change, log or Log(quiet=True), flags)
            folds_csv = path / FOLDS
            planned = not folds_csv.is_file() or fresh
            if planned:
                assignment = assign_folds(samples, cfg.train.folds, cfg.data.group_by, cfg.train.seed)
            else:
                run._check_fold_count()
                assignment = read_folds(folds_csv, samples)
            for k in started:  # the checkpoints decide what a resumed fold is: config.yaml must still agree
                if k in folds and (run.fold_dir(k) / LAST).is_file():
                    run._check_matches(run._load(run.fold_dir(k) / LAST, k), run.fold_dir(k) / LAST)
            if planned:  # written only once every check has passed
                write_folds(folds_csv, samples, assignment, cfg.data.group_by)
            if fresh:
                write_text(saved, dump_config(cfg))
            if fresh or not (path / SCHEMA).is_file():
                write_text(path / SCHEMA, yaml.safe_dump(schema.to_dict(), sort_keys=False))
            if record is not None:
                run._write_data(record)
            return run, assignment

    # ------------------------------------------------------------------------------------------ parts
    @property
    def name(self) -> str:
        return self.path.name

    def fold_dir(self, k: int) -> Path:
        return self.path / f"fold{k}"

    def train_command(self, folds: str, *flags: str) -> str:
        return " ".join([train_line(self.path), *flags, *([f"--folds {folds}"] if folds else [])])

    def retrain_hint(self, k: int) -> str:
        """How to train fold k again from scratch: a finished fold is skipped by --resume and a damaged checkpoint
        would be read again, so the fold's folder goes first."""
        redo = self.train_command(str(k), "--resume")
        return f"`rm -r {self.fold_dir(k)} && {redo}`" if self.fold_dir(k).exists() else f"`{redo}`"

    def assignment(self, samples: list[Sample]) -> list[int]:
        """Each sample's fold, from folds.csv (checked against the samples)."""
        if not (self.path / FOLDS).is_file():
            if started_folds(self.path):
                raise UserError(
                    f"no folds.csv, though fold(s) {started_folds(self.path)} have trained: it was deleted; "
                    f"`{self.train_command('', '--resume')}` writes it again (the same folds for the same data)",
                    path=self.path / FOLDS,
                )
            raise UserError("no folds.csv: the run never started training; train it first", path=self.path)
        return read_folds(self.path / FOLDS, samples)

    @contextlib.contextmanager
    def training(self, k: int) -> Iterator[None]:
        """Hold fold k for this process while it trains: a second process training the same fold of the same run
        at the same time is refused (fold-parallel processes, each with its own --folds, are not)."""
        with try_lock(self.fold_dir(k) / LOCK) as mine:
            if not mine:
                raise UserError(
                    f"fold {k} is being trained by another process right now; wait for it, or train other folds "
                    "with --folds",
                    path=self.fold_dir(k),
                )
            yield

    def done(self, k: int) -> bool:
        return (self.fold_dir(k) / DONE).is_file()

    def mark_done(self, k: int, best_metric: float | None, best_epoch: int | None, finished: float) -> None:
        info = {"best_metric": best_metric, "best_epoch": best_epoch, "finished": finished}
        write_json(self.fold_dir(k) / DONE, info)

    def unfinished(self) -> list[int]:
        return [k for k in range(self.cfg.train.folds) if not self.done(k)]

    def require(self, name: str) -> Path:
        """A run-level output (oof.csv, cv.json) that must exist."""
        path = self.path / name
        if not path.is_file():
            raise UserError(f"no {name}: finish every fold (or run `{self.train_command('', '--collect')}`) first",
                            path=self.path)  # fmt: skip
        return path

    # ------------------------------------------------------------------------------------------ models
    def model_folds(self, folds: list[int] | None = None, checkpoint: str = BEST) -> list[int]:
        """The folds to predict with (all of the run's by default); each must have its checkpoint."""
        chosen = list(range(self.cfg.train.folds)) if folds is None else folds
        missing = [k for k in chosen if not self.checkpoint(k, checkpoint).is_file()]
        if missing:
            have = [k for k in range(self.cfg.train.folds) if self.checkpoint(k, checkpoint).is_file()]
            raise UserError(
                f"fold(s) {missing} have no {checkpoint}; train them "
                f"(`{self.train_command(','.join(map(str, missing)), '--resume')}`) or predict with the others "
                f"(--folds {','.join(map(str, have))})"
                if have
                else f"no fold has a {checkpoint} yet; train the run first",
                path=self.checkpoint(missing[0], checkpoint),
            )
        return chosen

    def load_checkpoint(self, k: int, checkpoint: str = BEST) -> dict[str, Any]:
        """A fold's checkpoint, checked: readable, and trained with this run's keypoints and network."""
        path = self.checkpoint(k, checkpoint)
        state = self._load(path, k)
        if not isinstance(state.get("model"), dict):
            raise UserError("not a cattlepose checkpoint (no 'model' weights in it)", path=path, field="model")
        self._check_matches(state, path)
        return state

    def _load(self, path: Path, k: int) -> dict[str, Any]:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, bad pickle, I/O error: torch raises many types
            raise UserError(
                f"fold {k}'s checkpoint cannot be read: it is truncated or not a checkpoint ({first_line(e)}); "
                f"leave the fold out with --folds, or retrain it: {self.retrain_hint(k)}",
                path=path,
            ) from None
        if not isinstance(state, dict):
            raise UserError("not a cattlepose checkpoint (no 'model' weights in it)", path=path, field="model")
        return state

    def _check_fold_count(self) -> None:
        """folds.csv fixes how many folds the run has; a train.folds edited in config.yaml would train a fold
        with no held-out data and ensemble it."""
        path = self.path / FOLDS
        if not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as f:
            made = len({r.get("fold") for r in csv.DictReader(f)})
        if made != self.cfg.train.folds:
            raise UserError(
                f"train.folds is {self.cfg.train.folds} in config.yaml, but the run's folds.csv splits the data "
                f"into {made} folds; restore train.folds: {made} in {self.path / CONFIG}, or train a new run "
                "with --name",
                path=self.path / CONFIG,
                field="train.folds",
            )

    def history(self, k: int) -> list[dict[str, str]] | None:
        """A fold's history.csv rows (None when the fold has not written one)."""
        path = self.fold_dir(k) / HISTORY
        if not path.is_file():
            return None
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def best_fold(self) -> tuple[int, str]:
        """The fold whose best.pt stands for the run (a transfer source): the best by the selection metric in
        each fold's done.json (else cv.json's per-fold numbers), or fold 0 when that cannot be told; and a note
        saying which and why."""
        folds = [k for k in range(self.cfg.train.folds) if self.checkpoint(k).is_file()]
        if not folds:
            raise UserError("no fold{k}/best.pt in this run directory: train it first, or name a checkpoint file",
                            path=self.path)  # fmt: skip
        try:
            metric: str | None = selection_metric(self.cfg, self.schema)
        except UserError:
            metric = None
        scores = self._fold_scores(folds, metric) if metric else None
        if len(folds) > 1 and metric and scores is not None:
            best = (min if lower_is_better(metric) else max)(folds, key=lambda k: scores[k])
            return best, f"fold {best}, the best {metric} of {len(folds)} folds"
        first = 0 if 0 in folds else folds[0]
        return first, f"fold {first}, {'the only fold' if len(folds) == 1 else 'no per-fold score to choose by'}"

    def _fold_scores(self, folds: list[int], metric: str) -> dict[int, float] | None:
        """Each fold's selection score from done.json, else cv.json; None unless every fold has a finite one."""
        per_fold = (_read_json(self.path / CV) or {}).get("folds")
        scores: dict[int, float] = {}
        for k in folds:
            value = (_read_json(self.fold_dir(k) / DONE) or {}).get("best_metric")
            if not _finite(value) and isinstance(per_fold, dict):
                value = (per_fold.get(str(k)) or {}).get(metric)
            if _finite(value):
                scores[k] = float(value)
        return scores if len(scores) == len(folds) else None

    def checkpoint(self, k: int, name: str = BEST) -> Path:
        return self.fold_dir(k) / name

    def write_cv(self, report: dict[str, Any]) -> None:
        accepted = self.accepted_data_changes()
        write_json(self.path / CV, {**report, "data_changes": accepted} if accepted else report)

    # ------------------------------------------------------------------------------------------ data
    def check_data(self, data: DataFingerprint, accept: bool, log: Log, flags: Sequence[str]) -> None:
        """The data as read now (`data`) against the run's record: a change is refused, naming it, unless
        `accept`; the record is then brought up to date. `flags`: the command's own, for the advice."""
        record = self._data_to_record(data, accept, log, flags)
        if record is not None:
            self._write_data(record)

    def categories(self) -> dict[str, Any] | None:
        """The categories of the animals the run trained on, name -> id in its data (data.json); None when the
        run has no such record (it predates it, or data.json is missing or damaged), empty when its data named
        no category."""
        try:
            record = read_data_record(self.path)
        except UserError:
            return None
        return None if record is None else record.categories

    def accepted_data_changes(self) -> list[dict[str, Any]]:
        """The data changes this run went on with (--accept-data-change): when, by which command, what."""
        try:
            record = read_data_record(self.path)
        except UserError:
            return []
        return [] if record is None else record.accepted

    def _data_to_record(
        self, data: DataFingerprint, accept: bool, log: Log, flags: Sequence[str]
    ) -> DataFingerprint | None:
        """What data.json must say after this check (None: it already does); raises on a refused change."""
        old = read_data_record(self.path, damaged_ok=accept)
        if old is None:
            log.info(
                f"{self.path / DATA}: the run has no record of its training data (it predates data.json, or the "
                "record was damaged); the data as read now is recorded, and later starts are checked against it"
            )
            return data
        found = changes(old, data)
        data.accepted = list(old.accepted)
        if found:
            listed = "; ".join(map(str, found))
            if any(not c.acceptable for c in found):
                raise UserError(
                    f"the training data changed since this run started: {listed}. The run's folds cannot take "
                    "animals added or removed: restore the data, or train a new run on it with another --name",
                    path=self.path / DATA,
                )
            if not accept:
                raise UserError(
                    f"the training data changed since this run started: {listed}. Restore the data, train a new "
                    f"run on it with another --name, or go on with the changed data: "
                    f"`{self.train_command('', *flags, ACCEPT)}` (the run records that it did)",
                    path=self.path / DATA,
                )
            data.accepted.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(flags),
                                  "changes": [str(c) for c in found]})  # fmt: skip
            log.warn(f"the training data changed since this run started; going on with it ({ACCEPT}), as "
                     f"{self.path / DATA} and cv.json record: {listed}")  # fmt: skip
        return None if data.to_dict() == old.to_dict() else data

    def _write_data(self, data: DataFingerprint) -> None:
        write_json(self.path / DATA, data.to_dict(), indent=None)

    # ------------------------------------------------------------------------------------------ out of fold
    def oof_path(self, k: int | None = None) -> Path:
        """fold{k}/oof.csv (a fold's held-out predictions), or the run's oof.csv (all of them) for None."""
        return (self.path if k is None else self.fold_dir(k)) / OOF

    def write_oof(self, preds: Mapping[str, np.ndarray], images: Mapping[str, str], k: int | None = None) -> None:
        """Predictions with keypoint scores, one row per animal: `key, image, <kp>_x, <kp>_y, <kp>_score, ...`.
        A fold's file holds numbers that read back bit for bit (the hand-over to a later `--collect`); the
        run's, coordinates to 1/1000 px."""
        fmt = format_number if k is not None else format_coord
        k_points = self.schema.num_keypoints
        with atomic_open(self.oof_path(k), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["key", "image"] + [f"{n}_{c}" for n in self.schema.keypoints for c in ("x", "y", "score")])
            for key, arr in preds.items():
                w.writerow([key, images[key]] + [fmt(v) for v in check_prediction(key, arr, k_points).reshape(-1)])

    def detections_path(self, k: int | None = None) -> Path:
        """fold{k}/detections.json (a detector fold's held-out boxes), or the run's (all of them) for None."""
        return (self.path if k is None else self.fold_dir(k)) / DETECTIONS

    def write_detections(self, rows: Sequence[dict[str, Any]], categories: Sequence[str], k: int | None = None) -> None:
        """A detector's held-out photographs and their boxes: {"categories": [...], "images": [{"image": path,
        "boxes": [[x, y, w, h, score, category index], ...]}, ...]}. Numbers as JSON writes floats: exact."""
        write_json(self.detections_path(k), {"categories": list(categories), "images": list(rows)}, indent=None)

    def read_detections(self, k: int | None = None) -> tuple[list[str], dict[str, np.ndarray]]:
        """`write_detections`' file back: the categories and image path -> (n, 6) boxes."""
        path = self.detections_path(k)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            out = {str(r["image"]): np.asarray(r["boxes"], np.float64).reshape(-1, 6) for r in doc["images"]}
            return [str(c) for c in doc["categories"]], out
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"the fold's held-out detections cannot be read ({first_line(e)}); retrain the fold: "
                            f"{self.retrain_hint(k or 0)}", path=path) from None  # fmt: skip

    def read_oof(self, k: int | None = None) -> dict[str, np.ndarray]:
        """`write_oof`'s file back: key -> (K, 3) x, y, score."""
        path = self.oof_path(k)
        head, body = read_rows(path)
        k_points = self.schema.num_keypoints
        expected = 2 + 3 * k_points
        if len(head) != expected or head[:2] != ["key", "image"]:
            raise UserError(f"expected key, image and x, y, score of {k_points} keypoints", path=path)
        out = {}
        for row, cells in body:
            if len(cells) != expected:
                raise UserError(f"{len(cells)} cells, expected {expected}", path=path, field=f"row {row}")
            values = [parse_number(c, path, row, head[i + 2]) for i, c in enumerate(cells[2:])]
            out[cells[0]] = np.asarray(values, dtype=np.float64).reshape(k_points, 3)
        return out

    def _check_matches(self, state: dict[str, Any], path: Path) -> None:
        names = (state.get("schema") or {}).get("keypoints")
        if names is not None and tuple(names) != self.schema.keypoints:
            raise UserError(
                f"trained on other keypoints than the run's schema.yaml ({len(names)} vs "
                f"{self.schema.num_keypoints}: {_diff(names, self.schema.keypoints)}); it belongs to another run",
                path=path,
                field="schema.keypoints",
            )
        trained, now = state.get("config") or {}, config_to_dict(self.cfg)
        for key in CONTRACT:
            was, is_ = _get(trained, key), _get(now, key)
            if was is not _ABSENT and was != is_:
                raise UserError(
                    f"trained with {key} {was!r}, but {self.path / CONFIG} says {is_!r}; restore {key}: {was!r} "
                    "there (the checkpoint decides the predictions), or retrain the run under a new --name",
                    path=path,
                    field=key,
                )


def require_run(path: Path, flag: str) -> None:
    """`--resume` or `--collect` without a config needs an existing run: a mistyped --name must not start a new
    run of the default config. The message lists the runs that exist."""
    if (path / CONFIG).is_file():
        return
    runs = sorted(p.name for p in path.parent.glob("*") if (p / CONFIG).is_file()) if path.parent.is_dir() else []
    close = difflib.get_close_matches(path.name, runs, n=1)
    have = f"the runs in {path.parent}: {', '.join(runs)}" if runs else f"there are no runs in {path.parent}"
    hint = f"; did you mean `{train_line(path.parent / close[0])} {flag}`?" if close else ""
    raise UserError(f"no run named '{path.name}' to {flag.lstrip('-')} ({have}){hint}", path=path)


def read_data_record(run: Path, damaged_ok: bool = False) -> DataFingerprint | None:
    """The run's data.json; None when it has none (a run from before the record), or when it is damaged and
    `damaged_ok` (the user accepts whatever the data is now)."""
    path = run / DATA
    if not path.is_file():
        return None
    try:
        return DataFingerprint.from_dict(json.loads(path.read_text(encoding="utf-8")), path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, UserError) as e:
        if damaged_ok:
            return None
        why = e.message if isinstance(e, UserError) else first_line(e)
        raise UserError(
            f"the run's record of its training data is damaged ({why}); `{train_line(run)} --resume {ACCEPT}` "
            "records the data as it is now",
            path=path,
        ) from None


def started_folds(path: Path) -> list[int]:
    """The folds of the run folder that have trained (a checkpoint or done.json) or are training now, whatever
    train.folds says."""
    found = []
    for d in path.glob("fold*"):
        if d.name[4:].isdigit() and (any((d / n).is_file() for n in (LAST, BEST, DONE)) or _busy(d / LOCK)):
            found.append(int(d.name[4:]))
    return sorted(found)


def _busy(lock: Path) -> bool:
    if not lock.is_file():
        return False
    with try_lock(lock) as mine:
        return not mine


def _get(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return _ABSENT
        doc = doc[part]
    return doc


def _require_task(path: Path, is_: str, task: str, flag: str) -> None:
    if is_ != task:
        what = {"keypoints": "a keypoint run", "detect": "a detector run"}
        raise UserError(f"{flag} needs {what[task]}, and this is {what[is_]} (config.yaml task: {is_})", path=path,
                        field=flag)  # fmt: skip


def train_line(run: Path) -> str:
    """The `cattlepose train` line that finds this run where it lies."""
    where = "" if run.parent == Path("runs") else f" --runs-dir {run.parent}"
    return f"cattlepose train --name {run.name}{where}"


def _read_schema(path: Path) -> KeypointSchema:
    if not path.is_file():
        raise UserError(
            f"the run has no schema.yaml; `{train_line(path.parent)} --resume` writes it again from the run's config",
            path=path,
        )
    return schema_from_dict(load_yaml(path, "the run's schema"), path)


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if diff:
                return diff
        return None
    return None if a == b else f"{prefix[:-1]} ({b!r} in the run, {a!r} now)"


def _read_json(path: Path) -> dict[str, Any] | None:
    """A small metadata file of the run (done.json, cv.json) as a mapping, or None when it is absent or damaged:
    these only refine which fold is chosen."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _diff(a: list[str], b: tuple[str, ...]) -> str:
    extra, lacking = [n for n in a if n not in b], [n for n in b if n not in a]
    if extra or lacking:
        return f"checkpoint only: {extra[:3]}, run only: {lacking[:3]}"
    return "same names in another order"
