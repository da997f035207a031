"""Load weights into a PoseHRNet: timm ImageNet files (hub or local) and cattlepose checkpoints, non-strictly.

Source files come in several shapes; all reduce to a flat name -> tensor mapping:

* timm ImageNet weights (``.pth``/``.bin``/``.safetensors``): classification-model names (``stage2.0...``,
  plus ``classifier``/``incre_modules``/... that a pose model does not have);
* timm training checkpoints: the mapping under ``state_dict_ema`` or ``state_dict``;
* cattlepose checkpoints (engine/fit.py): the mapping under ``model``, names already ``backbone.``/``head.``;
* anything saved from DDP: a ``module.`` prefix.

A source name matches the model's name as it is or with ``backbone.`` in front. A tensor whose shape differs
(the head of a model with another keypoint count) is skipped; model entries nothing filled are reported as
missing (the PSA parameters when the source is a plain HRNet). Loading copies into the existing tensors, so the
model's memory format and device are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cattlepose.errors import UserError

_NESTED_KEYS = ("model", "state_dict_ema", "model_ema", "state_dict")
_STRIP_PREFIXES = ("module.", "_orig_mod.")


class _Log(Protocol):
    def info(self, message: str) -> None: ...


def _read_file(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise UserError("pretrained weights file not found", path=path, field="model.pretrained")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as e:  # unpickling and format errors come in many types
        raise UserError(f"cannot read weights ({type(e).__name__}: {e})", path=path, field="model.pretrained") from None
    if not isinstance(obj, Mapping):
        raise UserError(
            f"expected a state dict (a mapping of names to tensors), found {type(obj).__name__}",
            path=path,
            field="model.pretrained",
        )
    return obj


def extract_state_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping inside a checkpoint object, prefixes from DDP/compile removed."""
    for key in _NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    out: dict[str, torch.Tensor] = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in _STRIP_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value
    return out


def _timm_hub_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    import timm

    try:
        net = timm.create_model(backbone, pretrained=True)
    except Exception as e:  # no network, no hub cache, missing weights
        raise UserError(
            f"could not fetch ImageNet weights for {backbone} from the timm hub ({type(e).__name__}: {e}); "
            "download them where there is a network and set model.pretrained to the local file",
            field="model.pretrained",
        ) from None
    return net.state_dict()


def load_state_into(model: nn.Module, source: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Copy matching tensors of `source` into `model`; the report names what was loaded, missing and skipped."""
    target = model.state_dict()
    filled: set[str] = set()
    skipped: list[str] = []
    unused: list[str] = []
    with torch.no_grad():
        for name, tensor in source.items():
            dest = name if name in target else f"backbone.{name}" if f"backbone.{name}" in target else None
            if dest is None or dest in filled:
                unused.append(name)
                continue
            if target[dest].shape != tensor.shape:
                skipped.append(f"{dest} {tuple(tensor.shape)} -> {tuple(target[dest].shape)}")
                continue
            target[dest].copy_(tensor)
            filled.add(dest)
    missing = [k for k in target if k not in filled]
    return {"loaded": len(filled), "missing": missing, "skipped": skipped, "unused": unused}


def load_pretrained(model: nn.Module, path_or_timm: str | Path, log: _Log | None = None) -> dict[str, Any]:
    """Load "timm" (ImageNet weights of the model's backbone from the hub) or a local weights file.

    Returns {"loaded": n, "missing": [...], "skipped": [...], "unused": [...]}: tensors copied, model entries left
    as initialised (e.g. PSA and the head when the source is a plain HRNet), tensors of another shape, and
    source entries the model has no place for (the ImageNet classifier, the fuse layers a stride-4 head drops).
    """
    if str(path_or_timm) == "timm":
        backbone = getattr(model, "backbone_name", None)
        if backbone is None:
            raise ValueError("pretrained 'timm' needs a PoseHRNet (it names the backbone)")
        source, where = _timm_hub_state_dict(backbone), f"timm hub ({backbone})"
    else:
        path = Path(path_or_timm)
        source, where = extract_state_dict(_read_file(path)), str(path)
    report = load_state_into(model, source)
    if report["loaded"] == 0:
        raise UserError(
            "no tensor in this file matches the model; is it an HRNet of the configured backbone?",
            path=None if str(path_or_timm) == "timm" else path_or_timm,
            field="model.pretrained",
        )
    if log is not None:
        log.info(
            f"pretrained {where}: loaded {report['loaded']} tensors, "
            f"{len(report['missing'])} missing (kept as initialised), {len(report['skipped'])} skipped "
            f"(shape differs), {len(report['unused'])} unused"
        )
        for title in ("missing", "skipped"):
            if report[title]:
                log.info(f"  {title}: {_summarise(report[title])}")
    return report


def _summarise(names: list[str], limit: int = 6) -> str:
    """PSA parameters come in hundreds; group them so the log stays short."""
    psa = [n for n in names if ".aa." in n]
    rest = [n for n in names if ".aa." not in n]
    parts = [f"{len(psa)} PSA tensors"] if psa else []
    parts += rest[:limit]
    if len(rest) > limit:
        parts.append(f"... {len(rest) - limit} more")
    return ", ".join(parts)
