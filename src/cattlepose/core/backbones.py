"""The named backbones (timm model names) with the channels of their stride-4 branch (the head's input), and
the PSA layouts.

One list for the config's validation and the model's construction; it imports nothing heavy, so reading a
config never loads torch.
"""

from __future__ import annotations

from typing import Literal, get_args

BACKBONES: dict[str, int] = {
    "hrnet_w18_small": 16,
    "hrnet_w18_small_v2": 18,
    "hrnet_w18": 18,
    "hrnet_w32": 32,
    "hrnet_w48": 48,
}

PsaLayout = Literal["none", "parallel", "sequential"]
PSA_LAYOUTS: tuple[str, ...] = get_args(PsaLayout)
