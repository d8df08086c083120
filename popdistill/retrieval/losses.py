"""Losses of TeachText (Croitoru et al., ICCV 2021) on B x B text x video similarity matrices.

Row i of a batch matrix is caption i, column j video j; positives lie on the diagonal.
``max_margin_ranking_loss`` is the bidirectional hinge of Collaborative Experts / MoEE (mean over
the 2 B (B - 1) off-diagonal pairs). Distances ``d(S_student, S_target)`` form a registry
(``smooth_l1`` as in the public code, ``l2``, ``kl``); ``teachtext_loss`` is
``ranking + lam * d(S_student, Phi(teachers))`` with the teachers detached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from popdistill.errors import UserError
from popdistill.registry import Registry
from popdistill.retrieval.aggregation import PhiFn, create_phi, stack_teachers

__all__ = [
    "max_margin_ranking_loss",
    "register_distance",
    "create_distance",
    "list_distances",
    "teachtext_loss",
    "teachtext_loss_parts",
]

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DISTANCES: Registry[Callable[..., torch.Tensor]] = Registry("distance", "distance", builtin=__name__,
                                                           bind=True)


def _check_square(sims: torch.Tensor, what: str) -> None:
    if sims.ndim != 2 or sims.shape[0] != sims.shape[1]:
        raise ValueError(f"{what} must be a B x B matrix, got shape {tuple(sims.shape)}")


def max_margin_ranking_loss(sims: torch.Tensor, margin: float = 0.09) -> torch.Tensor:
    """Mean of ``relu(margin - s_ii + s_ij)`` and ``relu(margin - s_ii + s_ji)`` over i != j."""
    _check_square(sims, "similarity matrix")
    n = sims.shape[0]
    if n < 2:
        raise ValueError("the ranking loss needs a batch of at least 2 pairs")
    pos = sims.diagonal()
    off = ~torch.eye(n, dtype=torch.bool, device=sims.device)
    text_to_video = F.relu(margin - pos[:, None] + sims)  # caption i against video j
    video_to_text = F.relu(margin - pos[None, :] + sims)  # video j against caption i
    return torch.cat([text_to_video[off], video_to_text[off]]).mean()


def register_distance(name: str):
    """Decorator adding ``fn(student, target, **kwargs) -> scalar`` under ``name``."""
    return DISTANCES.register(name)


def list_distances(pattern: str = "*") -> list[str]:
    return DISTANCES.names(pattern)


def create_distance(name: str, **kwargs) -> DistanceFn:
    return DISTANCES.create(name, **kwargs)


@register_distance("smooth_l1")
def smooth_l1(student: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Huber-style smooth L1 averaged over all B x B entries (torch's SmoothL1Loss)."""
    return F.smooth_l1_loss(student, target, beta=beta)


@register_distance("l2")
def l2(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all B x B entries."""
    return F.mse_loss(student, target)


@register_distance("kl")
def kl(student: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(target || student) between row-softmaxed matrices at ``temperature``, mean over rows."""
    if temperature <= 0:
        raise UserError(f"kl distance: temperature must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student / temperature, dim=1)
    log_p_target = F.log_softmax(target / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_target, reduction="batchmean", log_target=True)


def teachtext_loss_parts(
    student_sims: torch.Tensor,
    teacher_sims: torch.Tensor | Sequence[torch.Tensor],
    phi: str | PhiFn = "mean",
    d: str | DistanceFn = "smooth_l1",
    lam: float = 1.0,
    margin: float = 0.09,
) -> dict[str, torch.Tensor]:
    """``{"total", "ranking", "distill", "target"}``: the loss and its parts (target detached)."""
    _check_square(student_sims, "student similarity matrix")
    stack = stack_teachers(teacher_sims).detach()
    if stack.shape[1:] != student_sims.shape:
        raise ValueError(
            f"teacher similarities {tuple(stack.shape)} do not match the student's "
            f"{tuple(student_sims.shape)}"
        )
    phi_fn = create_phi(phi) if isinstance(phi, str) else phi
    d_fn = create_distance(d) if isinstance(d, str) else d
    target = phi_fn(stack.to(student_sims)).detach()
    ranking = max_margin_ranking_loss(student_sims, margin=margin)
    distill = d_fn(student_sims, target)
    return {
        "total": ranking + lam * distill,
        "ranking": ranking,
        "distill": distill,
        "target": target,
    }


def teachtext_loss(
    student_sims: torch.Tensor,
    teacher_sims: torch.Tensor | Sequence[torch.Tensor],
    phi: str | PhiFn = "mean",
    d: str | DistanceFn = "smooth_l1",
    lam: float = 1.0,
    margin: float = 0.09,
) -> torch.Tensor:
    """Ranking loss of the student plus ``lam * d(S_student, Phi(S_teachers))``."""
    return teachtext_loss_parts(student_sims, teacher_sims, phi, d, lam, margin)["total"]
