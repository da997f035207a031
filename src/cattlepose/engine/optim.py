"""Optimiser, learning-rate schedule and weight EMA of a training run.

AdamW without decay on norms and biases; the backbone may learn at a fraction of the head's rate
(`train.backbone_lr`, for fine-tuning a transferred model). Warm-up then cosine, stepped once per batch.
The EMA updates every tensor in two foreach calls, so its cost does not grow with the number of layers.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from cattlepose.core.config import Config


def effective_lr(cfg: Config) -> float:
    """`train.lr`, scaled to the batch size as `train.lr_scale` says (relative to `train.base_batch_size`)."""
    ratio = cfg.train.batch_size / cfg.train.base_batch_size
    scale = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[cfg.train.lr_scale]
    return cfg.train.lr * scale


def make_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; parameter groups by (backbone or head) x (decayed or not). On CUDA the fused kernel: one launch
    per step instead of a few per tensor."""
    tc = cfg.train
    # two groups (decayed or not) unless the backbone learns slower: a resumed run's optimiser state has the same
    # groups as the run that wrote it
    split_backbone = tc.backbone_lr != 1.0
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((split_backbone and name.startswith("backbone."), p.ndim > 1), []).append(p)
    lr = effective_lr(cfg)
    param_groups = [
        {
            "params": params,
            "lr": lr * (tc.backbone_lr if in_backbone else 1.0),
            "weight_decay": tc.weight_decay if decayed else 0.0,
        }
        for (in_backbone, decayed), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], not kv[0][1]))
    ]
    return torch.optim.AdamW(param_groups, lr=lr, fused=device.type == "cuda" or None)


def make_scheduler(
    opt: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then cosine to zero at `total_steps` (a factor on each group's lr)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class EMA:
    """Exponential moving average of a model's weights and buffers. The decay is min(decay, (1 + n) / (10 + n))
    after n updates (TensorFlow's ExponentialMovingAverage with `num_updates`), so short runs are not dominated
    by the random initialisation. Not timm's ModelEmaV3: its warm-up is another curve, and every run's numbers
    (and bit-identical resume of runs already trained) depend on this one."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._float, self._other = _split_state(self.module)
        self._source: tuple[int, tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._source is None or self._source[0] != id(model):  # the optimiser updates tensors in place
            self._source = (id(model), _split_state(model))
        source_float, source_other = self._source[1]
        torch._foreach_mul_(self._float, d)
        torch._foreach_add_(self._float, source_float, alpha=1 - d)
        for e, m in zip(self._other, source_other, strict=True):
            e.copy_(m)  # integer buffers (BatchNorm's batch counter) are copied, not averaged

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def _split_state(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The model's state tensors in state-dict order, split into floating point and the rest."""
    tensors = [t.detach() for t in model.state_dict(keep_vars=True).values()]
    return [t for t in tensors if t.dtype.is_floating_point], [t for t in tensors if not t.dtype.is_floating_point]
