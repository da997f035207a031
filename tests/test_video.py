"""`cattlepose video` end to end on tiny videos made here (a bright disc moving over a dark frame, written by
OpenCV): every output written and read back (the tidy CSV against the disc's true path, the DeepLabCut CSV by
its four header rows, the labelled video's frame count), a run interrupted mid-way continued by the same
command, frames that fail to decode in the middle bridged, and every bad input refused with exit 2 naming the
file or the option. The network is a stand-in that finds the disc in each crop (so the numbers are known)
except in the test that runs the real PyTorch ensemble of an untrained run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cattlepose.cli import app

runner = CliRunner()
W, H, N = 160, 96, 40
K = 17


def disc_centre(frame: int) -> tuple[float, float]:
    return 20.0 + 3.0 * frame, 40.0 + 10.0 * np.sin(frame / 6)


def write_video(path: Path, frames: int = N, size: tuple[int, int] = (W, H), fourcc: str = "mp4v",
                fps: float = 25.0) -> Path:  # fmt: skip
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in range(frames):
        image = np.full((h, w, 3), 40, np.uint8)
        x, y = disc_centre(f)
        cv2.circle(image, (round(x), round(y)), 7, (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return path


def disc_network(crops) -> tuple[np.ndarray, np.ndarray]:
    """Every keypoint at the centroid of the crop's bright pixels (in crop pixels), score 0.9."""
    pixels = crops.numpy() if hasattr(crops, "numpy") else crops
    bright = pixels.mean(axis=-1) > 150
    out = np.zeros((len(pixels), K, 2))
    for i, mask in enumerate(bright):
        ys, xs = np.nonzero(mask)
        out[i] = [xs.mean(), ys.mean()] if len(xs) else [0.0, 0.0]
    return out, np.full((len(pixels), K), 0.9)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """An untrained run (random weights, 2 folds) that predict and video accept."""
    import torch
    import yaml

    from cattlepose.core.config import dump_config, load_config
    from cattlepose.core.schema import load_schema
    from cattlepose.models.build import build_model

    run = tmp_path_factory.mktemp("video") / "run"
    schema = load_schema("adk17")
    cfg = load_config(None, ["model.input_size=[64,96]", "model.psa=none", "train.folds=2", "infer.batch_size=8",
                             "train.compile=off"])  # fmt: skip
    model = build_model(cfg.model.model_copy(update={"pretrained": None}), schema.num_keypoints)
    meta = {"config": json.loads(json.dumps(cfg.model_dump(mode="json", by_alias=True))), "schema": schema.to_dict()}
    for k in (0, 1):
        (run / f"fold{k}").mkdir(parents=True)
        torch.save({"model": model.state_dict(), **meta}, run / f"fold{k}" / "best.pt")
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict(), sort_keys=False))
    return run


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "walk.mp4")


@pytest.fixture
def fake_network(monkeypatch):
    from cattlepose.commands import video

    monkeypatch.setattr(video, "torch_batch_fn", lambda *a, **kw: disc_network)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_video_writes_every_output(run_dir, clip, tmp_path, fake_network):
    from cattlepose.data.formats.tracks_csv import read_tidy
    from cattlepose.report.video import count_frames

    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "-s", "video.chunk=16"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["walk.dlc.csv", "walk.labelled.mp4", "walk.summary.csv",
                                                     "walk.tracks.csv"]  # fmt: skip
    rows = _rows(out / "walk.tracks.csv")
    assert len(rows) == N * K
    assert list(rows[0]) == ["video", "frame", "time", "track", "keypoint", "x", "y", "score", "x_raw", "y_raw",
                             "score_raw", "interpolated"]  # fmt: skip
    head = [r for r in rows if r["keypoint"] == "fore_head"]
    assert [int(r["frame"]) for r in head] == list(range(N))
    assert float(head[10]["time"]) == pytest.approx(10 / 25.0)
    for r_ in head:  # the disc found where it was drawn (the min_hits frames before the track starts included)
        x, y = disc_centre(int(r_["frame"]))
        assert abs(float(r_["x_raw"]) - x) < 1.5 and abs(float(r_["y_raw"]) - y) < 1.5
        assert abs(float(r_["x"]) - x) < 1.5 and abs(float(r_["y"]) - y) < 1.5
        assert r_["track"] == "1" and r_["interpolated"] == "0"
    summary = _rows(out / "walk.summary.csv")
    assert len(summary) == 1
    s = summary[0]
    assert (s["track"], s["first_frame"], s["last_frame"], s["frames"], s["detected"]) == ("1", "0", str(N - 1),
                                                                                           str(N), str(N))  # fmt: skip
    assert float(s["distance_px"]) == pytest.approx(sum(np.hypot(*np.subtract(disc_centre(f + 1), disc_centre(f)))
                                                        for f in range(N - 1)), rel=0.05)  # fmt: skip
    assert count_frames(out / "walk.labelled.mp4") == N
    back = read_tidy(out / "walk.tracks.csv")  # the one reader gives the rows back, numbers as numbers
    assert len(back) == N * K and back[0]["frame"] == 0 and back[0]["interpolated"] is False
    assert back[-1]["x"] == float(rows[-1]["x"]) and back[-1]["track"] == 1
    assert not (out / ".partial").exists()  # the chunks are removed once every output is written
    assert "40 frames, 1 track(s)" in r.output


