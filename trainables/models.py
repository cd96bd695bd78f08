"""The network variants of the study: six built on MONAI (random init, no dropout, no residual units), and UDTransNet.

Every variant is 2D, takes one input channel and returns one channel of logits, a tensor of
shape (B, 1, H, W); the loss applies the sigmoid. What a ``ModelConfig`` field reaches:

| variant          | ``channels``/``strides``        | ``norm``          | ``activation`` | ``bias``               |
| ---------------- | ------------------------------- | ----------------- | -------------- | ---------------------- |
| `noskip_unet`    | yes                             | yes               | yes            | yes                    |
| `unet`           | yes                             | yes               | yes            | yes                    |
| `attention_unet` | yes                             | fixed: batch norm | fixed: ReLU    | fixed: with bias       |
| `vnet`           | no: fixed by MONAI (16 to 256)  | fixed: batch norm | yes            | fixed: no bias (MONAI) |
| `noskip_vnet`    | no: fixed by MONAI (16 to 256)  | fixed: batch norm | yes            | fixed: no bias (MONAI) |
| `unet_plus_plus` | no: ``unet_plus_plus_features`` | yes               | yes            | yes                    |
| `unet_skips_0111`| yes                             | yes               | yes            | yes                    |
| `udtransnet`     | no: fixed (trainables.udtransnet) | fixed: batch norm | fixed: ReLU  | fixed                  |

``unet_skips_<flags>`` is the U-Net with the skip connection of level ``i`` (shallowest first, one
flag per stride) kept where flag ``i`` is 1: ``unet_skips_0000`` is ``noskip_unet``,
``unet_skips_1111`` is ``unet`` (UDTransNet's skip-subset ablation, Wang et al. 2024).
``udtransnet`` is UDTransNet itself (:mod:`trainables.udtransnet`): a ResNet-34 encoder whose skips are replaced
by a dual attention transformer and decoder-guided recalibration, at the authors' widths, with their dropout
(0.1) in the transformer; it needs the image size (``build_model(..., image_size=...)``, divisible by 16).

The released medical scripts build the U-Nets and UNet++ with ``bias=False`` (``model.bias:
false``) and leave the V-Nets and the attention U-Net at MONAI's defaults, as here.

A field that does not reach a variant is ignored for that variant (a study shares one
``ModelConfig`` across its variants). H and W must be divisible by 16 for the V-Nets and
UNet++ (four halvings) and by the product of ``strides`` for the U-Nets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from monai.networks.layers.factories import Conv, Norm
from monai.networks.nets import AttentionUnet, BasicUNetPlusPlus, UNet, VNet
from monai.networks.nets.vnet import UpTransition, get_acti_layer
from torch import nn

from trainables.config import ModelConfig
from trainables.config.names import is_skip_subset, skip_flags
from trainables.udtransnet import UDTransNet

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@dataclass(frozen=True)
class _UpLayerSpec:
    """The arguments MONAI's ``_create_block`` passes to ``_get_up_layer``, kept until the level is assembled."""

    in_channels_with_skip: int
    out_channels: int
    strides: int
    is_top: bool


class SkipSubsetUNet(UNet):
    """MONAI's ``UNet`` with each level's skip connection kept or dropped: ``skips[i]`` for level ``i``,
    shallowest first (one per stride). All ``False`` is :class:`NoSkipUNet`, all ``True`` MONAI's ``UNet``.

    A kept level is MONAI's own ``Sequential(down, SkipConnection(subblock), up)``; a dropped one is built
    as :class:`NoSkipUNet` builds every level, its up layer sized for what arrives without the skip.
    MONAI builds the levels from the deepest up (each level's subblock first), so the ``k``-th connection
    block built belongs to level ``len(strides) - 1 - k``; construction fails if the count does not match.
    """

    def __init__(self, skips: tuple[bool, ...], **kwargs) -> None:
        if len(skips) != len(kwargs["strides"]):
            raise ValueError(f"{len(skips)} skip flags for {len(kwargs['strides'])} levels (one per stride)")
        self._skip_flags = tuple(bool(flag) for flag in skips)
        self._blocks_built = 0
        super().__init__(**kwargs)
        if self._blocks_built != len(skips):
            raise TypeError(f"{type(self).__name__}: MONAI built {self._blocks_built} levels, expected {len(skips)}")

    def _get_up_layer(  # type: ignore[override]
        self, in_channels: int, out_channels: int, strides: int, is_top: bool
    ) -> _UpLayerSpec:
        return _UpLayerSpec(in_channels, out_channels, strides, is_top)

    def _get_connection_block(self, down_path: nn.Module, up_path: nn.Module, subblock: nn.Module) -> nn.Module:
        if not isinstance(up_path, _UpLayerSpec):
            raise TypeError(f"{type(self).__name__} expected the up-layer arguments, got {type(up_path).__name__}")
        level = len(self._skip_flags) - 1 - self._blocks_built
        self._blocks_built += 1
        kept = level >= 0 and self._skip_flags[level]
        arriving = up_path.in_channels_with_skip - (0 if kept else down_path.out_channels)
        if arriving < 1:
            name = type(self).__name__
            raise ValueError(f"{name}: {arriving} channels would arrive at an up layer; check `channels`")
        up = super()._get_up_layer(arriving, up_path.out_channels, up_path.strides, up_path.is_top)
        if kept:
            return super()._get_connection_block(down_path, up, subblock)
        return nn.Sequential(down_path, subblock, up)


