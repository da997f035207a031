"""PoseHRNet: shapes for every backbone and PSA layout, every parameter used, channels_last, weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from cattlepose.core.backbones import BACKBONES
from cattlepose.core.config import Config, ModelConfig
from cattlepose.core.errors import UserError
from cattlepose.models.build import build_model
from cattlepose.models.info import model_info
from cattlepose.models.pretrained import load_pretrained
from cattlepose.models.psa import PolarizedSelfAttention, psa_parameter_names

LAYOUTS = ("none", "parallel", "sequential")
K = 5


def cfg(backbone: str = "hrnet_w18_small", psa: str = "parallel", **kw) -> ModelConfig:
    return ModelConfig(backbone=backbone, psa=psa, input_size=(64, 64), **kw)


def perturb_psa(model: torch.nn.Module, seed: int = 0) -> None:
    """Random values for the PSA parameters that start at zero, so that every path carries gradient."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, PolarizedSelfAttention):
                for p in (m.ch_ln.weight, m.ch_ln.bias, m.sp_wv):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


SMALL = [
    "hrnet_w18_small",
    "hrnet_w18_small_v2",
    "hrnet_w18",
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
]
BIG = [b for b in BACKBONES if b not in SMALL]


@pytest.mark.parametrize("backbone", [*SMALL, *(pytest.param(b, marks=pytest.mark.slow) for b in BIG)])
@pytest.mark.parametrize("psa", LAYOUTS)
def test_shape_and_every_parameter_gets_a_gradient(backbone: str, psa: str) -> None:
    torch.manual_seed(0)
    model = build_model(cfg(backbone, psa), K).train()
    perturb_psa(model)
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert out.shape == (2, K, 16, 24)
    F.cross_entropy(out.flatten(2), torch.softmax(torch.randn(2, K, 16 * 24), -1)).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    n_psa = sum(isinstance(m, PolarizedSelfAttention) for m in model.modules())
    assert (n_psa > 0) == (psa != "none")
    assert all(m.layout == psa for m in model.modules() if isinstance(m, PolarizedSelfAttention))


@pytest.mark.parametrize("backbone", BIG)
def test_big_backbones_shape(backbone: str) -> None:
    model = build_model(cfg(backbone, "sequential"), K).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, K, 16, 16)


