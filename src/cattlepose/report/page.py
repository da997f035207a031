"""`cattlepose report RUN_DIR`: the failure analysis of a run's out-of-fold predictions, as PNGs + index.html.

`load_run_analysis` gathers everything once (samples aligned with their out-of-fold predictions, folds,
histories); `build_report` computes the numbers (analysis.py), draws the figures (figures.py) and writes the page.
The notebook calls the same two functions.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cattlepose.core.config import Config
from cattlepose.core.errors import UserError
from cattlepose.core.files import write_text
from cattlepose.core.schema import KeypointSchema
from cattlepose.core.ui import Log
from cattlepose.data.images import load_image
from cattlepose.data.records import Sample
from cattlepose.data.source import load_training_data
from cattlepose.engine.infer import CropDataset, Ensemble, ensemble_probs, load_fold_model
from cattlepose.metrics.keypoints import pck_normaliser
from cattlepose.metrics.names import pck_key, selection_metric
from cattlepose.models.codec import HeatmapCodec
from cattlepose.report import analysis, figures
from cattlepose.report.detections import build_detector_report
from cattlepose.runs.rundir import OOF, RunDir

SWAP_MIN_SEPARATION = 0.1  # swap rates count animals whose left/right pair lies >= 0.1 PCK normaliser apart


@dataclass
class RunAnalysis:
    run_dir: Path
    cfg: Config
    schema: KeypointSchema
    samples: list[Sample]
    pred: np.ndarray  # (N, K, 3) out-of-fold x, y, score in original pixels
    folds: np.ndarray  # (N,) fold of each sample
    histories: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    kind: str = "torso"  # the PCK the report is about: torso where the schema names a torso pair, else box
    alpha: float = 0.35
    best_metric: str = "pck_torso@0.35"  # what picked each fold's best epoch

    @property
    def pck_name(self) -> str:
        """The cv.json key of the report's headline PCK."""
        return pck_key(self.kind, self.alpha)

    @property
    def err_px(self) -> np.ndarray:
        return analysis.errors_px(self.pred, self.samples)

    @property
    def norm_err(self) -> np.ndarray:
        return analysis.normalised_errors(self.pred, self.samples, self.schema, self.kind)

    def wrong(self) -> np.ndarray:
        """(N, K) keypoints outside the PCK radius."""
        with np.errstate(invalid="ignore"):
            return self.norm_err > self.alpha


def load_run_analysis(run_dir: str | Path, log: Log | None = None) -> RunAnalysis:
    run_dir = Path(run_dir)
    log = log or Log(quiet=True)
    run = RunDir.open(run_dir, task="keypoints")
    cfg, schema = run.cfg, run.schema
    oof_path = run.require(OOF)
    samples, _ = load_training_data(cfg, log)
    oof = run.read_oof()
    fold_of = dict(zip((s.key for s in samples), run.assignment(samples), strict=True))
    kept = [s for s in samples if s.key in oof]
    if not kept:
        raise UserError("oof.csv matches none of the run's training samples", path=oof_path)
    histories = {k: h for k in range(cfg.train.folds) if (h := run.history(k)) is not None}
    torso = schema.pck_pair is not None and bool(cfg.eval.pck_torso)
    kind, alpha = ("torso", cfg.eval.pck_torso[0]) if torso else ("bbox", cfg.eval.pck_bbox[0])
    return RunAnalysis(
        run_dir=run_dir,
        cfg=cfg,
        schema=schema,
        samples=kept,
        pred=np.stack([oof[s.key] for s in kept]),
        folds=np.array([fold_of.get(s.key, -1) for s in kept]),
        histories=histories,
        kind=kind,
        alpha=alpha,
        best_metric=selection_metric(cfg, schema),
    )


def per_keypoint_visibility(ra: RunAnalysis) -> dict[str, dict[str, float]]:
    vis = analysis.stack_truth(ra.samples)[..., 2]
    ne = ra.norm_err
    return {
        name: {
            "visible": analysis.pck(ne[:, [k]], ra.alpha, (vis[:, [k]] == 2)),
            "occluded": analysis.pck(ne[:, [k]], ra.alpha, (vis[:, [k]] == 1)),
        }
        for k, name in enumerate(ra.schema.keypoints)
    }


