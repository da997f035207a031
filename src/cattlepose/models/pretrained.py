"""Load weights into a PoseHRNet: timm ImageNet files (hub or local), cattlepose checkpoints and run directories.

Source files come in several shapes; all reduce to a flat name -> tensor mapping:

* timm ImageNet weights (``.pth``/``.bin``/``.safetensors``): classification-model names (``stage2.0...``,
  plus ``classifier``/``incre_modules``/... that a pose model does not have);
* timm training checkpoints: the mapping under ``state_dict_ema`` or ``state_dict``;
* cattlepose checkpoints (engine/fit.py): the mapping under ``model``, names already ``backbone.``/``head.``,
  beside the ``schema`` and ``config`` the weights were trained with;
* a cattlepose run directory: the ``best.pt`` of its best fold (`RunDir.best_fold`), or a fold directory;
* anything saved from DDP: a ``module.`` prefix.

A source name matches the model's name as it is or with ``backbone.`` in front. The backbone must be the
model's: another HRNet width is a UserError, not a partial load. PSA tensors load where name and shape agree
(another PSA layout, or none, leaves the rest as initialised, reported as missing). Head channels map by
keypoint name (`cattlepose.core.schema.match_keypoint_names`) when the source names its keypoints and the caller
passes the model's; the others keep their fresh initialisation. Without names, a head of the same shape
loads as it is and one of another shape is skipped. Loading copies into the existing tensors, so the
model's memory format and device are kept.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol

import torch
from torch import nn

from cattlepose.core.backbones import BACKBONES
from cattlepose.core.errors import UserError
from cattlepose.core.schema import match_keypoint_names
from cattlepose.models.imagenet import imagenet_state_dict
from cattlepose.models.psa import is_psa_tensor
from cattlepose.runs.rundir import BEST, RunDir

_NESTED_KEYS = ("model", "state_dict_ema", "model_ema", "state_dict")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_HEAD = ("head.weight", "head.bias")
# the first stage-2 convolution: its output channels are the HRNet width (BACKBONES' channel count)
_WIDTH_KEY = "stage2.0.branches.0.0.conv1.weight"


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


def load_state_into(
    model: nn.Module, source: Mapping[str, torch.Tensor], exclude: Collection[str] = ()
) -> dict[str, Any]:
    """Copy matching tensors of `source` into `model`; the report names what was loaded, missing and skipped.

    Model entries in `exclude` are left to the caller (the head when it maps by keypoint name).
    """
    target = model.state_dict()
    copies, skipped, unused = _plan(target, source, exclude)
    with torch.no_grad():
        for dest, tensor in copies.items():
            target[dest].copy_(tensor)
    # batch norm's counters are bookkeeping: a weights file without them misses nothing
    missing = [k for k in target if k not in copies and k not in exclude and not k.endswith("num_batches_tracked")]
    return {"loaded": len(copies), "missing": missing, "skipped": skipped, "unused": unused}


def _plan(
    target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor], exclude: Collection[str]
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(model name -> source tensor to copy, shape mismatches, source names with no place), nothing copied."""
    copies: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    unused: list[str] = []
    for name, tensor in source.items():
        dest = name if name in target else f"backbone.{name}" if f"backbone.{name}" in target else None
        if dest is None or dest in copies:
            unused.append(name)
            continue
        if dest in exclude:
            continue
        if target[dest].shape != tensor.shape:
            skipped.append(f"{dest} {tuple(tensor.shape)} -> {tuple(target[dest].shape)}")
            continue
        copies[dest] = tensor
    return copies, skipped, unused


def load_pretrained(
    model: nn.Module,
    path_or_timm: str | Path,
    log: _Log | None = None,
    keypoints: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Load "imagenet" (the ImageNet weights of the model's backbone: models/imagenet.py), "timm" (timm's
    hub), a weights file, a cattlepose checkpoint or a run directory into `model`.

    `keypoints`: the model's keypoint names, in head-channel order. With them, head channels of a source that
    names its keypoints (a cattlepose checkpoint or run) map by name and the rest keep their fresh values;
    without them only a head of the same shape loads.

    Returns {"loaded": n, "missing": [...], "skipped": [...], "unused": [...], "source": str,
    "head_mapped": {model keypoint: source keypoint}, "head_fresh": [model keypoints not mapped]}: tensors
    copied, model entries left as initialised (e.g. PSA and the head when the source is a plain HRNet), tensors
    of another shape, and source entries the model has no place for (the ImageNet classifier, the fuse layers
    a stride-4 head drops).
    """
    if str(path_or_timm) in ("timm", "imagenet"):
        backbone = getattr(model, "backbone_name", None)
        if backbone is None:
            raise ValueError(f"pretrained '{path_or_timm}' needs a pose network (it names the backbone)")
        if str(path_or_timm) == "timm":
            source, where = _timm_hub_state_dict(backbone), f"timm hub ({backbone})"
        else:
            source, where = imagenet_state_dict(backbone), f"ImageNet ({backbone}, {BACKBONES[backbone].imagenet})"
        file, meta = None, {}
    else:
        file, meta, where = _resolve_source(Path(path_or_timm))
        obj = _read_file(file)
        source = extract_state_dict(obj)
        meta = {**meta, **_checkpoint_meta(obj)}
    target = model.state_dict()
    if keypoints is not None and "head.weight" in target and len(keypoints) != target["head.weight"].shape[0]:
        raise ValueError(f"{len(keypoints)} keypoint names for a head of {target['head.weight'].shape[0]} channels")
    _check_backbone(model, source, meta, file)

    src_names = meta.get("keypoints")
    names: tuple[list[str], list[str]] | None = None
    if (
        keypoints is not None
        and src_names is not None
        and "head.weight" in source
        and "head.weight" in target
        and source["head.weight"].shape[0] == len(src_names)
        and source["head.weight"].shape[1:] == target["head.weight"].shape[1:]
    ):
        names = (list(src_names), list(keypoints))
    report = load_state_into(model, source, exclude=_HEAD if names else ())
    report["source"] = where
    report["head_mapped"], report["head_fresh"] = {}, []
    if names is not None:
        mapped = _map_head(model, source, *names)
        report["head_mapped"] = mapped
        report["head_fresh"] = [n for n in names[1] if n not in mapped]
        if mapped:
            report["loaded"] += sum(1 for n in _HEAD if n in target and n in source)
        report["missing"] += [n for n in _HEAD if n in target and (not mapped or n not in source)]
    elif keypoints is not None and "head.weight" in report["missing"]:
        report["head_fresh"] = list(keypoints)
    if report["loaded"] == 0:
        raise UserError(
            "no tensor in this file matches the model; is it a network of the configured backbone?",
            path=file,
            field="model.pretrained",
        )
    if log is not None:
        _log_report(log, report, meta, model, names[1] if names else None)
    return report


def _map_head(model: nn.Module, source: Mapping[str, torch.Tensor], src: list[str], dst: list[str]) -> dict[str, str]:
    """Copy the source's head channel of each model keypoint that the source names; {model name: source name}."""
    mapped = match_keypoint_names(src, dst)
    target = model.state_dict()
    with torch.no_grad():
        for t_name, s_name in mapped.items():
            t, s = dst.index(t_name), src.index(s_name)
            target["head.weight"][t].copy_(source["head.weight"][s])
            if "head.bias" in target and "head.bias" in source:
                target["head.bias"][t].copy_(source["head.bias"][s])
    return mapped


def _log_report(
    log: _Log, report: dict[str, Any], meta: Mapping[str, Any], model: nn.Module, keypoints: Sequence[str] | None
) -> None:
    log.info(
        f"pretrained {report['source']}: loaded {report['loaded']} tensors, "
        f"{len(report['missing'])} missing (kept as initialised), {len(report['skipped'])} skipped "
        f"(shape differs), {len(report['unused'])} unused"
    )
    src_psa, psa = meta.get("psa"), getattr(model, "psa", None)
    if src_psa is not None and psa is not None and src_psa != psa:
        log.info(f"  trained with psa '{src_psa}', the model has psa '{psa}': PSA tensors load where they match")
    for title in ("missing", "skipped"):
        if report[title]:
            log.info(f"  {title}: {_summarise(report[title])}")
    if keypoints is not None:
        mapped = report["head_mapped"]
        shown = ", ".join(f"{s}->{t}" for t, s in list(mapped.items())[:6])
        more = f", ... {len(mapped) - 6} more" if len(mapped) > 6 else ""
        log.info(
            f"head: {len(mapped)} of {len(keypoints)} keypoints mapped by name"
            + (f" ({shown}{more})" if mapped else "")
            + f"; {len(report['head_fresh'])} start fresh"
        )


def _resolve_source(path: Path) -> tuple[Path, dict[str, Any], str]:
    """The weights file to read, what its run says about it (keypoint names, backbone, PSA layout), and how to
    name it in the log. A file is itself; a run directory gives the best.pt of its best fold; a fold directory
    its own best.pt."""
    if not path.is_dir():
        return path, {}, str(path)
    fold_dir = (path / BEST).is_file()
    try:
        run = RunDir.open(path.parent if fold_dir else path)
        file, why = (path / BEST, "") if fold_dir else _best_checkpoint(run)
    except UserError as e:
        raise UserError(e.message, path=e.path, field="model.pretrained") from None
    meta = {"keypoints": list(run.schema.keypoints), "backbone": run.cfg.model.backbone, "psa": run.cfg.model.psa}
    return file, meta, f"{file}{f' ({why})' if why else ''}"


def _best_checkpoint(run: RunDir) -> tuple[Path, str]:
    k, why = run.best_fold()
    return run.checkpoint(k), why


def _names(raw: Any) -> list[str] | None:
    return list(raw) if isinstance(raw, list) and raw and all(isinstance(n, str) for n in raw) else None


def _checkpoint_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Keypoint names, backbone and PSA layout a cattlepose checkpoint was trained with (whatever it holds)."""
    meta: dict[str, Any] = {}
    schema = obj.get("schema")
    if isinstance(schema, Mapping) and _names(schema.get("keypoints")):
        meta["keypoints"] = _names(schema.get("keypoints"))
    config = obj.get("config")
    model_cfg = config.get("model") if isinstance(config, Mapping) else None
    if isinstance(model_cfg, Mapping):
        meta.update({k: model_cfg[k] for k in ("backbone", "psa") if isinstance(model_cfg.get(k), str)})
    return meta


def _check_backbone(
    model: nn.Module, source: Mapping[str, torch.Tensor], meta: Mapping[str, Any], file: Path | None
) -> None:
    """A UserError naming both backbones when the source is another backbone than the model's, before any copy.

    HRNets share their stem and first stage in every width, and EfficientNet-Lites their first blocks, so a
    partial load would look like success; a backbone tensor of another shape, one the file lacks, or branches
    the model lacks give it away. PSA tensors do not count: another PSA layout is no reason to refuse the
    backbone.
    """
    want = getattr(model, "backbone_name", None)
    have = meta.get("backbone")
    if want is not None and have is not None and have != want:
        _backbone_error(file, have, want, "")
    target = model.state_dict()
    copies, skipped, unused = _plan(target, source, _HEAD)
    if not copies and not skipped:
        return  # nothing of an HRNet in the file; load_pretrained says so
    bad = [s for s in skipped if not is_psa_tensor(s)]  # "name (file shape) -> (model shape)"
    absent = [
        k
        for k in target
        if k.startswith("backbone.")
        and not is_psa_tensor(k)
        and k not in copies
        and not k.endswith("num_batches_tracked")
    ]
    extra = [n for n in unused if ".branches." in n and not is_psa_tensor(n)]
    if bad:
        name, shapes = bad[0].split(" ", 1)
        file_shape, model_shape = shapes.split(" -> ")
        detail = f"{name} is {file_shape} in the file, {model_shape} in the model"
    elif absent:
        detail = f"{absent[0]} is not in the file"
    elif extra:
        detail = f"the file has {extra[0]}, which the model lacks"
    else:
        return
    guess = have if have is not None and have != want else _guess_backbone(source, want)
    _backbone_error(file, guess, want or "the model's", f" (e.g. {detail})")


def _guess_backbone(source: Mapping[str, torch.Tensor], not_this: str | None) -> str | None:
    """The registered backbones of the file's HRNet width, less the model's own (which it was found not to be)."""
    for name in (_WIDTH_KEY, f"backbone.{_WIDTH_KEY}"):
        if name in source:
            width = int(source[name].shape[0])
            names = [b for b, bb in BACKBONES.items() if bb.family == "hrnet" and bb.width == width and b != not_this]
            return " or ".join(names) if names else None
    return None


def _backbone_error(file: Path | None, have: str | None, want: str, detail: str) -> NoReturn:
    if have is None:
        message = (
            f"the weights do not fit the model's backbone {want}{detail}: give weights trained with {want}, "
            "or set model.backbone to the one they were trained with"
        )
    else:
        message = (
            f"the weights are from backbone {have}, the model is {want}{detail}: set model.backbone to {have}, "
            f"or give weights trained with {want}"
        )
    raise UserError(message, path=file, field="model.pretrained")


def _summarise(names: list[str], limit: int = 6) -> str:
    """PSA parameters come in hundreds; group them so the log stays short."""
    grouped = [n for n in names if is_psa_tensor(n)]
    rest = [n for n in names if not is_psa_tensor(n)]
    parts = [f"{len(grouped)} PSA tensors"] if grouped else []
    parts += rest[:limit]
    if len(rest) > limit:
        parts.append(f"... {len(rest) - limit} more")
    return ", ".join(parts)
