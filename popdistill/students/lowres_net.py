"""LowRes-Net (Croitoru, Bogolin & Leordeanu, "Unsupervised learning from video to detect
foreground objects in single images", ICCV 2017).

"Ten layers: seven conv, two pooling, one fully connected". A 128x128 image enters as three
branches computed inside the model: RGB (3 ch), grey-level Sobel gradients Ix, Iy (2 ch) and
hue (1 ch). Each branch: conv3x3(256) -> conv5x5(256) -> maxpool2; concatenated ->
conv3x3(256) -> conv5x5(256) -> maxpool2 -> conv3x3(256) -> conv5x5(256) -> conv5x5(64) ->
FC to a 32x32 soft mask -> sigmoid. Batch norm after each conv is *(inferred)* (the paper does
not say), a config option.

The fully connected head needs care *(not in the paper)*: Adam moves every weight by about
``lr`` on its first steps, in the direction of its gradient's sign, and the head's inputs are
non-negative (BN + ReLU), so one step moves every logit by about ``lr * sum(inputs)``: -21 at
lr 1e-3 with the paper's 65,536 inputs. Every output saturates at 0 after the first step and
the full-size model never trained (MSE or BCE). Two defaults fix it (benchmarks/lowres_collapse.py,
docs/experiments/): the head learns at ``head_lr_scale`` (0.1) times the training rate, and its
bias starts at the logit of a foreground prior (``head_prior``). The tiny variant (2,048 head
inputs, ~0.7 per step) trains as the paper describes and keeps both off.
"""

from __future__ import annotations

import math
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
    # The FC head's learning rate relative to the training rate: 0.1 trains the full-size
    # head at lr 1e-3 (J 0.41 / 0.47 over two seeds in benchmarks/lowres_collapse.py; 1.0: 0).
    head_lr_scale: float = 0.1
    # Initial FC bias = logit(head_prior), so the first output is the mean foreground of the
    # labels instead of 0.5 (None: PyTorch's default init). 0.05: the mean of the teacher's
    # selected soft masks of a 250-video run (0.0495). Why: with the default init, the first
    # Adam step (lr 1e-3) moves every weight of the 65,536-input FC layer by ~lr in the same
    # direction (its inputs are non-negative BN+ReLU features, mean ~0.33), shifting every logit
    # by ~ -20 at once; the sigmoid then saturates, the MSE gradient is ~0 and the net outputs
    # 0 everywhere for good (benchmarks/lowres_collapse.py). Starting at the prior, background
    # and foreground pixels get gradients of both signs and training does not collapse.
    head_prior: float | None = 0.05

    def validate(self) -> None:
        super().validate()
        if self.input_size % 4:
            raise UserError(f"input_size: must be a multiple of 4, got {self.input_size}")
        if not self.head_lr_scale > 0:
            raise UserError(f"head_lr_scale: must be > 0, got {self.head_lr_scale}")
        if self.head_prior is not None and not 0.0 < self.head_prior < 1.0:
            raise UserError(f"head_prior: must be in (0, 1) or null, got {self.head_prior}")


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
    """Flatten -> fully connected -> 1 x size x size mask logits.

    ``prior``: the FC bias is initialised to ``log(prior / (1 - prior))`` so every pixel starts
    at the foreground prior rather than 0.5 (None keeps PyTorch's default bias init). Without
    it the full-size head (65,536 inputs) collapses under Adam lr 1e-3 and MSE: see
    ``LowResConfig.head_prior``.
    """

    def __init__(self, in_features: int, size: int, prior: float | None = None):
        super().__init__(
            nn.Flatten(), nn.Linear(in_features, size * size), nn.Unflatten(1, (1, size, size))
        )
        if prior is not None:
            nn.init.constant_(self[1].bias, math.log(prior / (1.0 - prior)))


class LowResNet(StudentNet):
    def __init__(self, config: LowResConfig):
        super().__init__(config)
        self.output_size = config.input_size // 4
        self.encoder = LowResEncoder(config.width, config.head_channels, config.batch_norm)
        self.decoder = nn.Identity()
        self.head = FCMaskHead(
            config.head_channels * self.output_size**2, self.output_size, config.head_prior
        )

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """The body at ``lr``, the fully connected head at ``lr * head_lr_scale``."""
        head = {id(p) for p in self.head.parameters()}
        body = [p for p in self.parameters() if id(p) not in head]
        return [
            {"params": body, "lr": lr, "weight_decay": weight_decay},
            {"params": list(self.head.parameters()), "lr": lr * self.config.head_lr_scale,
             "weight_decay": weight_decay},
        ]


def _create_lowres(variant: dict[str, Any], **kwargs: Any) -> LowResNet:
    return LowResNet(load(LowResConfig, {**variant, **kwargs}))


@register_student
def lowres(**kwargs: Any) -> LowResNet:
    """LowRes-Net as in the paper: 128 px in, 32 x 32 out, 256-wide convolutions."""
    return _create_lowres({}, **kwargs)


@register_student
def lowres_tiny(**kwargs: Any) -> LowResNet:
    """Test-sized LowRes-Net: 64 px in, 16 x 16 out, 16-wide convolutions."""
    variant = dict(input_size=64, width=16, head_channels=8, head_lr_scale=1.0, head_prior=None)
    return _create_lowres(variant, **kwargs)
