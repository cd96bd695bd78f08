"""Tests of trainables.udtransnet: parameter counts against docs/udtransnet_notes.md, shapes, gradients, eval mode."""

import pytest
import torch
from torch import nn

from trainables.udtransnet import UDTransNet

# Per part at 224 px, 1 class; docs/udtransnet_notes.md §5 (measured on the authors' code).
RESNET_LAYERS = {"layer1": 221_952, "layer2": 1_116_416, "layer3": 6_822_400, "layer4": 13_114_368}
DAT_EMBEDDINGS = (2_122_368, 549_504, 287_360, 156_288)
UP_STAGES = {"up5": 2_887_680, "up4": 935_936, "up3": 439_296, "up2": 336_576}
DRA_STAGES = {"up5": 591_616, "up4": 361_344, "up3": 295_360, "up2": 291_232}
HEAD = 577
# The notes' 4,871,168 includes 2 unused LayerNorm(128) per layer (4 x 512 parameters), which are left out here.
DAT_TRANSFORMER = 4_871_168 - 2_048
# The notes' Conv1 figure (37,824) is for 1 input channel: its parts add up to the 1-channel total, 33,899,713.
STEM = {1: 37_824, 3: 38_976}


def _count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _meta_model(in_channels: int) -> UDTransNet:
    with torch.device("meta"):
        return UDTransNet(in_channels=in_channels, out_channels=1, image_size=224)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def net32() -> UDTransNet:
    """One real 32 px network for the tests below (building one takes a noticeable part of a second)."""
    torch.manual_seed(0)
    return UDTransNet(in_channels=1, out_channels=1, image_size=32)


def test_parameter_count_at_the_paper_setting() -> None:
    assert _count(_meta_model(3)) == 33_900_865 - 2_048 == 33_898_817


@pytest.mark.parametrize("in_channels", [1, 3])
def test_parameter_count_per_part(in_channels: int) -> None:
    net = _meta_model(in_channels)
    assert _count(net.stem) == STEM[in_channels]
    assert {name: _count(getattr(net, name)) for name in RESNET_LAYERS} == RESNET_LAYERS
    assert tuple(_count(embedding) for embedding in net.dat.embeddings) == DAT_EMBEDDINGS
    assert _count(net.dat.layers) + _count(net.dat.norms) == DAT_TRANSFORMER
    assert {name: _count(getattr(net, name)) for name in UP_STAGES} == UP_STAGES
    assert {name: _count(getattr(net, name).dra) for name in DRA_STAGES} == DRA_STAGES
    assert _count(net.head) == HEAD
    parts = [net.stem, *(getattr(net, name) for name in (*RESNET_LAYERS, *UP_STAGES)), net.dat, net.head]
    assert sum(_count(part) for part in parts) == _count(net) == 33_899_713 - 2_048 + 1_152 * (in_channels == 3)


def test_position_embeddings_follow_the_image_size() -> None:
    with torch.device("meta"):
        net = UDTransNet(image_size=64)
    assert all(embedding.position.shape == (1, 16, 128) for embedding in net.dat.embeddings)


@torch.no_grad()
def test_output_shape_64px() -> None:
    net = UDTransNet(in_channels=1, out_channels=1, image_size=64).eval()
    out = net(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_32px_eval_is_deterministic(net32: UDTransNet) -> None:
    net32.eval()
    x = torch.randn(1, 1, 32, 32)
    first, second = net32(x), net32(x)
    assert first.shape == (1, 1, 32, 32)
    assert torch.equal(first, second)


def test_the_output_is_logits(net32: UDTransNet) -> None:
    assert not any(isinstance(module, nn.Sigmoid) for module in net32.modules())
    assert isinstance(net32.head[-1], nn.Conv2d)


@pytest.mark.parametrize("image_size", [40, 0, -16])
def test_image_size_not_divisible_by_16_is_refused(image_size: int) -> None:
    with pytest.raises(ValueError, match="image_size"):
        UDTransNet(image_size=image_size)


def test_heads_must_divide_the_embedding_width() -> None:
    with pytest.raises(ValueError, match="heads"):
        UDTransNet(image_size=32, heads=3)


def test_wrong_input_size_is_refused() -> None:
    with torch.device("meta"):
        net = UDTransNet(image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        net(torch.empty(1, 1, 64, 64, device="meta"))


def test_gradients_reach_the_stem_the_dat_and_every_dra_stage(net32: UDTransNet) -> None:
    net32.train().zero_grad(set_to_none=True)
    net32(torch.randn(1, 1, 32, 32)).square().mean().backward()
    assert all(parameter.grad is not None for parameter in net32.parameters())
    parts = {
        "stem": net32.stem,
        "dat embeddings": net32.dat.embeddings,
        "dat first layer cfa": net32.dat.layers[0].cfa,
        "dat first layer ssa": net32.dat.layers[0].ssa,
        **{f"{name}.dra": getattr(net32, name).dra for name in DRA_STAGES},
    }
    for name, part in parts.items():
        norm = sum(parameter.grad.abs().sum() for parameter in part.parameters())
        assert torch.isfinite(norm) and norm > 0, name
