"""The embedded procedural video world: seeded short videos with exact foreground masks.

A video is a background canvas (procedural texture or a photo bundled with scikit-image /
scikit-learn, plus static clutter) seen through a moving camera (pan, zoom, shake); distractor
shapes that belong to the background and sway, spin, pulse or drift; one or more foreground
objects on smooth trajectories with scale change and rotation, sometimes entering or leaving
the frame; then illumination change and sensor noise. (JPEG compression happens when frames
are written, see ``world_io``.) The ground truth is exactly where each object is painted after
occlusion; distractors are painted below the objects and never enter the mask.

Clutter and distractors take their colours from the scene (``clutter_look="scene"``, the
default): like rocks or leaves in real footage, they are object-shaped but look like the
background on average, so a network that sees one frame can learn to tell them from the
objects, while motion is what a video method uses. ``clutter_look="object"`` (the ``hard``
preset) draws them exactly like objects: then only motion separates them.

Video ``i`` depends only on ``(config, i)`` (its own seeded generator), so a corpus is
reproducible and videos can be generated in any order. Presets ``easy`` / ``medium`` /
``hard`` are :class:`WorldConfig` instances; every field can be overridden.

Longer than the project's ~400 lines a module on purpose: :func:`render_video` draws every
random number of a video from one generator in a fixed order, and its steps live beside it so
that the order, which makes a corpus reproducible, reads top to bottom in one file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from popdistill.data import world_background as wb
from popdistill.data import world_render as wr
from popdistill.data.world_describe import describe, direction_word, speed_word
from popdistill.errors import UserError

__all__ = [
    "FORMAT_VERSION",
    "PRESETS",
    "WorldConfig",
    "WorldVideo",
    "load_world_config",
    "make_config",
    "render_video",
]

FORMAT_VERSION = 1
CAMERA_MOTIONS = ("static", "pan", "zoom", "shake")
DISTRACTOR_MOTIONS = ("sway", "spin", "pulse", "drift")
CLUTTER_LOOKS = ("scene", "object")
ILLUMINATIONS = ("brightening", "darkening", "flicker", "moving light")
CANVAS_FACTOR = 3.0  # canvas side / frame side: room for pans and zooms
ALL_BACKGROUNDS = tuple(wb.TEXTURE_BACKGROUNDS) + tuple(wb.PHOTO_BACKGROUNDS)


@dataclass(frozen=True)
class WorldConfig:
    """Generation parameters. Ranges are (low, high); sizes and speeds are relative to the frame."""

    preset: str = "medium"
    videos: int = 20
    frames: int = 48
    size: int = 128
    seed: int = 0
    objects: tuple[int, int] = (1, 2)  # foreground objects per video
    shapes: tuple[str, ...] = tuple(wr.SHAPES)
    object_textures: tuple[str, ...] = tuple(wr.OBJECT_TEXTURES)
    object_area: tuple[float, float] = (0.015, 0.07)  # area fraction at mid-video
    speed: tuple[float, float] = (0.004, 0.018)  # frame sides per frame
    scale_change: float = 1.5  # largest size ratio between first and last frame
    rotation: float = 0.03  # largest spin, radians per frame
    p_enter_leave: float = 0.25  # chance an object enters or leaves the frame
    p_low_contrast: float = 0.25  # chance an object takes a colour close to its background
    backgrounds: tuple[str, ...] = ALL_BACKGROUNDS
    background_contrast: float = 1.0  # 1 = as made; < 1 flattens the background towards its mean
    clutter: int = 4  # most static object-like shapes painted into the background
    camera_motions: tuple[str, ...] = ("static", "pan", "zoom", "shake", "pan+shake")
    camera_strength: float = 1.0
    distractors: int = 2  # most moving background shapes
    # How clutter and distractors look. "scene": tinted from the background's own palette, like
    # rocks or leaves, so a single frame can tell them from the objects on average (the cue a
    # student learns); "object": drawn exactly like the objects, so only motion separates them.
    clutter_look: str = "scene"
    illumination: float = 0.15  # largest relative brightness change
    noise: float = 3.0  # sensor noise standard deviation, 0-255 units
    jpeg_quality: int = 85

    def validate(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise UserError(f"world config field {name!r}: {what} (got {getattr(self, name)!r})")

        need(self.videos >= 1, "videos", "must be at least 1")
        need(self.frames >= 2, "frames", "must be at least 2")
        need(32 <= self.size <= 1024, "size", "must be between 32 and 1024 pixels")
        need(1 <= self.objects[0] <= self.objects[1] <= 4, "objects", "need 1 <= low <= high <= 4")
        for name in ("object_area", "speed"):
            lo, hi = getattr(self, name)
            need(0 <= lo <= hi, name, "need 0 <= low <= high")
        need(self.object_area[1] <= 0.5, "object_area", "high must be at most 0.5")
        for name, valid in (("shapes", wr.SHAPES), ("object_textures", wr.OBJECT_TEXTURES),
                            ("backgrounds", ALL_BACKGROUNDS)):
            items = getattr(self, name)
            bad = [x for x in items if x not in valid]
            need(bool(items) and not bad, name, f"valid names: {', '.join(valid)}")
        bad = [m for m in self.camera_motions for p in m.split("+") if p not in CAMERA_MOTIONS]
        need(bool(self.camera_motions) and not bad, "camera_motions",
             f"each entry is one of {', '.join(CAMERA_MOTIONS)} or a '+' combination")
        need(self.scale_change >= 1, "scale_change", "must be >= 1")
        for name in ("p_enter_leave", "p_low_contrast", "illumination"):
            need(0 <= getattr(self, name) <= 1, name, "must be in [0, 1]")
        for name in ("rotation", "background_contrast", "camera_strength", "noise"):
            need(getattr(self, name) >= 0, name, "must be >= 0")
        need(self.clutter >= 0, "clutter", "must be >= 0")
        need(self.distractors >= 0, "distractors", "must be >= 0")
        need(self.clutter_look in CLUTTER_LOOKS, "clutter_look", f"one of {', '.join(CLUTTER_LOOKS)}")
        need(1 <= self.jpeg_quality <= 100, "jpeg_quality", "must be in 1..100")


PRESETS: dict[str, WorldConfig] = {
    # Static or slowly panning camera, plain backgrounds, one large contrasting simple object.
    "easy": WorldConfig(
        preset="easy", objects=(1, 1),
        shapes=("circle", "ellipse", "blob", "square", "triangle", "rectangle"),
        object_textures=("plain", "gradient", "stripes"), object_area=(0.04, 0.12),
        speed=(0.004, 0.012), scale_change=1.2, rotation=0.01, p_enter_leave=0.0,
        p_low_contrast=0.0, backgrounds=("noise", "stripes", "checker", "grass", "gravel"),
        background_contrast=0.5, clutter=0, camera_motions=("static", "pan"),
        camera_strength=0.5, distractors=0, illumination=0.0, noise=1.0, jpeg_quality=95,
    ),
    "medium": WorldConfig(),
    # Small, often camouflaged objects with thin parts, strong camera motion, heavy clutter.
    "hard": WorldConfig(
        preset="hard", object_area=(0.008, 0.05), speed=(0.008, 0.03), scale_change=2.0,
        rotation=0.06, p_enter_leave=0.4, p_low_contrast=0.6,
        backgrounds=("blobs", "noise") + tuple(wb.PHOTO_BACKGROUNDS), clutter=10,
        camera_motions=("pan+shake", "zoom+shake", "pan+zoom", "pan+zoom+shake"),
        camera_strength=1.5, distractors=5, illumination=0.3, noise=7.0, jpeg_quality=50,
        clutter_look="object",
    ),
}


def make_config(preset: str = "medium", **overrides) -> WorldConfig:
    """A preset with some fields replaced; raises :class:`UserError` on a bad name or value."""
    if preset not in PRESETS:
        raise UserError(f"unknown world preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(WorldConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"unknown world config field {unknown[0]!r}; valid: {', '.join(sorted(names))}")
    cfg = dataclasses.replace(PRESETS[preset], **overrides)
    cfg.validate()
    return cfg


def load_world_config(data: dict) -> WorldConfig:
    """A config from plain values (YAML, ``world.json``): ``preset`` picks the base, the other
    given fields override it; types and names are checked by :func:`popdistill.config.load`."""
    from popdistill.config import load

    typed = load(WorldConfig, dict(data))
    return make_config(typed.preset, **{k: getattr(typed, k) for k in data if k != "preset"})


@dataclass
class WorldVideo:
    """One rendered video, before JPEG: frames T x H x W x 3 uint8, labels T x H x W uint8
    (0 background, k for object k), and its attributes (see ``describe``)."""

    name: str
    frames: np.ndarray
    labels: np.ndarray
    attributes: dict = field(default_factory=dict)


def video_name(index: int) -> str:
    return f"world_{index:04d}"


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------

def _pick(rng: np.random.Generator, items) -> str:
    return str(items[int(rng.integers(len(items)))])


def _appearance(cfg: WorldConfig, rng: np.random.Generator, near: np.ndarray | None) -> dict:
    """Texture and two colours; with ``near``, the main colour is close to that colour."""
    tex = _pick(rng, cfg.object_textures)
    if near is not None:
        step = rng.standard_normal(3)
        a = np.clip(near + step / np.linalg.norm(step) * rng.uniform(0.05, 0.1), 0, 1)
        b = np.clip(a * 0.85, 0, 1)
    else:
        a = np.clip(np.array(wr.COLOURS[_pick(rng, list(wr.COLOURS))]) / 255 + rng.uniform(-0.06, 0.06, 3), 0, 1)
        b = a * 0.5 if rng.random() < 0.6 or a.mean() > 0.8 else a + (1 - a) * 0.5
    return {"texture": tex, "tex_params": wr.OBJECT_TEXTURES[tex][0](rng),
            "a": a.astype(np.float32), "b": np.clip(b, 0, 1).astype(np.float32)}


def _background_appearance(cfg: WorldConfig, rng: np.random.Generator, scene: np.ndarray) -> dict:
    """Look of a clutter or distractor shape: an object's look, or with ``clutter_look='scene'``
    two colours of the scene image ``scene`` (H x W x 3 in [0, 1]) at random places, brightened
    or darkened (part of the scene, like a rock or a leaf)."""
    if cfg.clutter_look == "object":
        return _appearance(cfg, rng, None)
    h, w = scene.shape[:2]
    a, b = (scene[rng.integers(0, h), rng.integers(0, w)] * rng.uniform(0.6, 1.4) for _ in range(2))
    a, b = np.clip(a, 0, 1), np.clip(b, 0, 1)
    tex = _pick(rng, cfg.object_textures)
    return {"texture": tex, "tex_params": wr.OBJECT_TEXTURES[tex][0](rng),
            "a": a.astype(np.float32), "b": b.astype(np.float32)}


def _painter(app: dict):
    fn = wr.OBJECT_TEXTURES[app["texture"]][1]

    def paint(u, v):
        w = np.clip(fn(app["tex_params"], u, v), 0, 1)[..., None]
        return app["a"] * (1 - w) + app["b"] * w

    return paint


def _shape(cfg: WorldConfig, rng: np.random.Generator, area: float) -> tuple[str, dict, float, float]:
    """Shape kind, parameters, local area and the radius (px) giving ``area`` (px^2)."""
    kind = _pick(rng, cfg.shapes)
    params = wr.SHAPES[kind][0](rng)
    local = wr.shape_area(kind, params)
    return kind, params, local, float(np.sqrt(area / local))


def _camera(cfg: WorldConfig, rng: np.random.Generator, t: int, s: int, c: int) -> tuple[dict, dict]:
    motion = _pick(rng, cfg.camera_motions)
    parts = set(motion.split("+"))
    k = cfg.camera_strength
    tau = np.linspace(0.0, 1.0, t)
    zoom = np.full(t, rng.uniform(0.9, 1.15))
    attrs: dict = {"motion": motion}
    if "zoom" in parts:
        factor = 1 + k * rng.uniform(0.2, 0.4)
        zoom_in = bool(rng.random() < 0.5)
        zoom = zoom * (1 / factor if zoom_in else factor) ** tau  # zooming in shrinks the view
        attrs["zoom"] = {"direction": "in" if zoom_in else "out", "factor": round(factor, 3)}
    d = np.zeros((t, 2))
    if "pan" in parts:
        heading = rng.uniform(0, 2 * np.pi)
        d += np.outer(tau * (t - 1), np.array([np.cos(heading), np.sin(heading)])) * (
            k * rng.uniform(0.006, 0.02) * s)
    angle = np.zeros(t)
    if "shake" in parts:
        jitter = ndimage.gaussian_filter1d(rng.standard_normal((t, 3)), 0.8, axis=0)
        jitter /= jitter.std(axis=0) + 1e-9
        amp = k * rng.uniform(0.008, 0.02) * s
        d += jitter[:, :2] * amp
        angle = jitter[:, 2] * k * 0.01
        attrs["shake"] = {"amplitude_px": round(float(amp), 2)}
    # Centre the path on the canvas and shrink it if the view would leave the canvas.
    d -= (d.max(0) + d.min(0)) / 2
    half = zoom * (s / 2) * (np.abs(np.cos(angle)) + np.abs(np.sin(angle)))
    room = c / 2 - half.max() - 2
    extent = np.abs(d).max()
    if extent > room:
        d *= max(room, 0.0) / extent
    if "pan" in parts:
        net = (d[-1] - d[0]) / zoom.mean()
        speed = float(np.linalg.norm(net) / (t - 1))
        attrs["pan"] = {"direction": direction_word(*net), "background_moves": direction_word(*-net),
                        "speed_px": round(speed, 3), "speed": speed_word(speed, s)}
    cam = {"cx": c / 2 + d[:, 0], "cy": c / 2 + d[:, 1], "zoom": zoom, "angle": angle}
    attrs["description"] = _camera_words(attrs)
    return cam, attrs


def _camera_words(attrs: dict) -> str:
    bits = []
    if "pan" in attrs:
        bits.append(f"pans {attrs['pan']['direction']} ({attrs['pan']['speed']})")
    if "zoom" in attrs:
        bits.append(f"zooms {attrs['zoom']['direction']}")
    if "shake" in attrs:
        bits.append("shakes")
    return "static camera" if not bits else "camera " + " and ".join(bits)


def _trajectory(cfg: WorldConfig, rng: np.random.Generator, t: int, s: int,
                radius: np.ndarray) -> np.ndarray:
    """Centre positions (T x 2, x then y): a straight path with a smooth sideways wiggle,
    starting outside the frame (enters) or ending outside (leaves) with ``p_enter_leave``."""
    tau = np.linspace(0.0, 1.0, t)
    length = rng.uniform(*cfg.speed) * s * (t - 1)
    m = min(max(radius.max(), 0.08 * s), s / 2 - 1)  # keeps the whole unit disc inside
    lo, hi = m, s - 1 - m
    if rng.random() < cfg.p_enter_leave:
        side = int(rng.integers(4))
        normal = np.array([(1, 0), (-1, 0), (0, 1), (0, -1)][side], dtype=float)
        ext = radius[0] * 1.05 + 1
        start = rng.uniform(lo, hi, 2)
        axis = 0 if side < 2 else 1
        start[axis] = -ext if normal[axis] > 0 else s - 1 + ext
        turn = rng.uniform(-0.6, 0.6)
        heading = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]) @ normal
        length = max(length, (ext + 0.3 * s) / np.cos(turn))
        end = start + heading * length
        end[1 - axis] = np.clip(end[1 - axis], lo, hi)
        if rng.random() < 0.5:  # leaves instead of enters
            start, end = end, start
    else:
        heading = rng.standard_normal(2)
        heading /= np.linalg.norm(heading)
        length = min(length, 0.999 * (hi - lo) / max(np.abs(heading).max(), 1e-6))
        span = heading * length
        start = np.array([rng.uniform(lo - min(0, dx), max(hi - max(0, dx), lo - min(0, dx)))
                          for dx in span])
        end = start + span
    path = start + np.outer(tau, end - start)
    step = end - start
    normal = np.array([-step[1], step[0]]) / (np.linalg.norm(step) + 1e-9)
    wiggle = rng.uniform(0, 0.05) * s * np.sin(np.pi * int(rng.integers(1, 3)) * tau)
    return path + np.outer(wiggle, normal)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

def render_video(cfg: WorldConfig, index: int) -> WorldVideo:
    """Render video ``index`` of the corpus described by ``cfg`` (deterministic)."""
    rng = np.random.default_rng([cfg.seed, index])
    t, s = cfg.frames, cfg.size
    c = int(round(s * CANVAS_FACTOR))

    bg_name = _pick(rng, cfg.backgrounds)
    palette = np.array([wr.COLOURS[_pick(rng, list(wr.COLOURS))] for _ in range(3)]) / 255.0
    palette = (0.6 * palette + 0.4 * palette.mean(1, keepdims=True)).astype(np.float32)
    canvas = wb.make_canvas(bg_name, c, rng, palette)
    mean = canvas.mean((0, 1))
    canvas = np.clip(mean + (canvas - mean) * cfg.background_contrast, 0, 1).astype(np.float32)
    n_clutter = int(rng.integers(0, cfg.clutter + 1))
    for _ in range(n_clutter):
        kind, params, _, r = _shape(cfg, rng, rng.uniform(0.005, 0.04) * s * s)
        wr.draw_shape(canvas, tuple(rng.uniform(0, c, 2)), r, rng.uniform(0, 2 * np.pi), kind,
                      params, _painter(_background_appearance(cfg, rng, canvas)))

    cam, cam_attrs = _camera(cfg, rng, t, s, c)
    frames = wb.warp_canvas(canvas, cam["cx"], cam["cy"], cam["zoom"], cam["angle"], s)
    distractors = _draw_distractors(cfg, rng, frames, cam)

    labels = np.zeros((t, s, s), np.uint8)
    objects = []
    for k in range(int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))):
        kind, params, local, r_mid = _shape(cfg, rng, rng.uniform(*cfg.object_area) * s * s)
        ratio = np.exp(rng.uniform(-1, 1) * np.log(cfg.scale_change))
        radius = r_mid * ratio ** (np.linspace(0, 1, t) - 0.5)
        path = _trajectory(cfg, rng, t, s, radius)
        low = bool(rng.random() < cfg.p_low_contrast)
        near = _local_colour(frames, path, radius) if low else None
        app = _appearance(cfg, rng, near)
        spin = rng.uniform(-1, 1) * cfg.rotation
        angle = rng.uniform(0, 2 * np.pi) + spin * np.arange(t)
        phase = 2 * np.pi * np.arange(t) / rng.uniform(10, 30)
        objects.append({"id": k + 1, "shape": kind, "params": params, "local_area": local,
                        "radius": radius, "path": path, "angle": angle, "phase": phase,
                        "app": app, "low_contrast": low})
    depth = rng.permutation(len(objects))  # painting order: later ones occlude earlier ones
    for i in range(t):
        for j in depth:
            o = objects[j]
            hit = wr.draw_shape(frames[i], tuple(o["path"][i]), o["radius"][i], o["angle"][i],
                                o["shape"], o["params"], _painter(o["app"]), o["phase"][i])
            if hit is not None:
                mask, window = hit
                labels[i][window][mask] = o["id"]
    clean = frames.copy()
    illum = _illuminate(cfg, rng, frames)
    if cfg.noise > 0:
        frames += rng.standard_normal(frames.shape, dtype=np.float32) * np.float32(cfg.noise / 255)
    out = np.clip(frames * 255 + 0.5, 0, 255).astype(np.uint8)

    attrs = describe(cfg, clean, labels, objects, depth, bg_name, canvas, n_clutter, cam_attrs,
                     distractors, illum)
    return WorldVideo(video_name(index), out, labels, attrs)


def _local_colour(frames: np.ndarray, path: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Mean background colour around an object's path (over up to 8 frames)."""
    s = frames.shape[1]
    samples = []
    for i in np.linspace(0, len(path) - 1, 8).round().astype(int):
        r = int(max(radius[i], 3))
        x, y = np.clip(path[i], r, s - 1 - r).astype(int)
        samples.append(frames[i, y - r:y + r + 1, x - r:x + r + 1].reshape(-1, 3).mean(0))
    return np.mean(samples, axis=0)


