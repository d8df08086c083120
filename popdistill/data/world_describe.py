"""Attributes of a rendered world video, measured from what was drawn (for captions and stats).

Sizes, visibility, contrast, entering and leaving are measured on the rendered frames and
masks, not taken from the sampled parameters, so a caption built from them describes the
video as it looks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from popdistill.data import world_background as wb
from popdistill.data import world_render as wr

__all__ = ["describe", "direction_word", "speed_word", "size_word", "contrast_word"]

_OBJECT_TEXTURE_WORDS = {"plain": "", "stripes": "striped", "checker": "checkered",
                         "spots": "spotted", "gradient": "shaded", "speckled": "speckled"}
_TEXTURE_WORDS = {
    "noise": "smooth colour noise",
    "stripes": "stripes",
    "checker": "checkerboard",
    "blobs": "overlapping blobs",
}


def direction_word(dx: float, dy: float) -> str:
    """Compass word for an image-space displacement (y grows downwards)."""
    words = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")
    return words[int(np.round(np.arctan2(dy, dx) / (np.pi / 4))) % 8]


def speed_word(px_per_frame: float, size: int) -> str:
    """slow / medium / fast, relative to the frame side (0.6 % and 1.5 % of it per frame)."""
    rel = px_per_frame / size
    return "slow" if rel < 0.006 else "medium" if rel < 0.015 else "fast"


def size_word(area_fraction: float) -> str:
    return "small" if area_fraction < 0.02 else "medium" if area_fraction < 0.06 else "large"


def contrast_word(delta_e: float) -> str:
    return "low" if delta_e < 15 else "medium" if delta_e < 35 else "high"


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def _outside_side(p: np.ndarray, s: int) -> str | None:
    """Frame edge beyond which a centre lies (the farthest one), or None when inside."""
    over = {"left": -p[0], "right": p[0] - (s - 1), "top": -p[1], "bottom": p[1] - (s - 1)}
    side, amount = max(over.items(), key=lambda kv: kv[1])
    return side if amount > 0 else None


def _contrast(clean: np.ndarray, labels: np.ndarray, obj_id: int, indices) -> float | None:
    """Mean CIE76 difference between an object's mean colour and a 3-px ring of background,
    over the frames ``indices``."""
    diffs = []
    for i in indices:
        m = labels[i] == obj_id
        ring = ndimage.binary_dilation(m, iterations=3) & (labels[i] == 0)
        if m.sum() >= 4 and ring.sum() >= 4:
            diffs.append(wr.delta_e(clean[i][m].mean(0), clean[i][ring].mean(0)))
    return float(np.mean(diffs)) if diffs else None


def _object(o: dict, clean: np.ndarray, labels: np.ndarray, s: int) -> dict:
    t = labels.shape[0]
    m = labels == o["id"]
    area = m.sum((1, 2)) / (s * s)
    visible = np.nonzero(area > 0)[0]
    path = o["path"]
    # Motion of the centre over the whole video (also while out of view, when entering/leaving).
    net = path[-1] - path[0]
    speed = float(np.linalg.norm(np.diff(path, axis=0), axis=1).mean())
    # Enters (leaves): the centre starts (ends) beyond an edge, comes inside at some frame, and
    # less than half of the largest visible area shows at the first (last) frame.
    inside = [_outside_side(p, s) is None for p in path]
    half = 0.5 * area.max()
    enters = _outside_side(path[0], s) if any(inside) and area[0] < half else None
    leaves = _outside_side(path[-1], s) if any(inside) and area[-1] < half else None
    border = (m[:, 0].any(1) | m[:, -1].any(1) | m[:, :, 0].any(1) | m[:, :, -1].any(1))
    mean_area = float(area[visible].mean()) if visible.size else 0.0
    ratio = float(o["radius"][-1] / o["radius"][0])
    spin = float(np.degrees(o["angle"][-1] - o["angle"][0]))
    sample = visible[np.linspace(0, visible.size - 1, min(8, visible.size)).round().astype(int)] if visible.size else []
    contrast = _contrast(clean, labels, o["id"], sample)
    app = o["app"]
    direction = "in place" if np.linalg.norm(net) < 0.1 * s else direction_word(*net)
    return {
        "id": o["id"],
        "shape": o["shape"],
        "colour": wr.colour_name(app["a"]),
        "rgb": [int(round(x * 255)) for x in app["a"]],
        "second_colour": wr.colour_name(app["b"]),
        "texture": app["texture"],
        "size": size_word(mean_area),
        "area_fraction": _r(mean_area),
        "direction": direction,
        "speed_px": _r(speed, 3),
        "speed": "still" if direction == "in place" and speed < 0.3 else speed_word(speed, s),
        "scale": "grows" if ratio > 1.15 else "shrinks" if ratio < 1 / 1.15 else "keeps its size",
        "scale_ratio": _r(ratio, 3),
        "spin_degrees": _r(spin, 1),
        "enters_from": enters,
        "leaves_to": leaves,
        "visible_fraction": _r(visible.size / t),
        "border_fraction": _r(border.mean()),
        "contrast_delta_e": None if contrast is None else _r(contrast, 1),
        "contrast": None if contrast is None else contrast_word(contrast),
        "low_contrast": o["low_contrast"],
    }


def _summary(objs: list[dict], background: dict, camera: dict) -> str:
    parts = []
    for o in objs:
        texture = _OBJECT_TEXTURE_WORDS.get(o["texture"], o["texture"])
        words = f"a {o['size']} {o['colour']} {texture} {o['shape']}"
        move = "stays in place" if o["direction"] == "in place" else f"moves {o['direction']} ({o['speed']})"
        extra = [f"enters from the {o['enters_from']}" if o["enters_from"] else "",
                 f"leaves to the {o['leaves_to']}" if o["leaves_to"] else "",
                 o["scale"] if o["scale"] != "keeps its size" else ""]
        parts.append(" ".join(words.split()) + " " + ", ".join([move] + [e for e in extra if e]))
    bg = background["description"]
    return f"{'; '.join(parts)}; over {bg}; {camera['description']}."


def describe(cfg, clean: np.ndarray, labels: np.ndarray, objects: list[dict], depth: np.ndarray,
             bg_name: str, canvas: np.ndarray, n_clutter: int, camera: dict,
             distractors: list[dict], illumination: dict) -> dict:
    """The attributes of one video (the entry of ``attributes.json``)."""
    t, s = labels.shape[:2]
    objs = [_object(o, clean, labels, s) for o in objects]
    for rank, j in enumerate(depth):
        objs[j]["depth"] = "front" if rank == len(depth) - 1 else "behind"
    if bg_name in wb.PHOTO_BACKGROUNDS:
        kind = "photo" if wb.PHOTO_BACKGROUNDS[bg_name][0] != "skimage-grey" else "texture photo"
        words = wb.PHOTO_BACKGROUNDS[bg_name][1]
    else:
        kind, words = "texture", _TEXTURE_WORDS[bg_name]
    colour = wr.colour_name(canvas.mean((0, 1)))
    background = {"kind": kind, "name": bg_name, "colour": colour,
                  "description": f"{words} ({colour})" if kind != "photo" else words,
                  "clutter": n_clutter}
    fg = labels > 0
    border = fg[:, 0].any(1) | fg[:, -1].any(1) | fg[:, :, 0].any(1) | fg[:, :, -1].any(1)
    n_low = sum(o["low_contrast"] for o in objs)
    listed = [("camera motion", camera["motion"] != "static"),
              (f"illumination {illumination['kind']}", illumination["kind"] != "none"),
              ("sensor noise", cfg.noise >= 2), ("strong JPEG compression", cfg.jpeg_quality < 70),
              ("distractors", bool(distractors)), ("background clutter", n_clutter > 0),
              ("low-contrast object", n_low > 0)]
    return {
        "preset": cfg.preset,
        "frames": t,
        "size": s,
        "objects": objs,
        "background": background,
        "camera": camera,
        "distractors": distractors,
        "nuisances": {"list": [name for name, on in listed if on], "illumination": illumination,
                      "noise_sigma": cfg.noise, "jpeg_quality": cfg.jpeg_quality,
                      "low_contrast_objects": n_low},
        "stats": {"foreground_area": _r(fg.mean()), "border_frames": _r(border.mean()),
                  "empty_frames": _r((~fg.any((1, 2))).mean())},
        "summary": _summary(objs, background, camera),
    }
