"""Synthetic multi-animal scenes (`cattlepose synth-herd`): deterministic, COCO that the reader takes, every box
and keypoint consistent with the picture, foreign folders refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cattlepose.cli import app
from cattlepose.data.formats import read_samples
from cattlepose.data.synth.herd import MAX_ANIMALS, MAX_SIDE, render_herd, synthesize_herd


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "herd.json"}  # fmt: skip


def test_same_seed_same_bytes_and_the_reader_takes_it(tmp_path):
    a = synthesize_herd(tmp_path / "a", n_train=4, n_test=2, seed=3)
    synthesize_herd(tmp_path / "b", n_train=4, n_test=2, seed=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    synthesize_herd(tmp_path / "c", n_train=4, n_test=2, seed=4)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    doc = json.loads((tmp_path / "a" / "train" / "annotations.json").read_text())
    assert len(doc["images"]) == 4 and len(doc["annotations"]) == a["animals_train"]
    samples, schema = read_samples("coco", tmp_path / "a" / "train" / "annotations.json", "adk17")
    labelled = [ann for ann in doc["annotations"] if ann["num_keypoints"] > 0]
    assert len(samples) == len(labelled) and schema.num_keypoints == 17
    assert all(s.category == "cattle" and s.bbox is not None for s in samples)


def test_scenes_hold_0_to_6_animals_with_boxes_around_their_keypoints():
    counts = []
    for i in range(12):
        scene = render_herd(np.random.default_rng([0, 1, i]))
        h, w = scene.image.shape[:2]
        assert max(h, w) <= MAX_SIDE and scene.image.dtype == np.uint8
        counts.append(len(scene.boxes))
        for box, kps in zip(scene.boxes, scene.keypoints, strict=True):
            x, y, bw, bh = box
            assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h and bw > 0 and bh > 0
            on = kps[kps[:, 2] > 0]
            # every labelled keypoint lies on its animal's silhouette box (a pixel of tolerance for rounding)
            assert np.all(on[:, 0] >= x - 1.5) and np.all(on[:, 0] <= x + bw + 1.5)
            assert np.all(on[:, 1] >= y - 1.5) and np.all(on[:, 1] <= y + bh + 1.5)
    assert min(counts) >= 0 and max(counts) <= MAX_ANIMALS and len(set(counts)) > 2
    # overlaps happen: some keypoints become occluded (v=1) by a nearer animal or an object
    vis = np.concatenate([render_herd(np.random.default_rng([0, 1, i])).keypoints[..., 2].ravel() for i in range(12)])
    assert 0.02 < np.mean(vis == 1) < 0.8


def test_cli_writes_the_set_and_refuses_a_foreign_folder(tmp_path):
    out = tmp_path / "herd"
    r = CliRunner().invoke(app, ["synth-herd", str(out), "--n-train", "2", "--n-test", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert (out / "herd.json").is_file() and (out / "test" / "annotations.json").is_file()
    again = CliRunner().invoke(app, ["synth-herd", str(out), "--n-train", "2", "--n-test", "1", "-q"])
    assert again.exit_code == 0, again.output  # its own earlier output is rewritten
    (out / "notes.txt").write_text("mine")
    r = CliRunner().invoke(app, ["synth-herd", str(out), "--n-train", "2", "-q"])
    assert r.exit_code == 2 and "notes.txt" in r.output
    assert (out / "notes.txt").read_text() == "mine"