class NoSkipUNet(SkipSubsetUNet):
    """MONAI's ``UNet`` with the skip concatenation removed at every level.

    MONAI assembles each level as ``Sequential(down, SkipConnection(subblock), up)``, and
    ``SkipConnection`` concatenates the down path's output (``c`` channels) with the
    subblock's output, so ``up`` is built for ``c + c`` channels, or ``c + channels[-1]``
    at the deepest level, whose subblock is the bottom layer. Here each level is
    ``Sequential(down, subblock, up)``: the decoder receives only the subblock's output and
    ``up`` is built for exactly those channels. Nothing else changes (down path, bottom
    layer, kernel sizes, norm, activation are MONAI's).

    How the up layer gets its width: ``_get_up_layer`` does not build the layer but returns
    the arguments MONAI computed (``in_channels_with_skip = c + subblock channels``), and
    ``_get_connection_block``, which also receives the down path, builds it for
    ``in_channels_with_skip - down_path.out_channels``, i.e. what actually arrives. This uses
    MONAI's own numbers from the same call instead of re-deriving the channel table (which
    is what breaks at the deepest level); every level is dropped alike, so the order of calls
    inside ``_create_block`` does not matter here (it does for :class:`SkipSubsetUNet`, which
    this is with every flag off). If a future MONAI passes the up layer anywhere else,
    construction fails with a ``TypeError`` instead of building a wrong network.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__((False,) * len(kwargs["strides"]), **kwargs)


class _NoSkipUpTransition(UpTransition):
    """A V-Net up transition that ignores the encoder features and has no residual add.

    MONAI's ``UpTransition`` upsamples to ``out_channels // 2``, concatenates the (dropped
    out) skip to reach ``out_channels``, applies ``nconvs`` 5x5 convolutions and adds the
    concatenation back (residual). Here the transposed convolution, its batch norm and
    activation produce all ``out_channels`` (so ``ops`` and the next layer see the widths
    they expect), the skip argument is accepted and ignored, and ``ops`` has no residual add.
    The optional dropout on the incoming decoder path is MONAI's.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        nconvs: int,
        act: str | tuple,
        dropout_prob: float | None = None,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, nconvs, act, dropout_prob=(dropout_prob, 0.0))
        self.up_conv = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        self.bn1 = Norm[Norm.BATCH, spatial_dims](out_channels)
        self.act_function1 = get_acti_layer(act, out_channels)
        del self.dropout2  # it only ever acted on the skip

    def forward(self, x: torch.Tensor, skipx: torch.Tensor) -> torch.Tensor:
        del skipx  # the encoder features are not used
        out = x if self.dropout is None else self.dropout(x)
        out = self.act_function1(self.bn1(self.up_conv(out)))
        return self.act_function2(self.ops(out))


class NoSkipVNet(VNet):
    """MONAI's ``VNet`` whose decoder receives no encoder features.

    Exactly what is removed, in each of the four up transitions: (1) the concatenation of
    the encoder's feature map (and the dropout MONAI applies to it); (2) the residual add
    of that concatenation after the convolutions. To keep the widths the next layer expects,
    the transposed convolution (with its batch norm and activation) produces
    ``out_channels`` instead of ``out_channels // 2``, as in the authors' released No-Skip
    V-Net. The input transition's residual add, the encoder (down transitions with their
    residual adds), the convolutions inside the up transitions and the output transition are
    MONAI's, built with the same arguments and in the same order, so under one seed the
    encoder and output weights equal those of ``VNet``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, act: str | tuple, **kwargs: object
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, act, **kwargs)
        for name in ("up_tr256", "up_tr128", "up_tr64", "up_tr32"):
            standard: UpTransition = getattr(self, name)
            no_skip = _NoSkipUpTransition(
                spatial_dims,
                in_channels=standard.up_conv.in_channels,
                out_channels=2 * standard.up_conv.out_channels,
                nconvs=len(standard.ops),
                act=act,
                dropout_prob=None if standard.dropout is None else standard.dropout.p,
            )
            setattr(self, name, no_skip)


class UNetPlusPlusFinalMap(BasicUNetPlusPlus):
    """MONAI's ``BasicUNetPlusPlus`` returning its final full-resolution map as a tensor.

    MONAI returns a list of outputs (one without deep supervision); the loss needs the
    final map, ``x_0_4`` through its 1x1 convolution, which is the list's last element.
    The parameters and state-dict keys are MONAI's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[-1]


