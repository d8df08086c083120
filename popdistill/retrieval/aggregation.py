"""Phi: aggregations of N teacher similarity matrices (N x B x B) into one B x B target.

TeachText (Croitoru et al., ICCV 2021) distils a student towards ``Phi(S_1, ..., S_N)``; the
public code uses the mean. ``create_phi(name, **kwargs)`` returns a callable on the stack;
``list_phis()`` names the registered ones. ``weighted`` needs one non-negative weight per teacher
(e.g. each teacher's validation score); they are normalised to sum to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch

from popdistill.errors import UserError
from popdistill.registry import Registry

__all__ = ["register_phi", "create_phi", "list_phis", "stack_teachers"]

PhiFn = Callable[[torch.Tensor], torch.Tensor]
PHIS: Registry[Callable[..., torch.Tensor]] = Registry("phi", "aggregation (phi)", builtin=__name__)


def register_phi(name: str):
    """Decorator adding ``fn(stack, **kwargs) -> B x B`` to the registry under ``name``."""
    return PHIS.register(name)


def list_phis(pattern: str = "*") -> list[str]:
    return PHIS.names(pattern)


def create_phi(name: str, **kwargs) -> PhiFn:
    """The aggregation ``name`` as a callable on an N x B x B stack (or a list of B x B)."""
    fn = PHIS.get(name)
    if name == "weighted":
        kwargs["weights"] = _normalised_weights(kwargs.get("weights"))
    bound = partial(fn, **kwargs)
    return lambda sims: bound(stack_teachers(sims))


def stack_teachers(sims: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Teacher similarity matrices as one N x B x B tensor."""
    stack = sims if isinstance(sims, torch.Tensor) else torch.stack(list(sims))
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"expected N x B x B teacher similarities, got shape {tuple(stack.shape)}")
    return stack


def _normalised_weights(weights) -> torch.Tensor:
    if weights is None:
        raise UserError("aggregation 'weighted' needs weights (one validation score per teacher)")
    w = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise UserError(f"weighted aggregation: weights must be finite, >= 0, not all 0: {weights}")
    return w / w.sum()


@register_phi("mean")
def phi_mean(stack: torch.Tensor) -> torch.Tensor:
    return stack.mean(dim=0)


@register_phi("max")
def phi_max(stack: torch.Tensor) -> torch.Tensor:
    return stack.amax(dim=0)


@register_phi("min")
def phi_min(stack: torch.Tensor) -> torch.Tensor:
    return stack.amin(dim=0)


@register_phi("median")
def phi_median(stack: torch.Tensor) -> torch.Tensor:
    """Element-wise median; with an even number of teachers, the mean of the middle two."""
    ordered = stack.sort(dim=0).values
    n = stack.shape[0]
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


@register_phi("weighted")
def phi_weighted(stack: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Convex combination of the teachers with normalised ``weights``."""
    if weights.numel() != stack.shape[0]:
        raise UserError(
            f"weighted aggregation: {weights.numel()} weights for {stack.shape[0]} teachers"
        )
    return torch.einsum("n,nij->ij", weights.to(stack), stack)