def test_dlc_csv_reads_back_as_deeplabcut_users_read_it(run_dir, clip, tmp_path, fake_network):
    from cattlepose.core.schema import load_schema

    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "--no-labelled"])
    assert r.exit_code == 0, r.output
    assert not (out / "walk.labelled.mp4").exists()
    with open(out / "walk.dlc.csv", newline="") as f:
        table = list(csv.reader(f))
    names = load_schema("adk17").keypoints
    assert [row[0] for row in table[:4]] == ["scorer", "individuals", "bodyparts", "coords"]
    assert set(table[0][1:]) == {"cattlepose_run"}
    assert table[1][1:] == ["track1"] * (3 * K)
    assert table[2][1:] == [n for n in names for _ in range(3)]
    assert table[3][1:] == ["x", "y", "likelihood"] * K
    assert len(table) == 4 + N and [int(row[0]) for row in table[4:]] == list(range(N))
    tidy = {(int(r["frame"]), r["keypoint"]): r for r in _rows(out / "walk.tracks.csv")}
    for row in table[4:]:
        frame = int(row[0])
        for j, name in enumerate(names):
            x, y, p = (float(v) for v in row[1 + 3 * j : 4 + 3 * j])
            assert (x, y) == (float(tidy[frame, name]["x"]), float(tidy[frame, name]["y"]))
            assert p == pytest.approx(0.9)


def test_one_euro_smooths_at_the_video_frame_rate(run_dir, tmp_path, fake_network):
    """`--smooth one_euro` through the command: the smoothed columns are the filter of the raw ones at the
    video's own frame rate (the same frames written at 25 and at 10 fps are smoothed differently)."""
    from cattlepose.core.config import TrackConfig
    from cattlepose.tracks.smooth import smooth_track

    smoothed = {}
    for fps in (25.0, 10.0):
        clip = write_video(tmp_path / f"walk{fps:.0f}.mp4", fps=fps)
        out = tmp_path / f"out{fps:.0f}"
        r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "--no-labelled",
                                "--smooth", "one_euro"])  # fmt: skip
        assert r.exit_code == 0, r.output
        rows = _rows(out / f"{clip.stem}.tracks.csv")
        assert len(rows) == N * K and {r_["track"] for r_ in rows} == {"1"}
        assert float(rows[K]["time"]) == pytest.approx(1 / fps)
        raw = np.array([[float(r_[c]) for c in ("x_raw", "y_raw", "score_raw")] for r_ in rows]).reshape(N, K, 3)
        got = np.array([[float(r_["x"]), float(r_["y"])] for r_ in rows]).reshape(N, K, 2)
        expected = smooth_track(0, raw, TrackConfig(smooth="one_euro"), fps).smoothed[:, :, :2]
        assert np.abs(got - expected).max() < 5e-3  # the CSV's 3 decimals
        smoothed[fps] = got
    assert np.abs(smoothed[25.0] - smoothed[10.0]).max() > 0.5


def test_one_euro_on_a_video_without_a_frame_rate_says_what_it_assumes(run_dir, clip, tmp_path, fake_network,
                                                                       monkeypatch):  # fmt: skip
    import dataclasses

    from cattlepose.commands import video

    real = video.probe
    monkeypatch.setattr(video, "probe", lambda path: dataclasses.replace(real(path), fps_known=False))
    args = ["video", str(run_dir), str(clip), "--no-labelled", "-o"]
    r = runner.invoke(app, [*args, str(tmp_path / "a"), "--smooth", "one_euro"])
    assert r.exit_code == 0, r.output
    assert "holds no frame rate" in r.output and "assume 25 fps" in r.output, r.output
    r = runner.invoke(app, [*args, str(tmp_path / "b")])  # savgol counts frames, not seconds: nothing to say
    assert r.exit_code == 0 and "frame rate" not in r.output, r.output