def worst_joint_heatmaps(ra: RunAnalysis, index: int, joints: list[int]) -> dict[str, np.ndarray]:
    """Heatmaps (flip-averaged probabilities) of the sample's own fold model for the listed joints."""
    fold = int(ra.folds[index])
    run = RunDir(ra.run_dir, ra.cfg, ra.schema)
    if fold < 0 or not run.checkpoint(fold).is_file():
        return {}
    device = torch.device("cpu")
    model = load_fold_model(run, fold, device)
    ens = Ensemble([model], HeatmapCodec.from_config(ra.cfg), ra.schema, ra.cfg, device, [fold])
    item = CropDataset([ra.samples[index]], ra.cfg.model.input_size)[0]
    probs = ensemble_probs(ens, item["image"][None], flip=ra.cfg.infer.flip)[0][0].numpy()
    return {ra.schema.keypoints[k]: probs[k] for k in joints}


def gallery(ra: RunAnalysis, out_dir: Path, n: int = 12, heatmaps: int = 3) -> list[Path]:
    """Cards for the n worst images: overlay + heatmaps of the worst joints. Returns the written PNGs."""
    ne, wrong = ra.norm_err, ra.wrong()
    paths = []
    for rank, i in enumerate(analysis.worst_images(ne, n)):
        s = ra.samples[i]
        order = np.argsort(-np.nan_to_num(ne[i], nan=-1.0))[:heatmaps]
        maps = worst_joint_heatmaps(ra, int(i), [int(k) for k in order])
        title = f"{s.image.name}  fold {ra.folds[i]}  mean err {np.nanmean(ne[i]):.2f} torso"
        fig = figures.failure_card(load_image(s.image), s.keypoints, ra.pred[i], wrong[i], ra.schema, title, maps)
        paths.append(figures.save(fig, out_dir / f"worst_{rank:02d}.png"))
    return paths


def compute_tables(ra: RunAnalysis) -> dict[str, Any]:
    ne, ep = ra.norm_err, ra.err_px
    occ = np.array([analysis.occluded_fraction(s) for s in ra.samples])
    sizes = np.array([analysis.crop_size(s) for s in ra.samples])
    size_edges = np.unique(np.quantile(sizes, [0, 0.25, 0.5, 0.75, 1.0]))
    return {
        "overall_pck": analysis.pck(ne, ra.alpha),
        "per_keypoint": analysis.per_keypoint(ne, ep, ra.schema, ra.alpha),
        "visibility": analysis.visibility_split(ne, ra.samples, [ra.alpha, 0.1]),
        "per_keypoint_visibility": per_keypoint_visibility(ra),
        "by_occluded_fraction": analysis.binned_pck(ne, occ, [0, 0.1, 0.2, 0.35, 0.5, 1.0], ra.alpha),
        "by_crop_size": analysis.binned_pck(ne, sizes, size_edges, ra.alpha) if len(size_edges) > 1 else [],
        # pairs closer than 0.1 torso carry no left/right signal (see analysis.swap_rates)
        "swap_rates": analysis.swap_rates(
            ra.pred,
            ra.samples,
            ra.schema,
            min_separation=SWAP_MIN_SEPARATION * pck_normaliser(ra.samples, ra.schema, ra.kind),
        ),
        "sizes": sizes,
    }


