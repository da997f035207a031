"""Figures: learning curves, per-keypoint bars, occlusion splits, error vs size, swap rates, failure galleries.

Each function draws onto a new matplotlib figure and returns it; `save` writes it atomically. The report and
the notebook call the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, never windows: reports are built on headless machines
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cattlepose.core.files import atomic_path
from cattlepose.core.schema import KeypointSchema
from cattlepose.report.analysis import SwapRate

VISIBLE, OCCLUDED, WRONG = "#2ca02c", "#ff7f0e", "#d62728"


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def learning_curves(histories: dict[int, list[dict[str, str]]], metric: str) -> Figure:
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, rows in sorted(histories.items()):
        epochs = [int(r["epoch"]) for r in rows]
        ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], label=f"fold {k}")
        pts = [(int(r["epoch"]), float(r[f"val_{metric}"])) for r in rows if r.get(f"val_{metric}") not in (None, "")]
        if pts:
            ax_metric.plot(*zip(*pts, strict=True), marker="o", label=f"fold {k}")
    ax_loss.set(title="training loss", xlabel="epoch")
    ax_metric.set(title=f"validation {metric}", xlabel="epoch", ylim=(0, 1))
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def per_keypoint_bars(rows: Sequence[dict], alpha: float) -> Figure:
    names = [r["keypoint"] for r in rows]
    fig, (ax_pck, ax_err) = plt.subplots(1, 2, figsize=(12, 4.2))
    y = np.arange(len(names))
    ax_pck.barh(y, [r["pck"] for r in rows], color="#1f77b4")
    ax_pck.set(yticks=y, yticklabels=names, xlim=(0, 1), title=f"PCK@{alpha:g} per keypoint")
    ax_err.barh(y, [r["median_px"] for r in rows], color="#9467bd")
    ax_err.set(yticks=y, yticklabels=[], title="median error (px)")
    for ax in (ax_pck, ax_err):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def visibility_bars(split: dict, per_kp_split: dict[str, dict[str, float]] | None, alpha: float) -> Figure:
    """Overall visible vs occluded PCK, and (when given) the same split for every keypoint."""
    fig, ax = plt.subplots(figsize=(12, 4))
    key = f"pck@{alpha:g}"
    if per_kp_split:
        names = list(per_kp_split)
        x = np.arange(len(names))
        ax.bar(x - 0.2, [per_kp_split[n]["visible"] for n in names], 0.4, color=VISIBLE, label="visible (v=2)")
        ax.bar(x + 0.2, [per_kp_split[n]["occluded"] for n in names], 0.4, color=OCCLUDED, label="occluded (v=1)")
        ax.set_xticks(x, names, rotation=45, ha="right")
    title = (
        f"PCK@{alpha:g}: visible {split['visible'][key]:.3f} (n={split['visible']['count']}), "
        f"occluded {split['occluded'][key]:.3f} (n={split['occluded']['count']})"
    )
    ax.set(ylim=(0, 1), title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def binned_bars(rows: Sequence[dict], xlabel: str, title: str, fmt: str = "{:.2f}") -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [f"{fmt.format(r['lo'])}–{fmt.format(r['hi'])}\n(n={r['images']})" for r in rows]
    ax.bar(np.arange(len(rows)), [r["pck"] for r in rows], color="#17becf")
    ax.set_xticks(np.arange(len(rows)), labels, fontsize=8)
    ax.set(ylim=(0, 1), xlabel=xlabel, ylabel="PCK", title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def error_vs_size(sizes: np.ndarray, norm_err: np.ndarray) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    per_image = np.nanmean(norm_err, axis=1)
    ax.scatter(sizes, per_image, s=8, alpha=0.5)
    ax.set(xlabel="crop size (px, long side)", ylabel="mean normalised error", title="error vs crop size")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def swap_bars(rates: Sequence[SwapRate]) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [f"{r.left}\n↔ {r.right}" for r in rates]
    ax.barh(np.arange(len(rates)), [r.rate for r in rates], color=WRONG)
    ax.set_yticks(np.arange(len(rates)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set(
        xlabel="share of predictions closer to the partner",
        title="left/right swap rate (pairs at least 0.1 PCK normaliser apart)",
        xlim=(0, None),
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def draw_pose(
    ax, image: np.ndarray, gt: np.ndarray, pred: np.ndarray | None, schema: KeypointSchema, wrong: np.ndarray | None
) -> None:
    """Ground truth: visible ●, occluded ○ (skeleton in white); prediction: small dots, wrong ones ×."""
    ax.imshow(image)
    for a, b in schema.skeleton:
        if gt[a, 2] > 0 and gt[b, 2] > 0:
            ax.plot([gt[a, 0], gt[b, 0]], [gt[a, 1], gt[b, 1]], color="white", lw=0.8, alpha=0.7)
    vis, occ = gt[:, 2] == 2, gt[:, 2] == 1
    ax.scatter(gt[vis, 0], gt[vis, 1], s=30, c=VISIBLE, edgecolors="black", linewidths=0.5, label="visible")
    ax.scatter(gt[occ, 0], gt[occ, 1], s=30, facecolors="none", edgecolors=OCCLUDED, linewidths=1.5, label="occluded")
    if pred is not None:
        bad = np.zeros(len(pred), bool) if wrong is None else wrong
        ax.scatter(pred[~bad, 0], pred[~bad, 1], s=10, c="#1f77b4", label="prediction")
        ax.scatter(pred[bad, 0], pred[bad, 1], s=40, marker="x", c=WRONG, linewidths=1.5, label="wrong")
        for k in np.flatnonzero(bad):
            ax.plot([gt[k, 0], pred[k, 0]], [gt[k, 1], pred[k, 1]], color=WRONG, lw=0.7, ls=":")
    ax.set_axis_off()


def failure_card(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    wrong: np.ndarray,
    schema: KeypointSchema,
    title: str,
    heatmaps: dict[str, np.ndarray] | None = None,
) -> Figure:
    """One failure: the image with truth and prediction, then the heatmaps of its worst joints."""
    n_maps = len(heatmaps or {})
    fig, axes = plt.subplots(1, 1 + n_maps, figsize=(3.6 * (1 + 0.75 * n_maps), 3.6), squeeze=False)
    draw_pose(axes[0, 0], image, gt, pred, schema, wrong)
    axes[0, 0].set_title(title, fontsize=8)
    for ax, (name, hm) in zip(axes[0, 1:], (heatmaps or {}).items(), strict=True):
        ax.imshow(hm, cmap="magma")
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return fig
