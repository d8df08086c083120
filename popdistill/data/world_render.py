"""Drawing primitives of the procedural world: colours, shapes and object textures.

Everything works on float32 RGB in [0, 1]. Shapes are implicit masks in object-local
coordinates ``(u, v)`` (the shape fits the unit disc); textures are functions of the same
coordinates, so they move, turn and scale with the object. Shapes and object textures live in
name-keyed registries; ``world.py`` draws from them (backgrounds: ``world_background.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = [
    "COLOURS",
    "SHAPES",
    "OBJECT_TEXTURES",
    "colour_name",
    "delta_e",
    "shape_area",
    "draw_shape",
    "sample_tile",
]

# Named colours (sRGB 0-255): object colours are drawn near these, and any RGB is named by the
# nearest one in CIE Lab.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 215, 40),
    "green": (50, 160, 60),
    "cyan": (40, 195, 210),
    "blue": (40, 75, 200),
    "purple": (125, 55, 175),
    "pink": (240, 125, 185),
    "brown": (125, 80, 40),
    "white": (240, 240, 235),
    "grey": (128, 128, 128),
    "black": (25, 25, 25),
}

Rng = np.random.Generator


def _lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, dtype=np.float64).reshape(-1, 1, 3)).reshape(-1, 3)


@functools.lru_cache(maxsize=1)
def _palette_lab() -> tuple[list[str], np.ndarray]:
    names = list(COLOURS)
    return names, _lab(np.array([COLOURS[n] for n in names]) / 255.0)


def colour_name(rgb: np.ndarray | tuple) -> str:
    """Name of the palette colour nearest to ``rgb`` (floats in [0, 1]) in CIE Lab."""
    names, lab = _palette_lab()
    d = np.linalg.norm(lab - _lab(np.clip(rgb, 0, 1))[0], axis=1)
    return names[int(np.argmin(d))]


def delta_e(rgb_a: np.ndarray, rgb_b: np.ndarray) -> float:
    """CIE76 colour difference between two RGB colours in [0, 1]."""
    a, b = _lab(np.stack([rgb_a, rgb_b]))
    return float(np.linalg.norm(a - b))


# --------------------------------------------------------------------------------------
# Shapes: sampler(rng) -> params; mask(params, u, v, phase) -> bool. All fit the unit disc
# (thin parts included); ``phase`` animates non-rigid shapes.
# --------------------------------------------------------------------------------------

ShapeFns = tuple[Callable[[Rng], dict], Callable[..., np.ndarray]]
SHAPES: dict[str, ShapeFns] = {}


def _shape(name: str, sampler: Callable[[Rng], dict]):
    def deco(fn):
        SHAPES[name] = (sampler, fn)
        return fn

    return deco


def _polar(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(u, v), np.arctan2(v, u)


def _star_polygon(u, v, angles: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Inside a polygon that is star-shaped about the origin (vertices in polar form, sorted)."""
    r, phi = _polar(u, v)
    phi = np.mod(phi - angles[0], 2 * np.pi)
    a = np.append(angles - angles[0], 2 * np.pi)
    rr = np.append(radii, radii[0])
    i = np.clip(np.searchsorted(a, phi, side="right") - 1, 0, len(radii) - 1)
    a0, a1, r0, r1 = a[i], a[i + 1], rr[i], rr[i + 1]
    # Distance from the origin to the edge (r0 at a0 -> r1 at a1) along the ray at angle phi.
    edge = r0 * r1 * np.sin(a1 - a0) / (r0 * np.sin(phi - a0) + r1 * np.sin(a1 - phi))
    return r <= edge


