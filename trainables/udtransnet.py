"""UDTransNet: a U-Net whose skip connections are replaced by a dual attention transformer (Wang et al. 2024).

Source: H. Wang et al., "Narrowing the semantic gaps in U-Net with learnable skip connections: the case of medical
image segmentation", Neural Networks 2024 (arXiv 2312.15182), and the authors' MIT-licensed repository
github.com/McGregorWwww/UDTransNet. Only facts (layers, widths, shapes, order of operations) were taken from that
code; every line here was written for this project. docs/udtransnet_notes.md lists those facts with their sources.

The network has three parts:
- Encoder: a U-Net double conv at full resolution (e1, 64 channels), then a 2x2 max pool and ResNet-34 layer1 to
  layer4 (e2 to e5: 64, 128, 256 and 512 channels, each level half the size of the one above).
- DAT (dual attention transformer): e1 to e4 become four token sets of the same length by patch embeddings with
  patch sizes 16, 8, 4 and 2. Each of its layers applies channel-wise fusion attention (CFA) across the
  concatenated levels, then spatial-wise selection attention (SSA) per level, then a feed-forward network.
- Decoder: four up stages. Each upsamples, recalibrates the DAT tokens of its level with decoder-guided channel
  attention (DRA_C) into a skip feature map, concatenates it with the upsampled features and applies a double conv.
  A 1x1 conv head gives the output.

Deliberate differences from the authors' code:
- The encoder is randomly initialised. The authors load ImageNet weights into the ResNet-34 layers; here nothing
  is downloaded, and the ResNet convs get torchvision's random init (Kaiming normal, fan out).
- The forward pass returns logits for every number of classes. The authors apply a sigmoid inside the model when
  there is one class; our training loop applies it in the loss.
- SSA merges the attention heads properly for all four levels. The authors' code does so for level 1 only and
  reshapes levels 2 to 4 without moving the head axis back, which mixes tokens and heads.
- Two LayerNorms per DAT layer that the authors create but never use are left out (2,048 parameters at 4 layers).
- Any square image size divisible by 16 works, not just 224. Every level then gives (image_size / 16)^2 tokens,
  and the decoder's recalibration patches stay 2, 4, 8 and 16 pixels.
- Any number of input channels works, 1 included. Only the first conv of the stem depends on it.

At the paper's setting (224 pixels, 3 input channels, 1 output) the network has 33,898,817 parameters.
"""

import torch
import torch.nn.functional as F
from torch import nn

_ENCODER_CHANNELS = (64, 64, 128, 256, 512)  # e1 (stem) and e2..e5 (ResNet-34 layer1..layer4)
_RESNET34_BLOCKS = (3, 4, 6, 3)
_DECODER_CHANNELS = (256, 128, 64, 32)  # outputs of Up5, Up4, Up3, Up2
_DAT_PATCH_SIZES = (16, 8, 4, 2)  # for e1..e4: every level gives (image_size / 16)^2 tokens
_LAYER_NORM_EPS = 1e-6


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv (with bias, same padding), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """The U-Net double conv: two 3x3 conv, batch norm, ReLU steps."""
    return nn.Sequential(_conv_bn_relu(in_channels, out_channels, 3), _conv_bn_relu(out_channels, out_channels, 3))


def _normalised_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of (B, heads, queries, keys) scores, each head's map first standardised per sample.

    This is UDTransNet's replacement for the 1/sqrt(d) scaling: an instance norm without affine parameters.
    """
    return torch.softmax(F.instance_norm(scores), dim=-1)


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convs (no bias) with batch norm and an identity or 1x1-conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


def _resnet_layer(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    """One ResNet stage of basic blocks, only the first one strided, with torchvision's random init."""
    layer = nn.Sequential(
        BasicBlock(in_channels, out_channels, stride),
        *(BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)),
    )
    for module in layer.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return layer


