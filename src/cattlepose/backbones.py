"""The named HRNet backbones (timm model names) and the channels of their stride-4 branch, the head's input.

One list for the config's validation and the model's construction; it imports nothing, so reading a config
never loads torch.
"""

from __future__ import annotations

BACKBONES: dict[str, int] = {
    "hrnet_w18_small": 16,
    "hrnet_w18_small_v2": 18,
    "hrnet_w18": 18,
    "hrnet_w32": 32,
    "hrnet_w48": 48,
}
