"""What every pose network shares: the attributes the rest of the package relies on, and the heatmap head.

`backbone_name`, `psa` and `num_keypoints` name what the network is (pretrained loading checks them); its
encoder is the submodule `backbone` (ImageNet weights load into it, `train.backbone_lr` applies to it) and its
last layer the 1x1 convolution `head` (its channels map by keypoint name on transfer). `compile_regions` names
the parts torch.compile should compile one by one (engine/compiling.py): repeated blocks compile once each.
"""

from __future__ import annotations

from torch import nn

from cattlepose.core.backbones import PSA_LAYOUTS, PsaLayout


class PoseNetwork(nn.Module):
    def __init__(self, backbone: str, num_keypoints: int, psa: PsaLayout):
        super().__init__()
        if psa not in PSA_LAYOUTS:
            raise ValueError(f"psa must be one of {PSA_LAYOUTS}, not {psa!r}")
        if num_keypoints < 1:
            raise ValueError("num_keypoints must be positive")
        self.backbone_name = backbone
        self.psa = psa
        self.num_keypoints = num_keypoints

    def compile_regions(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of the parts to compile one by one, none inside another; the whole network by default.
        A network made of repeated blocks lists the blocks: identical blocks share one compiled graph, so the
        compile time follows the number of distinct blocks, not the depth."""
        return [("", self)]

    def make_head(self, channels: int) -> None:
        """The 1x1 heatmap head with small logits at init: a near-uniform spatial softmax (CE loss) and near-zero
        heatmaps (MSE loss)."""
        self.head = nn.Conv2d(channels, self.num_keypoints, kernel_size=1)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
