"""What a kept frame of generation >= 2 trains on (``selection.labels``), and the support step.

Label rules (one :class:`~popdistill.registry.Registry`; ``fn(masks, ensemble)`` on every
candidate's masks of a batch of frames, B x 1 x h x w tensors of any sizes, the largest wins):

    best               None: each frame keeps its best-scored mask (the thesis)
    multinet           the candidates' ``ensemble`` mask
                       (:func:`popdistill.students.multinet.multinet_mask`)
    multinet-binary    1 where their geometric mean is >= 0.5 (the product >= 0.5^n), else 0:
                       the ensemble's mask without the students' faint halo, which a soft label
                       would teach
    multinet-product   their plain pixel-wise product whatever ``ensemble`` is (the thesis's
                       Multi-Net: soft, and only as large as what every student marks, so it
                       leans to precision)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from popdistill.choices import ENSEMBLES
from popdistill.choices import LABEL_RULES as RULE_NAMES
from popdistill.registry import Registry

__all__ = ["LABEL_RULES", "register_label_rule", "create_label_rule", "list_label_rules",
           "ensemble_labels", "label_support"]

LabelRule = Callable[[Sequence[Any], str], Any]
LABEL_RULES: Registry[LabelRule] = Registry("label_rule", "label rule", builtin=__name__, bind=True,
                                            names=RULE_NAMES)


def register_label_rule(name_or_fn=None):
    """Decorator: ``fn(masks, ensemble) -> frames x h x w labels`` (None: the best mask)."""
    return LABEL_RULES.register(name_or_fn)


def create_label_rule(name: str) -> LabelRule:
    return LABEL_RULES.create(name)


def list_label_rules(pattern: str = "*") -> list[str]:
    return LABEL_RULES.names(pattern)


@register_label_rule("best")
def best(masks: Sequence[Any], ensemble: str) -> None:
    return None


@register_label_rule("multinet")
def multinet(masks: Sequence[Any], ensemble: str) -> Any:
    from popdistill.students.multinet import multinet_mask

    return multinet_mask(masks, None, ensemble)[:, 0].float()


@register_label_rule("multinet-binary")
def multinet_binary(masks: Sequence[Any], ensemble: str) -> Any:
    from popdistill.students.multinet import multinet_mask

    return (multinet_mask(masks, None, "geomean")[:, 0] >= 0.5).float()


@register_label_rule("multinet-product")
def multinet_product(masks: Sequence[Any], ensemble: str) -> Any:
    from popdistill.students.multinet import multinet_mask

    return multinet_mask(masks, None, "product")[:, 0].float()


def ensemble_labels(masks: Sequence[Any], rule: str, ensemble: str = ENSEMBLES[0]) -> Any:
    """Frames x h x w float32 labels of the label rule ``rule`` (not ``best``) from every
    candidate's masks of those frames."""
    if rule == "best":
        raise ValueError("labels: 'best' keeps each frame's best-scored mask; it has no ensemble labels")
    return create_label_rule(rule)(masks, ensemble)


def label_support(masks: np.ndarray, high: float = 0.8, low: float = 0.5) -> np.ndarray:
    """The teacher's last step (PAPERS.md, VideoPCA step 7) applied to students' masks before
    they become labels: on each frame's mask min-max normalised, keep the pixels >= ``low``
    8-connected to a pixel >= ``high``, and zero the rest of the (unnormalised) mask.
    ``masks``: (H, W) or (N, H, W) in [0, 1]; float32 out. Relative thresholds keep every
    non-constant mask non-empty, however faint its student.

    A student's mask has a faint halo (values below 0.5 around and away from the object) that
    the teacher's masks do not; regressed as a label, it may teach the next generation to
    over-segment (docs/experiments/)."""
    import torch

    from popdistill.masks import above_fraction, hysteresis

    m = np.asarray(masks, np.float32)
    frames = m.reshape((-1,) + m.shape[-2:])
    t = torch.from_numpy(frames)
    support = hysteresis(above_fraction(t, high, "frame"), above_fraction(t, low, "frame"))
    return (frames * support).reshape(m.shape)
