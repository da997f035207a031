"""Fuse eval-mode batch norm into the convolution before it, for inference.

In eval mode a batch norm is a per-channel affine map, so conv -> bn equals one conv with rescaled weights and
a bias (`torch.nn.utils.fusion.fuse_conv_bn_weights` does the arithmetic); the separate batch-norm passes are a
large share of a small CNN's CPU forward time. A pair is fused only where the network really runs bn straight on
that conv's output: siblings registered as `convN` / `bnN` (timm's HRNet blocks and stem), the pairs timm's
EfficientNet blocks define, or neighbours in an nn.Sequential (downsample, fuse and decoder layers). timm's
`BatchNormAct2d` (batch norm with its activation inside) becomes its activation alone.
"""

from __future__ import annotations

from itertools import pairwise

from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


def _fuse_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    conv.weight, conv.bias = nn.Parameter(weight.detach(), requires_grad=False), nn.Parameter(bias.detach(), False)


# timm's EfficientNet modules pair each conv with the batch norm after it by position, not by a shared suffix
_NAMED_PAIRS = {
    "EfficientNetFeatures": (("conv_stem", "bn1"),),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        return list(pairwise(children))
    if type(module).__name__ in _NAMED_PAIRS:
        return [p for p in _NAMED_PAIRS[type(module).__name__] if p[0] in children and p[1] in children]
    return [(name, "bn" + name[4:]) for name in children if name.startswith("conv") and "bn" + name[4:] in children]


def _fusable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and type(bn) in (nn.BatchNorm2d, BatchNormAct2d)
        and bn.track_running_stats
        and bn.affine
        and bn.num_features == conv.out_channels
    )


def fuse_batchnorm(model: nn.Module) -> int:
    """Fuse every conv -> bn pair in place (the model must be in eval mode); returns how many were fused."""
    if model.training:
        raise ValueError("fuse batch norm only into a model in eval mode")
    count = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if _fusable(conv, bn):
                _fuse_into(conv, bn)
                # BatchNormAct2d runs bn -> drop -> act; in eval mode the dropout is the identity
                setattr(module, bn_name, bn.act if isinstance(bn, BatchNormAct2d) else nn.Identity())
                count += 1
    return count
