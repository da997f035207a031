"""The synthetic walking video: decodes back whole, its truth matches it, hooves stay planted, lameness is in
the keypoints, foreign folders are refused, and still images are untouched by the new pose fields."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.core.errors import UserError
from cattlepose.data.synth.pose import joints, sample_pose
from cattlepose.data.synth.render import ADK17
from cattlepose.data.synth.walk import (
    WALK_FARMS,
    Lameness,
    make_walker,
    render_frame,
    stride_truth,
    true_keypoints,
)
from cattlepose.data.synth_video import TRUTH, VIDEO, plan_video, read_truth, synthesize_video

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
K = {name: i for i, name in enumerate(ADK17)}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("walk")
    synthesize_video(out, animals=2, seconds=1.2, fps=10, size=(192, 108), seed=3)
    return out


def test_video_decodes_with_the_truths_frame_count(video: Path) -> None:
    truth = read_truth(video / TRUTH)
    cap = cv2.VideoCapture(str(video / VIDEO))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == truth.frames == 12
    assert frames[0].shape == (truth.height, truth.width, 3) == (108, 192, 3)
    assert truth.fps == 10.0 and truth.keypoints == ADK17
    assert set(truth.tracks) == {1, 2}
    for t in truth.tracks.values():
        assert np.all(np.diff(t.frames) > 0) and t.frames.max() < truth.frames
        v = t.keypoints[..., 2]
        assert set(np.unique(v)) <= {0.0, 1.0, 2.0}
        inside = v > 0  # labelled keypoints lie in the frame and in the animal's box
        x, y = t.keypoints[..., 0], t.keypoints[..., 1]
        assert np.all((x[inside] > -0.5) & (x[inside] < truth.width - 0.5))
        bx, by, bw, bh = (t.boxes[:, i : i + 1] for i in range(4))
        assert np.all((x >= bx - 1) & (x <= bx + bw + 1) & (y >= by - 1) & (y <= by + bh + 1) | ~inside)
        # outside the frame is v=0, and only there
        outside = (x < -0.5) | (x >= truth.width - 0.5) | (y < -0.5) | (y >= truth.height - 0.5)
        assert np.array_equal(outside, v == 0)


def test_the_truth_describes_the_frames_of_the_video(video: Path) -> None:
    """Each decoded frame is the frame the plan renders at its time (up to the sensor noise and MPEG-4), and the
    truth holds that render's keypoints."""
    truth = read_truth(video / TRUTH)
    plan = plan_video(2, 1.2, 10, (192, 108), 3)
    cap = cv2.VideoCapture(str(video / VIDEO))

    def psnr(image: np.ndarray, f: int) -> float:
        clean, _ = render_frame(plan.walkers, f / 10, plan.background, plan.foreground, plan.farm, plan.light_seed)
        return float(10 * np.log10(255**2 / np.mean((image.astype(np.float64) - clean) ** 2)))

    for f in range(truth.frames):
        ok, decoded = cap.read()
        assert ok
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        here = psnr(decoded, f)
        assert here > 28  # dB: sensor noise and MPEG-4 apart, the same picture
        if f + 2 < truth.frames:
            assert here > psnr(decoded, f + 1) + 1  # and the picture of its own time, not the next frame's
        _, animals = render_frame(plan.walkers, f / 10, plan.background, plan.foreground, plan.farm, plan.light_seed)
        for a in animals:
            t = truth.tracks[a.track]
            (row,) = np.flatnonzero(t.frames == f)
            assert np.allclose(t.keypoints[row, :, :2], a.keypoints[:, :2], atol=0.006)
            assert np.array_equal(t.keypoints[row, :, 2], a.keypoints[:, 2])
            assert np.allclose(t.boxes[row], a.box, atol=0.006)
        assert sorted(a.track for a in animals) == [k for k, t in sorted(truth.tracks.items()) if f in t.frames]


def test_truth_is_the_same_for_the_same_seed(video: Path, tmp_path: Path) -> None:
    synthesize_video(tmp_path, animals=2, seconds=1.2, fps=10, size=(192, 108), seed=3)
    assert (tmp_path / TRUTH).read_bytes() == (video / TRUTH).read_bytes()


def test_truth_records_lameness_and_stride_events(video: Path) -> None:
    doc = json.loads((video / TRUTH).read_text())
    for animal in doc["animals"]:
        assert set(animal["lameness"]) == {"head_bob", "back_arch", "short_side", "short"}
        assert 1.0 <= animal["stride_duration_s"] <= 1.3 and animal["stride_length_px"] > 0
        assert set(animal["footfalls"]) == {f"{limb}_{side}_foot" for limb in ("fore", "rear") for side in
                                           ("right", "left")}  # fmt: skip
        ff = [f for fs in animal["footfalls"].values() for f in fs]
        assert all(0 <= f < doc["frames"] for f in ff)


