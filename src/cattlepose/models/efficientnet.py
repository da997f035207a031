"""Top-down pose network on an EfficientNet-Lite encoder: timm features at strides 4-32, a decoder that fuses
them at stride 4 with PSA inside its block, and a 1x1 heatmap head.

(N, 3, H, W) ImageNet-normalised images -> (N, K, H/4, W/4) logits, like PoseHRNet, so the codec, the
ensembles, batch-norm fusion, export and transfer treat both alike. Module names follow PoseHRNet's: the encoder
is `backbone` (its parameters learn at `train.backbone_lr`, and ImageNet weights load into it), the 1x1
convolution is `head` (its channels map by keypoint name on transfer).

* The ImageNet weights (models/imagenet.py) were trained on TensorFlow's (x - 127) / 128 inputs, not ImageNet
  mean/std: the stem's batch-norm statistics say so. A fixed affine map (`InputAdapter`) turns the pipeline's
  ImageNet-normalised batch into that range inside the network, so every backbone takes the same input.
* The tf_ variants pad like TensorFlow ('SAME': one pixel more after than before on a stride-2 conv of an even
  side), which timm does with an explicit F.pad, a copy of the largest tensors of the network. `SameConv2d`
  computes the same output without the copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame, conv2d_same
from torch import nn

from cattlepose.core.backbones import BACKBONES, PsaLayout
from cattlepose.models.pose import PoseNetwork
from cattlepose.models.psa import PolarizedSelfAttention

DECODER_WIDTH = 64  # channels of every stride-4 map of the decoder
FEATURE_INDICES = (1, 2, 3, 4)  # timm features_only: strides 4, 8, 16, 32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WEIGHTS_MEAN, WEIGHTS_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # (x - 127) / 128, as the weights were trained


class InputAdapter(nn.Module):
    """ImageNet-normalised images -> the range the encoder's weights were trained on, as one per-channel affine
    map. Not folded into the stem conv: with zero padding a bias there would change the border pixels. The
    constants are non-persistent buffers (no checkpoint key; constants in an exported graph)."""

    def __init__(self) -> None:
        super().__init__()
        sm, ss, tm, ts = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_MEAN,
                                                                     WEIGHTS_STD))  # fmt: skip
        self.register_buffer("scale", ss / ts, persistent=False)
        self.register_buffer("shift", (sm - tm) / ts, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class SameConv2d(nn.Conv2d):
    """timm's Conv2dSame without padding the input. On an even side a stride-2 'SAME' conv with an odd kernel k
    pads (k - 1) // 2 before and one more after; the same window comes from a (k + 2)-tap kernel holding the
    weights in its last k taps, with symmetric padding (k + 1) // 2 (the two extra taps are zero). The stored
    parameter stays k x k, so checkpoints, gradients and batch-norm fusion are those of the plain conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        even = x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0
        if self.stride == (2, 2) and self.dilation == (1, 1) and kh % 2 and kw % 2 and even:
            weight = F.pad(self.weight, (2, 0, 2, 0))
            return F.conv2d(x, weight, self.bias, 2, ((kh + 1) // 2, (kw + 1) // 2), 1, self.groups)
        return conv2d_same(x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


def _replace_same_padding(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if type(module) is Conv2dSame:
            new = SameConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, 0,
                             module.dilation, module.groups, module.bias is not None)  # fmt: skip
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new)


def create_encoder(name: str) -> nn.Module:
    """timm's features_only EfficientNet-Lite at strides 4-32, random weights (loading is models/pretrained's)."""
    if BACKBONES.get(name) is None or BACKBONES[name].family != "efficientnet":
        raise ValueError(f"{name!r} is not an EfficientNet backbone of core/backbones.py")
    encoder = timm.create_model(name, pretrained=False, features_only=True, out_indices=FEATURE_INDICES)
    _replace_same_padding(encoder)
    return encoder


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class FusionDecoder(nn.Module):
    """HRNet-style fusion (chosen over a light FPN on real photographs: docs/BENCHMARKS.md): a 1x1 projection
    (conv + BN, no activation: the projections are summed) of every stride to `width` channels, upsampled to
    stride 4 and summed; then conv3x3 -> PSA -> conv3x3 at stride 4. Projecting before upsampling keeps every
    full-size tensor at `width` channels. PSA sits after the first conv's activation, where PoseHRNet has it in
    every BasicBlock."""

    def __init__(self, channels: Sequence[int], width: int, psa: PsaLayout):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width))
                                     for c in channels)  # fmt: skip
        self.conv1 = ConvBNReLU(width, width)
        self.psa = nn.Identity() if psa == "none" else PolarizedSelfAttention(width, psa)
        self.conv2 = ConvBNReLU(width, width)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        x = self.lateral[0](feats[0])
        for lateral, f in zip(self.lateral[1:], feats[1:], strict=True):
            # bilinear: the stride-4 map is the heatmap's own grid, where nearest's blocks would need smoothing
            x = x + F.interpolate(lateral(f), size=size, mode="bilinear", align_corners=False)
        return self.conv2(self.psa(self.conv1(F.relu(x))))


class PoseEfficientNet(PoseNetwork):
    """(N, 3, H, W) ImageNet-normalised images -> (N, K, H/4, W/4) heatmap logits; H, W multiples of 32."""

    def __init__(self, backbone: str, num_keypoints: int, psa: PsaLayout = "parallel", width: int = DECODER_WIDTH):
        super().__init__(backbone, num_keypoints, psa)
        self.adapt = InputAdapter()
        self.backbone = create_encoder(backbone)
        self.decoder = FusionDecoder(self.backbone.feature_info.channels(), width, psa)
        self.make_head(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.backbone(self.adapt(x))))

    def compile_regions(self) -> list[tuple[str, nn.Module]]:
        """Each block of the encoder (blocks of a stage share one graph) and the decoder with its PSA."""
        blocks = [(f"backbone.blocks.{i}.{j}", b) for i, stage in enumerate(self.backbone.blocks)
                  for j, b in enumerate(stage)]  # fmt: skip
        return [*blocks, ("decoder", self.decoder)]
