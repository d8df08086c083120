"""Reference masks that need no model: the centre prior and the all-foreground mask.

A baseline is a function ``(height, width) -> soft mask`` (H x W float32 in [0, 1]),
registered by name so the CLI can pick it with ``--baseline NAME``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from popdistill.registry import Registry

__all__ = ["centre_prior", "full_mask", "register_baseline", "create_baseline", "list_baselines"]

BaselineFn = Callable[[int, int], np.ndarray]
BASELINES: Registry[BaselineFn] = Registry("baseline", "baseline", builtin=__name__, bind=True)


def register_baseline(name: str):
    """Decorator adding a ``(height, width) -> soft mask`` function under ``name``."""
    return BASELINES.register(name)


def list_baselines(pattern: str = "*") -> list[str]:
    return BASELINES.names(pattern)


def create_baseline(name: str, **kwargs) -> BaselineFn:
    """The baseline ``name`` as a ``(height, width) -> soft mask`` function (``kwargs`` bound)."""
    return BASELINES.create(name, **kwargs)


@register_baseline("centre")
def centre_prior(height: int, width: int, sigma: float | None = None) -> np.ndarray:
    """Isotropic Gaussian centred on the frame, ``sigma = min(H, W) / 3`` by default, peak 1.

    The centre is ``((W - 1) / 2, (H - 1) / 2)`` in pixel coordinates; the mask is divided by
    its maximum so the brightest pixel is exactly 1 for even sizes too.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    sigma = float(sigma) if sigma is not None else min(height, width) / 3.0
    ys = (np.arange(height, dtype=np.float64) - (height - 1) / 2.0) ** 2
    xs = (np.arange(width, dtype=np.float64) - (width - 1) / 2.0) ** 2
    g = np.exp(-(ys[:, None] + xs[None, :]) / (2.0 * sigma**2))
    return (g / g.max()).astype(np.float32)


@register_baseline("full")
def full_mask(height: int, width: int) -> np.ndarray:
    """Every pixel foreground (value 1)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    return np.ones((height, width), dtype=np.float32)
