"""The `cattlepose` command: parse, call one function per command, print. No logic lives here."""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cattlepose.core.errors import UserError
from cattlepose.core.signals import exit_code, interrupts_raise, signal_name
from cattlepose.core.ui import Log, make_console, plain, print_error

app = typer.Typer(
    name="cattlepose",
    help="Animal keypoint estimation: PSA-HRNet, k-fold training, occlusion augmentation, flip + fold ensembles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Inspect keypoint data sets.", no_args_is_help=True)
info_app = typer.Typer(help="Describe models and configs.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(info_app, name="info")

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (defaults apply when omitted).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a config key: -s train.epochs=5 (repeatable).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables (CI).")]


def user_errors(fn: F) -> F:
    """A UserError becomes a one-paragraph message on stderr and exit code 2; anything else is a bug (exit 1).
    SIGINT and SIGTERM unwind the command (temporary files removed) and end it with one line saying how to
    resume or rerun it, exit 130 or 143."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with interrupts_raise():
                return fn(*args, **kwargs)
        except UserError as e:
            print_error(str(e))
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:
            if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for the whole job
                print_error(f"interrupted ({signal_name(e)}); {_after_interrupt(fn.__name__, kwargs)}")
            raise typer.Exit(exit_code(e)) from None

    return wrapper  # type: ignore[return-value]


_ARGV: list[str] | None = None  # the command line, when `main` is the entry point (not a test's runner)


def _after_interrupt(command: str, kwargs: dict[str, Any]) -> str:
    """What an interrupted command left and the command line that carries on: `train --resume` once the run
    folder holds its config, else the same command again."""
    from cattlepose.commands.train import train_run_dir
    from cattlepose.runs.rundir import CONFIG, train_line

    if command == "train" and not kwargs.get("collect"):
        run_dir = train_run_dir(kwargs.get("config"), kwargs.get("name"), kwargs["runs_dir"])
        if (run_dir / CONFIG).is_file():
            folds = f" --folds {kwargs['folds']}" if kwargs.get("folds") else ""
            return f"finished epochs are kept; resume with `{train_line(run_dir)} --resume{folds}`"
    again = f"`cattlepose {shlex.join(_ARGV)}`" if _ARGV else "the same command"
    kept = "nothing was written; " if command in ("predict", "export", "evaluate") else ""
    if command == "video":
        return f"no output is half-written and the finished chunks are kept; continue with {again}"
    return f"{kept}rerun {again}"


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A summary table. Cells and title are literal text (paths with brackets are not rich markup); printed to
    a file or a pipe, its console is wide enough that no cell or title (paths included) is ever wrapped."""
    t = Table(title=escape(title), title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[Text(str(v)) for v in r])
    return t


# ------------------------------------------------------------------------------------------------- synth
# the detector options `predict` and `video` share
DetectorOnnxOpt = Annotated[
    Path | None, typer.Option(help="With --detector: its exported ONNX file, run by ONNX Runtime.")
]
DetectorFoldsOpt = Annotated[
    str | None, typer.Option(help="With --detector: use only these of its fold models, e.g. 0 (default: all).")
]
ScoreThresholdOpt = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="With --detector: the least box score kept.")
]


