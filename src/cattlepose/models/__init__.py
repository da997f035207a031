"""Models: PSA-augmented HRNet for heatmap keypoint estimation.

build_model(model_cfg, num_keypoints) -> nn.Module     (N, 3, H, W) -> (N, K, H/4, W/4) logits
load_pretrained(model, "timm" | path, log=None) -> report
model_info(cfg, num_keypoints, measure=True) -> flat dict for `cattlepose info model`
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from cattlepose.models.info import count_macs, model_info
from cattlepose.models.pose_hrnet import BACKBONES, PSA_LAYOUTS, PoseHRNet, psa_parameter_names
from cattlepose.models.pretrained import load_pretrained
from cattlepose.models.psa import PolarizedSelfAttention

if TYPE_CHECKING:
    from cattlepose.config import ModelConfig
    from cattlepose.ui import Log

__all__ = [
    "BACKBONES",
    "PSA_LAYOUTS",
    "PolarizedSelfAttention",
    "PoseHRNet",
    "build_model",
    "count_macs",
    "load_pretrained",
    "model_info",
    "psa_parameter_names",
]


def build_model(
    model_cfg: ModelConfig, num_keypoints: int, log: Log | None = None, keypoints: Sequence[str] | None = None
) -> nn.Module:
    """The configured PoseHRNet with `model_cfg.pretrained` applied (None: random init). `keypoints`: the
    schema's names, so a checkpoint of another schema loads its head channels by keypoint name.

    The model stays in the default (NCHW) memory format; callers convert to channels_last when configured,
    and forward works in either.
    """
    model = PoseHRNet(model_cfg.backbone, num_keypoints, model_cfg.psa)
    if model_cfg.pretrained:
        load_pretrained(model, model_cfg.pretrained, log=log, keypoints=keypoints)
    return model
