"""Tests of trainables.models: shapes, the removed skips, the registry and the config plumbing."""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import BasicUNetPlusPlus, UNet, VNet
from torch import nn

from trainables.config import VARIANTS, ModelConfig
from trainables.models import MODEL_BUILDERS, NoSkipUNet, NoSkipVNet, build_model, count_parameters

SMALL = ModelConfig(channels=(4, 8, 16, 32, 64), strides=(2, 2, 2, 2), unet_plus_plus_features=(4, 8, 16, 32, 64, 4))
SIX_LEVELS = ModelConfig(channels=(4, 8, 8, 16, 16, 32), strides=(2, 2, 2, 2, 2))
UP_TRANSITIONS = ("up_tr256", "up_tr128", "up_tr64", "up_tr32")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _batch() -> torch.Tensor:
    return torch.randn(2, 1, 64, 64)


def test_registry_covers_the_config_variants() -> None:
    assert set(MODEL_BUILDERS) | {"udtransnet"} == set(VARIANTS)  # udtransnet: built with the image size


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_maps_a_batch_to_one_logit_map(variant: str) -> None:
    net = build_model(variant, SMALL, 64)
    out = net(_batch())
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 1, 64, 64)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("variant", ["unet", "noskip_unet", "attention_unet"])
def test_six_levels(variant: str) -> None:
    assert build_model(variant, SIX_LEVELS)(_batch()).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "udtransnet"])  # its transformer keeps 0.1
def test_no_dropout(variant: str) -> None:
    net = build_model(variant, SMALL)
    assert all(module.p == 0 for module in net.modules() if isinstance(module, nn.modules.dropout._DropoutNd))


def test_udtransnet_needs_the_image_size() -> None:
    with pytest.raises(ValueError, match="udtransnet needs the image size"):
        build_model("udtransnet", SMALL)


def test_unknown_variant_is_named() -> None:
    with pytest.raises(ValueError, match="resnet") as error:
        build_model("resnet", SMALL)
    assert "noskip_unet" in str(error.value)


def test_norm_and_activation_reach_the_unet() -> None:
    modules = list(build_model("unet", ModelConfig(norm="instance", activation="leakyrelu")).modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in modules)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in modules)
    assert any(isinstance(m, nn.LeakyReLU) for m in modules)
    assert not any(isinstance(m, nn.ReLU) for m in modules)


@pytest.mark.parametrize("variant", ["noskip_unet", "unet_plus_plus"])
def test_norm_and_activation_reach_other_variants(variant: str) -> None:
    config = SMALL.model_copy(update={"norm": "instance", "activation": "prelu"})
    modules = list(build_model(variant, config).modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in modules)
    assert any(isinstance(m, nn.PReLU) for m in modules)


def test_activation_reaches_the_vnet() -> None:
    modules = list(build_model("vnet", SMALL.model_copy(update={"activation": "leakyrelu"})).modules())
    assert any(isinstance(m, nn.LeakyReLU) for m in modules)
    assert not any(isinstance(m, nn.ReLU | nn.ELU) for m in modules)


# --- no-skip U-Net -------------------------------------------------------------------------------


def _decoder_inputs_are_subblock_outputs(net: UNet, levels: int) -> list[bool]:
    """Per level: is the up layer's input exactly the output of the submodule below it?"""
    recorded: list[dict[str, torch.Tensor]] = []
    handles = []
    block = net.model
    for _ in range(levels):
        below = block[1].submodule if isinstance(block[1], SkipConnection) else block[1]
        record: dict[str, torch.Tensor] = {}
        recorded.append(record)
        handles.append(below.register_forward_hook(lambda _m, _i, out, r=record: r.__setitem__("below", out)))
        handles.append(block[2].register_forward_pre_hook(lambda _m, args, r=record: r.__setitem__("up", args[0])))
        block = below
    net.eval()
    with torch.no_grad():
        net(_batch())
    for handle in handles:
        handle.remove()
    return [r["up"].shape == r["below"].shape and torch.equal(r["up"], r["below"]) for r in recorded]


@pytest.mark.parametrize("config", [SMALL, SIX_LEVELS], ids=["5 levels", "6 levels"])
def test_noskip_unet_decoder_receives_only_the_level_below(config: ModelConfig) -> None:
    levels = len(config.channels) - 1
    noskip = build_model("noskip_unet", config)
    assert isinstance(noskip, NoSkipUNet)
    assert _decoder_inputs_are_subblock_outputs(noskip, levels) == [True] * levels
    # The same check on MONAI's U-Net sees the concatenation at every level.
    assert _decoder_inputs_are_subblock_outputs(build_model("unet", config), levels) == [False] * levels


def test_noskip_unet_has_no_skip_module_and_fewer_parameters() -> None:
    noskip, unet = build_model("noskip_unet", SMALL), build_model("unet", SMALL)
    assert not any(isinstance(m, SkipConnection) for m in noskip.modules())
    assert any(isinstance(m, SkipConnection) for m in unet.modules())
    assert count_parameters(noskip) < count_parameters(unet)


