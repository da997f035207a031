"""The network input batch: uint8 crops normalised in one pass, mirrors appended, buffer reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cattlepose.data.dataset import IMAGENET_MEAN, IMAGENET_STD, network_input

CPU = torch.device("cpu")


def input_batch(crops, flip, device, channels_last, reuse=None):
    return network_input(crops, device, channels_last, flip, reuse)


def _normalised(crop: np.ndarray) -> torch.Tensor:
    """The ImageNet normalisation of one (H, W, 3) uint8 crop, written out in float64."""
    x = (crop.astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32))


def _crops(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 16, 24, 3), dtype=np.uint8))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("flip", [True, False])
def test_batch_equals_per_image_to_tensor_and_mirrors(channels_last, flip):
    crops = _crops(5)
    batch = input_batch(crops, flip, CPU, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert batch.shape == (10 if flip else 5, 3, 16, 24) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=fmt)
    expected = torch.stack([_normalised(c.numpy()) for c in crops])
    assert torch.allclose(batch[:5], expected, atol=1e-5)
    if flip:
        assert torch.equal(batch[5:], batch[:5].flip(3))


def test_reuse_writes_into_the_earlier_buffer_and_gives_the_same_batch():
    first = input_batch(_crops(8, seed=1), True, CPU, True)
    crops = _crops(3, seed=2)  # a smaller last batch uses the first rows
    again = input_batch(crops, True, CPU, True, reuse=first)
    assert again.data_ptr() == first.data_ptr() and again.shape[0] == 6
    assert torch.equal(again, input_batch(crops, True, CPU, True))
    # a buffer that does not fit (too few rows, other size or layout) is not used
    small = input_batch(_crops(8), True, CPU, True, reuse=again)
    assert small.data_ptr() != again.data_ptr() and small.shape[0] == 16
    other = input_batch(crops, True, CPU, False, reuse=first)
    assert other.data_ptr() != first.data_ptr() and other.is_contiguous()


def test_inline_batches_equal_the_dataloader(tmp_path):
    # in-process batches (predict with no workers) against the DataLoader over the same dataset: same crops,
    # affines, sizes and indices, a short last batch, and a broken image reported, not raised
    import cv2
    from torch.utils.data import DataLoader

    from cattlepose.data.records import Sample
    from cattlepose.engine.infer import CropDataset, inline_batches

    rng = np.random.default_rng(0)
    samples = []
    for i in range(7):
        path = tmp_path / f"img{i}.jpg"
        if i == 4:
            path.write_bytes(b"not a jpeg")
        else:
            cv2.imwrite(str(path), rng.integers(0, 256, (40 + 3 * i, 60, 3), dtype=np.uint8))
        box = None if i % 2 else np.array([5.0, 4.0, 30.0, 25.0])
        samples.append(Sample(image=path, keypoints=np.zeros((3, 3)), bbox=box))
    ds = CropDataset(samples, (32, 24))
    inline = [{k: (v.clone() if torch.is_tensor(v) else v) for k, v in b.items()} for b in inline_batches(ds, 3)]
    loaded = list(DataLoader(ds, batch_size=3, num_workers=0))
    assert [len(b["index"]) for b in inline] == [3, 3, 1]
    for a, b in zip(inline, loaded, strict=True):
        ok = torch.tensor([not e for e in b["error"]])
        assert torch.equal(a["image"][ok], b["image"][ok])
        for key in ("trans", "size", "index"):
            assert torch.equal(a[key][ok], b[key][ok].to(a[key].dtype)), key
        assert list(a["error"]) == list(b["error"])
    assert "img4.jpg" in inline[1]["error"][1] and inline[0]["image"].dtype == torch.uint8