def test_interrupted_run_continues_and_writes_the_same(run_dir, clip, tmp_path, fake_network, monkeypatch):
    from cattlepose.commands import video

    straight = tmp_path / "straight"
    args = ["video", str(run_dir), str(clip), "--no-labelled", "-s", "video.chunk=8"]
    assert runner.invoke(app, [*args, "-o", str(straight)]).exit_code == 0
    out = tmp_path / "out"
    real = video._predict_chunk
    calls = []

    def dies_on_the_third(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what SIGINT raises inside a command
        return real(*a, **kw)

    monkeypatch.setattr(video, "_predict_chunk", dies_on_the_third)
    r = runner.invoke(app, [*args, "-o", str(out)])
    assert r.exit_code == 130, r.output
    assert "finished chunks are kept" in r.output
    assert [p.name for p in out.iterdir()] == [".partial"]  # no output half-written
    kept = sorted(p.name for p in next((out / ".partial").glob("walk-*")).iterdir())
    assert kept == ["chunk000000.npz", "chunk000001.npz"]
    monkeypatch.setattr(video, "_predict_chunk", real)
    calls.clear()
    r = runner.invoke(app, [*args, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "16 frames from an earlier run" in r.output
    for name in ("walk.tracks.csv", "walk.summary.csv", "walk.dlc.csv"):
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name
    # other tracking settings reuse the chunks too; another chunk size does not
    r = runner.invoke(app, [*args, "-o", str(out), "-s", "track.max_gap=3"])
    assert r.exit_code == 0 and "from an earlier run" not in r.output  # the chunks were removed when done


class _Failing:
    """OpenCV's capture with reads that fail at some frames (a corrupt stretch of the stream)."""

    def __init__(self, cap, bad: set[int]):
        self.cap, self.bad, self.n = cap, bad, 0

    def read(self):
        ok, image = self.cap.read()
        self.n += 1
        return (False, None) if self.n - 1 in self.bad else (ok, image)

    def grab(self):
        self.n += 1
        return self.cap.grab()

    def release(self):
        self.cap.release()


def test_frames_failing_mid_stream_are_bridged(run_dir, clip, tmp_path, fake_network, monkeypatch):
    import cv2

    from cattlepose.data import video as vid
    from cattlepose.report.video import count_frames

    monkeypatch.setattr(vid, "open_capture", lambda path: _Failing(cv2.VideoCapture(str(path)), {10, 11, 12}))
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "-s", "video.chunk=8"])
    assert r.exit_code == 0, r.output
    assert "3 frame(s) not decoded" in r.output
    head = {int(r_["frame"]): r_ for r_ in _rows(out / "walk.tracks.csv") if r_["keypoint"] == "fore_head"}
    assert sorted(head) == list(range(N))  # one track through the gap
    assert [f for f, r_ in head.items() if r_["interpolated"] == "1"] == [10, 11, 12]
    assert head[11]["x_raw"] == "" and abs(float(head[11]["x"]) - disc_centre(11)[0]) < 2.0
    summary = _rows(out / "walk.summary.csv")
    assert [(s["frames"], s["detected"], s["interpolated"]) for s in summary] == [(str(N), str(N - 3), "3")]
    assert count_frames(out / "walk.labelled.mp4") == N  # undecoded frames written black, numbering kept


def test_long_gap_ends_the_track(run_dir, clip, tmp_path, fake_network, monkeypatch):
    import cv2

    from cattlepose.data import video as vid

    gap = set(range(14, 20))  # 6 frames, beyond max_gap 3 (and under the 8 failures that end a stream)
    monkeypatch.setattr(vid, "open_capture", lambda path: _Failing(cv2.VideoCapture(str(path)), gap))
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "--no-labelled", "--max-gap", "3"])
    assert r.exit_code == 0, r.output
    summary = _rows(out / "walk.summary.csv")
    assert [(s["first_frame"], s["last_frame"]) for s in summary] == [("0", "13"), ("20", str(N - 1))]


