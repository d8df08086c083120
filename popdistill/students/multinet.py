"""Multi-Net (IJCV 2019): the students' ensemble mask, the one implementation.

A pixel is foreground only where every student agrees, so the ensemble has high precision and
low recall. It is the reference against which EvalSeg-Net's training target is computed
(:func:`popdistill.train.evalseg.evalseg_targets`), the agreement that selection scores
(:mod:`popdistill.selection.rescore`), a label rule (:mod:`popdistill.selection.labels`) and a
row of every held-out table (:func:`popdistill.pipeline.heldout.evaluate_heldout`), all
through :func:`multinet_mask`.

Two ensembles (``selection.ensemble``): ``product``, the pixel-wise product of the students'
soft masks (the thesis), and ``geomean``, its n-th root for n students. Both rank pixels alike;
they differ in scale. A product of n soft masks shrinks where the students are merely
confident (three 0.8s give 0.51), so a cosine similarity to it favours the most conservative
student's mask; the geometric mean keeps the masks' own scale (its 0.5 level set is the
product's 0.5^n one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from popdistill.choices import ENSEMBLES as ENSEMBLE_NAMES
from popdistill.registry import Registry
from popdistill.students.base import StudentNet, resize_to

__all__ = ["ENSEMBLES", "register_ensemble", "create_ensemble", "list_ensembles",
           "multinet_mask", "MultiNet"]

EnsembleFn = Callable[[Sequence[Tensor]], Tensor]
ENSEMBLES: Registry[EnsembleFn] = Registry(
    "ensemble", "Multi-Net ensemble", builtin=__name__, bind=True, names=ENSEMBLE_NAMES)


def register_ensemble(name_or_fn=None):
    """Decorator: ``fn(masks of one size) -> ensemble mask`` under ``name``."""
    return ENSEMBLES.register(name_or_fn)


def create_ensemble(name: str) -> EnsembleFn:
    """The ensemble ``name`` as a function of a list of same-size mask tensors."""
    return ENSEMBLES.create(name)


def list_ensembles(pattern: str = "*") -> list[str]:
    return ENSEMBLES.names(pattern)


@register_ensemble("product")
def product(masks: Sequence[Tensor]) -> Tensor:
    out = masks[0]
    for m in masks[1:]:
        out = out * m
    return out


@register_ensemble("geomean")
def geomean(masks: Sequence[Tensor]) -> Tensor:
    return product(masks).clamp_min(0) ** (1.0 / len(masks))


def multinet_mask(masks: Sequence[Tensor] | Sequence[np.ndarray],
                  size: int | tuple[int, int] | None = None,
                  ensemble: str = ENSEMBLE_NAMES[0]) -> Tensor | np.ndarray:
    """The students' ``ensemble`` mask of soft masks, each first resized bilinearly to ``size``
    (default: the largest mask's height and width).

    ``masks``: tensors B x 1 x h x w or B x h x w (a tensor comes back), or 2-D numpy arrays
    h x w, one frame (a 2-D float32 array comes back)."""
    if len(masks) == 0:
        raise ValueError("multinet_mask needs at least one mask")
    if isinstance(masks[0], np.ndarray):
        frames = [torch.from_numpy(np.asarray(m, np.float32))[None] for m in masks]
        return multinet_mask(frames, size, ensemble)[0].numpy()
    if size is None:
        size = max((tuple(m.shape[-2:]) for m in masks), key=lambda hw: hw[0] * hw[1])
    return create_ensemble(ensemble)([resize_to(m, size) for m in masks])


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
        return multinet_mask(masks, tuple(images.shape[-2:])), masks

    @torch.no_grad()
    def forward(self, images: Tensor | np.ndarray) -> Tensor:
        """Multi-Net soft masks B x 1 x H x W at the images' size."""
        return self.predict_all(images)[0]