class PatchEmbedding(nn.Module):
    """Non-overlapping patches (conv with kernel = stride = patch size) to tokens, plus a learned position embedding."""

    def __init__(self, in_channels: int, channels: int, patch_size: int, tokens: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, channels, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.zeros(1, tokens, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) to (B, tokens, channels)."""
        return self.projection(x).flatten(2).transpose(1, 2) + self.position


class ChannelFusionAttention(nn.Module):
    """CFA: single-head attention between the channels of the concatenated levels, tokens as the contraction axis.

    No output projection and no residual: the result feeds SSA as its keys and values.
    """

    def __init__(self, width: int, attention_dropout: float) -> None:
        super().__init__()
        self.query = nn.Linear(width, width, bias=False)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width, bias=False)
        self.dropout = nn.Dropout(attention_dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, width) to (B, N, width)."""
        scores = self.query(tokens).transpose(1, 2) @ self.key(tokens)  # (B, width, width)
        weights = self.dropout(_normalised_softmax(scores.unsqueeze(1)).squeeze(1))
        return (weights @ self.value(tokens).transpose(1, 2)).transpose(1, 2)


class SpatialSelectionAttention(nn.Module):
    """SSA: multi-head cross-attention from each level's tokens to the CFA output of all levels, split per level.

    Queries and output projections are per level; keys and values are shared.
    """

    def __init__(self, channels: int, levels: int, heads: int, attention_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.queries = nn.ModuleList(nn.Linear(channels, channels, bias=False) for _ in range(levels))
        self.key = nn.Linear(channels, channels, bias=False)
        self.value = nn.Linear(channels, channels, bias=False)
        self.outputs = nn.ModuleList(nn.Linear(channels, channels, bias=False) for _ in range(levels))
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.output_dropout = nn.Dropout(attention_dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) to (B, heads, N, C / heads)."""
        batch, tokens, channels = x.shape
        return x.reshape(batch, tokens, self.heads, channels // self.heads).transpose(1, 2)

    def forward(self, levels: list[torch.Tensor], fused: torch.Tensor) -> list[torch.Tensor]:
        """Levels: (B, N, C) each, layer-normed; fused: (B, N, levels * C) from CFA. Returns (B, N, C) per level."""
        batch, tokens, _ = levels[0].shape
        # The fused channels, cut back into one C-wide slice per level and stacked along the token axis.
        keys_values = torch.cat(fused.chunk(len(levels), dim=2), dim=1)  # (B, levels * N, C)
        keys = self._split_heads(self.key(keys_values)).transpose(2, 3)
        values = self._split_heads(self.value(keys_values))
        outputs = []
        for x, query, output in zip(levels, self.queries, self.outputs, strict=True):
            weights = self.attention_dropout(_normalised_softmax(self._split_heads(query(x)) @ keys))
            # Clean head merge for every level (the authors' code moves the head axis back for level 1 only).
            merged = (weights @ values).transpose(1, 2).reshape(batch, tokens, -1)
            outputs.append(self.output_dropout(output(merged)))
        return outputs


class DATLayer(nn.Module):
    """One DAT layer: CFA then SSA in one residual branch per level, then a feed-forward residual branch per level."""

    def __init__(
        self, channels: int, levels: int, heads: int, expand_ratio: int, dropout: float, attention_dropout: float
    ) -> None:
        super().__init__()
        self.fused_norm = nn.LayerNorm(levels * channels, eps=_LAYER_NORM_EPS)
        self.attention_norms = nn.ModuleList(nn.LayerNorm(channels, eps=_LAYER_NORM_EPS) for _ in range(levels))
        self.cfa = ChannelFusionAttention(levels * channels, attention_dropout)
        self.ssa = SpatialSelectionAttention(channels, levels, heads, attention_dropout)
        self.ffns = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(channels, eps=_LAYER_NORM_EPS),
                nn.Linear(channels, expand_ratio * channels),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(expand_ratio * channels, channels),
                nn.Dropout(dropout),
            )
            for _ in range(levels)
        )

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        fused = self.cfa(self.fused_norm(torch.cat(levels, dim=2)))
        normed = [norm(x) for norm, x in zip(self.attention_norms, levels, strict=True)]
        levels = [x + attended for x, attended in zip(levels, self.ssa(normed, fused), strict=True)]
        return [x + ffn(x) for x, ffn in zip(levels, self.ffns, strict=True)]


class DualAttentionTransformer(nn.Module):
    """DAT: patch embeddings of the encoder levels, stacked DAT layers, a final LayerNorm per level.

    Returns tokens, not feature maps: the decoder's recalibration turns them back into maps.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        patch_sizes: tuple[int, ...],
        tokens: int,
        channels: int,
        layers: int,
        heads: int,
        expand_ratio: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        levels = len(in_channels)
        self.embeddings = nn.ModuleList(
            PatchEmbedding(width, channels, patch, tokens)
            for width, patch in zip(in_channels, patch_sizes, strict=True)
        )
        self.layers = nn.ModuleList(
            DATLayer(channels, levels, heads, expand_ratio, dropout, attention_dropout) for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(channels, eps=_LAYER_NORM_EPS) for _ in range(levels))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encoder maps e1..e4 to (B, tokens, channels) per level."""
        levels = [embed(x) for embed, x in zip(self.embeddings, features, strict=True)]
        for layer in self.layers:
            levels = layer(levels)
        return [norm(x) for norm, x in zip(self.norms, levels, strict=True)]


class ChannelRecalibration(nn.Module):
    """DRA_C: decoder-guided channel attention over one level's DAT tokens, reconstructed into a skip feature map.

    The decoder features give the queries (via patch tokens on the DAT token grid) and, through a 1x1 conv, a mask
    that gates the reconstructed map. The output replaces the encoder skip; there is no residual.
    """

    def __init__(self, decoder_channels: int, skip_channels: int, token_channels: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.mask = _conv_bn_relu(decoder_channels, skip_channels, 1)
        self.patch_embedding = nn.Conv2d(decoder_channels, decoder_channels, patch_size, stride=patch_size)
        self.query = nn.Linear(decoder_channels, skip_channels, bias=False)
        self.key = nn.Linear(token_channels, skip_channels, bias=False)
        self.value = nn.Linear(token_channels, skip_channels, bias=False)
        self.output = nn.Linear(skip_channels, skip_channels, bias=False)
        self.reconstruct = nn.Sequential(
            nn.Upsample(scale_factor=patch_size, mode="nearest"), _conv_bn_relu(skip_channels, skip_channels, 1)
        )

    def forward(self, decoder: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Decoder (B, D, H, W) and tokens (B, N, C) with N = (H / patch) * (W / patch) to (B, skip, H, W)."""
        batch, _, height, width = decoder.shape
        queries = self.query(self.patch_embedding(decoder).flatten(2).transpose(1, 2))  # (B, N, skip)
        scores = queries.transpose(1, 2) @ self.key(tokens)  # (B, skip, skip)
        weights = _normalised_softmax(scores.unsqueeze(1)).squeeze(1)
        recalibrated = self.output((weights @ self.value(tokens).transpose(1, 2)).transpose(1, 2))  # (B, N, skip)
        grid = recalibrated.transpose(1, 2).reshape(batch, -1, height // self.patch_size, width // self.patch_size)
        return self.reconstruct(grid) * self.mask(decoder)


class UpStage(nn.Module):
    """Decoder stage: 2x transposed conv, DRA_C skip from the DAT tokens, concatenation [skip, up], double conv."""

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, token_channels: int, patch_size: int
    ) -> None:
        super().__init__()
        up_channels = in_channels // 2
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_channels, up_channels, 2, stride=2),
            nn.BatchNorm2d(up_channels),
            nn.ReLU(inplace=True),
        )
        self.dra = ChannelRecalibration(up_channels, skip_channels, token_channels, patch_size)
        self.conv = _double_conv(skip_channels + up_channels, out_channels)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        return self.conv(torch.cat([self.dra(up, tokens), up], dim=1))