@app.command()
@user_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (ADK layout).")],
    n_train: Annotated[int, typer.Option(min=1, help="Training images.")] = 1500,
    n_test: Annotated[int, typer.Option(min=0, help="Test images.")] = 300,
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    occlusion: Annotated[float, typer.Option(min=0.0, help="Occluder frequency: 0 none, 1 default, 2 heavy.")] = 1.0,
    preview: Annotated[Path | None, typer.Option(help="Also write a PNG grid of samples with skeletons.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Generate the synthetic cattle data set in the ADK2021 layout."""
    from cattlepose.data.synthetic import synthesize

    log = Log(quiet)
    with log.task("synth", total=n_train + n_test) as bar:
        summary = synthesize(
            out, n_train=n_train, n_test=n_test, seed=seed, occlusion=occlusion, preview=preview,
            progress=lambda done, total: bar.update(1),
        )  # fmt: skip
    log.show(_table(f"synthetic cattle -> {out}", ["", "value"], [[k, _fmt(v)] for k, v in summary.items()]))


@app.command("synth-video")
@user_errors
def synth_video(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: walk.mp4 and truth.json.")],
    animals: Annotated[int, typer.Option(min=1, help="Cattle walking across (alternate directions).")] = 3,
    seconds: Annotated[float, typer.Option(help="Video length.")] = 4.0,
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 25.0,
    size: Annotated[str, typer.Option(help="Frame size WxH (even numbers).")] = "640x360",
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """A video of cattle walking across a farm, each with a known lameness, and its ground truth (truth.json)."""
    from cattlepose.data.synth_video import parse_size, synthesize_video

    log = Log(quiet)
    frame_size = parse_size(size)
    with log.task("synth-video", total=max(1, round(seconds * fps))) as bar:
        summary = synthesize_video(
            out, animals=animals, seconds=seconds, fps=fps, size=frame_size, seed=seed,
            progress=lambda done, total: bar.update(1),
        )  # fmt: skip
    log.show(_table(f"synthetic video -> {out}", ["", "value"], [[k, _fmt(v)] for k, v in summary.items()]))


@app.command()
@user_errors
def gait(
    tracks: Annotated[Path, typer.Argument(help="Tidy keypoint-track CSV, or a synth-video truth.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: strides.csv, summary.csv, figures.")],
    fps: Annotated[float | None, typer.Option(help="Frame rate (default: from the file's time column).")] = None,
    kind: Annotated[str | None, typer.Option(help="raw or smoothed rows (default: smoothed when present).")] = None,
    min_score: Annotated[float, typer.Option(help="Keypoints scored below this are not seen.")] = 0.3,
    plots: Annotated[bool, typer.Option(help="A figure per track.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Gait signals per stride and per track: stride duration and length, head bob, back arch, tracking, step
    asymmetry."""
    from cattlepose.commands.gait import run_gait

    res = run_gait(tracks, out, fps=fps, kind=kind, min_score=min_score, plots=plots)
    cols = ["track", "strides", "stride_duration_s", "stride_length_bl", "head_bob_bl", "back_arch_bl",
            "tracking_bl", "step_asymmetry", "shorter_side"]  # fmt: skip
    rows = [[_fmt(s[c]) for c in cols] for s in res["tracks"]]
    log = Log(quiet)
    log.show(_table(f"gait at {res['fps']:.4g} fps -> {out}", cols, rows))
    for s in res["tracks"]:  # why a track has no (or fewer) strides: read before the numbers
        if s["note"]:
            log.info(f"track {s['track']}: {s['note']}")
    log.info(f"wrote {res['strides']}, {res['summary']}" + (f" and {len(res['figures'])} figures" if plots else ""))


@app.command("synth-herd")
@user_errors
def synth_herd(
    out: Annotated[Path, typer.Argument(help="Output folder: train/ and test/, each a COCO file and its images.")],
    n_train: Annotated[int, typer.Option(min=1, help="Training scenes.")] = 400,
    n_test: Annotated[int, typer.Option(min=0, help="Test scenes.")] = 100,
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    occlusion: Annotated[float, typer.Option(min=0.0, help="Foreground objects: 0 none, 1 default, 2 heavy.")] = 1.0,
    quiet: QuietOpt = False,
) -> None:
    """Generate synthetic multi-animal scenes (0-6 cattle, overlaps, fences, <= 640 px) as COCO keypoints files
    with every box and keypoint known: the embedded data to try a detector on
    (`cattlepose train -c configs/detector.yaml -s data.train=OUT/train/annotations.json -s data.schema=adk17`)."""
    from cattlepose.data.synth.herd import synthesize_herd

    log = Log(quiet)
    with log.task("synth-herd", total=n_train + n_test) as bar:
        summary = synthesize_herd(out, n_train=n_train, n_test=n_test, seed=seed, occlusion=occlusion,
                                  progress=lambda done, total: bar.update(1))  # fmt: skip
    log.show(_table(f"synthetic herd scenes -> {out}", ["", "value"], [[k, _fmt(v)] for k, v in summary.items()]))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


# ------------------------------------------------------------------------------------------------- data
@data_app.command("check")
@user_errors
def data_check(
    path: Annotated[
        list[Path], typer.Argument(help="ADK folder, COCO JSON or CSV file; several COCO files are checked as one set.")
    ],
    format: Annotated[str | None, typer.Option("--format", "-f", help="adk | coco | csv (guessed if omitted).")] = None,
    schema: Annotated[str, typer.Option(help="adk17 | ap10k17 | animalpose20 | from_data | PATH.")] = "adk17",
    images: Annotated[Path | None, typer.Option(help="Image folder, if not beside the annotations.")] = None,
) -> None:
    """Summarise a data set and list every problem in it (exit 2 if there is any)."""
    from cattlepose.data.check import check_data, render

    report = check_data(path, fmt=format, schema_spec=schema, images=images)
    console = make_console()
    console.print(render(report, plain=plain(console)))
    if report.problems:
        raise UserError(f"{len(report.problems)} problem(s) found; see above", path=", ".join(map(str, path)))


# ------------------------------------------------------------------------------------------------- info
@info_app.command("model")
@user_errors
def info_model(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A run directory: its network, folds and cross-validation (else -c).")
    ] = None,
    config: ConfigOpt = None,
    set: SetOpt = None,
    measure: Annotated[
        bool, typer.Option(help="Also time the forward pass in this process (not comparable between processes).")
    ] = False,
) -> None:
    """Parameters, MACs and the PSA share of both. Speeds to compare come from `make bench`, which measures
    variants side by side in one process; a single process's figure moves with the machine's load."""
    from cattlepose.commands.info import run_info_model

    info = run_info_model(config, set or [], measure, run_dir)
    make_console().print(_table("model", ["", "value"], [[k2, _fmt(v)] for k2, v in info.items()]))
    share = info.get("CPU share while timing", 1.0)
    if share < 0.9:
        Log().warn(
            f"other processes took CPU time while timing (CPU share {share:.2f}): images/s understates the model"
        )


@app.command("preview-aug")
@user_errors
def preview_aug(
    config: ConfigOpt = None,
    set: SetOpt = None,
    n: Annotated[int, typer.Option("-n", min=1, help="Crops in the grid.")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("augmentations.png"),
) -> None:
    """A grid of augmented training crops with their target keypoints."""
    from cattlepose.commands.preview import run_preview

    run_preview(config, set or [], n, out, Log())


# ------------------------------------------------------------------------------------------------- train
@app.command()
@user_errors
def train(
    config: ConfigOpt = None,
    set: SetOpt = None,
    name: Annotated[str | None, typer.Option(help="Run name: runs/NAME (default: the config's file name).")] = None,
    folds: Annotated[str | None, typer.Option(help="Train only these folds, e.g. 0,1 (default: all).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a stopped run; finished folds are skipped.")] = False,
    collect: Annotated[
        bool, typer.Option(help="Only assemble oof.csv and cv.json from finished folds (after fold-parallel runs).")
    ] = False,
    runs_dir: Annotated[Path, typer.Option(help="Folder holding run directories.")] = Path("runs"),
    accept_data_change: Annotated[
        bool,
        typer.Option(
            "--accept-data-change",
            help="Go on although the training data changed since the run started (recorded in data.json, cv.json).",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """K-fold training: folds.csv, data.json, fold{k}/{best,last}.pt and history.csv, oof.csv, cv.json."""
    from cattlepose.commands.train import run_train

    log = Log(quiet)
    run_dir, report = run_train(config, set or [], name, folds, resume, collect, runs_dir, log, accept_data_change)
    if report is None:
        return
    metrics = ("pck_torso@0.35", "pck_bbox@0.1", "oks_ap", "rmse")
    if report.get("task") == "detect":  # a detector run: box AP of the held-out photographs
        metrics = ("bbox_ap", "bbox_ap50", "bbox_ar")
        log.show(_table(f"cross-validation: {run_dir}", ["", *metrics], _cv_rows(report, metrics)))
        log.info(f"wrote {run_dir / 'detections.json'} and {run_dir / 'cv.json'}")
        return
    log.show(_table(f"cross-validation: {run_dir}", ["", *metrics], _cv_rows(report, metrics)))
    log.info(f"wrote {run_dir / 'oof.csv'} and {run_dir / 'cv.json'}")
    from cattlepose.metrics.keypoints import merged_pairs

    for line in merged_pairs(report):
        log.warn(f"out of fold, {line}")


def _cv_rows(report: dict[str, Any], metrics: tuple[str, ...]) -> list[list[str]]:
    """Per fold, out of fold, and out of fold by visibility and by category (when the data has several)."""
    rows = [[f"fold {k}", *(_fmt(m.get(name)) for name in metrics)] for k, m in report["folds"].items()]
    rows.append(["out-of-fold", *(_fmt(report["overall"].get(name)) for name in metrics)])
    for split, part in report.get("by_visibility", {}).items():
        rows.append([f"  {split}", *(_fmt(part.get(name)) for name in metrics)])
    for category, part in report.get("by_category", {}).items():
        rows.append([f"  {category}", *(_fmt(part.get("overall", part).get(name)) for name in metrics)])
    return rows


# ------------------------------------------------------------------------------------------------- predict
@app.command()
@user_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    input: Annotated[
        Path, typer.Argument(help="A folder of images (each one animal), or the boxes of a COCO JSON or ADK folder.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission file.")] = Path(
        "submissions/submission.csv"
    ),
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="csv (one animal per image) | long-csv (a row per animal) | adk-json | coco."
        ),
    ] = "csv",
    template: Annotated[Path | None, typer.Option(help="Sample submission CSV fixing columns and row order.")] = None,
    no_flip: Annotated[bool, typer.Option("--no-flip", help="Skip flip test-time augmentation.")] = False,
    folds: Annotated[str | None, typer.Option(help="Use only these fold models, e.g. 0,1.")] = None,
    images: Annotated[Path | None, typer.Option(help="Image folder for a COCO or ADK INPUT.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help="Crops per batch (default: infer.batch_size).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, help="Image-decoding worker processes (default: 0 on a CPU with <= 4 cores).")
    ] = None,
    backend: Annotated[str, typer.Option(help="torch | onnx (ONNX Runtime; exports the run on the fly).")] = "torch",
    onnx: Annotated[
        Path | None, typer.Option(help="With --backend onnx: a file `cattlepose export` wrote for this run.")
    ] = None,
    detector: Annotated[
        Path | None,
        typer.Option(help="A detector run (task: detect) that finds the animals in each photograph of INPUT."),
    ] = None,
    detector_onnx: DetectorOnnxOpt = None,
    detector_folds: DetectorFoldsOpt = None,
    score_threshold: ScoreThresholdOpt = None,
    nms_iou: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="With --detector: boxes overlapping more are one animal.")
    ] = None,
    max_animals: Annotated[
        int | None, typer.Option(min=1, help="With --detector: at most this many animals per image, surest first.")
    ] = None,
    min_size: Annotated[
        float | None, typer.Option(min=0.0, help="With --detector: boxes narrower or lower (pixels) are dropped.")
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(help="With --detector: keep only this category (repeatable); default: every one it knows."),
    ] = None,
    skip_category_check: Annotated[
        bool,
        typer.Option(
            "--skip-category-check",
            help="Predict although the keypoint run was not trained on the detector's categories (other names).",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Flip + fold ensemble on new images, written as a submission file; with --detector, on the animals a
    detector run finds in whole photographs."""
    from cattlepose.commands.predict import run_predict

    log = Log(quiet)
    options = {"score_threshold": score_threshold, "nms_iou": nms_iou, "max_animals": max_animals,
               "min_size": min_size}  # fmt: skip
    summary = run_predict(
        run_dir, input, output, fmt=format, template=template, flip=False if no_flip else None, folds=folds,
        images=images, device=device, batch_size=batch_size, workers=workers, log=log, backend=backend, onnx=onnx,
        detector=detector, detector_onnx=detector_onnx, detector_folds=detector_folds, detect_options=options,
        categories=category,
        check_categories=not skip_category_check,
    )  # fmt: skip
    flip_state = "off" if no_flip else "on"
    animals = f" ({summary['animals']} animals)" if summary["animals"] != summary["images"] else ""
    log.info(
        f"wrote {output}: {summary['images']} images{animals}, {summary['images_per_s']:.1f} images/s, "
        f"{summary['latency_ms']:.1f} ms per image ({summary['models']} model(s), flip {flip_state}, "
        f"{summary['backend']})"
    )
    if "detect_seconds" in summary:
        log.info(
            f"detection {summary['detect_seconds']:.2f} s ({summary['detect_images_per_s']:.1f} images/s), "
            f"keypoints {summary['keypoint_seconds']:.2f} s ({summary['keypoint_images_per_s']:.1f} images/s), "
            f"end to end {summary['images_per_s']:.1f} images/s"
        )
    if summary["images_without_animals"]:
        log.info(f"{summary['images_without_animals']} of {summary['images']} images had no animal (an empty "
                 "result for each)")  # fmt: skip
    if summary.get("other_categories"):
        log.info(f"{summary['other_categories']} animal(s) of other categories than --category left out")


@app.command()
@user_errors
def video(
    run_dir: Annotated[Path, typer.Argument(help="A trained keypoint run directory.")],
    videos: Annotated[list[Path], typer.Argument(help="Video files (.mp4, .avi, .mov, .mkv, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the outputs.")] = Path("videos"),
    detector: Annotated[
        Path | None, typer.Option(help="A detector run finding the animals of each frame (several per frame).")
    ] = None,
    detector_onnx: DetectorOnnxOpt = None,
    detector_folds: DetectorFoldsOpt = None,
    score_threshold: ScoreThresholdOpt = None,
    box: Annotated[
        str | None, typer.Option(help="One animal in this fixed box x,y,w,h (pixels) of every frame.")
    ] = None,
    max_animals: Annotated[
        int | None, typer.Option(min=1, help="Animals tracked at once (track.max_animals; with --detector).")
    ] = None,
    labelled: Annotated[
        bool | None, typer.Option("--labelled/--no-labelled", help="Write the labelled video (video.labelled).")
    ] = None,
    max_gap: Annotated[
        int | None, typer.Option(min=0, help="Frames a track survives unseen, gaps filled (track.max_gap).")
    ] = None,
    smooth: Annotated[str | None, typer.Option(help="savgol | median | one_euro | none (track.smooth).")] = None,
    no_flip: Annotated[bool, typer.Option("--no-flip", help="Skip flip test-time augmentation.")] = False,
    folds: Annotated[str | None, typer.Option(help="Use only these fold models, e.g. 0,1.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help="Crops per batch (default: infer.batch_size).")] = None,
    backend: Annotated[str, typer.Option(help="torch | onnx (ONNX Runtime; exports the run on the fly).")] = "torch",
    onnx: Annotated[
        Path | None, typer.Option(help="With --backend onnx: a file `cattlepose export` wrote for this run.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML with video: and track: sections.")] = None,
    set: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="A video.* or track.* key: -s track.max_gap=15.")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Keypoints of every animal in videos, tracked over frames and smoothed. Without --detector or --box the
    whole frame is one animal. Writes, per video, into the -o folder: STEM.tracks.csv (a row per frame, track
    and keypoint: smoothed x, y, score beside the raw ones, interpolated), STEM.summary.csv (a row per track),
    STEM.dlc.csv (DeepLabCut's multi-animal CSV) and STEM.labelled.mp4 (or .avi: the skeletons drawn). A killed
    run continues where it stopped when run again (finished chunks are kept in the folder's .partial/)."""
    from cattlepose.commands.video import run_video

    log = Log(quiet)
    results = run_video(
        run_dir, videos, output, detector=detector, detector_onnx=detector_onnx, detector_folds=detector_folds,
        score_threshold=score_threshold, box=box, flip=not no_flip, folds=folds, device=device, batch_size=batch_size,
        backend=backend, onnx=onnx, max_animals=max_animals, labelled=labelled, max_gap=max_gap, smooth=smooth,
        config=config, overrides=set, log=log,
    )  # fmt: skip
    for r in results:
        missing = f", {r['missing']} frame(s) not decoded" if r["missing"] else ""
        resumed = f", {r['resumed_frames']} frames from an earlier run" if r["resumed_frames"] else ""
        log.info(f"{r['video']}: {r['frames']} frames, {r['tracks']} track(s), {r['frames_per_s']:.1f} frames/s "
                 f"({r['models']} model(s), {backend}){resumed}{missing}")  # fmt: skip
        for path in r["outputs"].values():
            log.info(f"  wrote {path}")


@app.command()
@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file (its sidecar .json beside it).")],
    folds: Annotated[str | None, typer.Option(help="Only these fold models, e.g. 0,1 (default: all).")] = None,
    no_flip: Annotated[bool, typer.Option("--no-flip", help="No mirrored copy of each crop in the graph.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Static int8 (QDQ), calibrated on training crops.")] = False,
    batch: Annotated[str, typer.Option(help="Crops per call fixed in the graph, or 'dynamic'.")] = "dynamic",
    calibration: Annotated[int, typer.Option(min=1, help="Training images int8 is calibrated on.")] = 32,
    split_pairs: Annotated[
        float,
        typer.Option(help="Split a left/right pair on one point into its maps' two peaks (video.split_pairs)."),
    ] = 0.0,
    quiet: QuietOpt = False,
) -> None:
    """The run's fold + flip ensemble, decoding included, as one ONNX file: (N, H, W, 3) uint8 crops ->
    (N, K, 3) x, y, score in crop pixels; runs with onnxruntime and numpy alone."""
    from cattlepose.commands.export import run_export

    run_export(run_dir, output, folds, not no_flip, int8, batch, calibration, Log(quiet), split_pairs)


@app.command()
@user_errors
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Predictions: csv, long-csv, adk-json or coco results.")],
    gt: Annotated[Path, typer.Argument(help="Ground truth: ADK annotation folder, COCO JSON or CSV.")],
    config: ConfigOpt = None,
    set: SetOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every metric as JSON.")] = None,
    schema: Annotated[str | None, typer.Option(help="Schema (default: the config's data.schema).")] = None,
    images: Annotated[Path | None, typer.Option(help="Image folder of a COCO GT, if not beside it.")] = None,
) -> None:
    """Score predictions against ground truth: PCK (torso, box), OKS AP, pixel errors; per keypoint, by
    visibility and by category."""
    from cattlepose.commands.evaluate import run_evaluate
    from cattlepose.core.files import write_json

    result = run_evaluate(pred, gt, config=config, overrides=set or [], schema_spec=schema, images=images,
                          json_out=json_out)  # fmt: skip
    console = make_console()
    overall = result["overall"]
    console.print(_table(f"{pred} vs {gt}", ["metric", "value"], [[k, _fmt(v)] for k, v in overall.items()]))
    m = result["matching"]
    counts = f"{m['paired']} of {m['animals']} animals paired" + (
        f", {m['detections_unpaired']} of {m['detections']} detections unpaired" if "detections" in m else ""
    )
    console.print(Text(f"matching: {m['description']} ({counts})"))
    if result["images_without_prediction"]:
        missed = result["images_without_prediction"]
        console.print(
            Text(
                f"{len(missed)} image(s) with animals have no prediction (nothing found there: each of "
                f"their animals is a miss): {', '.join(missed[:10])}{' ...' if len(missed) > 10 else ''}"
            )
        )
    if result.get("boxes"):
        console.print(
            _table(
                "boxes: COCO box AP of the predictions' boxes (IoU 0.50:0.95), apart from keypoints",
                ["metric", "value"],
                [[k, _fmt(v)] for k, v in result["boxes"].items()],
            )
        )
    if result["extra_predictions"]:
        extra = result["extra_predictions"]
        Log().warn(f"{pred}: {len(extra)} prediction(s) for images the ground truth does not hold were not scored: "
                   f"{', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''}")  # fmt: skip
    cols = ["pck_torso@0.35", "pck_bbox@0.1", "rmse"]
    rows = [[name, *[_fmt(m.get(c)) for c in cols]] for name, m in result["per_keypoint"].items()]
    rows += [[f"({split})", *[_fmt(m.get(c)) for c in cols]] for split, m in result["by_visibility"].items()]
    console.print(_table("per keypoint", ["keypoint", *cols], rows))
    from cattlepose.metrics.keypoints import merged_pairs

    for line in merged_pairs(result):
        Log().warn(line)
    if "by_category" in result:
        cols = ["pck_torso@0.35", "pck_bbox@0.1", "oks_ap", "rmse"]
        rows = [[name, str(part["n_samples"]), *[_fmt(part["overall"].get(c)) for c in cols]]
                for name, part in result["by_category"].items()]  # fmt: skip
        console.print(_table("by category", ["category", "animals", *cols], rows))
    if json_out:
        write_json(json_out, result)
        console.print(Text(f"wrote {json_out}"))


@app.command()
@user_errors
def validate(
    submission: Annotated[Path, typer.Argument(help="Submission CSV (wide, or long: a row per animal).")],
    template: Annotated[Path | None, typer.Option(help="Sample submission CSV a wide CSV must match.")] = None,
    images: Annotated[Path | None, typer.Option(help="Test image folder: also check coordinates lie inside.")] = None,
) -> None:
    """Check a submission, a wide CSV against its template, a long CSV on its own; list every problem (exit 2 if
    any)."""
    from cattlepose.commands.validate import run_validate

    problems = run_validate(submission, template, images)
    if problems:
        err = make_console(stderr=True)
        for p in problems:
            # in a log each line names the file, so grep finds the problem and where it is
            err.print(Text(f"{submission}: {p}" if plain(err) else f"  - {p}"), soft_wrap=True)
        raise UserError(f"{len(problems)} problem(s) in the submission", path=submission)
    against = f" matches {escape(str(template))}" if template is not None else ""
    make_console().print(f"[green]valid[/]: {escape(str(submission))}{against}")


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with oof.csv.")],
    worst: Annotated[int, typer.Option(min=0, help="Images in the failure gallery.")] = 12,
    quiet: QuietOpt = False,
) -> None:
    """Failure analysis of the out-of-fold predictions: RUN_DIR/report/index.html with figures."""
    from cattlepose.report.page import build_report

    page = build_report(run_dir, n_worst=worst, log=Log(quiet))
    Log(quiet).info(f"wrote {page}")


def main() -> None:
    global _ARGV
    _ARGV = sys.argv[1:]
    try:
        app()
    except UserError as e:  # raised outside a command body (e.g. while parsing a config path)
        print_error(str(e))
        sys.exit(2)


if __name__ == "__main__":
    main()
