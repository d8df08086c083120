"""U-Net with any timm backbone as its encoder (segmentation_models_pytorch's Unet shape).

The encoder is ``timm.create_model(encoder_name, pretrained=False, features_only=True)``:
never pretrained, so nothing is downloaded; students train from scratch on pseudo-labels as in
the thesis. The input image itself is prepended as a full-resolution feature, so the decoder
(the U-Net family's nearest-upsampling blocks of 2 ConvBNReLU with skip concatenation) ends at
the input size whatever the backbone's strides.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.students._blocks import UNetDecoder, conv_stage
from popdistill.students._registry import register_student
from popdistill.students.base import StudentConfig, StudentNet

__all__ = ["TimmUNetConfig", "TimmUNet", "TimmEncoder"]


@dataclass
class TimmUNetConfig(StudentConfig):
    """``decoder_channels`` (deep to shallow) needs one entry per backbone feature level."""

    input_size: int = 256
    encoder_name: str = "resnet18"
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)


class TimmEncoder(nn.Module):
    """A timm feature extractor; returns ``[image, feature_1, ..., feature_n]``."""

    def __init__(self, name: str, **kwargs: Any):
        super().__init__()
        import timm

        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=5)
            raise UserError(
                f"encoder_name: unknown timm model {name!r}; close names: {', '.join(close)}"
            )
        self.model = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        self.out_channels = (3, *self.model.feature_info.channels())

    def forward(self, x: Tensor) -> list[Tensor]:
        return [x, *self.model(x)]


class TimmUNet(StudentNet):
    config: TimmUNetConfig

    def __init__(self, config: TimmUNetConfig):
        super().__init__(config)
        self.encoder = TimmEncoder(config.encoder_name, **config.encoder_kwargs)
        levels = len(self.encoder.out_channels) - 1
        if len(config.decoder_channels) != levels:
            raise UserError(
                f"decoder_channels: {config.encoder_name} gives {levels} feature levels, so "
                f"{levels} decoder widths are needed; got {list(config.decoder_channels)}"
            )
        self.decoder = UNetDecoder(
            self.encoder.out_channels,
            tuple(config.decoder_channels),
            lambda cin, cout, _level: conv_stage(cin, cout, 2),
        )
        self.head = nn.Conv2d(self.decoder.out_channels, 1, kernel_size=1)


def _create_timm_unet(variant: dict[str, Any], **kwargs: Any) -> TimmUNet:
    return TimmUNet(load(TimmUNetConfig, {**variant, **kwargs}))


@register_student
def timm_unet_resnet18(**kwargs: Any) -> TimmUNet:
    """U-Net on a ResNet-18 encoder (11.2 M encoder parameters), 256 px."""
    return _create_timm_unet(dict(encoder_name="resnet18"), **kwargs)


@register_student
def timm_unet_resnet10t(**kwargs: Any) -> TimmUNet:
    """U-Net on a ResNet-10-T encoder (4.9 M encoder parameters), 256 px."""
    return _create_timm_unet(dict(encoder_name="resnet10t"), **kwargs)


@register_student
def timm_unet_tiny(**kwargs: Any) -> TimmUNet:
    """Test-sized timm U-Net: MobileNetV3-Small-0.5 encoder, narrow decoder, 64 px."""
    variant = dict(
        input_size=64, encoder_name="mobilenetv3_small_050", decoder_channels=(32, 16, 16, 8, 8)
    )
    return _create_timm_unet(variant, **kwargs)
