"""EvalSeg-Net (Croitoru, Bogolin & Leordeanu, IJCV 2019): predicts a soft mask's quality.

Inputs at 128x128 as three branches — the RGB image, the soft mask, and HSV computed inside the
model from RGB — each conv3x3(256) -> conv5x5(256) -> pool; concatenated -> conv3x3 ->
conv5x5 -> pool -> conv3x3 -> conv5x5 -> conv5x5(64) -> FC 512 -> FC 1 -> sigmoid: a quality
score in [0, 1]. It is trained (MSE, Adam 1e-4) on ``quality_target``: the cosine similarity
between a student's mask and the Multi-Net mask, so no human labels are needed. Batch norm
after each conv is *(inferred)*, a config option, as in LowRes-Net.

As LowRes-Net's, the full-size FC head (64 x 32 x 32 = 65,536 non-negative BN + ReLU inputs ->
512) does not train under Adam at the paper's rate: the first step moves every hidden unit by
~lr x sum(inputs) ~ 2 in the same direction at once, the score's sigmoid saturates (at 1 in
tests/students/test_evalseg.py) and every mask gets the same score for good (measured
with a narrow surrogate of the full head on 2026-11-27: score std 0.000 at lr 1e-4 and 1e-3). The head therefore learns at ``head_lr_scale`` (0.01) times the training
rate: a head rate of 1e-4 still collapses, 1e-5 and 1e-6 train (Spearman rho 0.57-0.59 against
the masks' true J; docs/experiments/); the tiny variant (512 head inputs) keeps one rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.students._blocks import BranchTrunk, rgb_to_hsv
from popdistill.students._registry import register_evalseg
from popdistill.students.base import eval_mode, resize_images, resize_to, to_float_images

__all__ = ["EvalSegConfig", "EvalSegNet", "quality_target"]

_ZERO_NORM = 1e-12


def quality_target(student_mask: Tensor | np.ndarray, multinet_mask: Tensor | np.ndarray) -> Tensor:
    """Cosine similarity of the flattened masks (same shape), in [0, 1] for masks in [0, 1].

    A 2-D pair gives a scalar; B x H x W or B x 1 x H x W pairs give one value per item. An
    empty (all-zero) mask on either side gives 0, also when both are empty: an empty mask is
    never a good pseudo-label for videos that show an object (the teacher's score of one is 0
    too). Counting two empty masks as agreeing taught EvalSeg-Net that empty masks are
    perfect, and generation 2 of the quickstart then trained on empty masks (label J 0.03).
    """
    a = torch.as_tensor(student_mask).float()
    b = torch.as_tensor(multinet_mask).float()
    if a.shape != b.shape:
        raise ValueError(
            f"masks differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}; resize first"
        )
    if a.ndim < 2:
        raise ValueError(f"expected 2-D masks or batches of masks, got shape {tuple(a.shape)}")
    batched = a.ndim > 2
    a = a.reshape(a.shape[0], -1) if batched else a.reshape(1, -1)
    b = b.reshape(b.shape[0], -1) if batched else b.reshape(1, -1)
    # an all-zero side makes the numerator 0, so the clamped denominator yields 0 for it
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(_ZERO_NORM**2)
    cos = cos.clamp(0.0, 1.0)
    return cos if batched else cos[0]


@dataclass
class EvalSegConfig:
    input_size: int = 128
    width: int = 256
    head_channels: int = 64
    hidden: int = 512
    batch_norm: bool = True
    head_lr_scale: float = 0.01  # the FC head's rate relative to the training rate (see above)

    def validate(self) -> None:
        if self.input_size <= 0 or self.input_size % 4:
            raise UserError(f"input_size: must be a positive multiple of 4, got {self.input_size}")
        if not self.head_lr_scale > 0:
            raise UserError(f"head_lr_scale: must be > 0, got {self.head_lr_scale}")


class EvalSegNet(nn.Module):
    """(images B x 3 x S x S in [0, 1], masks B x 1 x S x S) -> quality scores B in [0, 1]."""

    registry_kind: str = "evalseg"
    registry_name: str = ""

    def __init__(self, config: EvalSegConfig):
        super().__init__()
        self.config = config
        self.input_size = config.input_size
        self.body = BranchTrunk((3, 1, 3), config.width, config.head_channels, config.batch_norm)
        side = config.input_size // 4
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(config.head_channels * side * side, config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, images: Tensor, masks: Tensor) -> Tensor:
        features = self.body([images, masks, rgb_to_hsv(images)])
        return torch.sigmoid(self.head(features)).squeeze(1)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser groups: the convolutional body at ``lr``, the FC head at
        ``lr * head_lr_scale``."""
        head = list(self.head.parameters())
        ids = {id(p) for p in head}
        return [
            {"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr},
            {"params": head, "lr": lr * self.config.head_lr_scale},
        ]

    def predict(self, images: Tensor | np.ndarray, masks: Tensor) -> Tensor:
        """Scores for images (uint8 or float, any size) and soft masks (any size), both
        resized to ``input_size``; evaluation mode, no autograd, previous mode restored."""
        device = next(self.parameters()).device
        x = resize_images(to_float_images(images, device), self.input_size)
        m = resize_to(torch.as_tensor(masks, device=device), self.input_size)
        with eval_mode(self):
            return self(x, m if m.ndim == 4 else m.unsqueeze(1))


def _create_evalseg(variant: dict[str, Any], **kwargs: Any) -> EvalSegNet:
    return EvalSegNet(load(EvalSegConfig, {**variant, **kwargs}))


@register_evalseg
def evalseg(**kwargs: Any) -> EvalSegNet:
    """EvalSeg-Net as in IJCV 2019: 128 px, 256-wide convs, FC 512."""
    return _create_evalseg({}, **kwargs)


@register_evalseg
def evalseg_tiny(**kwargs: Any) -> EvalSegNet:
    """Test-sized EvalSeg-Net: 32 px, 16-wide convs, FC 32 (512 head inputs: one rate)."""
    return _create_evalseg(
        dict(input_size=32, width=16, head_channels=8, hidden=32, head_lr_scale=1.0), **kwargs
    )
