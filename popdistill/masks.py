"""Soft-mask operations shared by the VideoPCA teacher (its last step) and the selection of
students' masks (:func:`popdistill.selection.labels.label_support`): min-max normalisation,
relative thresholds and the 8-connected hysteresis threshold, on (T, H, W) stacks of masks.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import torch

__all__ = ["hysteresis", "minmax_normalise", "above_fraction"]


_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = True  # 8-connected within a frame, no links between frames


def hysteresis(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Pixels of ``low`` 8-connected (within their frame) to a pixel of ``high``; (T, H, W)."""
    labels, n = ndi.label(low, structure=_IN_PLANE)
    keep = np.zeros(n + 1, dtype=bool)
    keep[labels[high]] = True  # label 0 (outside ``low``) is cleared below
    keep[0] = False
    return np.take(keep, labels)


def _range(x: torch.Tensor, scope: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (scope 'frame') or whole-window min and max of (T, H, W), broadcastable."""
    if scope == "frame":
        flat = x.reshape(x.shape[0], -1)  # amin/amax: much faster than aminmax(dim)
        return flat.amin(1).view(-1, 1, 1), flat.amax(1).view(-1, 1, 1)
    return x.amin(), x.amax()


def minmax_normalise(x: torch.Tensor, scope: str) -> torch.Tensor:
    """Min-max to [0, 1]; a constant frame (or window) becomes 0."""
    lo, hi = _range(x, scope)
    span = hi - lo
    return (x - lo) * torch.where(span > 0, 1.0 / span.clamp_min(1e-30), 0.0)


def above_fraction(x: torch.Tensor, frac: float, scope: str) -> np.ndarray:
    """``normalise(x) > frac`` as a numpy bool array, without forming the normalised array.

    The comparison runs in numpy (several times faster than torch's for a bool result); a
    constant frame (or window) gets an infinite threshold.
    """
    lo, hi = _range(x, scope)
    thr = torch.where(hi > lo, lo + frac * (hi - lo), torch.inf)
    return x.numpy() > thr.numpy()
