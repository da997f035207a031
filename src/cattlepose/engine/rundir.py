"""`RunDir`: the one way to create, open, check and load a run directory.

    runs/NAME/config.yaml  schema.yaml  folds.csv  oof.csv  cv.json
              fold{k}/best.pt  last.pt  history.csv  oof.csv  done.json

Training prepares it (under a file lock, so fold-parallel processes agree), predict, collect and report open
it. Every damaged or mismatched part is a UserError that names the file and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from cattlepose.config import Config, config_to_dict, dump_config, load_config
from cattlepose.data.folds import assign_folds, read_folds, write_folds
from cattlepose.data.records import Sample
from cattlepose.errors import UserError
from cattlepose.io import file_lock, write_json, write_text
from cattlepose.metrics import selection_metric
from cattlepose.schema import KeypointSchema, schema_from_dict


@dataclass
class RunDir:
    path: Path
    cfg: Config
    schema: KeypointSchema

    # ------------------------------------------------------------------------------------------ open
    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run: its config (validated again, it may have been edited) and schema."""
        path = Path(path)
        if not path.is_dir():
            raise UserError("run directory not found; train one with `cattlepose train --name NAME`", path=path)
        if not (path / "config.yaml").is_file():
            raise UserError("not a run directory (no config.yaml); train one with `cattlepose train`", path=path)
        return cls(path, load_config(path / "config.yaml"), _read_schema(path / "schema.yaml"))

    @classmethod
    def prepare(
        cls, path: Path, cfg: Config, schema: KeypointSchema, samples: list[Sample], folds: list[int], resume: bool
    ) -> tuple[RunDir, list[int]]:
        """Create the run (config.yaml, schema.yaml, folds.csv) or check that an existing one was started with
        this config; refuses to restart a started fold without `resume`. Returns the run and each sample's fold."""
        with file_lock(path / ".lock"):
            saved = path / "config.yaml"
            if saved.is_file():
                diff = _first_difference(config_to_dict(cfg), config_to_dict(load_config(saved)))
                if diff:
                    why = f"this run was started with a different config: {diff}; use a new --name"
                    raise UserError(why, path=saved)
            else:
                write_text(saved, dump_config(cfg))
            if not (path / "schema.yaml").is_file():
                write_text(path / "schema.yaml", yaml.safe_dump(schema.to_dict(), sort_keys=False))
            run = cls(path, cfg, schema)
            for k in folds:
                if (run.fold_dir(k) / "last.pt").is_file() and not resume:
                    raise UserError(
                        f"fold {k} has already started; pass --resume to continue it, or use a new --name", path=path
                    )
            folds_csv = path / "folds.csv"
            if folds_csv.is_file():
                return run, read_folds(folds_csv, samples)
            assignment = assign_folds(samples, cfg.train.folds, cfg.data.group_by, cfg.train.seed)
            write_folds(folds_csv, samples, assignment, cfg.data.group_by)
            return run, assignment

    # ------------------------------------------------------------------------------------------ parts
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def best_metric(self) -> str:
        """The metric that picked each fold's best epoch (`train.best_metric`, `auto` resolved)."""
        c = self.cfg
        return selection_metric(c.train.best_metric, self.schema, c.eval.pck_torso, c.eval.pck_bbox)

    def fold_dir(self, k: int) -> Path:
        return self.path / f"fold{k}"

    def train_command(self, folds: str, *flags: str) -> str:
        return " ".join([train_line(self.path), *flags, *([f"--folds {folds}"] if folds else [])])

    def retrain_hint(self, k: int) -> str:
        """How to train fold k again from scratch: a finished fold is skipped by --resume, so its folder goes."""
        redo = self.train_command(str(k), "--resume")
        return f"`rm -r {self.fold_dir(k)} && {redo}`" if self.done(k) else f"`{redo}`"

    def assignment(self, samples: list[Sample]) -> list[int]:
        """Each sample's fold, from folds.csv (checked against the samples)."""
        if not (self.path / "folds.csv").is_file():
            raise UserError("no folds.csv: the run never started training; train it first", path=self.path)
        return read_folds(self.path / "folds.csv", samples)

    def done(self, k: int) -> bool:
        return (self.fold_dir(k) / "done.json").is_file()

    def mark_done(self, k: int, best_metric: float | None, best_epoch: int | None, finished: float) -> None:
        info = {"best_metric": best_metric, "best_epoch": best_epoch, "finished": finished}
        write_json(self.fold_dir(k) / "done.json", info)

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
    def model_folds(self, folds: list[int] | None = None, checkpoint: str = "best.pt") -> list[int]:
        """The folds to predict with (all of the run's by default); each must have its checkpoint."""
        chosen = list(range(self.cfg.train.folds)) if folds is None else folds
        missing = [k for k in chosen if not (self.fold_dir(k) / checkpoint).is_file()]
        if missing:
            have = [k for k in range(self.cfg.train.folds) if (self.fold_dir(k) / checkpoint).is_file()]
            raise UserError(
                f"fold(s) {missing} have no {checkpoint}; train them "
                f"(`{self.train_command(','.join(map(str, missing)), '--resume')}`) or predict with the others "
                f"(--folds {','.join(map(str, have))})"
                if have
                else f"no fold has a {checkpoint} yet; train the run first",
                path=self.fold_dir(missing[0]) / checkpoint,
            )
        return chosen

    def load_checkpoint(self, k: int, checkpoint: str = "best.pt") -> dict[str, Any]:
        """A fold's checkpoint, checked: readable, and trained with this run's keypoints and network."""
        path = self.fold_dir(k) / checkpoint
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, bad pickle, I/O error: torch raises many types
            raise UserError(
                f"fold {k}'s checkpoint cannot be read: it is truncated or not a checkpoint ({_first_line(e)}); "
                f"leave the fold out with --folds, or retrain it: {self.retrain_hint(k)}",
                path=path,
            ) from None
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise UserError("not a cattlepose checkpoint (no 'model' weights in it)", path=path, field="model")
        self._check_matches(state, path)
        return state

    def load_model(self, k: int, device: torch.device, checkpoint: str = "best.pt") -> nn.Module:
        """A fold's weights in a network built from the run's config, ready for inference."""
        from cattlepose.engine.infer import prepare_for_inference
        from cattlepose.models import build_model

        state = self.load_checkpoint(k, checkpoint)
        model = build_model(self.cfg.model.model_copy(update={"pretrained": None}), self.schema.num_keypoints)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise UserError(
                f"its weights do not fit the network of config.yaml ({_first_line(e)}); was config.yaml edited? "
                f"Retrain the fold: {self.retrain_hint(k)}",
                path=self.fold_dir(k) / checkpoint,
                field="model",
            ) from None
        return prepare_for_inference(model, self.cfg, device)

    def _check_matches(self, state: dict[str, Any], path: Path) -> None:
        names = (state.get("schema") or {}).get("keypoints")
        if names is not None and tuple(names) != self.schema.keypoints:
            raise UserError(
                f"trained on other keypoints than the run's schema.yaml ({len(names)} vs "
                f"{self.schema.num_keypoints}: {_diff(names, self.schema.keypoints)}); it belongs to another run",
                path=path,
                field="schema.keypoints",
            )
        trained = (state.get("config") or {}).get("model") or {}
        for key in ("backbone", "psa"):
            now = getattr(self.cfg.model, key)
            if key in trained and trained[key] != now:
                raise UserError(
                    f"trained with model.{key} {trained[key]!r}, but config.yaml says {now!r}; restore config.yaml "
                    "or retrain the fold",
                    path=path,
                    field=f"model.{key}",
                )


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
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"cannot read the run's schema ({_first_line(e)})", path=path) from None
    return schema_from_dict(raw, path)


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if diff:
                return diff
        return None
    return None if a == b else f"{prefix[:-1]} ({b!r} in the run, {a!r} now)"


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's message (torch's run to a paragraph)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split(". ")[0].rstrip(".")


def _diff(a: list[str], b: tuple[str, ...]) -> str:
    extra, lacking = [n for n in a if n not in b], [n for n in b if n not in a]
    if extra or lacking:
        return f"checkpoint only: {extra[:3]}, run only: {lacking[:3]}"
    return "same names in another order"
