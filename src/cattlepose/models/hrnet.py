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

from cattlepose.core.backbones import BACKBONES, PsaLayout, PsaPlacement
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


def insert_psa(backbone: nn.Module, layout: PsaLayout, placement: PsaPlacement = "every") -> list[str]:
    """Put PSA into the `aa` slot of the BasicBlocks of stages 2-4 that `placement` names (every one, the last of
    each branch of each module, or stage 4's); returns the names of the blocks changed."""
    if layout == "none":
        return []
    stages = ("stage4",) if placement == "stage4" else ("stage2", "stage3", "stage4")
    names = []
    for stage in stages:
        for m, module in enumerate(getattr(backbone, stage)):
            for b, branch in enumerate(module.branches):
                blocks = [(i, blk) for i, blk in enumerate(branch) if isinstance(blk, BasicBlock)]
                for i, block in blocks[-1:] if placement == "last" else blocks:
                    if not isinstance(block.aa, nn.Identity):
                        raise RuntimeError(f"{stage}.{m}.branches.{b}.{i}.aa is {type(block.aa).__name__}, "
                                           "expected Identity")  # fmt: skip
                    block.aa = PolarizedSelfAttention(block.conv1.out_channels, layout)
                    names.append(f"{stage}.{m}.branches.{b}.{i}")
    return names


# what compile_regions returns: "block" (each Basic/Bottleneck block) or "module" (each multi-resolution module:
# more fusion across a module's fuse layers, but hrnet_w32 + PSA took 6x as long to compile on the CPU backend,
# docs/BENCHMARKS.md)
COMPILE_UNIT = "block"


class PoseHRNet(PoseNetwork):
    """(N, 3, H, W) ImageNet-normalised images -> (N, K, H/4, W/4) heatmap logits."""

    def __init__(
        self, backbone: str, num_keypoints: int, psa: PsaLayout = "parallel", psa_placement: PsaPlacement = "every"
    ):
        super().__init__(backbone, num_keypoints, psa)
        self.backbone = create_backbone(backbone)
        prune_unused_fuse(self.backbone)
        self.psa_blocks = insert_psa(self.backbone, psa, psa_placement)
        self.make_head(BACKBONES[backbone].width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0])

    def compile_regions(self) -> list[tuple[str, nn.Module]]:
        """Each Bottleneck of stage 1 and each BasicBlock (with its PSA) of stages 2-4 (`COMPILE_UNIT` "block"),
        or each multi-resolution module of stages 2-4 ("module"). Blocks of one branch are alike, so hrnet_w32's 108
        blocks compile to six graphs (two Bottlenecks, one BasicBlock per branch width): the compile time follows
        them, not the depth."""
        kinds = (Bottleneck, HighResolutionModule) if COMPILE_UNIT == "module" else (Bottleneck, BasicBlock)
        regions: list[tuple[str, nn.Module]] = []
        for name, module in self.named_modules():
            if isinstance(module, kinds) and not any(name.startswith(f"{r}.") for r, _ in regions):
                regions.append((name, module))
        return regions