def build_report(run_dir: str | Path, n_worst: int = 12, log: Log | None = None) -> Path:
    """Write RUN_DIR/report/index.html and its figures; returns the page's path."""
    log = log or Log(quiet=True)
    run = RunDir.open(run_dir)
    if run.task == "detect":  # boxes, not keypoints: its own page
        return build_detector_report(run, n_worst, log)
    ra = load_run_analysis(run_dir, log)
    out = ra.run_dir / "report"
    t = compute_tables(ra)
    metric = ra.best_metric
    figs = {
        "learning_curves.png": figures.learning_curves(ra.histories, metric),
        "per_keypoint.png": figures.per_keypoint_bars(t["per_keypoint"], ra.alpha),
        "visibility.png": figures.visibility_bars(t["visibility"], t["per_keypoint_visibility"], ra.alpha),
        "occluded_fraction.png": figures.binned_bars(
            t["by_occluded_fraction"], "share of the image's keypoints occluded", f"PCK@{ra.alpha:g} by occlusion"
        ),
        "error_vs_size.png": figures.error_vs_size(t["sizes"], ra.norm_err),
        "swap_rates.png": figures.swap_bars(t["swap_rates"]),
    }
    if t["by_crop_size"]:
        figs["pck_by_size.png"] = figures.binned_bars(
            t["by_crop_size"], "crop size (px)", f"PCK@{ra.alpha:g} by crop size", fmt="{:.0f}"
        )
    for name, fig in figs.items():
        figures.save(fig, out / name)
    with log.task("gallery", total=None):
        cards = gallery(ra, out, n=n_worst)
    page = out / "index.html"
    write_text(page, _html(ra, t, list(figs), [p.name for p in cards]))
    return page


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(ra: RunAnalysis, t: dict[str, Any], figure_files: list[str], cards: list[str]) -> str:
    a = ra.alpha
    vis = t["visibility"]
    kp_rows = [
        [r["keypoint"], r["pck"], t["per_keypoint_visibility"][r["keypoint"]]["visible"],
         t["per_keypoint_visibility"][r["keypoint"]]["occluded"], r["median_px"], r["count"]]
        for r in t["per_keypoint"]
    ]  # fmt: skip
    worst = sorted(kp_rows, key=lambda r: np.nan_to_num(r[3], nan=2.0))[:3]
    swaps = sorted(t["swap_rates"], key=lambda r: -np.nan_to_num(r.rate))
    findings = [
        f"Out-of-fold PCK@{a:g} ({'torso' if ra.kind == 'torso' else 'box'}, cv.json {ra.pck_name}): "
        f"{t['overall_pck']:.3f} over {len(ra.samples)} images.",
        f"Visible keypoints {vis['visible'][f'pck@{a:g}']:.3f} (n={vis['visible']['count']}) vs occluded "
        f"{vis['occluded'][f'pck@{a:g}']:.3f} (n={vis['occluded']['count']}).",
        "Hardest keypoints when occluded: " + ", ".join(f"{r[0]} ({r[3]:.2f})" for r in worst) + ".",
        f"Most swapped pair: {swaps[0].left} ↔ {swaps[0].right} ({swaps[0].rate:.1%})." if swaps else "",
    ]
    css = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:first-child{text-align:left}"
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>cattlepose report: {html.escape(ra.run_dir.name)}"
        f"</title><style>{css}</style></head><body>",
        f"<h1>Failure report: {html.escape(str(ra.run_dir))}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings if f) + "</ul>",
        "<h2>Per keypoint</h2>",
        _table(["keypoint", f"PCK@{a:g}", "visible", "occluded", "median px", "n"], kp_rows),
        "<h2>Left/right swaps</h2>",
        _table(["pair", "swap rate", "n"], [[f"{r.left} ↔ {r.right}", r.rate, r.count] for r in swaps]),
        "<h2>By occluded fraction of the image</h2>",
        _table(
            ["bin", "images", f"PCK@{a:g}"],
            [[f"{r['lo']:.2f}–{r['hi']:.2f}", r["images"], r["pck"]] for r in t["by_occluded_fraction"]],
        ),
    ]
    parts += [f"<h2>{html.escape(f[:-4].replace('_', ' '))}</h2><img src='{f}'>" for f in figure_files]
    parts.append("<h2>Worst out-of-fold images</h2><p>Ground truth: visible ●, occluded ○; prediction: blue dot, "
                 "wrong (outside the PCK radius) ×; then the heatmaps of the worst joints.</p>")  # fmt: skip
    parts += [f"<img src='{c}'>" for c in cards]
    parts.append("</body></html>")
    return "\n".join(parts)
