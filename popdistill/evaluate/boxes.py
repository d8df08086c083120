"""Boxes from soft masks and box IoU, for CorLoc (PAPERS.md section 4).

Boxes are ``[x0, y0, x1, y1]`` in pixels with ``x1``/``y1`` exclusive, the convention of
``FrameRecord.gt_boxes``: a single pixel at (x, y) is the box ``[x, y, x + 1, y + 1]``.
"""

from __future__ import annotations

import numpy as np

from popdistill.errors import UserError

__all__ = ["BOX_MODES", "mask_to_box", "box_iou", "max_box_iou"]

# "largest": box around the largest 8-connected foreground component;
# "all": box around every foreground pixel.
BOX_MODES = ("largest", "all")


def mask_to_box(
    soft: np.ndarray, threshold: float = 0.5, mode: str = "largest"
) -> np.ndarray | None:
    """The box of a soft mask binarised at ``soft >= threshold``; ``None`` if nothing is foreground.

    Ties between equally large components go to the first one in raster order.
    """
    if mode not in BOX_MODES:
        raise UserError(f"box_mode: {mode!r} is not one of {', '.join(BOX_MODES)}")
    fg = np.asarray(soft) >= threshold
    if not fg.any():
        return None
    if mode == "largest":
        from skimage.measure import label

        labels = label(fg, connectivity=2)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        fg = labels == int(np.argmax(sizes))
    rows = np.flatnonzero(fg.any(axis=1))
    cols = np.flatnonzero(fg.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N x 4 or 4) with every box in ``b`` (M x 4 or 4): N x M.

    A pair whose union has zero area (two degenerate boxes) has IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def max_box_iou(box: np.ndarray | None, boxes: np.ndarray | None) -> float:
    """The best IoU of ``box`` with any of ``boxes``; 0 when either side is missing or empty."""
    if box is None or boxes is None or np.asarray(boxes).size == 0:
        return 0.0
    return float(box_iou(box, boxes).max())
