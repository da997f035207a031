"""`cattlepose video` end to end on synthetic walking cattle, scored against the truth written beside each video.

For each seed, `cattlepose synth-video` draws a 640x360 clip of cattle crossing a farm (each with a known head bob,
back arch and, for some, a shorter side); `cattlepose video` runs on it with a trained keypoint run and a trained
detector run, in a subprocess with OMP_NUM_THREADS threads, once per backend (PyTorch, and ONNX Runtime with the
int8 exports when given). Its tidy CSV is then scored against truth.json:

- identities: IDF1 and identity switches (metrics/tracking.py) of the smoothed tracks against the true animals,
  counting a true animal in a frame when at least `--min-visible` (9) of its 17 keypoints are in the frame and
  not hidden; one less visible is "don't care" (a prediction on it neither hits nor misses: an animal whose
  head alone shows at the edge, or that walks behind another, is not one a detector can be asked for). A true
  and a predicted animal agree when their mean distance over the true animal's visible keypoints is below
  `--match` (0.25) of the median body length (withers to tail root); a prediction within twice that of a
  don't-care animal is its (the few keypoints it shows are the ones a model places worst). The distance takes
  each left/right pair in its nearer order (which leg a model calls left says nothing about which animal it is);
- keypoints: the mean error of the visible keypoints of matched animals, raw (as predicted) and smoothed, with
  the sides as named and with each left/right pair in its nearer order ("either side": where the legs are);
- gait: `tracks.gait` on each predicted track, the track that follows a true animal longest standing for it:
  stride duration against the truth, head bob and back arch ranked against the true lameness (Spearman), the
  shorter side named;
- speed: frames per second of the whole command (start-up, decoding, detection, keypoints, tracking, writing).

    .venv/bin/python benchmarks/video_e2e.py --run RUN --detector DET [--onnx KP.onnx --detector-onnx DET.onnx]
        [--seeds 0,1,2] [--animals 3] [--seconds 12] [--threads 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from cattlepose.core.schema import load_schema
from cattlepose.data.formats.tracks_csv import read_tidy
from cattlepose.data.synth_video import read_truth, synthesize_video
from cattlepose.metrics.tracking import identity_metrics, keypoint_distances
from cattlepose.tracks.gait import gait_table
from cattlepose.tracks.gait_io import read_tidy as read_gait_tracks

CLI = [sys.executable, "-m", "cattlepose"]


def _frames_of(rows: list[dict], names: list[str], raw: bool) -> dict[int, dict[int, np.ndarray]]:
    """frame -> track -> (K, 2) smoothed (or raw, where detected) positions."""
    cx, cy = ("x_raw", "y_raw") if raw else ("x", "y")
    index = {n: i for i, n in enumerate(names)}
    out: dict[int, dict[int, np.ndarray]] = {}
    for r in rows:
        if r[cx] is None or r[cy] is None:
            continue
        kp = out.setdefault(int(r["frame"]), {}).setdefault(int(r["track"]), np.full((len(names), 2), np.nan))
        kp[index[str(r["keypoint"])]] = (float(r[cx]), float(r[cy]))
    return {f: {t: kp for t, kp in d.items() if not np.isnan(kp).any()} for f, d in out.items()}


def score_video(truth_path: Path, tracks_csv: Path, min_visible: int, match: float) -> dict:
    truth = read_truth(truth_path)
    names = list(truth.keypoints)
    pairs = load_schema("adk17").pairs if names == list(load_schema("adk17").keypoints) else []
    body = float(np.median([t.animal["body_length_px"] for t in truth.tracks.values()]))
    threshold = match * body
    gt: list[dict[int, np.ndarray]] = [{} for _ in range(truth.frames)]
    ignore: list[dict[int, np.ndarray]] = [{} for _ in range(truth.frames)]
    vis: list[dict[int, np.ndarray]] = [{} for _ in range(truth.frames)]
    for t in truth.tracks.values():
        for f, kp in zip(t.frames, t.keypoints, strict=True):
            xy = np.where(kp[:, 2:] == 2, kp[:, :2], np.nan)  # hidden or outside: not in the distance
            if (kp[:, 2] == 2).sum() >= min_visible:
                gt[f][t.track] = xy
                vis[f][t.track] = kp[:, 2] == 2
            else:  # mostly hidden or outside: there, but not asked for
                ignore[f][t.track] = xy
    rows = read_tidy(tracks_csv)
    smooth = _frames_of(rows, names, raw=False)
    raw = _frames_of(rows, names, raw=True)
    pred = [smooth.get(f, {}) for f in range(truth.frames)]
    ids = identity_metrics(gt, pred, threshold, ignore, ignore_threshold=2 * threshold, pairs=pairs)
    # keypoint errors and the pairs behind the gait mapping: each frame's animals matched one to one
    err_raw, err_smooth, any_raw, any_smooth = [], [], [], []
    follows: dict[tuple[int, int], int] = {}
    for f in range(truth.frames):
        g, p = list(gt[f]), list(pred[f])
        if not g or not p:
            continue
        d = np.array([[np.nanmean(keypoint_distances(gt[f][a], pred[f][b], pairs)) for b in p] for a in g])
        for i, j in zip(*linear_sum_assignment(d), strict=True):
            if d[i, j] >= threshold:
                continue
            a, b = g[i], p[j]
            follows[(a, b)] = follows.get((a, b), 0) + 1
            if b in raw.get(f, {}):  # detected in this frame (not filled in): raw and smoothed side by side
                v = vis[f][a]
                err_raw += list(np.linalg.norm(raw[f][b][v] - gt[f][a][v], axis=1))
                err_smooth += list(np.linalg.norm(pred[f][b][v] - gt[f][a][v], axis=1))
                any_raw += list(keypoint_distances(gt[f][a], raw[f][b], pairs)[v])
                any_smooth += list(keypoint_distances(gt[f][a], pred[f][b], pairs)[v])
    # gait of the predicted (smoothed) tracks; each true animal stood for by the track following it longest
    gnames, gtracks, fps = read_gait_tracks(tracks_csv)
    by_track = {g.track: g.summary for g in gait_table(gtracks, gnames, fps or truth.fps)}
    animals = []
    for t in truth.tracks.values():
        mine = {b: n for (a, b), n in follows.items() if a == t.track}
        best = max(mine, key=mine.get) if mine else None
        summary = by_track.get(str(best)) if best is not None else None
        lame = t.animal["lameness"]
        animals.append({
            "true_stride_s": t.animal["stride_duration_s"], "head_bob": lame["head_bob"],
            "back_arch": lame["back_arch"], "back_line": t.animal.get("back_line_bl", float("nan")),
            "short_side": lame["short_side"] or "",
            "stride_s": summary["stride_duration_s"] if summary else float("nan"),
            "head_bob_bl": summary["head_bob_bl"] if summary else float("nan"),
            "back_arch_bl": summary["back_arch_bl"] if summary else float("nan"),
            "shorter_side": (summary["shorter_side"] or "") if summary else None,
        })  # fmt: skip
    return {"ids": ids, "err_raw": err_raw, "err_smooth": err_smooth, "any_raw": any_raw, "any_smooth": any_smooth,
            "animals": animals, "frames": truth.frames}  # fmt: skip


def run_video(run: Path, video: Path, out: Path, threads: int, extra: list[str]) -> tuple[float, float, str]:
    """(frames/s the command reports, wall seconds, its output)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [*CLI, "video", str(run), str(video), "-o", str(out), "--no-labelled", *extra]
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    m = re.search(r"([\d.]+) frames/s", p.stdout + p.stderr)
    return (float(m.group(1)) if m else float("nan")), wall, p.stdout + p.stderr