def _draw_distractors(cfg: WorldConfig, rng: np.random.Generator, frames: np.ndarray,
                      cam: dict) -> list[dict]:
    """Background shapes fixed to the scene (they move with the camera) plus a small motion of
    their own; painted before the objects and never labelled."""
    t, s = frames.shape[:2]
    mid = t // 2
    out = []
    for _ in range(int(rng.integers(0, cfg.distractors + 1))):
        kind, params, _, r = _shape(cfg, rng, rng.uniform(0.006, 0.03) * s * s)
        app = _background_appearance(cfg, rng, frames[mid])
        motion = _pick(rng, DISTRACTOR_MOTIONS)
        anchor = np.array([cam["cx"][mid], cam["cy"][mid]]) + rng.uniform(-0.45, 0.45, 2) * s * cam["zoom"][mid]
        tau = np.arange(t)
        wave = np.sin(2 * np.pi * tau / rng.uniform(8, 24) + rng.uniform(0, 2 * np.pi))
        heading = rng.uniform(0, 2 * np.pi)
        unit = np.array([np.cos(heading), np.sin(heading)])
        offset = np.zeros((t, 2))
        scale, spin = np.ones(t), np.zeros(t)
        if motion == "sway":
            offset = np.outer(wave, unit) * rng.uniform(0.02, 0.05) * s
        elif motion == "drift":
            offset = np.outer(tau, unit) * rng.uniform(0.001, 0.004) * s
        elif motion == "spin":
            spin = tau * rng.uniform(0.05, 0.12) * rng.choice([-1, 1])
        else:  # pulse
            scale = 1 + 0.2 * wave
        base = rng.uniform(0, 2 * np.pi)
        paint = _painter(app)
        for i in range(t):
            # Scene point -> frame point: the inverse of the camera's frame -> canvas map.
            q = anchor + offset[i] - np.array([cam["cx"][i], cam["cy"][i]])
            a, z = cam["angle"][i], cam["zoom"][i]
            p = np.array([np.cos(a) * q[0] + np.sin(a) * q[1], -np.sin(a) * q[0] + np.cos(a) * q[1]]) / z
            wr.draw_shape(frames[i], tuple(p + (s - 1) / 2), r * scale[i] / z, base + spin[i] - a,
                          kind, params, paint)
        out.append({"shape": kind, "colour": wr.colour_name(app["a"]), "motion": motion})
    return out


