"""Every `auto` setting resolved from the machine: loader workers, inference batch, compilation."""

from __future__ import annotations

import pytest
import torch

from cattlepose.engine import device as dev

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("cores", "device", "processes", "expected"),
    [
        (2, CPU, 1, 0),  # a small CPU: the network's own threads need every core
        (4, CPU, 1, 0),
        (16, CPU, 1, 4),
        (64, CPU, 1, 4),
        (16, CUDA, 1, 15),  # a GPU box: every spare core decodes and augments
        (16, CUDA, 4, 3),  # four DDP processes share the cores
        (1, CUDA, 1, 1),
    ],
)
def test_auto_workers(monkeypatch, cores, device, processes, expected):
    monkeypatch.setattr(dev, "cores", lambda: cores)
    assert dev.resolve_workers("auto", device, processes) == expected
    assert dev.resolve_workers(3, device, processes) == 3  # an explicit number is kept


def test_auto_inference_batch_and_compile():
    assert dev.resolve_infer_batch("auto", CPU) == 32
    assert dev.resolve_infer_batch("auto", CUDA) == 256
    assert dev.resolve_infer_batch(7, CUDA) == 7


def test_cuda_when_asked_but_absent_is_a_user_error(monkeypatch):
    from cattlepose.core.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device("auto") == CPU
    with pytest.raises(UserError, match=r"train\.device"):
        dev.resolve_device("cuda")