def _capsule(u, v, p: tuple[float, float], q: tuple[float, float], width: float) -> np.ndarray:
    du, dv = q[0] - p[0], q[1] - p[1]
    t = np.clip(((u - p[0]) * du + (v - p[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - p[0] - t * du, v - p[1] - t * dv) <= width


@_shape("circle", lambda rng: {})
def _circle(p, u, v, phase):
    return u * u + v * v <= 1.0


@_shape("ellipse", lambda rng: {"b": rng.uniform(0.4, 0.75)})
def _ellipse(p, u, v, phase):
    return u * u + (v / p["b"]) ** 2 <= 1.0


def _blob_params(rng: Rng) -> dict:
    k = np.arange(2, 6)
    amp = rng.uniform(0.05, 0.3, size=k.size) / np.sqrt(k - 1)
    # Dividing by 1 + sum(amp) keeps the outline inside the unit disc at every phase.
    return {"k": k, "amp": amp, "off": rng.uniform(0, 2 * np.pi, k.size),
            "speed": rng.uniform(0.3, 1.0, k.size), "norm": 1.0 + amp.sum()}


@_shape("blob", _blob_params)
def _blob(p, u, v, phase):
    r, phi = _polar(u, v)
    wave = np.zeros_like(r)
    for k, a, o, s in zip(p["k"], p["amp"], p["off"], p["speed"]):
        wave += a * np.cos(k * phi + o + s * phase)
    return r <= (1.0 + wave) / p["norm"]


def _regular(n: int) -> Callable[[Rng], dict]:
    return lambda rng: {"angles": np.arange(n) * 2 * np.pi / n - np.pi / 2, "radii": np.ones(n)}


for _n, _name in ((3, "triangle"), (4, "square"), (5, "pentagon"), (6, "hexagon")):
    _shape(_name, _regular(_n))(lambda p, u, v, phase: _star_polygon(u, v, p["angles"], p["radii"]))


def _rectangle_params(rng: Rng) -> dict:
    half = np.arctan(rng.uniform(0.3, 0.6))  # half-angle of the short side
    angles = np.array([-half, half, np.pi - half, np.pi + half])
    return {"angles": angles, "radii": np.ones(4)}


_shape("rectangle", _rectangle_params)(lambda p, u, v, phase: _star_polygon(u, v, p["angles"], p["radii"]))


def _star_params(rng: Rng) -> dict:
    n = int(rng.integers(4, 8))
    angles = np.arange(2 * n) * np.pi / n - np.pi / 2
    radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.35, 0.55))
    return {"angles": angles, "radii": radii}


_shape("star", _star_params)(lambda p, u, v, phase: _star_polygon(u, v, p["angles"], p["radii"]))


@_shape("cross", lambda rng: {"w": rng.uniform(0.15, 0.3)})
def _cross(p, u, v, phase):
    s = 0.7071  # arm length so the tips stay inside the unit disc
    au, av = np.abs(u), np.abs(v)
    return ((au <= s) & (av <= p["w"])) | ((av <= s) & (au <= p["w"]))


@_shape("ring", lambda rng: {"w": rng.uniform(0.15, 0.35)})
def _ring(p, u, v, phase):
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= (1.0 - p["w"]) ** 2)


@_shape("crescent", lambda rng: {"d": rng.uniform(0.35, 0.6), "rho": rng.uniform(0.75, 0.95)})
def _crescent(p, u, v, phase):
    return (u * u + v * v <= 1.0) & ((u - p["d"]) ** 2 + v * v > p["rho"] ** 2)


@_shape("dumbbell", lambda rng: {"r": rng.uniform(0.25, 0.38), "w": rng.uniform(0.05, 0.12)})
def _dumbbell(p, u, v, phase):
    c = 1.0 - p["r"]
    discs = ((u - c) ** 2 + v * v <= p["r"] ** 2) | ((u + c) ** 2 + v * v <= p["r"] ** 2)
    return discs | ((np.abs(u) <= c) & (np.abs(v) <= p["w"]))


def _bug_params(rng: Rng) -> dict:
    return {"legs": int(rng.integers(2, 5)), "w": rng.uniform(0.04, 0.08),
            "wiggle": rng.uniform(0.15, 0.4)}


@_shape("bug", _bug_params)
def _bug(p, u, v, phase):
    """Body, head, thin legs that wiggle with ``phase`` and two antennae."""
    u, v = u / 0.9, v / 0.9  # the drawing below reaches radius ~1.06; shrink it into the disc
    out = ((u + 0.1) / 0.55) ** 2 + (v / 0.3) ** 2 <= 1.0
    out |= (u - 0.6) ** 2 + v * v <= 0.18**2
    w = p["w"]
    for i, x in enumerate(np.linspace(-0.45, 0.25, p["legs"])):
        swing = p["wiggle"] * np.sin(phase + i * np.pi / 2)
        for side in (-1.0, 1.0):
            tip = (x + swing * 0.5, side * 0.85)
            out |= _capsule(u, v, (x, side * 0.2), tip, w)
    for side in (-1.0, 1.0):
        out |= _capsule(u, v, (0.7, side * 0.08), (0.95, side * 0.3), w * 0.8)
    return out


