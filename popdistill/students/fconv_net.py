"""FConv-Net: a plain fully convolutional encoder-decoder without skip connections.

The IJCV 2019 population lists an "FConv-Net" with no public description, so this design is
*(inferred)*: 4 pooled encoder levels of ``convs_per_level`` 3x3 convs (32/64/128/256
channels), a 512-channel centre at 1/16 resolution, and a mirrored decoder of nearest
upsampling + convs with no skips, so the mask is rebuilt from the bottleneck alone (smoother,
blobbier masks than the U-Nets — a different kind of error for the ensemble). Every conv is
followed by batch norm + ReLU. It shares the encoder/decoder blocks of the U-Net family.
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

__all__ = ["FConvConfig", "FConvNet"]


@dataclass
class FConvConfig(StudentConfig):
    input_size: int = 256
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    center_channels: int = 512
    convs_per_level: int = 2

    def validate(self) -> None:
        super().validate()
        if not self.encoder_channels:
            raise UserError("encoder_channels: at least one level is needed")


class FConvNet(StudentNet):
    config: FConvConfig

    def __init__(self, config: FConvConfig):
        super().__init__(config)
        ch = (*config.encoder_channels, config.center_channels)
        n = config.convs_per_level
        self.encoder = ConvEncoder(
            [conv_stage(cin, cout, n) for cin, cout in zip((3, *ch[:-1]), ch)], ch
        )
        self.decoder = UNetDecoder(
            ch, ch[:-1][::-1], lambda cin, cout, _level: conv_stage(cin, cout, n), use_skips=False
        )
        self.head = nn.Conv2d(self.decoder.out_channels, 1, kernel_size=1)


def _create_fconv(variant: dict[str, Any], **kwargs: Any) -> FConvNet:
    return FConvNet(load(FConvConfig, {**variant, **kwargs}))


@register_student
def fconv(**kwargs: Any) -> FConvNet:
    """FConv-Net: 32..256 channels, centre 512 at 1/16, no skips, 256 px."""
    return _create_fconv({}, **kwargs)


@register_student
def fconv_tiny(**kwargs: Any) -> FConvNet:
    """Test-sized FConv-Net: 8/16/32 channels, centre 64, 64 px."""
    return _create_fconv(
        dict(input_size=64, encoder_channels=(8, 16, 32), center_channels=64), **kwargs
    )
