"""A detector run as the box source of `cattlepose predict --detector` (whole photographs, top-down).

The detector itself lives in `engine.detect` (`load_detector`, `DetectOptions`, a `Detector` that is a
`data.boxes.BoxSource`); this module is the glue around it that the command needs:
- its options: the command line's `--score-threshold`, `--nms-iou`, `--max-animals`, `--min-size` override the
  `DetectOptions` defaults (checked here, before anything is loaded);
- its categories: `--category` keeps some of them (a name the detector does not know is refused, listing the
  ones it knows), and those kept are checked against the categories the keypoint run was trained on (its
  data.json, `RunDir.categories`): a category the keypoint run never saw is refused, naming both runs, unless
  `--skip-category-check` (the same animals under other names, `cattle` and `cow`); a run without that record
  is not checked, with a warning;
- each animal found gets the `category_id` COCO results carry: the detector's own where it gives one, else the
  id the keypoint run's data gives the category, else the id the detector run's data gives it (both data.json),
  else the category's place in the detector's list, from 1;
- the detection time, kept apart from the keypoints' (`seconds`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cattlepose.core.errors import UserError
from cattlepose.core.ui import Log
from cattlepose.data.records import ImageSource, Instance
from cattlepose.runs.rundir import RunDir

# DetectOptions field -> its command-line option, and the check of a value
OPTIONS = {
    "score_threshold": ("--score-threshold", lambda v: 0.0 <= v <= 1.0, "a score from 0 to 1"),
    "nms_iou": ("--nms-iou", lambda v: 0.0 < v <= 1.0, "an overlap above 0, at most 1"),
    "max_animals": ("--max-animals", lambda v: isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "min_size": ("--min-size", lambda v: v >= 0.0, "a number of pixels >= 0"),
}


def check_options(overrides: dict[str, Any]) -> dict[str, Any]:
    """The options given (None values dropped), each checked; a bad one is a UserError naming its option."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        if key not in OPTIONS:
            raise UserError(f"unknown detector option '{key}'; the options are {', '.join(OPTIONS)}")
        flag, ok, what = OPTIONS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise UserError(f"{value!r} is not {what}", field=flag)
    return given


@dataclass
class DetectorSource:
    """The loaded detector as predict's box source: the categories kept, their ids, and the time it took."""

    detector: Any  # engine.detect.Detector
    keep: set[str] | None  # category names kept (casefolded); None: every one
    ids: dict[str, Any]  # category name (casefolded) -> the id COCO results give it
    seconds: float = 0.0
    images: int = 0
    dropped: int = 0  # animals of other categories than those kept
    categories: list[str] = field(default_factory=list)  # every category the detector knows

    def __call__(self, images: Sequence[ImageSource]) -> list[Instance]:
        start = time.perf_counter()
        found = self.detector(images)
        self.seconds += time.perf_counter() - start
        self.images += len(images)
        kept = []
        for inst in found:
            name = (inst.category or "").casefold()
            if self.keep is not None and name not in self.keep:
                self.dropped += 1
                continue
            if "category_id" not in inst.meta and name in self.ids:
                inst.meta["category_id"] = self.ids[name]
            kept.append(inst)
        return kept


def load(
    detector_dir: Path,
    run: RunDir,
    categories: Sequence[str] | None = None,
    check_categories: bool = True,
    overrides: dict[str, Any] | None = None,
    device: str = "auto",
    flip: bool | None = True,
    onnx: Path | None = None,
    log: Log | None = None,
    folds: str | None = None,
) -> DetectorSource:
    """The detector of `detector_dir` (a detector run; the check is `load_detector`'s, and predict's before
    it), with its options overridden, its categories narrowed to `categories` and checked against `run`'s."""
    log = log or Log(quiet=True)
    given = check_options(overrides or {})
    try:
        from cattlepose.engine import detect
    except ImportError as e:  # a build without the detector: named, not a traceback
        raise UserError(f"this installation has no detector ({e}); predict on given boxes or whole images",
                        field="--detector") from None  # fmt: skip
    fold_list = None
    if folds is not None:
        from cattlepose.data.folds import parse_fold_list

        fold_list = parse_fold_list(folds, RunDir.config_of(detector_dir, "detect", "--detector").train.folds)
    det = detect.load_detector(detector_dir, folds=fold_list, device=device, flip=flip,
                               backend="onnx" if onnx is not None else "torch", onnx=onnx, log=log)  # fmt: skip
    if given:  # the options given on the command line over the detector run's own (its `detect:` config)
        det = det.with_options(dataclasses.replace(det.options, **given))
    known = [str(c) for c in det.categories]
    keep = _kept(categories, known, detector_dir)
    record = run.categories()
    if check_categories:
        _check_against_run(keep or known, detector_dir, run, record, log)
    trained, own = _ids(record), _ids(det.run.categories() if det.run is not None else None)
    ids = {c.casefold(): trained.get(c.casefold(), own.get(c.casefold(), i + 1)) for i, c in enumerate(known)}
    return DetectorSource(det, None if keep is None else {c.casefold() for c in keep}, ids, categories=known)


def _kept(categories: Sequence[str] | None, known: list[str], detector_dir: Path) -> list[str] | None:
    """The detector's names of the `--category` values (matched ignoring case), or None to keep every one."""
    if not categories:
        return None
    by_name = {c.casefold(): c for c in known}
    unknown = [c for c in categories if c.casefold() not in by_name]
    if unknown:
        raise UserError(f"the detector does not know the category {', '.join(map(repr, unknown))}; it knows "
                        f"{', '.join(known) or 'none'}", path=detector_dir, field="--category")  # fmt: skip
    return list(dict.fromkeys(by_name[c.casefold()] for c in categories))


def _check_against_run(
    wanted: list[str], detector_dir: Path, run: RunDir, record: dict[str, Any] | None, log: Log
) -> None:
    """Every category the detector will give is one the keypoint run was trained on."""
    if record is None:
        log.warn(f"{run.path}: the keypoint run has no record of the categories it was trained on (it predates "
                 f"data.json's); the detector's ({', '.join(wanted)}) are not checked against it")  # fmt: skip
        return
    if not record:
        return  # its training data named no category: nothing to check against
    trained = {str(c).casefold() for c in record}
    outside = [c for c in wanted if c.casefold() not in trained]
    if not outside:
        return
    shared = [c for c in wanted if c.casefold() in trained]
    both = (f"the detector run {detector_dir} finds {', '.join(wanted)}; the keypoint run {run.path} was trained on "
            f"{', '.join(map(str, record))}")  # fmt: skip
    escape = "or --skip-category-check when the names differ but the animals are the same (cattle and cow)"
    if not shared:
        raise UserError(f"{both}: no category in common, so every pose would be a guess on an animal the keypoint "
                        f"run never saw. Use a detector and a keypoint run of the same animals, {escape}",
                        path=detector_dir, field="--detector")  # fmt: skip
    keep = " ".join(f"--category {c}" for c in shared)
    raise UserError(f"{both}: it was not trained on {', '.join(outside)}. Keep the categories they share with "
                    f"`{keep}`, {escape}", path=detector_dir, field="--detector")  # fmt: skip


def _ids(record: dict[str, Any] | None) -> dict[str, int]:
    """A run's categories record (name -> id, or None where the data gave no id) as casefolded name -> id."""
    return {str(name).casefold(): cid for name, cid in (record or {}).items() if _is_id(cid)}


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