def test_real_ensemble_with_a_fixed_box(run_dir, tmp_path):
    """The untrained run's PyTorch flip + fold ensemble, not a stand-in: keypoints inside the box."""
    short = write_video(tmp_path / "short.avi", frames=6, fourcc="MJPG")
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(short), "-o", str(out), "--box", "10,5,100,80",
                            "--no-labelled", "-s", "track.min_hits=1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = _rows(out / "short.tracks.csv")
    assert len(rows) == 6 * K
    xs, ys = np.array([float(r_["x_raw"]) for r_ in rows]), np.array([float(r_["y_raw"]) for r_ in rows])
    assert ((xs >= 0) & (xs < W) & (ys >= 0) & (ys < H)).all()
    assert "2 model(s), torch" in r.output


def test_chunks_resume_and_report_missing_frames(clip):
    import cv2

    from cattlepose.data.video import chunks

    all_ = list(chunks(clip, 16, total=N))
    assert [(c.index, c.start, c.stop, len(c.frames)) for c in all_] == [(0, 0, 16, 16), (1, 16, 32, 16),
                                                                          (2, 32, 40, 8)]  # fmt: skip
    assert all_[0].frames[0].shape == (H, W, 3)
    later = list(chunks(clip, 16, first=1, total=N))
    assert [c.index for c in later] == [1, 2] and np.array_equal(later[0].frames[16], all_[1].frames[16])
    bad = list(chunks(clip, 16, total=N, reader=_Failing(cv2.VideoCapture(str(clip)), {3, 20})))
    assert [c.missing for c in bad] == [[3], [20], []] and sum(len(c.frames) for c in bad) == N - 2


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture
def bad_videos(tmp_path) -> dict[str, Path]:
    import cv2

    garbage = tmp_path / "corrupt.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 200)
    empty = tmp_path / "empty.avi"
    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    w.release()  # no frame written
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    return {"corrupt": garbage, "empty": empty, "text": text, "absent": tmp_path / "absent.mp4"}


@pytest.mark.parametrize(
    "case, words",
    [
        ("corrupt", "cannot be opened as a video"),
        ("empty", "no decodable frame"),
        ("text", "not a video file"),
        ("absent", "video not found"),
    ],
)
def test_bad_videos_exit_2_naming_the_file(run_dir, clip, bad_videos, tmp_path, case, words):
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), str(bad_videos[case]), "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert str(bad_videos[case]) in r.output and words in r.output, r.output
    assert not out.exists()  # refused before any work


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--box", "100,50,80,40"], "--box"),  # outside the 160 x 96 frame
        (["--box", "1,2,3"], "--box"),
        (["--box", "1,2,0,4"], "width and height must be positive"),
        (["--box", "1,2,3,4", "--detector", "."], "not both"),
        (["-s", "track.window=4"], "must be odd"),
        (["-s", "train.epochs=3"], "only video.* and track.* keys"),
        (["-s", "track.max_gapp=3"], "unknown key 'track.max_gapp'"),
        (["--backend", "tensorrt"], "unknown backend"),
        (["--max-animals", "3"], "without --detector every frame is one animal"),
        (["--smooth", "kalman"], "--smooth"),
        (["--smooth", "one_euro", "-s", "track.min_cutoff=0"], "track.min_cutoff"),
        (["-s", "track.beta=-1"], "track.beta"),
        (["-s", "track.d_cutoff=-2"], "track.d_cutoff"),
        (["--folds", "5"], "fold"),
        (["--backend", "onnx", "--onnx", "absent.onnx"], "exported model not found"),
        (["--detector-onnx", "det.onnx"], "--detector-onnx is for the animals a detector finds"),
        (["--score-threshold", "0.5", "--detector-folds", "0"], "are for the animals a detector finds"),
        (["--detector", ".", "--detector-onnx", "absent.onnx"], "exported detector not found"),
    ],
)
def test_bad_options_exit_2_naming_the_option(run_dir, clip, tmp_path, extra, words):
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), *extra])
    assert r.exit_code == 2, r.output
    assert words in r.output, r.output
    assert not out.exists()