def shape_area(kind: str, params: dict, n: int = 129) -> float:
    """Area of a shape in local units (the unit disc has area pi), measured on an n x n grid."""
    g = np.linspace(-1.0, 1.0, n)
    u, v = np.meshgrid(g, g)
    return float(SHAPES[kind][1](params, u, v, 0.0).mean() * 4.0)


# --------------------------------------------------------------------------------------
# Object textures: fn(params, u, v) -> weight in [0, 1] between colour A (0) and B (1).
# --------------------------------------------------------------------------------------

TextureFn = Callable[[dict, np.ndarray, np.ndarray], np.ndarray]
OBJECT_TEXTURES: dict[str, tuple[Callable[[Rng], dict], TextureFn]] = {
    "plain": (lambda rng: {}, lambda p, u, v: 0.35 * (u * u + v * v)),  # soft shading
    "stripes": (
        lambda rng: {"f": rng.uniform(4, 9), "a": rng.uniform(0, np.pi)},
        lambda p, u, v: (np.sin(p["f"] * (u * np.cos(p["a"]) + v * np.sin(p["a"]))) > 0) * 1.0,
    ),
    "checker": (
        lambda rng: {"f": rng.uniform(2, 4)},
        lambda p, u, v: ((np.floor(u * p["f"]) + np.floor(v * p["f"])) % 2) * 1.0,
    ),
    "spots": (
        lambda rng: {"f": rng.uniform(2.5, 4.5), "r": rng.uniform(0.2, 0.35)},
        lambda p, u, v: (((u * p["f"]) % 1 - 0.5) ** 2 + ((v * p["f"]) % 1 - 0.5) ** 2
                         < p["r"] ** 2) * 1.0,
    ),
    "gradient": (
        lambda rng: {"a": rng.uniform(0, 2 * np.pi)},
        lambda p, u, v: 0.5 + 0.5 * (u * np.cos(p["a"]) + v * np.sin(p["a"])),
    ),
    "speckled": (
        lambda rng: {"tile": _noise_tile(rng, 48, 2.0)},
        lambda p, u, v: sample_tile(p["tile"], u, v),
    ),
}


def _noise_tile(rng: Rng, n: int, sigma: float) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    return t.astype(np.float32)


def sample_tile(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Nearest-neighbour lookup of a square tile spanning [-1, 1]^2 in local coordinates."""
    n = tile.shape[0]
    i = np.clip(((v + 1) * 0.5 * (n - 1)).round().astype(np.intp), 0, n - 1)
    j = np.clip(((u + 1) * 0.5 * (n - 1)).round().astype(np.intp), 0, n - 1)
    return tile[i, j]


def draw_shape(
    image: np.ndarray,
    centre: tuple[float, float],
    radius: float,
    angle: float,
    kind: str,
    params: dict,
    paint: Callable[[np.ndarray, np.ndarray], np.ndarray],
    phase: float = 0.0,
) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """Paint a shape into ``image`` (H x W x 3, in place) and return its mask and window.

    ``paint(u, v)`` gives the RGB of the object at local coordinates. The mask is exactly the
    set of painted pixels; only the window around the shape is evaluated. ``None`` when the
    shape lies outside the image.
    """
    h, w = image.shape[:2]
    cx, cy = centre
    ext = radius * 1.05 + 1
    x0, x1 = max(int(np.floor(cx - ext)), 0), min(int(np.ceil(cx + ext)) + 1, w)
    y0, y1 = max(int(np.floor(cy - ext)), 0), min(int(np.ceil(cy + ext)) + 1, h)
    if x0 >= x1 or y0 >= y1 or radius <= 0:
        return None
    xs = np.arange(x0, x1, dtype=np.float32) - cx
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    ca, sa = np.cos(angle), np.sin(angle)
    u = (xs * ca + ys * sa) / radius
    v = (ys * ca - xs * sa) / radius
    mask = SHAPES[kind][1](params, u, v, phase)
    if not mask.any():
        return None
    window = (slice(y0, y1), slice(x0, x1))
    patch = image[window]
    patch[mask] = paint(u, v)[mask]
    return mask, window
