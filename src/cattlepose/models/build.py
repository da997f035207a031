"""The one model builder: the configured network, with `model.pretrained` applied."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from cattlepose.core.backbones import BACKBONES
from cattlepose.models.efficientnet import PoseEfficientNet
from cattlepose.models.hrnet import PoseHRNet
from cattlepose.models.pretrained import load_pretrained

if TYPE_CHECKING:
    from cattlepose.core.config import ModelConfig
    from cattlepose.core.ui import Log


def build_model(
    model_cfg: ModelConfig, num_keypoints: int, log: Log | None = None, keypoints: Sequence[str] | None = None
) -> nn.Module:
    """The configured pose network (PoseHRNet or PoseEfficientNet, by the backbone's family) with
    `model_cfg.pretrained` applied (None: random init). `keypoints`: the schema's names, so a checkpoint of
    another schema loads its head channels by keypoint name.

    The model stays in the default (NCHW) memory format; callers convert to channels_last when configured,
    and forward works in either.
    """
    if BACKBONES[model_cfg.backbone].family == "hrnet":
        model: nn.Module = PoseHRNet(model_cfg.backbone, num_keypoints, model_cfg.psa, model_cfg.psa_placement)
    else:
        model = PoseEfficientNet(model_cfg.backbone, num_keypoints, model_cfg.psa)
    if model_cfg.pretrained:
        load_pretrained(model, model_cfg.pretrained, log=log, keypoints=keypoints)
    return model