def test_a_detector_run_where_the_keypoint_run_belongs_is_refused(run_dir, clip, tmp_path):
    import shutil

    det = tmp_path / "det"
    shutil.copytree(run_dir, det)
    text = (det / "config.yaml").read_text()
    (det / "config.yaml").write_text(text.replace("task: keypoints", "task: detect"))
    r = runner.invoke(app, ["video", str(det), str(clip), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and "KEYPOINT_RUN needs a keypoint run" in r.output, r.output
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(tmp_path / "out"), "--detector", str(run_dir)])
    assert r.exit_code == 2 and "--detector needs a detector run" in r.output, r.output


def test_output_folder_that_is_a_file_is_refused(run_dir, clip, tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(target)])
    assert r.exit_code == 2 and "give a folder" in r.output, r.output


# ------------------------------------------------------------------------------------------ with a detector


def two_discs(frame: int) -> list[tuple[float, float]]:
    """Two discs walking towards each other along lines that cross at frame 20."""
    return [(20.0 + 3.0 * frame, 30.0 + 0.9 * frame), (140.0 - 3.0 * frame, 66.0 - 0.9 * frame)]


def write_two_disc_video(path: Path) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (W, H))
    for f in range(N):
        image = np.full((H, W, 3), 40, np.uint8)
        for x, y in two_discs(f):
            cv2.circle(image, (round(x), round(y)), 6, (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return path


class _DiscDetector:
    """A stand-in of `cattlepose.engine.detect`'s Detector: a box around each bright blob of the frame, read as
    every box source reads an image (`data.video.image_of`)."""

    categories = ("cattle",)
    run = None  # no detector run behind it: no category record of its own

    def __init__(self, options):
        self.options = options

    def with_options(self, options):
        return _DiscDetector(options)

    def __call__(self, images):
        import cv2

        from cattlepose.data.records import Instance
        from cattlepose.data.video import image_of

        out = []
        for src in images:
            image = image_of(src.path, src.frame)
            n, _, stats, _ = cv2.connectedComponentsWithStats((image.mean(axis=-1) > 150).astype(np.uint8))
            for j in range(1, n):
                x, y, w, h = stats[j, :4]
                out.append(Instance.in_image(src, np.array([x - 2, y - 2, w + 4, h + 4], float), ann_id=str(j),
                                             score=0.9, meta={"category": "cattle"}))  # fmt: skip
        return out


@pytest.fixture
def fake_detector(monkeypatch, run_dir, tmp_path):
    import shutil
    import sys
    import types
    from dataclasses import dataclass

    @dataclass
    class DetectOptions:
        score_threshold: float = 0.3
        nms_iou: float = 0.5
        max_animals: int = 20
        min_size: float = 4.0

    module = types.ModuleType("cattlepose.engine.detect")
    module.DetectOptions = DetectOptions
    module.load_detector = lambda run_dir, folds=None, device="auto", flip=True, **kw: _DiscDetector(DetectOptions())
    monkeypatch.setitem(sys.modules, "cattlepose.engine.detect", module)
    import cattlepose.engine

    monkeypatch.setattr(cattlepose.engine, "detect", module, raising=False)  # `from cattlepose.engine import detect`
    det = tmp_path / "detector"
    shutil.copytree(run_dir, det)
    (det / "config.yaml").write_text((det / "config.yaml").read_text().replace("task: keypoints", "task: detect"))
    return det


def test_detector_animals_are_tracked_through_their_crossing(run_dir, tmp_path, fake_network, fake_detector):
    clip = write_two_disc_video(tmp_path / "pair.mp4")
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "--detector", str(fake_detector),
                            "--max-animals", "2", "-s", "video.chunk=16"])  # fmt: skip
    assert r.exit_code == 0, r.output
    head = [r_ for r_ in _rows(out / "pair.tracks.csv") if r_["keypoint"] == "fore_head"]
    tracks = sorted({r_["track"] for r_ in head})
    assert tracks == ["1", "2"]
    for t in tracks:  # each track is one disc from its first frame to its last: no identity switch
        rows = [r_ for r_ in head if r_["track"] == t]
        which = int(np.argmin([np.hypot(float(rows[0]["x"]) - x, float(rows[0]["y"]) - y)
                               for x, y in two_discs(int(rows[0]["frame"]))]))  # fmt: skip
        err = [np.hypot(float(r_["x"]) - two_discs(int(r_["frame"]))[which][0],
                        float(r_["y"]) - two_discs(int(r_["frame"]))[which][1]) for r_ in rows]  # fmt: skip
        assert len(rows) >= N - 2 and np.median(err) < 2.0 and max(err) < 12.0, (t, err)
    with open(out / "pair.dlc.csv", newline="") as f:
        individuals = next(row for row in csv.reader(f) if row[0] == "individuals")
    assert sorted(set(individuals[1:])) == ["track1", "track2"]


