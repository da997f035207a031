"""Gait figure of one track: each hoof's protraction with its footfalls, the head's height above the withers
and the back arch, over time (matplotlib Agg, through `figures.save`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files, never windows
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cattlepose.tracks.gait import HOOVES, TrackGait

HOOF_COLOURS = {"fore_left_foot": "#ff7f0e", "fore_right_foot": "#1f77b4", "rear_left_foot": "#d62728",
                "rear_right_foot": "#17becf"}  # fmt: skip
MIN_SPAN = 0.02  # body lengths: the least y range of the head and back panels


def gait_figure(g: TrackGait, fps: float) -> Figure:
    """Three panels sharing the time axis: protraction (body lengths ahead of the withers) of the four hooves,
    footfalls as dots; head height above the withers; back arch. The summary's numbers in the title."""
    t = g.frames / fps
    fig, (ax_p, ax_h, ax_a) = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    for h in HOOVES:
        col = HOOF_COLOURS[h]
        ax_p.plot(t, g.protraction[h], color=col, lw=1.2, label=h.replace("_foot", "").replace("_", " "))
        ff = g.footfalls[h]
        if len(ff):
            ax_p.plot(ff / fps, np.interp(ff, g.frames, g.protraction[h]), "o", color=col, ms=5)
    ax_p.set_ylabel("hoof ahead of\nwithers (body lengths)")
    ax_p.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, ncol=4, frameon=False)
    ax_h.plot(t, g.head, color="#2ca02c", lw=1.2)
    ax_h.set_ylabel("head above\nwithers (body lengths)")
    ax_a.plot(t, g.arch, color="#9467bd", lw=1.2)
    ax_a.set_ylabel("back arch\n(body lengths)")
    for ax, y in ((ax_p, None), (ax_h, g.head), (ax_a, g.arch)):
        ax.ticklabel_format(axis="y", useOffset=False)
        if y is not None and np.isfinite(y).any() and np.nanmax(y) - np.nanmin(y) < MIN_SPAN:
            mid = 0.5 * (np.nanmax(y) + np.nanmin(y))  # a flat signal drawn flat, not its rounding noise
            ax.set_ylim(mid - MIN_SPAN / 2, mid + MIN_SPAN / 2)
    ax_a.set_xlabel("time (s)")
    for ax in (ax_h, ax_a):
        for ff in g.footfalls["rear_left_foot"]:
            ax.axvline(ff / fps, color=HOOF_COLOURS["rear_left_foot"], lw=0.6, alpha=0.4)
    s = g.summary

    def num(key: str, fmt: str = ".3f") -> str:
        v = s.get(key, float("nan"))
        return "-" if not isinstance(v, float) or not np.isfinite(v) else format(v, fmt)

    fig.suptitle(f"track {g.track}: {s.get('strides', 0)} strides, {num('stride_duration_s', '.2f')} s, "
                 f"length {num('stride_length_bl', '.2f')} BL, head bob {num('head_bob_bl')} BL, "
                 f"back arch {num('back_arch_bl')} BL, step asymmetry {num('step_asymmetry', '+.2f')}"
                 + (f"\n{s['note']}" if s.get("note") else ""), fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig
