"""Optimiser groups, schedule, and the foreach EMA against the per-tensor formula it replaced."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from cattlepose.core.config import load_config
from cattlepose.engine.optim import EMA, effective_lr, make_optimizer, make_scheduler
from cattlepose.models.hrnet import PoseHRNet

CPU = torch.device("cpu")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return PoseHRNet("hrnet_w18_small", 5, psa="parallel")


def _reference_ema_update(ema: nn.Module, model: nn.Module, updates: int, decay: float) -> None:
    """The EMA as it was written before: one multiply-add per floating tensor, integer buffers copied."""
    d = min(decay, (1 + updates) / (10 + updates))
    with torch.no_grad():
        for e, m in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m.detach(), alpha=1 - d)
            else:
                e.copy_(m)


def test_foreach_ema_equals_the_per_tensor_formula_bit_for_bit():
    model = _model()
    ema = EMA(model, decay=0.99)
    reference = copy.deepcopy(model).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 64, 64)
    for step in range(1, 6):
        opt.zero_grad()
        model.train()(x).pow(2).mean().backward()  # moves weights and BatchNorm statistics
        opt.step()
        ema.update(model)
        _reference_ema_update(reference, model, step, 0.99)
    assert ema.updates == 5
    ours, ref = ema.module.state_dict(), reference.state_dict()
    assert ours.keys() == ref.keys()
    for name in ours:
        assert torch.equal(ours[name], ref[name]), name
    # the batch counters (integer buffers) are copied, not averaged
    counters = [n for n, t in ours.items() if not t.dtype.is_floating_point]
    assert counters and all(int(ours[n]) == 5 for n in counters)


def test_ema_state_round_trip():
    model = _model()
    ema = EMA(model, 0.9)
    ema.update(model)
    other = EMA(_model(), 0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    assert all(
        torch.equal(a, b)
        for a, b in zip(other.module.state_dict().values(), ema.module.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("backbone_lr", [1.0, 0.1])
def test_parameter_groups_split_decay_and_backbone_rate(backbone_lr):
    model = _model()
    cfg = load_config(None, [f"train.backbone_lr={backbone_lr}", "train.lr=0.004", "train.weight_decay=0.01"])
    opt = make_optimizer(model, cfg, CPU)
    in_groups = [p for g in opt.param_groups for p in g["params"]]
    assert len(in_groups) == len({id(p) for p in in_groups}) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    for g in opt.param_groups:
        for p in g["params"]:
            assert g["weight_decay"] == (0.01 if p.ndim > 1 else 0.0)  # no decay on norms and biases
            head = names[id(p)].startswith("head.")
            assert g["lr"] == pytest.approx(0.004 if head or backbone_lr == 1.0 else 0.0004)
    assert len(opt.param_groups) == (2 if backbone_lr == 1.0 else 4)  # two, as earlier checkpoints hold


def test_schedule_warms_up_then_follows_a_cosine_to_zero():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make_scheduler(opt, warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4 + 8] == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert lrs[-1] < 0.01


def test_effective_lr_scales_with_the_batch():
    cfg = load_config(None, ["train.lr=0.002", "train.batch_size=128", "train.base_batch_size=32"])
    assert effective_lr(cfg) == pytest.approx(0.002)
    assert effective_lr(cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr_scale": "linear"})})) == (
        pytest.approx(0.008)
    )
    assert effective_lr(cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr_scale": "sqrt"})})) == (
        pytest.approx(0.004)
    )
