"""Evaluation outputs: ``report.json``, the printed summary table and the mask-grid PNG."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from popdistill.jsonable import plain

__all__ = ["GridRow", "write_report", "format_table", "mask_grid", "save_mask_grid"]

OUTLINE_RGB = (255, 40, 40)




def write_report(path: str | Path, report: dict) -> Path:
    """Write ``report`` as indented JSON (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain(report), indent=2, allow_nan=False) + "\n")
    return path


def format_table(overall: dict[str, dict]) -> str:
    """One row per method from ``{method: overall metrics}``; P, J, CorLoc in percent."""
    from popdistill.tracking.tables import Column, number, text_table

    rows = [{"method": name, **m} for name, m in overall.items()]
    return text_table(rows, [
        Column("method", 16, lambda r: r["method"], "<"),
        Column("P%", 6, number("P", 100)),
        Column("J%", 6, number("J", 100)),
        Column("CorLoc%", 8, number("CorLoc", 100)),
        Column("F-max", 6, number("F_max", 1, ".3f")),
        Column("F-adapt", 8, number("F_adaptive", 1, ".3f")),
        Column("MAE", 6, number("MAE", 1, ".3f")),
        Column("frames", 7, lambda r: f"{r['frames']:d}"),
    ])


@dataclass
class GridRow:
    """One frame of the grid: the image, its ground truth and each method's soft mask."""

    title: str
    image: np.ndarray  # H x W x 3 uint8
    gt_mask: np.ndarray | None  # H x W bool
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # any size, [0, 1]


def _outline(panel: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    if gt is None:
        return panel
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(np.asarray(gt, bool), mode="inner")
    panel = panel.copy()
    panel[edge] = OUTLINE_RGB
    return panel


def _grey(mask: np.ndarray) -> np.ndarray:
    g = np.clip(np.rint(np.asarray(mask, np.float32) * 255), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def mask_grid(rows: list[GridRow], methods: list[str], panel_height: int = 128) -> np.ndarray:
    """The grid as an RGB array: columns image | ground truth | each method; gt outlined in red.

    Each panel is scaled to ``panel_height``; a header strip names the columns.
    """
    from PIL import Image, ImageDraw

    from popdistill.evaluate.metrics import resize_mask

    columns = ["image", "ground truth", *methods]
    row_images = []
    for row in rows:
        h, w = row.image.shape[:2]
        size = (panel_height, max(1, round(w * panel_height / h)))
        image = Image.fromarray(row.image).resize(size[::-1], Image.Resampling.BILINEAR)
        gt = None
        if row.gt_mask is not None:
            gt_img = Image.fromarray(np.asarray(row.gt_mask, np.uint8) * 255)
            gt = np.asarray(gt_img.resize(size[::-1], Image.Resampling.NEAREST)) > 0
        scaled = [_outline(np.asarray(image), gt)]
        scaled.append(_outline(_grey(gt if gt is not None else np.zeros(size, bool)), gt))
        for name in methods:
            mask = row.masks.get(name)
            soft = resize_mask(mask, size) if mask is not None else np.zeros(size, np.float32)
            scaled.append(_outline(_grey(soft), gt))
        sep = np.full((panel_height, 2, 3), 255, np.uint8)
        strip = np.concatenate([x for p in scaled for x in (p, sep)][:-1], axis=1)
        label = Image.fromarray(strip)
        ImageDraw.Draw(label).text((3, 2), row.title, fill=(255, 255, 0))
        row_images.append(np.asarray(label))
    width = max((r.shape[1] for r in row_images), default=len(columns) * 130)
    header = Image.new("RGB", (width, 16), (0, 0, 0))
    if row_images:
        pw = (row_images[0].shape[1] + 2) // len(columns)
    else:
        pw = 130
    draw = ImageDraw.Draw(header)
    for i, name in enumerate(columns):
        draw.text((i * pw + 3, 2), name[:20], fill=(255, 255, 255))
    parts = [np.asarray(header)]
    for r in row_images:
        pad = np.zeros((r.shape[0], width - r.shape[1], 3), np.uint8)
        parts += [np.concatenate([r, pad], axis=1), np.full((2, width, 3), 255, np.uint8)]
    return np.concatenate(parts, axis=0)


def save_mask_grid(path: str | Path, rows: list[GridRow], methods: list[str], **kw) -> Path:
    """Write :func:`mask_grid` as a PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask_grid(rows, methods, **kw)).save(path)
    return path