def test_onnx_backend_agrees_with_torch(run_dir, tmp_path):
    """The run exported on the fly and run by ONNX Runtime: the same keypoints as the PyTorch ensemble."""
    short = write_video(tmp_path / "short.mp4", frames=5)
    outs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        r = runner.invoke(app, ["video", str(run_dir), str(short), "-o", str(out), "--backend", backend,
                                "--no-labelled", "-s", "track.min_hits=1", "-s", "track.smooth=none"])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert f"2 model(s), {backend}" in r.output
        outs[backend] = _rows(out / "short.tracks.csv")
    a = np.array([[float(r_["x_raw"]), float(r_["y_raw"])] for r_ in outs["torch"]])
    b = np.array([[float(r_["x_raw"]), float(r_["y_raw"])] for r_ in outs["onnx"]])
    assert a.shape == b.shape == (5 * K, 2)
    # the fixture's network is barely trained: a map with two near-equal peaks may tip either way between the two
    # runtimes' float rounding (seen once: one keypoint of 85, 3 px apart); every other keypoint agrees exactly
    close = np.abs(a - b).max(axis=1) < 0.05
    assert close.mean() >= 0.97, np.abs(a - b).max(axis=1)


def test_an_export_of_some_folds_runs_where_the_run_lacks_the_others(run_dir, tmp_path):
    """`--onnx` alone takes the export's folds: a run whose other folds were never trained still runs it."""
    import shutil

    one = tmp_path / "one_fold"
    shutil.copytree(run_dir, one)
    onnx = tmp_path / "fold0.onnx"
    r = runner.invoke(app, ["export", str(one), "-o", str(onnx), "--folds", "0"])
    assert r.exit_code == 0, r.output
    shutil.rmtree(one / "fold1")
    short = write_video(tmp_path / "short.mp4", frames=3)
    r = runner.invoke(app, ["video", str(one), str(short), "-o", str(tmp_path / "out"), "--backend", "onnx",
                            "--onnx", str(onnx), "--no-labelled"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 model(s), onnx" in r.output and (tmp_path / "out" / "short.tracks.csv").is_file()
    # exported without --split-pairs: said, and the file decides (video.split_pairs is 0.3)
    assert "exported with --split-pairs 0, not video.split_pairs 0.3" in " ".join(r.output.split())
    r = runner.invoke(app, ["video", str(one), str(short), "-o", str(tmp_path / "torch"), "--no-labelled"])
    assert r.exit_code == 2 and "fold1" in r.output and not (tmp_path / "torch").exists()


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_killed_process_leaves_no_output_and_the_rerun_continues(run_dir, clip, tmp_path, sig):
    """A real process killed mid-video: finished chunks kept, no output written; the same command continues."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    args = ["video", str(run_dir), str(clip), "-o", str(out), "--no-labelled", "-s", "video.chunk=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cattlepose", *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(out.glob(".partial/walk-*/chunk000001.npz")):
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(getattr(signal, sig))
    err = proc.stderr.read()
    proc.wait()
    if sig == "SIGTERM":
        assert proc.returncode == 143 and "finished chunks are kept; continue with" in err, err
    assert [p.name for p in out.iterdir()] == [".partial"]
    kept = sorted(p.name for p in next((out / ".partial").glob("walk-*")).glob("chunk*.npz"))
    assert len(kept) >= 2
    for name in kept:  # every chunk file left is whole
        with np.load(next((out / ".partial").glob("walk-*")) / name) as z:
            assert z["keypoints"].shape[1:] == (K, 3)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"{4 * len(kept)} frames from an earlier run" in r.output
    assert len(_rows(out / "walk.tracks.csv")) == N * K and not (out / ".partial").exists()


def test_config_file_sections(run_dir, clip, tmp_path, fake_network):
    """configs/video.yaml applies; the run's own config.yaml is welcome; a config that disagrees with the run
    on what decides its predictions is refused, naming the key."""
    import yaml

    shipped = Path(__file__).resolve().parents[1] / "configs" / "video.yaml"
    doc = yaml.safe_load(shipped.read_text())
    doc["track"]["max_gap"] = 2
    doc["video"]["labelled"] = False
    mine = tmp_path / "video.yaml"
    mine.write_text(yaml.safe_dump(doc))
    from cattlepose.commands.video import video_settings
    from cattlepose.runs.rundir import RunDir

    run = RunDir.open(run_dir)
    cfg = video_settings(run.cfg, mine, ["track.min_hits=5"])
    assert (cfg.track.max_gap, cfg.track.min_hits, cfg.video.labelled, cfg.track.window) == (2, 5, False, 7)
    assert video_settings(run.cfg, shipped, None).track == type(cfg.track)()  # the file holds the defaults
    assert video_settings(run.cfg, run_dir / "config.yaml", None).model == run.cfg.model
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "-c", str(mine)])
    assert r.exit_code == 0, r.output
    assert not (out / "walk.labelled.mp4").exists()
    other = tmp_path / "other.yaml"
    other.write_text("model:\n  backbone: tf_efficientnet_lite0\ntrack:\n  max_gap: 3\n")
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(tmp_path / "o2"), "-c", str(other)])
    assert r.exit_code == 2 and "model.backbone" in r.output and "the run has 'hrnet_w18_small'" in r.output, r.output


def test_several_videos_in_one_command(run_dir, clip, tmp_path, fake_network):
    other = write_video(tmp_path / "second.avi", frames=12, fourcc="MJPG")
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), str(other), str(clip), "-o", str(out), "--no-labelled"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{kind}.csv" for stem in ("walk", "second") for kind in ("tracks", "summary", "dlc")
    )
    assert len(_rows(out / "second.tracks.csv")) == 12 * K and {
        r_["video"] for r_ in _rows(out / "second.tracks.csv")
    } == {"second"}
    (tmp_path / "elsewhere").mkdir()
    twin = write_video(tmp_path / "elsewhere" / "walk.mp4", frames=3)
    r = runner.invoke(app, ["video", str(run_dir), str(clip), str(twin), "-o", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "has the same name as" in r.output and str(twin) in r.output, r.output


def test_a_real_detector_on_video_frames_in_pytorch_and_from_its_export(run_dir, detector_run,
                                                                        detector_onnx, tmp_path):  # fmt: skip
    """The trained detector run (tests/conftest.py) on video frames, PyTorch and its ONNX export: the same boxes,
    so the same crops and raw keypoints; frames reach the detector through `holding`, not from disk."""
    short = write_video(tmp_path / "short.mp4", frames=6)
    common = ["--detector", str(detector_run), "--score-threshold", "0", "--max-animals", "2", "--no-labelled",
              "-s", "track.start_score=0", "-s", "track.min_hits=1", "-s", "track.smooth=none"]  # fmt: skip
    raws = {}
    for name, extra in (
        ("torch", ["-s", "video.detector_flip=true"]),
        ("onnx", ["--detector-onnx", str(detector_onnx)]),
    ):
        out = tmp_path / name
        r = runner.invoke(app, ["video", str(run_dir), str(short), "-o", str(out), *common, *extra])
        assert r.exit_code == 0, r.output
        rows = [r_ for r_ in _rows(out / "short.tracks.csv") if r_["x_raw"]]
        # random boxes of a barely trained detector: the tracker may leave one unmatched, but most frames have some
        assert len({int(r_["frame"]) for r_ in rows}) >= 4
        raws[name] = np.array(sorted((int(r_["frame"]), r_["keypoint"], float(r_["x_raw"]), float(r_["y_raw"]))
                                     for r_ in rows), dtype=object)  # fmt: skip
    a, b = raws["torch"], raws["onnx"]
    assert a.shape == b.shape and a.shape[0] >= 4 * K
    same = np.abs(a[:, 2:].astype(float) - b[:, 2:].astype(float)).max(axis=1) < 0.05
    assert same.mean() >= 0.9, same.mean()  # the barely trained keypoint network's near-ties aside


def test_a_keypoint_export_given_as_the_detector_export_is_refused(run_dir, detector_run, clip, tmp_path):
    kp = tmp_path / "kp.onnx"
    r = runner.invoke(app, ["export", str(run_dir), "-o", str(kp), "--folds", "0"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    r = runner.invoke(app, ["video", str(run_dir), str(clip), "-o", str(out), "--detector", str(detector_run),
                            "--detector-onnx", str(kp)])  # fmt: skip
    assert r.exit_code == 2 and "not a detector's export" in r.output, r.output
