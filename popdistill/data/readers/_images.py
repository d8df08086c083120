"""Image-file helpers shared by the readers (Pillow decode, mask -> boxes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8 RGB; raises on unreadable files."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_label_png(path: str | Path) -> np.ndarray:
    """Decode a label PNG to H x W integer labels (palette indices or grey values).

    An RGB(A) annotation is reduced to its first channel (the Object Discovery convention:
    foreground = channel 0 > 0).
    """
    with Image.open(path) as im:
        im.load()
        if im.mode in ("P", "L", "I", "I;16", "1"):
            return np.asarray(im, dtype=np.int32)
        return np.asarray(im.convert("RGB"), dtype=np.int32)[..., 0]




def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def boxes_from_labels(labels: np.ndarray) -> np.ndarray:
    """One [x0, y0, x1, y1] box (x1, y1 exclusive) per non-zero label value; N x 4 float32."""
    boxes = []
    flat = labels.ravel()
    # Label images hold a few small ids: a bincount finds them faster than np.unique.
    values = np.flatnonzero(np.bincount(flat)) if flat.size and flat.min() >= 0 else np.unique(flat)
    for value in values:
        if value == 0:
            continue
        ys, xs = np.nonzero(labels == value)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
