"""U-Net (Ronneberger et al. 2015) as configured in the IJCV 2019 student population.

256x256 RGB in, 256x256x1 out; 5 levels of 2 convs (32/64/128/256/512 channels), each conv
followed by batch norm + ReLU, 2x2 max pooling, a centre of 2 convs with 1024 channels, and a
mirrored decoder of nearest-neighbour upsampling with skip concatenation. ``UNet.build_center``
is the one hook DilateU-Net overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.students._blocks import ConvEncoder, UNetDecoder, conv_stage
from popdistill.students._registry import register_student
from popdistill.students.base import StudentConfig, StudentNet

__all__ = ["UNetConfig", "UNet"]


@dataclass
class UNetConfig(StudentConfig):
    """Widths of the encoder levels (shallow to deep), the centre and convs per level."""

    input_size: int = 256
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    center_channels: int = 1024
    convs_per_level: int = 2

    def validate(self) -> None:
        super().validate()
        if not self.encoder_channels:
            raise UserError("encoder_channels: at least one level is needed")


class UNet(StudentNet):
    """Encoder levels + centre (pooled between), decoder mirrored on the encoder widths."""

    config: UNetConfig

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        ch = tuple(config.encoder_channels)
        n = config.convs_per_level
        stages = [conv_stage(cin, cout, n) for cin, cout in zip((3, *ch[:-1]), ch)]
        center, center_channels = self.build_center(ch[-1])
        self.encoder = ConvEncoder([*stages, center], (*ch, center_channels))
        self.decoder = UNetDecoder(
            self.encoder.out_channels, ch[::-1], lambda cin, cout, _level: conv_stage(cin, cout, n)
        )
        self.head = nn.Conv2d(self.decoder.out_channels, 1, kernel_size=1)

    def build_center(self, in_channels: int) -> tuple[nn.Module, int]:
        """The bottleneck after the last pooling and its output width."""
        c = self.config
        return conv_stage(in_channels, c.center_channels, c.convs_per_level), c.center_channels


def _create_unet(variant: dict[str, Any], **kwargs: Any) -> UNet:
    return UNet(load(UNetConfig, {**variant, **kwargs}))


@register_student
def unet(**kwargs: Any) -> UNet:
    """U-Net with the IJCV 2019 widths: 32..512, centre 1024, 256 px."""
    return _create_unet({}, **kwargs)


@register_student
def unet_tiny(**kwargs: Any) -> UNet:
    """Test-sized U-Net: 3 levels of 8/16/32 channels, centre 64, 64 px."""
    return _create_unet(
        dict(input_size=64, encoder_channels=(8, 16, 32), center_channels=64), **kwargs
    )