def _walker(lameness: Lameness = Lameness(), seed: int = 0, facing: int = 1):
    return make_walker(np.random.default_rng(seed), 1, facing, lameness, (640, 360), 0.5, 6.0, WALK_FARMS[0])


@pytest.mark.parametrize("facing", [1, -1])
def test_hooves_stay_planted_in_stance_and_land_once_per_stride(facing: int) -> None:
    w = _walker(facing=facing)
    fps = 50.0
    t = np.arange(int(4 * fps)) / fps
    xy = true_keypoints(w, t)
    truth = stride_truth(w, 4.0, fps)
    stride_px = truth["stride_length_px"]
    for hoof, falls in truth["footfalls"].items():
        for f in falls:
            stance = (t * fps >= f + 1) & (t * fps <= f + 0.5 * w.period * fps - 1)
            x = xy[stance, K[hoof], 0]
            assert np.ptp(x) < 0.06 * stride_px, (hoof, np.ptp(x), stride_px)
        # successive landing places lie one stride length apart
        at = [xy[int(np.ceil(f)), K[hoof], 0] for f in falls if np.ceil(f) < len(t)]
        assert np.allclose(np.abs(np.diff(at)), stride_px, rtol=0.03)


def test_lameness_moves_the_keypoints_it_should() -> None:
    sound, lame = _walker(), _walker(Lameness(head_bob=0.05, back_arch=0.04))
    t = np.arange(60) / 25.0
    a, b = true_keypoints(sound, t), true_keypoints(lame, t)
    # the head oscillates by head_bob (in pixels: * scale) around the sound head's height; the loin rises
    dy = b[:, K["fore_head"], 1] - a[:, K["fore_head"], 1]
    assert np.ptp(dy) == pytest.approx(2 * 0.05 * lame.scale, rel=0.05)
    assert np.allclose(a[:, K["rear_spine"], 1] - b[:, K["rear_spine"], 1], 0.04 * lame.scale, atol=0.01)
    assert np.allclose(np.delete(a, [K["fore_head"], K["rear_spine"]], 1), np.delete(b, [K["fore_head"],
                       K["rear_spine"]], 1))  # fmt: skip


def test_default_pose_fields_leave_still_joints_unchanged() -> None:
    from cattlepose.data.synth.anatomy import sample_anatomy

    rng = np.random.default_rng(5)
    for _ in range(20):
        a, p = sample_anatomy(rng, "cow"), sample_pose(rng)
        same = replace(p, head_bob=0.0, back_arch=0.0, leg_scale=(1.0, 1.0, 1.0, 1.0), planted=False)
        assert p == same
        j, k = joints(a, p), joints(a, replace(p, planted=True) if not p.walking else p)
        assert all(np.array_equal(j[n], k[n]) for n in j)


def test_refuses_a_folder_with_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"did not write.*notes\.txt"):
        synthesize_video(tmp_path, animals=1, seconds=0.2, fps=10, size=(64, 48))
    (tmp_path / "notes.txt").unlink()
    (tmp_path / TRUTH).write_text('{"format": "something else"}')
    with pytest.raises(UserError, match=r"truth\.json"):
        synthesize_video(tmp_path, animals=1, seconds=0.2, fps=10, size=(64, 48))
    assert (tmp_path / TRUTH).read_text() == '{"format": "something else"}'  # untouched
    (tmp_path / TRUTH).unlink()
    synthesize_video(tmp_path, animals=1, seconds=0.2, fps=10, size=(64, 48))
    synthesize_video(tmp_path, animals=1, seconds=0.3, fps=10, size=(64, 48))  # its own files: rewritten
    assert read_truth(tmp_path / TRUTH).frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRUTH, VIDEO]  # no temporary file left


def test_cli_writes_and_refuses_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "v"
    res = runner.invoke(app, ["synth-video", "-o", str(out), "--animals", "2", "--seconds", "0.4", "--fps", "10",
                              "--size", "96x64", "-q"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert read_truth(out / TRUTH).frames == 4
    for args, message in (
        (["--size", "96by64"], "640x360"),
        (["--size", "95x64"], "even numbers"),
        (["--fps", "0"], "fps"),
        (["--seconds", "-1"], "seconds"),
    ):
        res = runner.invoke(app, ["synth-video", "-o", str(tmp_path / "bad"), "-q", *args], env=WIDE)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output
        assert not (tmp_path / "bad").exists()


def test_read_truth_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match="not a synth-video truth"):
        read_truth(bad)
    bad.write_text('{"format": "cattlepose-synth-video", "version": 1, "keypoints": []}')
    with pytest.raises(UserError, match="damaged"):
        read_truth(bad)
