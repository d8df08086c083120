"""LowRes-Net (Croitoru, Bogolin & Leordeanu, "Unsupervised learning from video to detect
foreground objects in single images", ICCV 2017).

"Ten layers: seven conv, two pooling, one fully connected". A 128x128 image enters as three
branches computed inside the model: RGB (3 ch), grey-level Sobel gradients Ix, Iy (2 ch) and
hue (1 ch). Each branch: conv3x3(256) -> conv5x5(256) -> maxpool2; concatenated ->
conv3x3(256) -> conv5x5(256) -> maxpool2 -> conv3x3(256) -> conv5x5(256) -> conv5x5(64) ->
FC to a 32x32 soft mask -> sigmoid. Batch norm after each conv is *(inferred)* (the paper does
not say), a config option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.students._blocks import BranchTrunk, image_gradients, rgb_to_grey, rgb_to_hsv
from popdistill.students._registry import register_student
from popdistill.students.base import StudentConfig, StudentNet

__all__ = ["LowResConfig", "LowResNet", "LowResEncoder", "FCMaskHead"]


@dataclass
class LowResConfig(StudentConfig):
    """LowRes-Net: output is ``input_size // 4`` square (32 for the paper's 128)."""

    input_size: int = 128
    width: int = 256
    head_channels: int = 64
    batch_norm: bool = True

    def validate(self) -> None:
        super().validate()
        if self.input_size % 4:
            raise UserError(f"input_size: must be a multiple of 4, got {self.input_size}")


class LowResEncoder(nn.Module):
    """Computes the RGB / gradient / hue inputs and runs the three-branch body."""

    def __init__(self, width: int, out_channels: int, batch_norm: bool):
        super().__init__()
        self.body = BranchTrunk((3, 2, 1), width, out_channels, batch_norm)

    def forward(self, images: Tensor) -> Tensor:
        gradients = image_gradients(rgb_to_grey(images))
        hue = rgb_to_hsv(images)[:, :1]
        return self.body([images, gradients, hue])


class FCMaskHead(nn.Sequential):
    """Flatten -> fully connected -> 1 x size x size mask logits."""

    def __init__(self, in_features: int, size: int):
        super().__init__(
            nn.Flatten(), nn.Linear(in_features, size * size), nn.Unflatten(1, (1, size, size))
        )


class LowResNet(StudentNet):
    def __init__(self, config: LowResConfig):
        super().__init__(config)
        self.output_size = config.input_size // 4
        self.encoder = LowResEncoder(config.width, config.head_channels, config.batch_norm)
        self.decoder = nn.Identity()
        self.head = FCMaskHead(config.head_channels * self.output_size**2, self.output_size)


def _create_lowres(variant: dict[str, Any], **kwargs: Any) -> LowResNet:
    return LowResNet(load(LowResConfig, {**variant, **kwargs}))


@register_student
def lowres(**kwargs: Any) -> LowResNet:
    """LowRes-Net as in the paper: 128 px in, 32 x 32 out, 256-wide convolutions."""
    return _create_lowres({}, **kwargs)


@register_student
def lowres_tiny(**kwargs: Any) -> LowResNet:
    """Test-sized LowRes-Net: 64 px in, 16 x 16 out, 16-wide convolutions."""
    return _create_lowres(dict(input_size=64, width=16, head_channels=8), **kwargs)
