"""Fusing eval-mode batch norm into the convolutions must not change what the model computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cattlepose.core.config import ModelConfig
from cattlepose.models.batchnorm import fuse_batchnorm
from cattlepose.models.build import build_model


def _randomise_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Trained-looking statistics, so a wrongly paired fold shows up in the output."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


@pytest.mark.parametrize("psa", ["none", "parallel", "sequential"])
def test_folded_model_computes_the_same_logits(psa):
    gen = torch.Generator().manual_seed(0)
    model = build_model(ModelConfig(psa=psa, input_size=(64, 64)), 17).eval()
    _randomise_bn(model, gen)
    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.inference_mode():
        before = model(x)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fuse_batchnorm(model)
    with torch.inference_mode():
        after = model(x)
        after_cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert folded == n_bn  # every batch norm of HRNet follows a convolution directly
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    scale = before.abs().max()
    assert (after - before).abs().max() <= 1e-4 * scale
    assert (after_cl - before).abs().max() <= 1e-4 * scale


def test_folding_refuses_a_model_in_training_mode():
    model = build_model(ModelConfig(psa="none", input_size=(64, 64)), 17).train()
    with pytest.raises(ValueError, match="eval mode"):
        fuse_batchnorm(model)


def test_fusion_is_the_batch_norm_arithmetic():
    """torch's fuse_conv_bn_weights gives the textbook fold: w * g / sqrt(var + eps), (b - mean) * ... + beta."""
    gen = torch.Generator().manual_seed(1)
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)).eval()
    _randomise_bn(seq, gen)
    bn = seq[1]
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    want_w = seq[0].weight.detach() * scale.view(-1, 1, 1, 1)
    want_b = bn.bias.detach() - bn.running_mean * scale
    assert fuse_batchnorm(seq) == 1 and isinstance(seq[1], nn.Identity)
    assert torch.allclose(seq[0].weight, want_w, atol=1e-7) and torch.allclose(seq[0].bias, want_b, atol=1e-7)