def _remove_dropout(net: nn.Module) -> nn.Module:
    """Replace every dropout module by ``nn.Identity`` (MONAI's V-Net hard-codes p=0.5 on two skips)."""
    for name, module in list(net.named_modules()):
        if isinstance(module, _DROPOUT_TYPES):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent), child, nn.Identity())
    return net


def _unet_kwargs(model: ModelConfig) -> dict:
    return {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 1,
        "channels": model.channels,
        "strides": model.strides,
        "num_res_units": 0,
        "act": model.activation,
        "norm": model.norm,
        "dropout": 0.0,
        "bias": model.bias,
    }


def _vnet_kwargs(model: ModelConfig) -> dict:
    # dropout_prob_up[1] is the skip dropout of the two deepest up transitions; the two top ones
    # keep MONAI's hard-coded p=0.5, which _remove_dropout takes out.
    return {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 1,
        "act": model.activation,
        "dropout_prob_down": None,
        "dropout_prob_up": (None, 0.0),
        "dropout_dim": 2,
    }


def _build_noskip_unet(model: ModelConfig) -> nn.Module:
    return NoSkipUNet(**_unet_kwargs(model))


def _build_skip_subset_unet(variant: str, model: ModelConfig) -> nn.Module:
    return SkipSubsetUNet(skip_flags(variant), **_unet_kwargs(model))


def _build_unet(model: ModelConfig) -> nn.Module:
    return UNet(**_unet_kwargs(model))


def _build_attention_unet(model: ModelConfig) -> nn.Module:
    # MONAI fixes batch norm and ReLU (and a sigmoid inside the gates); `norm`/`activation` do not apply.
    return AttentionUnet(
        spatial_dims=2, in_channels=1, out_channels=1, channels=model.channels, strides=model.strides, dropout=0.0
    )


def _build_vnet(model: ModelConfig) -> nn.Module:
    return _remove_dropout(VNet(**_vnet_kwargs(model)))


def _build_noskip_vnet(model: ModelConfig) -> nn.Module:
    return _remove_dropout(NoSkipVNet(**_vnet_kwargs(model)))


def _build_unet_plus_plus(model: ModelConfig) -> nn.Module:
    return UNetPlusPlusFinalMap(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        features=model.unet_plus_plus_features,
        deep_supervision=False,
        act=model.activation,
        norm=model.norm,
        bias=model.bias,
        dropout=0.0,
    )


MODEL_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "noskip_unet": _build_noskip_unet,
    "unet": _build_unet,
    "attention_unet": _build_attention_unet,
    "vnet": _build_vnet,
    "noskip_vnet": _build_noskip_vnet,
    "unet_plus_plus": _build_unet_plus_plus,
}


def build_model(variant: str, model: ModelConfig, image_size: int | None = None) -> nn.Module:
    """Build one variant with random weights (seed torch beforehand for a reproducible init).

    Args:
        variant: one of ``MODEL_BUILDERS`` (the names in ``trainables.config.VARIANTS``).
        model: the network shape; see the module docstring for which fields reach which variant.
        image_size: the square input's side; ``udtransnet`` needs it (its token grids follow from it), the
            others take any size their strides divide.

    Returns:
        A module mapping a (B, 1, H, W) float tensor to (B, 1, H, W) logits.

    Raises:
        ValueError: for an unknown variant, naming it and the known ones.
    """
    if is_skip_subset(variant):
        return _build_skip_subset_unet(variant, model)
    if variant == "udtransnet":
        if image_size is None:
            raise ValueError("udtransnet needs the image size (build_model(..., image_size=...))")
        return UDTransNet(in_channels=1, out_channels=1, image_size=image_size)
    try:
        builder = MODEL_BUILDERS[variant]
    except KeyError:
        known = ", ".join([*MODEL_BUILDERS, "udtransnet", "unet_skips_<0|1 per level>"])
        raise ValueError(f"unknown model variant '{variant}'; known: {known}") from None
    return builder(model)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (trainable or not; a shared tensor counts once)."""
    return sum(parameter.numel() for parameter in module.parameters())
