"""Real photographs (the shared Animal-Pose sheep and horses): settings checked at start, transfer between
species through the CLI. Skipped where ../shared is absent (a user's clone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cattlepose.cli import app

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "animalpose_sheep_horse"
runner = CliRunner()


@pytest.fixture(scope="module")
def photos() -> Path:
    if not (SHARED / "annotations.json").is_file():
        pytest.skip(f"shared sheep and horse photographs not found at {SHARED}")
    return SHARED / "annotations.json"


def _sets(photos: Path, category: str, *extra: str) -> list[str]:
    sets = [f"data.train={photos}", "data.format=coco", "data.schema=from_data", f"data.category={category}",
            "data.group_by=image", "data.max_samples=24", "model.input_size=[64,64]", "model.psa=none",
            "train.folds=2", "train.epochs=1", "train.batch_size=8", "train.threads=2", "infer.batch_size=8",
            *extra]  # fmt: skip
    return [a for s in sets for a in ("-s", s)]


def test_a_metric_the_schema_cannot_give_fails_before_training(photos, tmp_path):
    sets = _sets(photos, "sheep", "eval.pck_torso=[0.1]", "train.best_metric=pck_torso@0.35")
    r = runner.invoke(app, ["train", *sets, "--name", "bad", "--runs-dir", str(tmp_path), "-q"])
    assert r.exit_code == 2 and "train.best_metric" in r.output, r.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_train_on_horses_then_predict_evaluate_and_fine_tune_on_sheep(photos, tmp_path):
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["train", *_sets(photos, "horse"), "--name", "horses", "--runs-dir", str(runs),
                            "--folds", "0"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "recognised as animalpose20" in r.output
    schema = (runs / "horses" / "schema.yaml").read_text()
    assert "recognised_as: animalpose20" in schema

    # the sheep of a few images, as a COCO file of their own
    doc = json.loads(photos.read_text())
    sheep = next(c["id"] for c in doc["categories"] if c["name"] == "sheep")
    anns = [a for a in doc["annotations"] if a["category_id"] == sheep][:12]
    ids = {a["image_id"] for a in anns}
    subset = {"images": [i for i in doc["images"] if i["id"] in ids], "annotations": anns,
              "categories": doc["categories"]}  # fmt: skip
    gt = tmp_path / "sheep.json"
    gt.write_text(json.dumps(subset))
    preds = tmp_path / "preds.json"
    r = runner.invoke(app, ["predict", str(runs / "horses"), str(gt), "--images", str(photos.parent / "images"),
                            "-o", str(preds), "--format", "coco", "--folds", "0", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(json.loads(preds.read_text())) == len(anns)
    metrics = tmp_path / "metrics.json"
    r = runner.invoke(app, ["evaluate", str(preds), str(gt), "--schema", "from_data", "--json", str(metrics),
                            "--images", str(photos.parent / "images")])  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads(metrics.read_text())
    assert result["n_samples"] == len(anns) and 0.0 <= result["overall"]["oks_ap"] <= 1.0

    # fine-tune on sheep from the horse run: every head channel maps by name
    r = runner.invoke(app, ["train", *_sets(photos, "sheep", f"model.pretrained={runs / 'horses'}",
                                            "train.backbone_lr=0.5", "train.warmup_epochs=0"),
                            "--name", "sheep", "--runs-dir", str(runs), "--folds", "0"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "20 of 20 keypoints mapped by name" in r.output, r.output
