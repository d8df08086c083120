"""Selection statistics logged per generation: how many frames were kept, at which threshold,
and (where the frames have ground truth) the mean J of the kept and the rejected masks."""

from __future__ import annotations

import numpy as np

__all__ = ["selection_summary"]


def selection_summary(
    kept: np.ndarray, threshold: float, j: np.ndarray | None = None
) -> dict[str, float]:
    """Selection statistics: kept count/fraction, threshold, mean J of kept vs rejected masks."""
    kept = np.asarray(kept, bool).ravel()
    out = {
        "selection/total": float(kept.size),
        "selection/kept": float(kept.sum()),
        "selection/kept_fraction": float(kept.mean()) if kept.size else 0.0,
        "selection/threshold": float(threshold),
    }
    if j is not None:
        j = np.asarray(j, np.float64).ravel()
        if j.shape != kept.shape:
            raise ValueError(f"j has {j.size} values for {kept.size} masks")
        for name, part in (("kept", j[kept]), ("rejected", j[~kept])):
            part = part[np.isfinite(part)]
            if part.size:
                out[f"selection/J_{name}"] = float(part.mean())
    return out
