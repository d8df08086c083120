"""Multi-Net (IJCV 2019): the pixel-wise product of all students' soft masks.

A pixel is foreground only where every student agrees, so the ensemble has high precision and
low recall. It is the reference against which EvalSeg-Net's training target is computed, not a
student itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from popdistill.students.base import StudentNet, resize_to

__all__ = ["ENSEMBLES", "multinet_mask", "multinet_product", "MultiNet"]

ENSEMBLES = ("product", "geomean")


def multinet_product(masks: Sequence[Tensor], size: int | tuple[int, int] | None = None) -> Tensor:
    """Product of soft masks (each B x 1 x h x w or B x h x w), each first resized bilinearly
    to ``size`` (default: the largest mask's height and width)."""
    if not masks:
        raise ValueError("multinet_product needs at least one mask")
    if size is None:
        size = max((tuple(m.shape[-2:]) for m in masks), key=lambda hw: hw[0] * hw[1])
    out = resize_to(masks[0], size)
    for m in masks[1:]:
        out = out * resize_to(m, size)
    return out


def multinet_mask(masks: Sequence[Tensor], size: int | tuple[int, int] | None = None,
                  ensemble: str = "product") -> Tensor:
    """The students' ensemble mask: ``product`` (Multi-Net, the thesis) or ``geomean``, its
    n-th root for n students.

    Both rank pixels alike; they differ in scale. A product of n soft masks shrinks where the
    students are merely confident (three 0.8s give 0.51), so a cosine similarity to it favours
    the most conservative student's mask; the geometric mean keeps the masks' own scale (its
    0.5 level set is the product's 0.5^n one).
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble: {ensemble!r} is not one of {', '.join(ENSEMBLES)}")
    out = multinet_product(masks, size)
    return out if ensemble == "product" else out.clamp_min(0) ** (1.0 / len(masks))


class MultiNet(nn.Module):
    """The students of one generation as an ensemble whose mask is the product of theirs."""

    def __init__(self, students: Sequence[StudentNet]):
        super().__init__()
        if not students:
            raise ValueError("MultiNet needs at least one student")
        self.students = nn.ModuleList(students)

    def predict_all(self, images: Tensor | np.ndarray) -> tuple[Tensor, list[Tensor]]:
        """(Multi-Net mask, each student's mask), all B x 1 x H x W at the images' size."""
        masks = [s.predict_resized(images) for s in self.students]
        return multinet_product(masks, tuple(images.shape[-2:])), masks

    @torch.no_grad()
    def forward(self, images: Tensor | np.ndarray) -> Tensor:
        """Multi-Net soft masks B x 1 x H x W at the images' size."""
        return self.predict_all(images)[0]
