"""Gait signals against synthetic ground truth: the true keypoint tracks of walkers with known lameness
(`data/synth/walk.py`), clean and with pixel noise, through the library and the `gait` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.errors import UserError
from cattlepose.data.formats import tracks_csv
from cattlepose.data.formats.tracks_csv import VideoTrack
from cattlepose.data.synth.render import ADK17
from cattlepose.data.synth.walk import WALK_FARMS, Lameness, lameness_px, make_walker, stride_truth, true_keypoints
from cattlepose.data.synth_video import synthesize_video
from cattlepose.tracks.gait import HOOVES, KeypointTrack, gait_table
from cattlepose.tracks.gait_io import read_table

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
FPS = 25.0
SECONDS = 6.0


def walk(lameness: Lameness, seed: int, facing: int = 1, noise: float = 0.0, category: str = "cow"):
    """A walker and its true keypoint track (every keypoint scored 1), optionally with Gaussian pixel noise."""
    rng = np.random.default_rng(seed)
    w = make_walker(rng, seed, facing, lameness, (640, 360), 0.5, SECONDS, WALK_FARMS[seed % 2], category)
    n = int(SECONDS * FPS)
    xy = true_keypoints(w, np.arange(n) / FPS)
    if noise:
        xy = xy + np.random.default_rng(100 + seed).normal(0.0, noise, xy.shape)
    kp = np.concatenate([xy, np.ones((*xy.shape[:2], 1))], axis=-1)
    return w, KeypointTrack(str(seed), np.arange(n), kp)


def lame_herd(noise: float = 0.0):
    """Six cows, head bob and back arch in different orders, walking both ways."""
    bobs = [0.0, 0.015, 0.03, 0.045, 0.06, 0.075]
    arches = [0.045, 0.0, 0.075, 0.015, 0.06, 0.03]
    return [walk(Lameness(b, a), seed=i + 1, facing=1 if i % 2 else -1, noise=noise)
            for i, (b, a) in enumerate(zip(bobs, arches, strict=True))]  # fmt: skip


@pytest.mark.parametrize("noise", [0.0, 3.0])
def test_stride_duration_within_5_percent(noise: float) -> None:
    herd = lame_herd(noise)
    results = gait_table([t for _, t in herd], ADK17, FPS)
    for (w, _), g in zip(herd, results, strict=True):
        assert g.summary["strides"] >= 3
        assert g.summary["stride_duration_s"] == pytest.approx(w.period, rel=0.05)
        durations = np.array([r["duration_s"] for r in g.strides])
        assert np.mean(np.abs(durations / w.period - 1) <= 0.05) >= (1.0 if noise == 0 else 0.9)
        # stride length: the body's travel in one stride
        truth = stride_truth(w, SECONDS, FPS)
        assert g.summary["stride_length_px"] == pytest.approx(truth["stride_length_px"], rel=0.05)


def test_footfalls_match_the_true_touch_downs() -> None:
    w, track = walk(Lameness(), seed=7)
    (g,) = gait_table([track], ADK17, FPS)
    truth = stride_truth(w, SECONDS, FPS)["footfalls"]
    for hoof in HOOVES:
        true = np.array(truth[hoof])
        found = g.footfalls[hoof]
        assert len(found) >= len(true) - 2  # the first and last may fall outside a complete peak
        assert all(np.min(np.abs(true - f)) <= 1.0 for f in found), hoof


@pytest.mark.parametrize("signal,truth_key", [("head_bob_bl", "head_bob"), ("back_arch_bl", "back_arch")])
def test_head_bob_and_back_arch_rank_as_the_truth(signal: str, truth_key: str) -> None:
    herd = lame_herd()
    results = gait_table([t for _, t in herd], ADK17, FPS)
    truth = [getattr(w.lameness, truth_key) for w, _ in herd]
    measured = [g.summary[signal] for g in results]
    assert spearmanr(truth, measured).statistic >= 0.9, (truth, measured)
    if signal == "head_bob_bl":  # the amplitude itself, in body lengths
        for (w, _), g in zip(herd, results, strict=True):
            expected = w.lameness.head_bob * w.scale / g.summary["body_length_px"]
            assert g.summary[signal] == pytest.approx(expected, abs=0.002)


def test_back_arch_measures_the_back_line_of_animals_of_any_build() -> None:
    # a bull's hump lowers the loin against the withers-tail root line, a calf's proportions change it: across
    # builds the measure follows the drawn back line (truth.json's back_line_bl), not the lameness raise alone
    herd = [walk(Lameness(back_arch=a), seed=30 + i, facing=1 if i % 2 else -1, category=c)
            for i, (a, c) in enumerate([(0.0, "bull"), (0.03, "cow"), (0.0, "calf"), (0.06, "bull"),
                                        (0.045, "cow"), (0.015, "calf")])]  # fmt: skip
    results = gait_table([t for _, t in herd], ADK17, FPS)
    line = [lameness_px(w)["back_line_bl"] for w, _ in herd]
    measured = [g.summary["back_arch_bl"] for g in results]
    assert measured == pytest.approx(line, abs=0.002)
    assert spearmanr(line, measured).statistic == pytest.approx(1.0)
    # a hump puts a bull's back line below a cow's with the same raise
    assert line[0] < lameness_px(walk(Lameness(), seed=31, category="cow")[0])["back_line_bl"]


def test_a_shortened_side_shows_as_step_asymmetry_on_that_side() -> None:
    cases = [(None, 0.0), ("left", 0.3), ("right", 0.3), ("left", 0.15)]
    tracks = [walk(Lameness(short_side=s, short=k), seed=20 + i, facing=1 if i % 2 else -1)
              for i, (s, k) in enumerate(cases)]  # fmt: skip
    results = gait_table([t for _, t in tracks], ADK17, FPS)
    sound, left, right, mild = (g.summary for g in results)
    assert abs(sound["step_asymmetry"]) < 0.03 and sound["shorter_side"] == ""
    assert left["step_asymmetry"] < -0.15 and left["shorter_side"] == "left"
    assert right["step_asymmetry"] > 0.15 and right["shorter_side"] == "right"
    assert left["step_asymmetry"] < mild["step_asymmetry"] < sound["step_asymmetry"]  # more lameness, more asymmetry
    # with pixel noise the side is still found
    (noisy,) = gait_table([walk(Lameness(short_side="left", short=0.3), seed=21, noise=3.0)[1]], ADK17, FPS)
    assert noisy.summary["shorter_side"] == "left"


def test_gaps_are_bridged_or_cut() -> None:
    w, track = walk(Lameness(), seed=3)
    kp = track.keypoints.copy()
    kp[40:44, :, 2] = 0.0  # 4 frames unseen: filled
    keep = np.ones(len(track.frames), bool)
    keep[90:110] = False  # 20 frames missing rows: the track is cut there
    cut = KeypointTrack("gappy", track.frames[keep], kp[keep])
    (g,) = gait_table([cut], ADK17, FPS)
    assert g.summary["stride_duration_s"] == pytest.approx(w.period, rel=0.05)
    assert all(not (r["start_frame"] < 100 < r["end_frame"]) for r in g.strides)  # no stride across the cut
    assert np.isnan(g.protraction["fore_left_foot"][95])


def test_a_standing_animal_has_no_strides() -> None:
    _, track = walk(Lameness(), seed=4)
    still = track.keypoints.copy()
    still[..., :2] = still[:1, :, :2]  # the first frame, held
    (g,) = gait_table([KeypointTrack("still", track.frames, still)], ADK17, FPS)
    assert g.strides == [] and "not walking" in g.summary["note"]
    (short,) = gait_table([KeypointTrack("short", track.frames[:10], track.keypoints[:10])], ADK17, FPS)
    assert short.strides == [] and "long enough" in short.summary["note"]


def test_keypoints_found_by_name_in_another_spelling() -> None:
    w, track = walk(Lameness(), seed=5)
    names = [n.replace("fore_", "front_").replace("rear_", "back_") for n in ADK17]
    order = np.random.default_rng(0).permutation(len(names))
    moved = KeypointTrack("renamed", track.frames, track.keypoints[:, order])
    (g,) = gait_table([moved], [names[i] for i in order], FPS)
    assert g.summary["stride_duration_s"] == pytest.approx(w.period, rel=0.05)


def test_missing_keypoints_are_named_with_the_signals_that_need_them() -> None:
    names = [n for n in ADK17 if n not in ("fore_head", "rear_left_foot")]
    with pytest.raises(UserError) as e:
        gait_table([], names, FPS)
    msg = str(e.value)
    assert "lack rear_left_foot, fore_head" in msg
    assert "head bob: fore_head, fore_spine" in msg and "step asymmetry:" in msg
    with pytest.raises(UserError, match="frame rate"):
        gait_table([], ADK17, 0.0)


def write_tidy(path: Path, tracks: list[KeypointTrack], names=ADK17, noise_raw: float = 0.0) -> None:
    """The tidy CSV as `cattlepose video` writes it (its own writer): smoothed values (here the truth) and raw
    ones (noisier)."""
    rng = np.random.default_rng(0)
    video_tracks = []
    for t in tracks:
        raw = t.keypoints.copy()
        raw[..., :2] += rng.normal(0, noise_raw, raw[..., :2].shape) if noise_raw else 0.0
        frames = np.asarray(t.frames)
        video_tracks.append(VideoTrack(int(t.track), int(frames[0]), raw, t.keypoints.copy(),
                                       np.zeros(len(frames), bool)))  # fmt: skip
    tracks_csv.write_tidy(path, "walk.mp4", FPS, video_tracks, list(names))


def test_gait_command_on_a_tidy_csv(tmp_path: Path) -> None:
    herd = lame_herd()[:2]
    tidy = tmp_path / "tracks.csv"
    write_tidy(tidy, [t for _, t in herd], noise_raw=40.0)
    out = tmp_path / "gait"
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(out)], env=WIDE)  # fps from the time column
    assert res.exit_code == 0, res.output
    summary = read_table(out / "summary.csv")
    assert [r["track"] for r in summary] == ["1", "2"]
    for (w, _), row in zip(herd, summary, strict=True):
        assert float(row["stride_duration_s"]) == pytest.approx(w.period, rel=0.05)
    strides = read_table(out / "strides.csv")
    assert len(strides) >= 8 * 3 and set(strides[0]) >= {"hoof", "duration_s", "head_bob_bl", "step_bl"}
    assert (out / "gait_1.png").stat().st_size > 10_000 and (out / "gait_2.png").is_file()
    # the raw rows (40 px of noise here) give other numbers: the kind is honoured
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(tmp_path / "raw"), "--kind", "raw", "--no-plots"],
                        env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert read_table(tmp_path / "raw" / "summary.csv") != summary
    assert not (tmp_path / "raw" / "gait_1.png").exists()


def test_gait_command_refuses_bad_input(tmp_path: Path) -> None:
    _, track = walk(Lameness(), seed=6)
    names = [n for n in ADK17 if n != "hip"]
    tidy = tmp_path / "tracks.csv"
    write_tidy(tidy, [KeypointTrack("1", track.frames[:30], np.delete(track.keypoints[:30], ADK17.index("hip"), 1))],
               names)  # fmt: skip
    out = tmp_path / "gait"
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(out)], env=WIDE)
    assert res.exit_code == 2 and "lack hip" in res.output and "back arch" in res.output
    assert not out.exists()
    tidy.write_text("video,frame,track,keypoint,x,y\nv,0,1,hip,1,2\n")
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(out)], env=WIDE)
    assert res.exit_code == 2 and "no column time, score" in res.output
    header = "video,frame,time,track,keypoint,x,y,score,x_raw,y_raw,score_raw,interpolated\n"
    tidy.write_text(header + "v,0,0,1,hip,abc,2,1,1,2,1,0\n")
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(out)], env=WIDE)
    assert res.exit_code == 2 and "line 2: x is 'abc'" in res.output
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(out), "--kind", "filtered"], env=WIDE)
    assert res.exit_code == 2 and "unknown kind 'filtered'" in res.output
    tidy.write_text(header + "v,0,0,1,hip,1,2,1,1,2,1,0\nv,1,0,1,hip,1,2,1,1,2,1,0\n")
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(out)], env=WIDE)
    assert res.exit_code == 2 and "give --fps" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["gait", str(tmp_path / "none.csv"), "-o", str(out)], env=WIDE)
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(tidy)], env=WIDE)
    assert res.exit_code == 2 and "folder" in res.output


def test_gait_command_on_a_synthetic_videos_truth(tmp_path: Path) -> None:
    synthesize_video(tmp_path / "v", animals=2, seconds=5.0, fps=25, size=(320, 180), seed=2,
                     lameness=[Lameness(0.05, 0.0), Lameness(0.0, 0.05, "left", 0.3)])  # fmt: skip
    res = runner.invoke(app, ["gait", str(tmp_path / "v" / "truth.json"), "-o", str(tmp_path / "g"), "--no-plots"],
                        env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    import json

    animals = json.loads((tmp_path / "v" / "truth.json").read_text())["animals"]
    rows = read_table(tmp_path / "g" / "summary.csv")
    for animal, row in zip(animals, rows, strict=True):
        assert float(row["stride_duration_s"]) == pytest.approx(animal["stride_duration_s"], rel=0.05)
    assert float(rows[0]["head_bob_bl"]) > 3 * float(rows[1]["head_bob_bl"])
    assert rows[1]["shorter_side"] == "left"


def test_tracks_with_nothing_to_measure_give_an_honest_row_and_a_figure(tmp_path: Path) -> None:
    from cattlepose.report.figures import save
    from cattlepose.report.gait import gait_figure

    empty = KeypointTrack("empty", np.zeros(0, np.int64), np.zeros((0, 17, 3)))
    unseen = KeypointTrack("unseen", np.arange(50), np.full((50, 17, 3), np.nan))
    for g in gait_table([empty, unseen], ADK17, FPS):
        assert g.strides == [] and g.summary["strides"] == 0 and np.isnan(g.summary["stride_duration_s"])
        assert "long enough" in g.summary["note"]
        assert save(gait_figure(g, FPS), tmp_path / f"{g.track}.png").stat().st_size > 0


def test_hooves_labelled_twice_on_one_leg_give_no_strides_and_say_why() -> None:
    """A model that cannot tell left from right puts both hooves of a pair on one leg: no strides from that pair
    (they would mix two legs), a note naming it, and the other pair measured as before."""
    w, track = walk(Lameness(), seed=5)
    kp = track.keypoints.copy()
    i = {n: k for k, n in enumerate(ADK17)}
    kp[:, i["fore_right_foot"], :2] = kp[:, i["fore_left_foot"], :2] + 0.3  # both fore hooves on the left leg
    (g,) = gait_table([KeypointTrack("one-leg", track.frames, kp)], ADK17, FPS)
    hooves = {r["hoof"] for r in g.strides}
    assert hooves == {"rear_left_foot", "rear_right_foot"}
    assert "fore hooves: left and right coincide" in g.summary["note"] and "rear hooves" not in g.summary["note"]
    assert g.summary["stride_duration_s"] == pytest.approx(w.period, rel=0.05)
    assert np.isnan(g.summary["tracking_bl"])  # rear prints against fore prints: no fore prints
    kp[:, i["rear_right_foot"], :2] = kp[:, i["rear_left_foot"], :2]
    (both,) = gait_table([KeypointTrack("no-legs", track.frames, kp)], ADK17, FPS)
    assert both.strides == [] and np.isnan(both.summary["stride_duration_s"])
    assert "rear hooves: left and right coincide" in both.summary["note"]
    # a sound walker's hooves pass each other but are a pair of points: untouched
    (sound,) = gait_table([track], ADK17, FPS)
    assert "coincide" not in sound.summary["note"] and len({r["hoof"] for r in sound.strides}) == 4


def test_gait_command_prints_why_a_track_has_no_strides(tmp_path: Path) -> None:
    _, track = walk(Lameness(), seed=6)
    kp = track.keypoints.copy()
    i = {n: k for k, n in enumerate(ADK17)}
    kp[:, i["rear_left_foot"], :2] = kp[:, i["rear_right_foot"], :2]
    tidy = tmp_path / "tracks.csv"
    write_tidy(tidy, [KeypointTrack("3", track.frames, kp)])
    res = runner.invoke(app, ["gait", str(tidy), "-o", str(tmp_path / "g"), "--no-plots"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "track 3: rear hooves: left and right coincide" in " ".join(res.output.split())
    assert "coincide" in read_table(tmp_path / "g" / "summary.csv")[0]["note"]


def test_legs_mixed_up_from_some_frame_on_keep_the_stride_period() -> None:
    """A track whose left and right hooves change names once (a model that cannot tell near from far legs,
    followed through a crossing the wrong way): each hoof's own series then repeats at no clean period, but the
    leg in front of each pair does, twice a stride, so the period and the stride durations stay right."""
    names = list(ADK17)
    for w, t in lame_herd(2.0)[:3]:
        kp = t.keypoints.copy()
        for limb in ("fore", "rear"):
            a, b = names.index(f"{limb}_left_foot"), names.index(f"{limb}_right_foot")
            kp[70:, a], kp[70:, b] = t.keypoints[70:, b], t.keypoints[70:, a]
        g = gait_table([KeypointTrack(t.track, t.frames, kp)], ADK17, FPS)[0]
        assert g.summary["stride_duration_s"] == pytest.approx(w.period, rel=0.05)
