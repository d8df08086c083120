"""Backgrounds of the procedural world: a canvas larger than the frame, and the camera view.

A canvas (C x C x 3 float32 in [0, 1]) is a procedural texture made from a colour palette
(noise, stripes, checker, dead-leaves blobs) or a crop of a photo bundled with scikit-image
or scikit-learn (nothing is downloaded). The camera renders each frame from it with an affine
map (pan = moving centre, zoom = scale, shake = jitter of both plus a small rotation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from popdistill.data.world_render import draw_shape

__all__ = ["TEXTURE_BACKGROUNDS", "PHOTO_BACKGROUNDS", "load_photo", "make_canvas", "warp_canvas"]

Rng = np.random.Generator


def _palette_mix(weight: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp through ``colours`` (k x 3) for weights in [0, 1]."""
    k = len(colours) - 1
    x = np.clip(weight, 0, 1) * k
    i = np.minimum(x.astype(np.intp), k - 1)
    f = (x - i)[..., None]
    return (colours[i] * (1 - f) + colours[i + 1] * f).astype(np.float32)


def _grid(c: int, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(0, np.pi)
    g = np.arange(c, dtype=np.float32)
    x, y = g[None, :], g[:, None]
    return x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)


def _bg_noise(c: int, rng: Rng, colours: np.ndarray) -> np.ndarray:
    """Three octaves of smoothed white noise (blurred in the Fourier domain: any sigma, one FFT)."""
    spectrum = np.fft.rfft2(rng.standard_normal((c, c)))
    w = 0.0
    for scale, weight in ((4, 1.0), (12, 0.5), (40, 0.25)):  # blob size c / scale
        octave = np.fft.irfft2(ndimage.fourier_gaussian(spectrum, c / scale, n=c), s=(c, c))
        w = w + weight * octave / (octave.std() + 1e-12)
    return _palette_mix((w - w.min()) / (np.ptp(w) + 1e-9), colours)


def _bg_stripes(c: int, rng: Rng, colours: np.ndarray) -> np.ndarray:
    x, y = _grid(c, rng)
    period = rng.uniform(0.04, 0.12) * c
    w = 0.5 + 0.5 * np.sin(2 * np.pi * x / period + 0.15 * np.sin(2 * np.pi * y / c))
    return _palette_mix(np.clip((w - 0.5) * rng.uniform(1.5, 4) + 0.5, 0, 1), colours[:2])


def _bg_checker(c: int, rng: Rng, colours: np.ndarray) -> np.ndarray:
    x, y = _grid(c, rng)
    cell = rng.uniform(0.05, 0.12) * c
    w = (np.floor(x / cell) + np.floor(y / cell)) % 2
    return _palette_mix(w, colours[:2])


def _bg_blobs(c: int, rng: Rng, colours: np.ndarray) -> np.ndarray:
    """Dead-leaves: many overlapping ellipses in the palette colours."""
    img = np.empty((c, c, 3), np.float32)
    img[:] = colours.mean(0)
    for _ in range(int(c * c / 900) + 20):
        col = colours[rng.integers(len(colours))] * rng.uniform(0.8, 1.1)
        draw_shape(img, tuple(rng.uniform(0, c, 2)), rng.uniform(0.03, 0.12) * c,
                   rng.uniform(0, np.pi), "ellipse", {"b": rng.uniform(0.4, 1.0)},
                   lambda u, v, col=col: np.broadcast_to(np.clip(col, 0, 1), u.shape + (3,)))
    return img


TEXTURE_BACKGROUNDS: dict[str, Callable[[int, Rng, np.ndarray], np.ndarray]] = {
    "noise": _bg_noise,
    "stripes": _bg_stripes,
    "checker": _bg_checker,
    "blobs": _bg_blobs,
}

# Photo name -> (source, description used for captions). "skimage": ``skimage.data.<name>()``;
# "sklearn": ``sklearn.datasets.load_sample_image("<name>.jpg")``; "skimage-grey": a grey
# texture photo from skimage.data, tinted with the background palette. All ship with the
# packages: nothing is downloaded.
PHOTO_BACKGROUNDS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "portrait of an astronaut"),
    "coffee": ("skimage", "cup of coffee on a table"),
    "chelsea": ("skimage", "tabby cat"),
    "rocket": ("skimage", "rocket on a launch pad"),
    "immunohistochemistry": ("skimage", "stained tissue under a microscope"),
    "camera": ("skimage", "black-and-white photo of a cameraman"),
    "china": ("sklearn", "Chinese temple among trees"),
    "flower": ("sklearn", "close-up of flowers"),
    "grass": ("skimage-grey", "grass texture"),
    "gravel": ("skimage-grey", "gravel texture"),
    "brick": ("skimage-grey", "brick wall"),
}


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """A bundled photo as H x W x 3 float32 in [0, 1] (grey photos are repeated to RGB)."""
    source = PHOTO_BACKGROUNDS[name][0]
    if source == "sklearn":
        img = _sklearn_sample_image(f"{name}.jpg")
    else:
        from skimage import data

        img = getattr(data, name)()
    img = np.asarray(img, dtype=np.float32) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _sklearn_sample_image(name: str) -> np.ndarray:
    """``sklearn.datasets.load_sample_image(name)``, read straight from the installed package:
    importing scikit-learn costs ~2 s, reading the JPEG ~5 ms."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "images" / name
    if not path.exists():
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _photo_canvas(name: str, c: int, rng: Rng, colours: np.ndarray) -> np.ndarray:
    from skimage.transform import resize

    img = load_photo(name)
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.65, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = img[y:y + side, x:x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = resize(crop, (c, c), order=1, anti_aliasing=False).astype(np.float32)
    if PHOTO_BACKGROUNDS[name][0] == "skimage-grey":
        out = _palette_mix(out[..., 0], colours[:2])
    return out


def make_canvas(kind: str, c: int, rng: Rng, colours: np.ndarray) -> np.ndarray:
    """A C x C x 3 background canvas of a texture or photo kind."""
    if kind in TEXTURE_BACKGROUNDS:
        return TEXTURE_BACKGROUNDS[kind](c, rng, colours)
    return _photo_canvas(kind, c, rng, colours)


def warp_canvas(
    canvas: np.ndarray, cx: np.ndarray, cy: np.ndarray, zoom: np.ndarray, angle: np.ndarray, size: int
) -> np.ndarray:
    """Render T frames (T x size x size x 3) of the camera view: frame pixel p maps to canvas
    point ``c + zoom * R(angle) (p - centre)``; bilinear, edges clamped."""
    out = np.empty((len(cx), size, size, 3), np.float32)
    centre = np.full(2, (size - 1) / 2)
    planes = [np.ascontiguousarray(canvas[..., ch]) for ch in range(3)]
    for i in range(len(cx)):
        ca, sa = np.cos(angle[i]) * zoom[i], np.sin(angle[i]) * zoom[i]
        matrix = np.array([[ca, sa], [-sa, ca]])  # (row, col) = (y, x) order
        offset = np.array([cy[i], cx[i]]) - matrix @ centre
        for ch in range(3):
            ndimage.affine_transform(planes[ch], matrix, offset=offset, output_shape=(size, size),
                                     output=out[i, ..., ch], order=1, mode="nearest")
    return out