def _num(v: float, fmt: str = ".3f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a keypoint run trained on (synthetic) cattle")
    ap.add_argument("--detector", type=Path, required=True, help="a detector run trained on cattle scenes")
    ap.add_argument("--onnx", type=Path, help="the keypoint run's int8 export (adds the ONNX Runtime rows)")
    ap.add_argument("--detector-onnx", type=Path, help="the detector run's int8 export")
    ap.add_argument("--folds", default="0", help="keypoint folds (with --onnx: the export's)")
    ap.add_argument("--detector-folds", default="0")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--animals", type=int, default=3)
    ap.add_argument(
        "--max-animals",
        type=int,
        help="tracks alive at once (default: twice --animals, so a spurious track never takes a real animal's place)",
    )
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-visible", type=int, default=9, help="visible keypoints for a true animal to count")
    ap.add_argument("--match", type=float, default=0.25, help="agreement distance, of the body length")
    ap.add_argument("--work", type=Path, default=Path("bench_video"))
    ap.add_argument("--set", "-s", action="append", default=[], help="track.* overrides for cattlepose video")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    backends = {"torch": ["--folds", args.folds, "--detector-folds", args.detector_folds]}
    if args.onnx or args.detector_onnx:
        onnx = ["--backend", "onnx", "--onnx", str(args.onnx)] if args.onnx else ["--backend", "onnx"]
        det = ["--detector-onnx", str(args.detector_onnx)] if args.detector_onnx else []
        backends["onnx int8"] = [*onnx, *det, "--folds", args.folds, "--detector-folds", args.detector_folds]
    cap = args.max_animals or 2 * args.animals
    common = ["--detector", str(args.detector), "--max-animals", str(cap)]
    common += [a for s in args.set for a in ("-s", s)]
    print(f"{len(seeds)} synthetic videos, {args.animals} cattle, {args.seconds:g} s, 640x360 at 25 fps; "
          f"{args.threads} thread(s)\n", flush=True)  # fmt: skip
    results: dict[str, list[dict]] = {b: [] for b in backends}
    for seed in seeds:
        folder = args.work / f"walk{seed}"
        if not (folder / "truth.json").is_file():
            synthesize_video(folder, animals=args.animals, seconds=args.seconds, seed=seed)
        for name, extra in backends.items():
            out = args.work / f"out{seed}_{name.replace(' ', '_')}"
            fps, wall, _ = run_video(args.run, folder / "walk.mp4", out, args.threads, [*common, *extra])
            r = score_video(folder / "truth.json", out / "walk.tracks.csv", args.min_visible, args.match)
            r.update(seed=seed, fps=fps, wall=wall)
            results[name].append(r)
            ids = r["ids"]
            print(f"seed {seed} {name}: IDF1 {ids['idf1']:.3f}, switches {ids['id_switches']:.0f} in "
                  f"{ids['gt']:.0f} animal-frames, error raw {np.mean(r['err_raw']):.2f} px -> smoothed "
                  f"{np.mean(r['err_smooth']):.2f} px (either side {np.mean(r['any_raw']):.2f} -> "
                  f"{np.mean(r['any_smooth']):.2f}), "
                  f"{fps:.1f} frames/s ({r['frames'] / wall:.1f} with start-up)",
                  flush=True)  # fmt: skip
    print("\n| backend | animal-frames | IDF1 | IDP | IDR | switches per 1,000 | keypoint error raw / smoothed px "
          "| either side px | strides within 5 % | head bob Spearman | back arch Spearman: raise / back line "
          "| shorter side named | frames/s (with start-up) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rs in results.items():
        gtn = sum(r["ids"]["gt"] for r in rs)
        predn = sum(r["ids"]["pred"] for r in rs)
        idtp = sum(r["ids"]["idtp"] for r in rs)
        sw = sum(r["ids"]["id_switches"] for r in rs)
        raw = np.mean(np.concatenate([r["err_raw"] for r in rs]))
        smo = np.mean(np.concatenate([r["err_smooth"] for r in rs]))
        any_raw = np.mean(np.concatenate([r["any_raw"] for r in rs]))
        any_smo = np.mean(np.concatenate([r["any_smooth"] for r in rs]))
        an = [a for r in rs for a in r["animals"]]
        ok = [a for a in an if np.isfinite(a["stride_s"])]
        within = np.mean([abs(a["stride_s"] / a["true_stride_s"] - 1) <= 0.05 for a in ok]) if ok else float("nan")
        bob = spearmanr([a["head_bob"] for a in ok], [a["head_bob_bl"] for a in ok]).statistic if ok else np.nan
        arch = spearmanr([a["back_arch"] for a in ok], [a["back_arch_bl"] for a in ok]).statistic if ok else np.nan
        line = spearmanr([a["back_line"] for a in ok], [a["back_arch_bl"] for a in ok]).statistic if ok else np.nan
        lame = [a for a in ok if a["short_side"]]
        named = np.mean([a["shorter_side"] == a["short_side"] for a in lame]) if lame else float("nan")
        fps = np.median([r["fps"] for r in rs])
        wall = sum(r["frames"] for r in rs) / sum(r["wall"] for r in rs)
        print(f"| {name} | {gtn:.0f} | {2 * idtp / max(gtn + predn, 1):.3f} | {idtp / max(predn, 1):.3f} | "
              f"{idtp / max(gtn, 1):.3f} | {1000 * sw / max(gtn, 1):.2f} | {raw:.2f} / {smo:.2f} | "
              f"{any_raw:.2f} / {any_smo:.2f} | "
              f"{_num(within, '.0%')} ({len(ok)}/{len(an)} animals) | {_num(bob)} | {_num(arch)} / {_num(line)} | "
              f"{_num(named, '.0%')} of {len(lame)} | {fps:.1f} ({wall:.1f}) |")  # fmt: skip
    args.work.mkdir(parents=True, exist_ok=True)
    with open(args.work / "results.json", "w", encoding="utf-8") as f:
        json.dump({k: [{**r, **{e: float(np.mean(r[e])) for e in ("err_raw", "err_smooth", "any_raw", "any_smooth")}}
                       for r in rs] for k, rs in results.items()}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
