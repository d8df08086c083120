"""DenseU-Net (IJCV 2019 student population): a U-Net whose levels are dense blocks.

Each level is a dense block of 4 3x3 convs (growth 12/24/48/64/128 from shallow to deep; each
conv sees the concatenation of the level's input and all earlier outputs) followed by a 1x1
transition to 32/64/128/256/512 channels; 4 max-poolings between the 5 levels. The decoder
mirrors it: nearest upsampling, skip concatenation, then a dense block with the growth of that
level and a transition to that level's width. Every conv is followed by batch norm + ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.students._blocks import ConvEncoder, DenseStage, UNetDecoder
from popdistill.students._registry import register_student
from popdistill.students.base import StudentConfig, StudentNet

__all__ = ["DenseUNetConfig", "DenseUNet"]


@dataclass
class DenseUNetConfig(StudentConfig):
    """Per-level growth rates and transition widths, shallow to deep (the last is the bottom)."""

    input_size: int = 256
    growth_rates: tuple[int, ...] = (12, 24, 48, 64, 128)
    stage_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    convs_per_block: int = 4

    def validate(self) -> None:
        super().validate()
        if len(self.growth_rates) != len(self.stage_channels) or len(self.stage_channels) < 2:
            raise UserError(
                "growth_rates and stage_channels need the same length (at least 2), got "
                f"{len(self.growth_rates)} and {len(self.stage_channels)}"
            )


class DenseUNet(StudentNet):
    config: DenseUNetConfig

    def __init__(self, config: DenseUNetConfig):
        super().__init__(config)
        ch = tuple(config.stage_channels)
        growth = tuple(config.growth_rates)
        n = config.convs_per_block

        def stage(cin: int, cout: int, level: int) -> nn.Module:
            return DenseStage(cin, cout, growth[level], n)

        self.encoder = ConvEncoder(
            [stage(cin, cout, i) for i, (cin, cout) in enumerate(zip((3, *ch[:-1]), ch))], ch
        )
        self.decoder = UNetDecoder(ch, ch[:-1][::-1], stage)
        self.head = nn.Conv2d(self.decoder.out_channels, 1, kernel_size=1)


def _create_denseunet(variant: dict[str, Any], **kwargs: Any) -> DenseUNet:
    return DenseUNet(load(DenseUNetConfig, {**variant, **kwargs}))


@register_student
def denseunet(**kwargs: Any) -> DenseUNet:
    """DenseU-Net with the IJCV 2019 growth rates and widths, 256 px."""
    return _create_denseunet({}, **kwargs)


@register_student
def denseunet_tiny(**kwargs: Any) -> DenseUNet:
    """Test-sized DenseU-Net: 3 levels, growth 4/8/16, widths 8/16/32, 2 convs per block, 64 px."""
    variant = dict(
        input_size=64, growth_rates=(4, 8, 16), stage_channels=(8, 16, 32), convs_per_block=2
    )
    return _create_denseunet(variant, **kwargs)
