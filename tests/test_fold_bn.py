"""Folding eval-mode batch norm into the convolutions must not change what the model computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cattlepose.config import ModelConfig
from cattlepose.models import build_model
from cattlepose.models.fold_bn import fold_batchnorm


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
    folded = fold_batchnorm(model)
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
        fold_batchnorm(model)
