"""The students' losses to their teacher's soft mask and the learning-rate schedules, each a
:class:`~popdistill.registry.Registry` (``training.loss``, ``training.lr_schedule``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from popdistill.choices import LOSSES as LOSS_NAMES
from popdistill.choices import LR_SCHEDULES as LR_SCHEDULE_NAMES
from popdistill.registry import Registry

__all__ = ["LOSSES", "LR_SCHEDULES", "register_loss", "create_loss", "list_losses",
           "register_lr_schedule", "create_lr_schedule", "list_lr_schedules", "lr_factor"]

LossFn = Callable[[Tensor, Tensor], Tensor]
LOSSES: Registry[LossFn] = Registry("loss", "loss", builtin=__name__, bind=True, names=LOSS_NAMES)
LR_SCHEDULES: Registry[Callable[[int, int], float]] = Registry(
    "lr_schedule", "lr_schedule", builtin=__name__, bind=True, names=LR_SCHEDULE_NAMES)


def register_loss(name: str):
    """Decorator: ``fn(prediction, target) -> scalar loss`` under ``name``."""
    return LOSSES.register(name)


def create_loss(name: str) -> LossFn:
    return LOSSES.create(name)


def list_losses(pattern: str = "*") -> list[str]:
    return LOSSES.names(pattern)


def register_lr_schedule(name: str):
    """Decorator: ``fn(epoch, epochs) -> factor of the configured rate`` under ``name``."""
    return LR_SCHEDULES.register(name)


def create_lr_schedule(name: str) -> Callable[[int, int], float]:
    return LR_SCHEDULES.create(name)


def list_lr_schedules(pattern: str = "*") -> list[str]:
    return LR_SCHEDULES.names(pattern)


register_loss("mse")(F.mse_loss)


@register_loss("bce")
def bce(pred: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target)


@register_lr_schedule("constant")
def constant(epoch: int, epochs: int) -> float:
    return 1.0


@register_lr_schedule("cosine")
def cosine(epoch: int, epochs: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of 0-based ``epoch`` as a fraction of the configured one: 1 for
    ``constant``; ``cosine`` anneals from 1 at epoch 0 towards 0, (1 + cos(pi epoch / epochs)) / 2
    (the last epoch runs at (1 - cos(pi / epochs)) / 2). A pure function of the epoch: a run
    resumed from a checkpoint, with the same or a new ``epochs``, takes the rate it would have
    had from the start."""
    return create_lr_schedule(schedule)(epoch, epochs)
