"""Image-file helpers shared by the readers (Pillow decode, mask -> boxes)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_rgb_file(path: str | Path) -> tuple[np.ndarray, bytes, str]:
    """An image file decoded to H x W x 3 uint8 RGB (raises on unreadable files), with the
    file's bytes and format (``jpeg``, ``png``, ...): a store keeps the bytes instead of the
    decoded pixels (``popdistill.data.schema.decode_image`` gives the same pixels back)."""
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        codec = (im.format or "image").lower()
        return np.asarray(im.convert("RGB"), dtype=np.uint8), data, codec


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
    """One [x0, y0, x1, y1] box (x1, y1 exclusive) per non-zero label value, by value; N x 4
    float32."""
    from scipy.ndimage import find_objects

    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:  # find_objects ignores values <= 0: rank them instead
        nonzero = np.unique(labels[labels != 0])
        labels = np.where(labels == 0, 0, np.searchsorted(nonzero, labels) + 1)
    slices = find_objects(labels.astype(np.int64, copy=False)) if labels.size else []
    boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices if s is not None]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
