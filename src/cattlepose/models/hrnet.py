"""Top-down pose HRNet: a timm HRNet backbone, PSA in every BasicBlock of stages 2-4, a stride-4 heatmap head.

The backbone is timm's HRNet as a feature extractor (``features_only=True, feature_location=''`` gives the raw
branches, ``out_indices=(1,)`` only the stride-4 one). A 1x1 convolution turns that branch into K heatmap
logits at input/4, as in the original pose HRNet.

Two changes to the timm network:

* PSA goes into the ``aa`` slot of every BasicBlock of stages 2-4 (conv1 -> bn1 -> act1 -> **aa** -> conv2),
  which is where the official PSA code places it.
* The last module of stage 4 fuses all branches into every output resolution; a stride-4 head reads only the
  first, so the fuse layers producing the others would never get a gradient. They are removed, which keeps
  DDP free of ``find_unused_parameters``.

Weights are loaded by ``cattlepose.models.pretrained``; the timm key names survive under ``backbone.``.
"""

from __future__ import annotations

import timm
import torch
from timm.models.hrnet import HighResolutionModule
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from cattlepose.core.backbones import BACKBONES, PsaLayout
from cattlepose.models.pose import PoseNetwork
from cattlepose.models.psa import PolarizedSelfAttention


def create_backbone(name: str) -> nn.Module:
    """timm HRNet returning only its stride-4 branch, random weights (loading is the caller's business)."""
    if name not in BACKBONES or BACKBONES[name].family != "hrnet":
        raise ValueError(f"{name!r} is not an HRNet backbone of core/backbones.py")
    return timm.create_model(name, pretrained=False, features_only=True, feature_location="", out_indices=(1,))


def prune_unused_fuse(backbone: nn.Module) -> int:
    """Drop the last stage-4 fuse layers that only feed strides 8-32; returns the parameter count removed."""
    last = backbone.stage4[-1]
    fuse = last.fuse_layers
    if not isinstance(fuse, nn.ModuleList) or len(fuse) <= 1:
        return 0
    removed = sum(p.numel() for layer in fuse[1:] for p in layer.parameters())
    last.fuse_layers = fuse[:1]
    return removed


def insert_psa(backbone: nn.Module, layout: PsaLayout) -> list[str]:
    """Put PSA into the `aa` slot of every BasicBlock of stages 2-4; returns the names of the blocks changed."""
    if layout == "none":
        return []
    names = []
    for stage in ("stage2", "stage3", "stage4"):
        for name, module in getattr(backbone, stage).named_modules():
            if isinstance(module, BasicBlock):
                if not isinstance(module.aa, nn.Identity):
                    raise RuntimeError(f"{stage}.{name}.aa is {type(module.aa).__name__}, expected Identity")
                module.aa = PolarizedSelfAttention(module.conv1.out_channels, layout)
                names.append(f"{stage}.{name}")
    return names


# what compile_regions returns: "module" (each multi-resolution module) or "block" (each Basic/Bottleneck block)
COMPILE_UNIT = "module"


class PoseHRNet(PoseNetwork):
    """(N, 3, H, W) ImageNet-normalised images -> (N, K, H/4, W/4) heatmap logits."""

    def __init__(self, backbone: str, num_keypoints: int, psa: PsaLayout = "parallel"):
        super().__init__(backbone, num_keypoints, psa)
        self.backbone = create_backbone(backbone)
        prune_unused_fuse(self.backbone)
        self.psa_blocks = insert_psa(self.backbone, psa)
        self.make_head(BACKBONES[backbone].width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0])

    def compile_regions(self) -> list[tuple[str, nn.Module]]:
        """Each stage-1 Bottleneck and each multi-resolution module of stages 2-4 (its branches' BasicBlocks with
        their PSA, and its fuse layers). The modules of a stage are alike, so hrnet_w32 has five distinct regions
        (two Bottlenecks, stage 2, stage 3, stage 4's last module being pruned): the compile time follows them,
        not the 104 PSA blocks."""
        kinds = (Bottleneck, HighResolutionModule) if COMPILE_UNIT == "module" else (Bottleneck, BasicBlock)
        regions: list[tuple[str, nn.Module]] = []
        for name, module in self.named_modules():
            if isinstance(module, kinds) and not any(name.startswith(f"{r}.") for r, _ in regions):
                regions.append((name, module))
        return regions
