"""Transfer between schemas: the backbone loads, head channels map by keypoint name, a run directory is a source,
another HRNet width is a clear error, another PSA layout loads what matches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import yaml

from cattlepose.core.errors import UserError
from cattlepose.core.schema import load_schema
from cattlepose.models.hrnet import PoseHRNet
from cattlepose.models.pretrained import load_pretrained
from cattlepose.models.psa import psa_parameter_names
from cattlepose.runs.rundir import RunDir

BACKBONE = "hrnet_w18_small"
AP20 = load_schema("animalpose20")
# a target data set spelling 8 of animalpose20's keypoints its own way, in its own order, plus 4 of its own
TARGET = [
    "nose", "left_eye", "right_eye", "withers", "tailbase", "left_front_paw", "chin", "tail_tip",
    "right_back_paw", "left_ear", "left_hoof", "belly",
]  # fmt: skip
EXPECTED = {
    "nose": "Nose", "left_eye": "L_Eye", "right_eye": "R_Eye", "withers": "Withers", "tailbase": "TailBase",
    "left_front_paw": "L_F_Paw", "right_back_paw": "R_B_Paw", "left_ear": "L_EarBase",
}  # fmt: skip


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def model(k: int, seed: int, backbone: str = BACKBONE, psa: str = "none") -> PoseHRNet:
    """A PoseHRNet with seeded weights; the head drawn at unit scale so that every channel is distinct."""
    torch.manual_seed(seed)
    m = PoseHRNet(backbone, k, psa=psa)
    with torch.no_grad():
        m.head.weight.normal_()
        m.head.bias.normal_()
    return m.eval()


def save_checkpoint(path: Path, m: PoseHRNet, schema: dict | None = None, psa: str = "none", backbone=BACKBONE):
    """A checkpoint as engine/fit.py writes it (weights, schema, config), or the weights alone (schema None)."""
    state = {"model": m.state_dict(), "epoch": 3}
    if schema is not None:
        state["schema"] = schema
        state["config"] = {"model": {"backbone": backbone, "psa": psa, "pretrained": None}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def snapshot(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_head_channels_map_by_name_and_the_rest_stay_fresh(tmp_path: Path) -> None:
    source = model(20, seed=1)
    path = save_checkpoint(tmp_path / "best.pt", source, AP20.to_dict())
    target = model(len(TARGET), seed=2)
    before = snapshot(target)
    log = _Log()
    report = load_pretrained(target, path, log=log, keypoints=TARGET)

    assert report["head_mapped"] == EXPECTED and list(report["head_mapped"]) == [n for n in TARGET if n in EXPECTED]
    assert report["head_fresh"] == ["chin", "tail_tip", "left_hoof", "belly"]
    src, dst = source.state_dict(), target.state_dict()
    for t, name in enumerate(TARGET):
        if name in EXPECTED:
            s = AP20.index(EXPECTED[name])
            assert torch.equal(dst["head.weight"][t], src["head.weight"][s]), name
            assert torch.equal(dst["head.bias"][t], src["head.bias"][s]), name
        else:  # untouched: the target's own fresh values
            assert torch.equal(dst["head.weight"][t], before["head.weight"][t]), name
            assert torch.equal(dst["head.bias"][t], before["head.bias"][t]), name
    backbone = [k for k in dst if k.startswith("backbone.")]
    assert backbone and all(torch.equal(dst[k], src[k]) for k in backbone)
    assert report["loaded"] == len(dst) and report["missing"] == [] and report["skipped"] == []
    assert report["source"] == str(path)
    assert log.lines[-1] == (
        "head: 8 of 12 keypoints mapped by name (Nose->nose, L_Eye->left_eye, R_Eye->right_eye, "
        "Withers->withers, TailBase->tailbase, L_F_Paw->left_front_paw, ... 2 more); 4 start fresh"
    )
    # the transferred model predicts the source's heatmaps for every mapped keypoint
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out_src, out_dst = source(x), target(x)
    for t, name in enumerate(TARGET):
        if name in EXPECTED:
            torch.testing.assert_close(out_dst[:, t], out_src[:, AP20.index(EXPECTED[name])], rtol=0, atol=0)


def test_same_keypoints_in_another_order_are_permuted_not_loaded_as_they_are(tmp_path: Path) -> None:
    source = model(20, seed=3)
    path = save_checkpoint(tmp_path / "best.pt", source, AP20.to_dict())
    names = list(reversed(AP20.keypoints))
    target = model(20, seed=4)
    report = load_pretrained(target, path, keypoints=names)
    assert report["head_mapped"] == {n: n for n in names} and report["head_fresh"] == []
    assert torch.equal(target.head.weight, source.head.weight.flip(0))
    assert torch.equal(target.head.bias, source.head.bias.flip(0))
    # without the target's names the same-shape head loads as it is, as before
    plain = model(20, seed=4)
    report = load_pretrained(plain, path)
    assert torch.equal(plain.head.weight, source.head.weight) and report["head_mapped"] == {}


def test_no_shared_name_leaves_the_whole_head_fresh(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "best.pt", model(20, seed=5), AP20.to_dict())
    target = model(3, seed=6)
    before = snapshot(target)
    log = _Log()
    report = load_pretrained(target, path, log=log, keypoints=["beak", "wing_tip", "crest"])
    assert report["head_mapped"] == {} and report["head_fresh"] == ["beak", "wing_tip", "crest"]
    assert sorted(report["missing"]) == ["head.bias", "head.weight"]
    assert torch.equal(target.head.weight, before["head.weight"]) and torch.equal(target.head.bias, before["head.bias"])
    assert log.lines[-1] == "head: 0 of 3 keypoints mapped by name; 3 start fresh"


def test_weights_without_keypoint_names_load_the_head_only_when_the_shape_agrees(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "weights.pt", model(20, seed=7), schema=None)
    other_k = model(12, seed=8)
    before = snapshot(other_k)
    report = load_pretrained(other_k, path, keypoints=TARGET)  # names given, but the file has none
    assert report["head_mapped"] == {} and report["head_fresh"] == TARGET
    assert sorted(report["missing"]) == ["head.bias", "head.weight"] and len(report["skipped"]) == 2
    assert torch.equal(other_k.head.weight, before["head.weight"])
    with pytest.raises(ValueError, match="3 keypoint names for a head of 12 channels"):
        load_pretrained(other_k, path, keypoints=["a", "b", "c"])


def write_run(tmp_path: Path, metric: str | None, scores: list[float | None], cv: dict | None = None) -> tuple:
    """A run directory as `cattlepose train` leaves it: config.yaml, schema.yaml, fold{k}/best.pt (weights only,
    so the keypoint names must come from schema.yaml) and, for each score given, fold{k}/done.json."""
    run = tmp_path / "run"
    run.mkdir()
    config = {"model": {"backbone": BACKBONE, "psa": "none"}, "train": {"folds": len(scores)}}
    if metric is not None:
        config["train"]["best_metric"] = metric
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "schema.yaml").write_text(yaml.safe_dump(AP20.to_dict(), sort_keys=False))
    models = []
    for k, score in enumerate(scores):
        m = model(20, seed=10 + k)
        save_checkpoint(run / f"fold{k}" / "best.pt", m, schema=None)
        if score is not None:
            (run / f"fold{k}" / "done.json").write_text(json.dumps({"best_metric": score, "best_epoch": 2}))
        models.append(m)
    if cv is not None:
        (run / "cv.json").write_text(json.dumps(cv))
    return run, models


@pytest.mark.parametrize(
    "metric, scores, cv, chosen",
    [
        ("pck_bbox@0.1", [0.5, 0.7, 0.6], None, 1),  # higher is better
        ("rmse", [3.0, 5.0, 2.5], None, 2),  # lower is better
        ("pck_bbox@0.1", [None, None, None], None, 0),  # nothing to choose by: fold 0
        ("pck_bbox@0.1", [0.5, None, 0.6], None, 0),  # one fold without a score: fold 0
        ("oks_ap", [None, 0.2, None], {"folds": {"0": {"oks_ap": 0.3}, "1": {"oks_ap": 0.2}, "2": {"oks_ap": 0.4}}}, 2),
        (None, [0.5, 0.7, 0.6], None, 1),  # no selection metric in the config: auto, as the folds resolved it
    ],
)
def test_run_directory_loads_its_best_fold(tmp_path: Path, metric, scores, cv, chosen) -> None:
    run, models = write_run(tmp_path, metric, scores, cv)
    k, why = RunDir.open(run).best_fold()
    file = run / f"fold{k}" / "best.pt"
    assert file == run / f"fold{chosen}" / "best.pt" and why.startswith(f"fold {chosen}, ")
    target = model(len(TARGET), seed=99)
    log = _Log()
    report = load_pretrained(target, run, log=log, keypoints=TARGET)
    src, dst = models[chosen].state_dict(), target.state_dict()
    assert all(torch.equal(dst[k], src[k]) for k in dst if k.startswith("backbone."))
    assert report["head_mapped"] == EXPECTED  # names from the run's schema.yaml
    assert report["source"].startswith(f"{file} (fold {chosen}, ")
    assert log.lines[0].startswith(f"pretrained {file} (fold {chosen}")


def test_a_fold_directory_and_an_unfinished_run(tmp_path: Path) -> None:
    run, models = write_run(tmp_path, "pck_bbox@0.1", [0.9, 0.1])
    target = model(20, seed=98)
    report = load_pretrained(target, run / "fold1", keypoints=list(AP20.keypoints))
    assert torch.equal(target.head.weight, models[1].head.weight) and len(report["head_mapped"]) == 20
    empty = tmp_path / "empty_run"
    (empty / "fold0").mkdir(parents=True)
    for name in ("config.yaml", "schema.yaml"):
        (empty / name).write_text((run / name).read_text())
    with pytest.raises(UserError, match=r"no fold\{k\}/best.pt") as e:
        load_pretrained(target, empty)
    assert e.value.field == "model.pretrained" and e.value.path == str(empty)


@pytest.mark.parametrize("with_config", [True, False])
def test_another_backbone_is_a_clear_error_and_loads_nothing(tmp_path: Path, with_config: bool) -> None:
    other = model(20, seed=20, backbone="hrnet_w18_small_v2")
    path = save_checkpoint(
        tmp_path / "w18v2.pt", other, AP20.to_dict() if with_config else None, backbone=other.backbone_name
    )
    target = model(len(TARGET), seed=21)
    before = snapshot(target)
    with pytest.raises(UserError) as e:
        load_pretrained(target, path, keypoints=TARGET)
    err = e.value
    assert err.path == str(path) and err.field == "model.pretrained"
    assert f"backbone {'hrnet_w18_small_v2' if with_config else 'hrnet_w18_small_v2 or hrnet_w18'}, " in err.message
    assert "the model is hrnet_w18_small" in err.message and "set model.backbone to" in err.message
    after = target.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # refused before anything was copied


def test_a_deeper_hrnet_of_the_same_width_is_refused_too(tmp_path: Path) -> None:
    """hrnet_w18 and hrnet_w18_small_v2 share every tensor shape they have in common; w18 has more blocks."""
    torch.manual_seed(22)
    deeper = PoseHRNet("hrnet_w18", 20, psa="none")
    torch.save(deeper.state_dict(), tmp_path / "w18.pth")
    target = PoseHRNet("hrnet_w18_small_v2", 20, psa="none")
    with pytest.raises(
        UserError, match=r"from backbone hrnet_w18, the model is hrnet_w18_small_v2 .*which the model lacks"
    ):
        load_pretrained(target, tmp_path / "w18.pth")


@pytest.mark.parametrize("src_psa, dst_psa", [("none", "parallel"), ("parallel", "none"), ("parallel", "sequential")])
def test_another_psa_layout_loads_what_matches(tmp_path: Path, src_psa: str, dst_psa: str) -> None:
    source = model(20, seed=30, psa=src_psa)
    path = save_checkpoint(tmp_path / "best.pt", source, AP20.to_dict(), psa=src_psa)
    target = model(20, seed=31, psa=dst_psa)
    log = _Log()
    report = load_pretrained(target, path, log=log, keypoints=list(AP20.keypoints))
    src, dst = source.state_dict(), target.state_dict()
    shared = [k for k in dst if k in src]
    assert all(torch.equal(dst[k], src[k]) for k in shared)
    assert sorted(report["missing"]) == sorted(k for k in dst if k not in src)
    if dst_psa != "none" and src_psa == "none":
        assert set(report["missing"]) == set(psa_parameter_names(target)) and report["missing"]
    if src_psa != "none" and dst_psa == "none":
        assert report["missing"] == [] and any(".aa." in n for n in report["unused"])
    assert f"trained with psa '{src_psa}', the model has psa '{dst_psa}'" in "\n".join(log.lines)


def test_imagenet_weights_of_another_width_are_refused(tmp_path: Path) -> None:
    torch.save(timm.create_model("hrnet_w18_small_v2", pretrained=False).state_dict(), tmp_path / "in1k.pth")
    with pytest.raises(UserError, match="from backbone hrnet_w18_small_v2 or hrnet_w18, the model is hrnet_w18_small "):
        load_pretrained(model(5, seed=40), tmp_path / "in1k.pth")