def test_noskip_unet_up_layers_are_built_for_what_arrives() -> None:
    # channels (4, 8, 16): the deepest up layer receives the bottom layer's 16 channels, the top one 4.
    net = NoSkipUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8, 16), strides=(2, 2))
    assert net.model[2].conv.in_channels == 4
    assert net.model[1][2].conv.in_channels == 16
    # Only the up layers' inputs narrow: 4 + 4 -> 4 (top, 1 output) and 8 + 16 -> 16 (deepest, 4 outputs), 3x3.
    reference = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8, 16), strides=(2, 2))
    assert count_parameters(reference) - count_parameters(net) == (8 - 4) * 1 * 9 + (24 - 16) * 4 * 9


# --- no-skip V-Net -------------------------------------------------------------------------------


def _up_transition_outputs(up: nn.Module, skip_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(2, up.up_conv.in_channels, 4, 4)
    skip_a, skip_b = torch.randn(2, skip_channels, 8, 8), torch.randn(2, skip_channels, 8, 8)
    with torch.no_grad():
        return up(x, skip_a), up(x, skip_b)


@pytest.mark.parametrize("name", UP_TRANSITIONS)
def test_noskip_vnet_up_transitions_ignore_the_skip(name: str) -> None:
    noskip, vnet = build_model("noskip_vnet", SMALL).eval(), build_model("vnet", SMALL).eval()
    assert isinstance(noskip, NoSkipVNet) and isinstance(vnet, VNet)
    skip_channels = getattr(vnet, name).up_conv.out_channels
    assert torch.equal(*_up_transition_outputs(getattr(noskip, name), skip_channels))
    assert not torch.equal(*_up_transition_outputs(getattr(vnet, name), skip_channels))


@pytest.mark.parametrize("name", UP_TRANSITIONS)
def test_noskip_vnet_decoder_has_no_residual_add(name: str) -> None:
    up = getattr(build_model("noskip_vnet", SMALL).eval(), name)
    x = torch.randn(2, up.up_conv.in_channels, 4, 4)
    with torch.no_grad():
        upsampled = up.act_function1(up.bn1(up.up_conv(x)))
        out = up(x, torch.empty(0))
        assert torch.equal(out, up.act_function2(up.ops(upsampled)))
        assert not torch.equal(out, up.act_function2(up.ops(upsampled) + upsampled))


def test_noskip_vnet_keeps_the_rest_of_the_vnet() -> None:
    torch.manual_seed(1)
    noskip = build_model("noskip_vnet", SMALL).state_dict()
    torch.manual_seed(1)
    vnet = build_model("vnet", SMALL).state_dict()
    shared = [key for key in vnet if not key.startswith("up_tr")]
    assert shared and all(key in noskip and torch.equal(noskip[key], vnet[key]) for key in shared)
    for name in UP_TRANSITIONS:  # the convolutions after the upsampling keep their widths
        ops = [key for key in vnet if key.startswith(f"{name}.ops")]
        assert ops and all(noskip[key].shape == vnet[key].shape for key in ops)


# --- UNet++ --------------------------------------------------------------------------------------


def test_unet_plus_plus_returns_the_final_map() -> None:
    net = build_model("unet_plus_plus", SMALL).eval()
    reference = BasicUNetPlusPlus(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        features=SMALL.unet_plus_plus_features,
        deep_supervision=True,
        act="relu",
        norm="batch",
    ).eval()
    reference.load_state_dict(net.state_dict())
    x = _batch()
    with torch.no_grad():
        out, maps = net(x), reference(x)
    assert isinstance(out, torch.Tensor)
    assert len(maps) == 4
    assert torch.equal(out, maps[-1])
    assert not torch.equal(out, maps[0])


# --- bias ----------------------------------------------------------------------------------------


def _conv_biases(net: nn.Module) -> list[bool]:
    return [module.bias is not None for module in net.modules() if isinstance(module, nn.Conv2d | nn.ConvTranspose2d)]


@pytest.mark.parametrize("variant", ["noskip_unet", "unet"])
def test_bias_false_removes_every_convolution_bias_of_the_unets(variant: str) -> None:
    assert all(_conv_biases(build_model(variant, SMALL)))  # default: MONAI's bias=True
    assert not any(_conv_biases(build_model(variant, SMALL.model_copy(update={"bias": False}))))


def test_bias_false_reaches_the_3x3_convolutions_of_unet_plus_plus() -> None:
    def biases_3x3(config: ModelConfig) -> list[bool]:
        net = build_model("unet_plus_plus", config)
        return [m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]

    assert all(biases_3x3(SMALL))
    assert not any(biases_3x3(SMALL.model_copy(update={"bias": False})))  # MONAI keeps its upsampling and 1x1 biases


@pytest.mark.parametrize("variant", ["vnet", "noskip_vnet", "attention_unet"])
def test_bias_does_not_reach_the_fixed_variants(variant: str) -> None:
    default = _conv_biases(build_model(variant, SMALL))
    assert _conv_biases(build_model(variant, SMALL.model_copy(update={"bias": False}))) == default
