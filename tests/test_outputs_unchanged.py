"""`cattlepose predict` writes the same bytes as before the instance refactor (issue 36), in every format.

tests/data/golden/ holds what `predict` wrote, through the command line, before the refactor. The inputs are
made here from formulas (PNG images whose pixels are a function of x, y and channel, a sample-submission
template, COCO files of boxes) and the network is replaced by an exact function of each crop's pixels, so
the bytes depend only on the code under test: listing and reading the inputs, cropping, mapping keypoints
back to the image, and the writers.

To record them again (only when an output is meant to change, and say why in the commit):
    CATTLEPOSE_RECORD_GOLDEN=1 pytest tests/test_outputs_unchanged.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cattlepose.cli import app

GOLDEN = Path(__file__).parent / "data" / "golden"
RECORD = os.environ.get("CATTLEPOSE_RECORD_GOLDEN") == "1"
runner = CliRunner()
K = 17
SIZES = {"cow_a.png": (80, 60), "cow_b.png": (64, 96), "cow_c.png": (100, 70)}
# COCO boxes: image cow_a holds two animals, cow_b one; cow_c is not listed
BOXES = {
    7: ("cow_a.png", [[3.5, 4.0, 40.0, 30.5], [30.0, 20.25, 45.0, 38.0]]),
    9: ("cow_b.png", [[5.0, 10.0, 50.0, 70.0]]),
}


def _image(w: int, h: int, seed: int) -> np.ndarray:
    y, x, c = np.mgrid[0:h, 0:w, 0:3]
    return ((x * (3 + seed) + y * 7 + c * 50 + seed * 31) % 256).astype(np.uint8)


def _fake_network(crops) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and scores as an exact function of each crop's pixels (integer sums): any change in what is
    cropped, or where it is mapped back to, changes the output."""
    pixels = crops.numpy().astype(np.int64)
    h, w = pixels.shape[1:3]
    total = pixels.sum(axis=(1, 2, 3))
    rows = pixels[:, :, :, 0].sum(axis=2)  # (N, H)
    k = np.arange(K)
    x = (total[:, None] % 37 + 3.25 * k[None, :]) % (w - 1)
    y = (rows[:, (5 * k) % h] % 41 + 1.5 * k[None, :]) % (h - 1)
    scores = ((total[:, None] + 13 * k[None, :]) % 100) / 100.0
    return np.stack([x, y], axis=-1).astype(np.float32), scores.astype(np.float32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    import torch
    import yaml

    from cattlepose.core.config import dump_config, load_config
    from cattlepose.core.schema import load_schema
    from cattlepose.models.build import build_model

    root = tmp_path_factory.mktemp("golden")
    images = root / "images"
    images.mkdir()
    for seed, (name, (w, h)) in enumerate(SIZES.items()):
        Image.fromarray(_image(w, h, seed)).save(images / name)
    schema = load_schema("adk17")
    cfg = load_config(None, ["model.input_size=[64,96]", "model.psa=none", "train.folds=2", "infer.batch_size=2"])
    run = root / "run"
    (run / "fold0").mkdir(parents=True)
    model = build_model(cfg.model.model_copy(update={"pretrained": None}), schema.num_keypoints)
    meta = {"config": json.loads(json.dumps(cfg.model_dump(mode="json", by_alias=True))), "schema": schema.to_dict()}
    torch.save({"model": model.state_dict(), **meta}, run / "fold0" / "best.pt")
    (run / "fold1").mkdir()
    torch.save({"model": model.state_dict(), **meta}, run / "fold1" / "best.pt")
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "schema.yaml").write_text(yaml.safe_dump(schema.to_dict(), sort_keys=False))
    # a template: its own column order (y before x, keypoints reversed), rows in another order, stems only
    columns = ["image"] + [f"{n}_{c}" for n in reversed(schema.keypoints) for c in ("y", "x")]
    rows = [",".join(columns)] + [",".join([stem] + ["0"] * (len(columns) - 1)) for stem in ("cow_c", "cow_a", "cow_b")]
    (root / "template.csv").write_text("\n".join(rows) + "\n")
    for name, boxes in (("boxes", BOXES), ("boxes_single", {i: (f, b[:1]) for i, (f, b) in BOXES.items()})):
        anns = [{"id": 100 * image_id + j, "image_id": image_id, "category_id": 1, "bbox": box}
                for image_id, (_, bs) in boxes.items() for j, box in enumerate(bs)]  # fmt: skip
        doc = {
            "images": [{"id": i, "file_name": f, "width": SIZES[f][0], "height": SIZES[f][1]}
                       for i, (f, _) in boxes.items()],
            "annotations": anns,
            "categories": [{"id": 1, "name": "cow"}],
        }  # fmt: skip
        (images / f"{name}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def fake_network(monkeypatch):
    from cattlepose.engine import infer

    monkeypatch.setattr(infer, "torch_batch_fn", lambda ens, flip: _fake_network)


# (golden file, input, format, extra arguments)
CASES = [
    ("folder.csv", "images", "csv", []),
    ("folder_template.csv", "images", "csv", ["--template", "{root}/template.csv"]),
    ("folder.adk.json", "images", "adk-json", []),
    ("folder.coco.json", "images", "coco", []),
    ("boxes.coco.json", "images/boxes.json", "coco", []),
    ("boxes_single.csv", "images/boxes_single.json", "csv", []),
    ("boxes_single.adk.json", "images/boxes_single.json", "adk-json", []),
    ("boxes_single.coco.json", "images/boxes_single.json", "coco", []),
]


def _stable(text: str, root: Path) -> str:
    """The output without what differs between runs: the temporary folder and the measured latency."""
    text = text.replace(str(root), "{root}")
    return re.sub(r'"latency": [0-9.e+-]+', '"latency": 0', text)


@pytest.mark.parametrize("golden, source, fmt, extra", CASES, ids=[c[0] for c in CASES])
def test_predict_writes_the_bytes_it_wrote_before(inputs, fake_network, tmp_path, golden, source, fmt, extra):
    out = tmp_path / golden
    args = ["predict", str(inputs / "run"), str(inputs / source), "-o", str(out), "-f", fmt, "-q", "--workers", "0"]
    r = runner.invoke(app, args + [a.format(root=inputs) for a in extra])
    assert r.exit_code == 0, r.output
    got = _stable(out.read_text(encoding="utf-8"), inputs)
    if RECORD:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / golden).write_text(got, encoding="utf-8")
    assert got == (GOLDEN / golden).read_text(encoding="utf-8")
