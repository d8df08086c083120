"""The student base class (segmentation_models_pytorch style) and image/mask size helpers.

A student maps a batch of RGB images (B x 3 x input_size x input_size, float in [0, 1]) to a
soft foreground mask (B x 1 x output_size x output_size, in [0, 1]). The base class owns the
forward pass ``encoder -> decoder -> head -> sigmoid``; a concrete architecture only builds
those three parts from its config dataclass in ``__init__``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from popdistill.errors import UserError

__all__ = [
    "StudentConfig",
    "StudentNet",
    "to_float_images",
    "resize_images",
    "resize_to",
    "eval_mode",
    "parameter_count",
]


@dataclasses.dataclass
class StudentConfig:
    """Fields every student config has; architectures subclass it."""

    input_size: int = 256

    def validate(self) -> None:
        if self.input_size <= 0:
            raise UserError(f"input_size: must be positive, got {self.input_size}")


def to_float_images(images: Tensor | np.ndarray, device: torch.device | None = None) -> Tensor:
    """B x 3 x H x W images (uint8 in [0, 255] or float in [0, 1]) as float32 in [0, 1]."""
    x = torch.as_tensor(images, device=device)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape B x 3 x H x W, got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def resize_images(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear (antialiased when shrinking) resize of B x C x H x W images; no-op at size."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    return F.interpolate(images, size=hw, mode="bilinear", align_corners=False, antialias=True)


def resize_to(mask: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize soft masks (B x 1 x h x w, or B x h x w) bilinearly to ``size``; kept in [0, 1]."""
    squeeze = mask.ndim == 3
    x = mask.unsqueeze(1) if squeeze else mask
    if x.ndim != 4:
        raise ValueError(
            f"expected masks of shape B x 1 x h x w or B x h x w, got {tuple(mask.shape)}"
        )
    x = resize_images(x.float(), size).clamp_(0.0, 1.0)
    return x.squeeze(1) if squeeze else x


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode and no autograd inside the block; the previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class StudentNet(nn.Module):
    """Base of every student: ``encoder -> decoder -> head``, then a sigmoid.

    Subclasses set ``self.encoder``, ``self.decoder`` (``nn.Identity`` when there is none) and
    ``self.head`` (to one logit channel), plus ``output_size``.
    """

    config: StudentConfig
    encoder: nn.Module
    decoder: nn.Module
    head: nn.Module
    output_size: int
    registry_kind: str = "student"
    registry_name: str = ""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        self.input_size = config.input_size
        self.output_size = config.input_size

    def logits(self, images: Tensor) -> Tensor:
        """Pre-sigmoid mask logits, B x 1 x output_size x output_size."""
        return self.head(self.decoder(self.encoder(images)))

    def forward(self, images: Tensor) -> Tensor:
        """Soft masks in [0, 1] for float images in [0, 1] at ``input_size``."""
        return torch.sigmoid(self.logits(images))

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimiser parameter groups at learning rate ``lr``: one group here; an architecture
        may give a layer its own rate (LowRes-Net's fully connected head)."""
        return [{"params": list(self.parameters()), "lr": lr, "weight_decay": weight_decay}]

    def predict(self, images: Tensor | np.ndarray) -> Tensor:
        """Soft masks at ``output_size`` for images of any size (resized to a square of
        ``input_size``, as the papers do; the aspect ratio is not kept).

        Runs in evaluation mode without autograd and restores the previous mode.
        """
        x = resize_images(to_float_images(images, _device(self)), self.input_size)
        with eval_mode(self):
            return self(x)

    def predict_resized(self, images: Tensor | np.ndarray) -> Tensor:
        """Soft masks B x 1 x H x W at the images' own size."""
        return resize_to(self.predict(images), tuple(images.shape[-2:]))

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, output_size={self.output_size}"