class UDTransNet(nn.Module):
    """UDTransNet for square inputs of side ``image_size`` (divisible by 16); see the module docstring.

    Maps (B, in_channels, image_size, image_size) to (B, out_channels, image_size, image_size) logits. There is no
    sigmoid inside (the authors apply one for a single class): the training loop applies it in the loss.
    ``embedding_channels`` is the DAT token width; CFA works on ``4 * embedding_channels`` channels, SSA splits
    ``embedding_channels`` into ``heads`` heads. ``dropout`` is the feed-forward dropout, ``attention_dropout`` the
    dropout on the CFA and SSA attention maps and on the SSA output (as in the authors' code).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        image_size: int = 224,
        heads: int = 4,
        layers: int = 4,
        embedding_channels: int = 128,
        expand_ratio: int = 2,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if image_size <= 0 or image_size % 16:
            raise ValueError(
                f"UDTransNet needs image_size divisible by 16 (four halvings), got image_size={image_size}"
            )
        if embedding_channels % heads:
            raise ValueError(f"embedding_channels={embedding_channels} is not divisible by heads={heads}")
        self.image_size = image_size
        e1, e2, e3, e4, e5 = _ENCODER_CHANNELS
        self.stem = _double_conv(in_channels, e1)
        self.pool = nn.MaxPool2d(2)
        self.layer1 = _resnet_layer(e1, e2, _RESNET34_BLOCKS[0], stride=1)
        self.layer2 = _resnet_layer(e2, e3, _RESNET34_BLOCKS[1], stride=2)
        self.layer3 = _resnet_layer(e3, e4, _RESNET34_BLOCKS[2], stride=2)
        self.layer4 = _resnet_layer(e4, e5, _RESNET34_BLOCKS[3], stride=2)
        self.dat = DualAttentionTransformer(
            in_channels=(e1, e2, e3, e4),
            patch_sizes=_DAT_PATCH_SIZES,
            tokens=(image_size // 16) ** 2,
            channels=embedding_channels,
            layers=layers,
            heads=heads,
            expand_ratio=expand_ratio,
            dropout=dropout,
            attention_dropout=attention_dropout,
        )
        # A stage's maps are as large as the encoder level it recalibrates, so its DRA patch size is that level's
        # DAT patch size: every stage meets the same (image_size / 16)^2 token grid.
        d5, d4, d3, d2 = _DECODER_CHANNELS
        self.up5 = UpStage(e5, e4, d5, embedding_channels, _DAT_PATCH_SIZES[3])
        self.up4 = UpStage(d5, e3, d4, embedding_channels, _DAT_PATCH_SIZES[2])
        self.up3 = UpStage(d4, e2, d3, embedding_channels, _DAT_PATCH_SIZES[1])
        self.up2 = UpStage(d3, e1, d2, embedding_channels, _DAT_PATCH_SIZES[0])
        self.head = nn.Sequential(_conv_bn_relu(d2, d2 // 2, 1), nn.Conv2d(d2 // 2, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} inputs (image_size), got {tuple(x.shape)}")
        e1 = self.stem(x)
        e2 = self.layer1(self.pool(e1))
        e3 = self.layer2(e2)
        e4 = self.layer3(e3)
        e5 = self.layer4(e4)
        o1, o2, o3, o4 = self.dat([e1, e2, e3, e4])
        d = self.up5(e5, o4)
        d = self.up4(d, o3)
        d = self.up3(d, o2)
        d = self.up2(d, o1)
        return self.head(d)