def test_unused_fuse_layers_are_removed() -> None:
    full = timm.create_model("hrnet_w18_small", features_only=True, feature_location="", out_indices=(1,))
    model = build_model(cfg(psa="none"), K)
    removed = sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in model.backbone.parameters())
    assert 150_000 < removed < 250_000  # FACTS.md: about 0.19 M
    assert len(model.backbone.stage4[-1].fuse_layers) == 1
    # the pruned backbone computes the same stride-4 map as the full one
    model.backbone.load_state_dict(full.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    full.eval(), model.eval()
    torch.testing.assert_close(model.backbone(x)[0], full(x)[0])


def test_psa_sits_in_every_basic_block_of_stages_2_to_4() -> None:
    model = build_model(cfg("hrnet_w18_small", "parallel"), K)
    blocks = [
        (name, m)
        for name, m in model.backbone.named_modules()
        if isinstance(m, timm.models.resnet.BasicBlock) and name.split(".")[0] in ("stage2", "stage3", "stage4")
    ]
    assert len(blocks) == len(model.psa_blocks) > 0
    assert all(isinstance(m.aa, PolarizedSelfAttention) and m.aa.channels == m.conv1.out_channels for _, m in blocks)
    assert not any(isinstance(m, PolarizedSelfAttention) for m in model.backbone.layer1.modules())


@pytest.mark.parametrize(("placement", "expected"), [("every", 104), ("last", 26), ("stage4", 48)])
def test_psa_placement_chooses_the_blocks(placement: str, expected: int) -> None:
    """hrnet_w32: 104 BasicBlocks in stages 2-4 (8 modules, 26 branches of 4 blocks); `last` keeps the last block of
    each branch, `stage4` the 48 blocks of stage 4; the other blocks keep their identity `aa`."""
    model = build_model(cfg("hrnet_w32", "parallel", psa_placement=placement), K)
    with_psa = {name for name, m in model.backbone.named_modules() if isinstance(m, PolarizedSelfAttention)}
    assert len(with_psa) == len(model.psa_blocks) == expected
    if placement == "last":
        assert all(name.endswith(".3.aa") for name in with_psa)  # each branch's fourth and last block
    if placement == "stage4":
        assert all(name.startswith("stage4.") for name in with_psa)
    x = torch.randn(1, 3, 64, 64)
    assert model(x).shape == (1, K, 16, 16)


@pytest.mark.parametrize("psa", LAYOUTS)
def test_channels_last_matches_nchw(psa: str) -> None:
    torch.manual_seed(0)
    model = build_model(cfg(psa=psa), K).eval()
    perturb_psa(model)
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    out.sum().backward()  # the backward runs in channels_last too


@pytest.mark.parametrize("psa", ["parallel", "sequential"])
def test_psa_starts_as_the_plain_network(psa: str) -> None:
    """A pretrained backbone computes the same thing with freshly initialised PSA as without it."""
    torch.manual_seed(0)
    plain = build_model(cfg(psa="none"), K).eval()
    with_psa = build_model(cfg(psa=psa), K).eval()
    report = with_psa.load_state_dict(plain.state_dict(), strict=False)
    assert set(report.missing_keys) == set(psa_parameter_names(with_psa)) and not report.unexpected_keys
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(with_psa(x), plain(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_imagenet_file_loads_into_psa_model(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(3)
    timm_model = timm.create_model("hrnet_w18_small", pretrained=False)  # the classification model, as on the hub
    source = timm_model.state_dict()
    path = tmp_path / f"hrnet_w18_small{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    else:
        torch.save(source, path)
    model = build_model(cfg(psa="parallel"), K)
    log = _Log()
    report = load_pretrained(model, str(path), log=log)
    target = model.state_dict()
    backbone_keys = [k for k in target if k.startswith("backbone.") and ".aa." not in k]
    for k in backbone_keys:
        assert torch.equal(target[k], source[k.removeprefix("backbone.")]), k
    assert report["loaded"] == len(backbone_keys)
    assert set(report["missing"]) == set(psa_parameter_names(model)) | {"head.weight", "head.bias"}
    assert report["skipped"] == []
    assert "classifier.weight" in report["unused"]
    assert "loaded" in log.lines[0] and any("PSA tensors" in line for line in log.lines)


def test_cattlepose_checkpoint_with_other_keypoint_count(tmp_path: Path) -> None:
    torch.manual_seed(4)
    trained = build_model(cfg(psa="sequential"), 17)
    perturb_psa(trained)
    torch.save({"model": trained.state_dict(), "epoch": 3}, tmp_path / "best.pt")
    model = build_model(cfg(psa="sequential", pretrained=str(tmp_path / "best.pt")), K)  # applies it itself
    src, dst = trained.state_dict(), model.state_dict()
    for k in dst:
        if not k.startswith("head."):
            assert torch.equal(dst[k], src[k]), k
    report = load_pretrained(model, tmp_path / "best.pt")
    assert sorted(report["missing"]) == ["head.bias", "head.weight"]
    assert len(report["skipped"]) == 2 and all(s.startswith("head.") for s in report["skipped"])


def test_ddp_prefixed_state_dict_loads(tmp_path: Path) -> None:
    trained = build_model(cfg(psa="none"), K)
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "ddp.pth")
    model = build_model(cfg(psa="none"), K)
    report = load_pretrained(model, tmp_path / "ddp.pth")
    assert report["missing"] == [] and report["loaded"] == len(model.state_dict())


def test_bad_pretrained_files(tmp_path: Path) -> None:
    model = build_model(cfg(), K)
    with pytest.raises(UserError, match="not found") as e:
        load_pretrained(model, tmp_path / "nope.pth")
    assert e.value.field == "model.pretrained"
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        load_pretrained(model, tmp_path / "junk.pth")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="no tensor"):
        load_pretrained(model, tmp_path / "other.pth")


@pytest.mark.parametrize("psa", LAYOUTS)
def test_model_info(psa: str) -> None:
    config = Config(model=ModelConfig(psa=psa, input_size=(64, 64)))
    info = model_info(config, 17, measure=False)
    plain = model_info(Config(model=ModelConfig(psa="none", input_size=(64, 64))), 17, measure=False)
    model = build_model(config.model, 17)
    assert info["params (M)"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    macs = info["MACs (G, FlopCounterMode: conv+matmul)"]
    if psa == "none":
        assert info["psa params share"] == 0 and info["psa MACs share"] == 0
    else:
        assert 0 < info["psa params share"] < 0.2
        # PSA adds its own share of MACs on top of the plain network's, no more
        assert macs * (1 - info["psa MACs share"]) == pytest.approx(plain["MACs (G, FlopCounterMode: conv+matmul)"])
    # MACs grow with the input area
    big = model_info(Config(model=ModelConfig(psa=psa, input_size=(128, 128))), 17, measure=False)
    assert big["MACs (G, FlopCounterMode: conv+matmul)"] == pytest.approx(4 * macs, rel=0.02)


def test_model_info_measures_speed() -> None:
    info = model_info(Config(model=ModelConfig(input_size=(64, 64))), 17, measure=True)
    assert info["forward images/s (batch 16)"] > 1
