"""DilateU-Net (IJCV 2019 student population): U-Net whose centre is a cascade of six dilated
3x3 convolutions (512 channels, rates 1, 2, 4, 8, 16, 32), each followed by batch norm + ReLU.
Reported as usually the best single student.

How the cascade's outputs meet the decoder is *(inferred)*: ``center_merge="sum"`` (default)
adds the outputs of all six convolutions, as public dilated U-Nets do, so the decoder sees
every receptive field; ``"last"`` passes on only the last conv's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from popdistill.config import choice, load
from popdistill.errors import UserError
from popdistill.students._blocks import ConvBNReLU
from popdistill.students._registry import register_student
from popdistill.students.unet import UNet, UNetConfig

__all__ = ["DilateUNetConfig", "DilateUNet", "DilatedCenter"]

_MERGES = ("sum", "last")


@dataclass
class DilateUNetConfig(UNetConfig):
    center_channels: int = 512
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    center_merge: str = choice("sum", list(_MERGES))

    def validate(self) -> None:
        super().validate()
        if not self.dilations:
            raise UserError("dilations: at least one rate is needed")
        if self.center_merge not in _MERGES:
            raise UserError(
                f"center_merge: {self.center_merge!r} is not one of {', '.join(_MERGES)}"
            )


class DilatedCenter(nn.Module):
    """Cascade of dilated 3x3 ConvBNReLU layers; returns the sum or the last output."""

    def __init__(self, in_channels: int, channels: int, dilations: tuple[int, ...], merge: str):
        super().__init__()
        self.convs = nn.ModuleList(
            ConvBNReLU(in_channels if i == 0 else channels, channels, 3, dilation=d)
            for i, d in enumerate(dilations)
        )
        self.merge = merge

    def forward(self, x: Tensor) -> Tensor:
        total = None
        for conv in self.convs:
            x = conv(x)
            total = x if total is None else total + x
        return total if self.merge == "sum" else x


class DilateUNet(UNet):
    config: DilateUNetConfig

    def build_center(self, in_channels: int) -> tuple[nn.Module, int]:
        c = self.config
        center = DilatedCenter(in_channels, c.center_channels, tuple(c.dilations), c.center_merge)
        return center, c.center_channels


def _create_dilateunet(variant: dict[str, Any], **kwargs: Any) -> DilateUNet:
    return DilateUNet(load(DilateUNetConfig, {**variant, **kwargs}))


@register_student
def dilateunet(**kwargs: Any) -> DilateUNet:
    """DilateU-Net: U-Net widths, centre of six dilated 512-channel convs, 256 px."""
    return _create_dilateunet({}, **kwargs)


@register_student
def dilateunet_tiny(**kwargs: Any) -> DilateUNet:
    """Test-sized DilateU-Net: 8/16/32 channels, centre 32 with rates 1, 2, 4, 64 px."""
    variant = dict(
        input_size=64, encoder_channels=(8, 16, 32), center_channels=32, dilations=(1, 2, 4)
    )
    return _create_dilateunet(variant, **kwargs)
