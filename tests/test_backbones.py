"""Every backbone of core/backbones.py works the same way downstream: it builds from the config, trains, fuses its
batch norm for inference without changing what it predicts, and hands its weights on by keypoint name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cattlepose.core.backbones import BACKBONES
from cattlepose.core.config import ModelConfig
from cattlepose.core.errors import UserError
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.build import build_model
from cattlepose.models.codec import HeatmapCodec
from cattlepose.models.pretrained import load_pretrained

K = 4
FAST = ["hrnet_w18_small", "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
EVERY = [b if b in FAST else pytest.param(b, marks=pytest.mark.slow) for b in BACKBONES]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(4, 3, 64, 64, generator=g)
    kps = torch.cat([torch.rand(4, K, 2, generator=g) * 60 + 2, torch.full((4, K, 1), 2.0)], dim=-1)
    heatmaps, weights = HeatmapCodec((64, 64)).encode_batch(kps)
    return images, heatmaps, weights


@pytest.mark.parametrize("backbone", EVERY)
def test_trains_two_steps_and_fused_batch_norm_predicts_the_same(backbone):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, psa="parallel", input_size=(64, 64)), K)
    model = model.to(memory_format=torch.channels_last).train()
    codec = HeatmapCodec((64, 64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, heatmaps, weights = _batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for _ in range(2):
        loss = codec.loss(model(images.contiguous(memory_format=torch.channels_last)), heatmaps, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[1] < losses[0]
    assert not torch.equal(model.state_dict()["head.weight"], before["head.weight"])
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        plain = model(x)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fuse_batchnorm(model) == n_bn and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        fused = model(x)
    assert (fused - plain).abs().max() <= 1e-4 * plain.abs().max()
    assert fused.argmax(-1).eq(plain.argmax(-1)).float().mean() > 0.99


def _checkpoint(path: Path, model: nn.Module, keypoints: list[str], backbone: str) -> Path:
    torch.save({"model": model.state_dict(), "schema": {"keypoints": keypoints},
                "config": {"model": {"backbone": backbone, "psa": "parallel"}}}, path)  # fmt: skip
    return path


def test_an_efficientnet_transfers_to_another_schema_by_keypoint_name(tmp_path):
    source_names = ["nose", "left_eye", "right_eye", "tail"]
    target_names = ["right_eye", "withers", "nose"]
    lite = "tf_efficientnet_lite0"
    source = build_model(ModelConfig(backbone=lite, input_size=(64, 64)), len(source_names))
    with torch.no_grad():
        source.head.weight.normal_()
    path = _checkpoint(tmp_path / "best.pt", source, source_names, lite)
    target = build_model(ModelConfig(backbone=lite, input_size=(64, 64)), len(target_names))
    fresh = target.head.weight.detach().clone()
    report = load_pretrained(target, path, keypoints=target_names)
    assert report["head_mapped"] == {"right_eye": "right_eye", "nose": "nose"} and report["head_fresh"] == ["withers"]
    src, dst = source.state_dict(), target.state_dict()
    assert all(torch.equal(dst[k], src[k]) for k in dst if k.startswith(("backbone.", "decoder.")))
    assert torch.equal(target.head.weight[0], source.head.weight[2])  # right_eye
    assert torch.equal(target.head.weight[2], source.head.weight[0])  # nose
    assert torch.equal(target.head.weight[1], fresh[1])  # withers starts fresh


@pytest.mark.parametrize(("have", "want"), [("tf_efficientnet_lite0", "tf_efficientnet_lite2"),
                                            ("hrnet_w18_small", "tf_efficientnet_lite0")])  # fmt: skip
def test_another_backbone_is_refused_before_anything_loads(tmp_path, have, want):
    source = build_model(ModelConfig(backbone=have, input_size=(64, 64)), K)
    path = _checkpoint(tmp_path / "best.pt", source, [f"k{i}" for i in range(K)], have)
    target = build_model(ModelConfig(backbone=want, input_size=(64, 64)), K)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(UserError, match=f"the weights are from backbone {have}, the model is {want}") as e:
        load_pretrained(target, path)
    assert e.value.field == "model.pretrained"
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