def _illuminate(cfg: WorldConfig, rng: np.random.Generator, frames: np.ndarray) -> dict:
    """Multiply the frames (in place) by a brightness that changes over time."""
    if cfg.illumination <= 0:
        return {"kind": "none", "amplitude": 0.0}
    kind = _pick(rng, ("none",) + ILLUMINATIONS)
    a = cfg.illumination * rng.uniform(0.6, 1.0)
    t, s = frames.shape[:2]
    tau = np.linspace(0, 1, t, dtype=np.float32)
    if kind == "none":
        return {"kind": "none", "amplitude": 0.0}
    if kind in ("brightening", "darkening"):
        ramp = tau if kind == "brightening" else 1 - tau
        gain = (1 - a + 2 * a * ramp)[:, None, None, None]
    elif kind == "flicker":
        z = ndimage.gaussian_filter1d(rng.standard_normal(t), 1.0)
        gain = (1 + a * z / (np.abs(z).max() + 1e-9))[:, None, None, None]
    else:  # a light spot crossing the frame
        start, end = rng.uniform(0, s, 2), rng.uniform(0, s, 2)
        cx, cy = (start[:, None] + np.outer(end - start, tau))
        g = np.arange(s, dtype=np.float32)
        d2 = (g[None, None, :] - cx[:, None, None]) ** 2 + (g[None, :, None] - cy[:, None, None]) ** 2
        gain = (1 - a + 2 * a * np.exp(-d2 / (2 * (0.35 * s) ** 2)))[..., None]
    frames *= gain.astype(np.float32)
    return {"kind": kind, "amplitude": round(float(a), 3)}
