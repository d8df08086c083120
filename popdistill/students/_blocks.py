"""Building blocks shared by the students and EvalSeg-Net, and the in-model image transforms.

- ``ConvBNReLU``, ``conv_stage``, ``DenseStage``: the per-level stages of the U-Net family.
- ``ConvEncoder`` / ``UNetDecoder``: a pooled encoder and the nearest-upsampling decoder with
  optional skip concatenation used by U-Net, DilateU-Net, DenseU-Net, FConv-Net and the timm
  U-Net.
- ``BranchTrunk``: the multi-branch body of LowRes-Net and EvalSeg-Net (ICCV 2017 / IJCV 2019).
- ``rgb_to_grey``, ``image_gradients``, ``rgb_to_hsv``: vectorised torch transforms computed
  inside the models, so they run on the model's device in the same batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvBNReLU",
    "conv_stage",
    "DenseStage",
    "ConvEncoder",
    "UpBlock",
    "UNetDecoder",
    "BranchTrunk",
    "rgb_to_grey",
    "image_gradients",
    "rgb_to_hsv",
]

# (in_channels, out_channels, level) -> stage; level 0 is the shallowest (full resolution).
StageFn = Callable[[int, int, int], nn.Module]


class ConvBNReLU(nn.Sequential):
    """'Same'-padded convolution, optional batch norm, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        batch_norm: bool = True,
    ):
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=padding,
                dilation=dilation,
                bias=not batch_norm,
            )
        ]
        # He initialisation for ReLU (as torchvision's ResNets): PyTorch's default shrinks the
        # signal at every layer, which leaves a fresh deep stack nearly input-independent.
        nn.init.kaiming_normal_(layers[0].weight, mode="fan_out", nonlinearity="relu")
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def conv_stage(in_channels: int, out_channels: int, num_convs: int = 2) -> nn.Sequential:
    """``num_convs`` 3x3 ConvBNReLU layers: one U-Net level."""
    return nn.Sequential(
        *(
            ConvBNReLU(in_channels if i == 0 else out_channels, out_channels)
            for i in range(num_convs)
        )
    )


class DenseStage(nn.Module):
    """Dense block (each 3x3 conv sees all earlier outputs) then a 1x1 transition."""

    def __init__(self, in_channels: int, out_channels: int, growth: int, num_convs: int = 4):
        super().__init__()
        self.convs = nn.ModuleList(
            ConvBNReLU(in_channels + i * growth, growth) for i in range(num_convs)
        )
        self.transition = ConvBNReLU(in_channels + num_convs * growth, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for conv in self.convs:
            features.append(conv(torch.cat(features, dim=1)))
        return self.transition(torch.cat(features, dim=1))


class ConvEncoder(nn.Module):
    """Stages separated by 2x2 max pooling; returns every stage's output, shallow to deep."""

    def __init__(self, stages: Sequence[nn.Module], out_channels: Sequence[int]):
        super().__init__()
        if len(stages) != len(out_channels):
            raise ValueError("one out_channels entry per stage is needed")
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.out_channels = tuple(out_channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(self.pool(x) if i else x)
            features.append(x)
        return features


class UpBlock(nn.Module):
    """Nearest upsampling to the skip feature's size, optional concatenation, one stage."""

    def __init__(self, stage: nn.Module, use_skip: bool = True):
        super().__init__()
        self.stage = stage
        self.use_skip = use_skip

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        if self.use_skip:
            x = torch.cat([x, skip], dim=1)
        return self.stage(x)


class UNetDecoder(nn.Module):
    """Decoder over encoder features (shallow to deep); one ``UpBlock`` per shallower feature.

    ``decoder_channels`` lists the output width of each block from deep to shallow. With
    ``use_skips=False`` the shallower features only give the upsampling sizes (FConv-Net).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        stage: StageFn,
        use_skips: bool = True,
    ):
        super().__init__()
        skip_channels = list(encoder_channels[:-1])[::-1]
        if len(decoder_channels) != len(skip_channels):
            raise ValueError(
                f"decoder_channels needs {len(skip_channels)} entries (one per encoder level "
                f"above the deepest), got {len(decoder_channels)}"
            )
        blocks = []
        in_ch = encoder_channels[-1]
        for i, (skip_ch, out_ch) in enumerate(zip(skip_channels, decoder_channels)):
            level = len(skip_channels) - 1 - i
            stage_in = in_ch + (skip_ch if use_skips else 0)
            blocks.append(UpBlock(stage(stage_in, out_ch, level), use_skips))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_ch

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, list(features[:-1])[::-1]):
            x = block(x, skip)
        return x


class BranchTrunk(nn.Module):
    """Parallel branches (conv3x3, conv5x5, pool each), concatenated, then the trunk
    conv3x3, conv5x5, pool, conv3x3, conv5x5, conv5x5(out_channels); output at 1/4 size."""

    def __init__(
        self,
        branch_channels: Sequence[int],
        width: int,
        out_channels: int,
        batch_norm: bool = True,
    ):
        super().__init__()

        def conv(cin: int, cout: int, k: int) -> nn.Module:
            return ConvBNReLU(cin, cout, k, batch_norm=batch_norm)

        self.branches = nn.ModuleList(
            nn.Sequential(conv(c, width, 3), conv(width, width, 5), nn.MaxPool2d(2))
            for c in branch_channels
        )
        self.trunk = nn.Sequential(
            conv(width * len(branch_channels), width, 3),
            conv(width, width, 5),
            nn.MaxPool2d(2),
            conv(width, width, 3),
            conv(width, width, 5),
            conv(width, out_channels, 5),
        )
        self.out_channels = out_channels

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        if len(inputs) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} branch inputs, got {len(inputs)}")
        return self.trunk(torch.cat([b(x) for b, x in zip(self.branches, inputs)], dim=1))


# ITU-R BT.601 luma weights.
_LUMA = (0.299, 0.587, 0.114)


def rgb_to_grey(images: Tensor) -> Tensor:
    """B x 3 x H x W RGB -> B x 1 x H x W grey level."""
    w = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


def image_gradients(grey: Tensor) -> Tensor:
    """Sobel derivatives (Ix along width, Iy along height) of B x 1 x H x W, scaled so that a
    ramp rising by 1 per pixel gives 1; borders replicate. Returns B x 2 x H x W."""
    sx = grey.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    kernel = torch.stack([sx, sx.t()]).unsqueeze(1)
    return F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernel)


def rgb_to_hsv(images: Tensor) -> Tensor:
    """B x 3 x H x W RGB in [0, 1] -> HSV in [0, 1] (the convention of skimage's rgb2hsv)."""
    r, g, b = images.unbind(dim=1)
    v, _ = images.max(dim=1)
    delta = v - images.min(dim=1).values
    has_chroma = delta > 0
    safe = torch.where(has_chroma, delta, torch.ones_like(delta))
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    s = torch.where(has_chroma, s, torch.zeros_like(s))
    h = torch.where(
        b == v,
        4.0 + (r - g) / safe,
        torch.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe),
    )
    h = torch.where(has_chroma, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return torch.stack([h, s, v], dim=1)
