"""The VideoPCA colour model: HSV chroma bins and foreground/background histograms.

Stretcu & Leordeanu (BMVC 2015), step 6 of PAPERS.md section 1. A pixel's colour is coded as
the chroma point ``x = (s cos 2πh + 1) / 2``, ``y = (s sin 2πh + 1) / 2`` of its HSV hue ``h``
and saturation ``s``, plus its value ``v``; each coordinate is quantised by rounding,
``i = round(c * (n - 1))``, as in the public code. ``bins = (n_x, n_y, n_v)`` follows the
public code's ``(DIM_H, DIM_S, DIM_V)`` order: ``DIM_H`` quantises the cosine coordinate,
``DIM_S`` the sine coordinate and ``DIM_V`` the value, so the default ``(100, 25, 10)`` gives
100 bins along x, 25 along y and 10 along v. The flat bin index is
``ix + n_x * (iy + n_y * iv)``.

Everything works on whole windows at once (no loop over frames or pixels). Colours of
uint8 frames can go through a 2^24-entry look-up table built once per ``bins`` (32 MiB of
int16), which replaces the HSV arithmetic by one gather. Building it takes 0.3-1 s, once in each
process (every teacher actor), so a built table is kept as a ``.npy`` file under
``$POPDISTILL_LUT_CACHE`` (default ``~/.cache/popdistill/colour``; empty: no file), named by the
bins, the torch version and a digest of the code that bins a colour, so a change of either
builds a new one. A file that cannot be read as such a table is rebuilt; a folder that cannot be
written only costs the build.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import math
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "rgb_to_hsv",
    "chroma_coordinates",
    "colour_bin_index",
    "colour_bin_index_u8",
    "colour_lut",
    "build_colour_lut",
    "lut_cache_path",
    "pack_rgb",
    "colour_histograms",
    "colour_scores",
]


def rgb_to_hsv(rgb: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """HSV of RGB in [0, 1] along ``dim``, with the conventions of ``skimage.color.rgb2hsv``.

    Hue and saturation are 0 where the pixel is grey; when two channels tie for the maximum
    the later one (blue over green over red) defines the hue, as in scikit-image.
    """
    r, g, b = rgb.unbind(dim)
    v, hue6, delta = _hue6(r, g, b)
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    h = torch.where(delta > 0, torch.remainder(hue6 / 6.0, 1.0), torch.zeros_like(v))
    return torch.stack([h, s, v], dim)


def _hue6(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor):
    """(value, hue in sextants [-1, 5), chroma); hue is finite (0) for grey pixels."""
    v = torch.maximum(torch.maximum(r, g), b)
    delta = v - torch.minimum(torch.minimum(r, g), b)
    inv = 1.0 / delta.clamp_min(1e-12)
    hue6 = torch.where(
        b == v, 4.0 + (r - g) * inv, torch.where(g == v, 2.0 + (b - r) * inv, (g - b) * inv)
    )
    return v, hue6, delta


def chroma_coordinates(rgb: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The (x, y, v) colour coordinates in [0, 1] of RGB in [0, 1] along ``dim``.

    ``cos(2π h)`` equals ``cos(π/3 · hue6)`` for the hue in sextants, so the hue's modulo is
    not needed; grey pixels have ``s = 0`` and map to the chroma centre (0.5, 0.5).
    """
    r, g, b = rgb.unbind(dim)
    v, hue6, delta = _hue6(r, g, b)
    half_s = 0.5 * delta / v.clamp_min(1e-12)
    angle = hue6 * (math.pi / 3.0)
    x = 0.5 + half_s * torch.cos(angle)
    y = 0.5 + half_s * torch.sin(angle)
    return torch.stack([x, y, v], dim)


def colour_bin_index(rgb: torch.Tensor, bins: tuple[int, int, int], dim: int = -1) -> torch.Tensor:
    """Flat colour-bin index (int32) of every RGB pixel in [0, 1] along ``dim``."""
    nx, ny, nv = bins
    x, y, v = chroma_coordinates(rgb, dim).unbind(dim)
    flat = torch.round(x * (nx - 1))
    flat += torch.round(y * (ny - 1)) * nx
    flat += torch.round(v * (nv - 1)) * (nx * ny)
    return flat.to(torch.int32)


@functools.lru_cache(maxsize=4)
def colour_lut(bins: tuple[int, int, int]) -> torch.Tensor:
    """Bin index of every 24-bit colour code ``r | g << 8 | b << 16``; built once per ``bins``
    (and read from the cache file when one was kept: the module docstring)."""
    bins = tuple(int(b) for b in bins)
    path = lut_cache_path(bins)
    lut = _read_lut(path, bins) if path else None
    if lut is None:
        lut = build_colour_lut(bins)
        if path:
            _keep_lut(path, lut)
    return lut


def lut_cache_path(bins: tuple[int, int, int]) -> Path | None:
    """Where the look-up table of ``bins`` is kept; None when ``$POPDISTILL_LUT_CACHE`` is empty
    (or the binning code's source cannot be read, so a stale table could not be told apart)."""
    root = os.environ.get("POPDISTILL_LUT_CACHE", str(Path.home() / ".cache" / "popdistill" / "colour"))
    if not root:
        return None
    try:
        code = "".join(inspect.getsource(f) for f in (_hue6, chroma_coordinates, colour_bin_index, build_colour_lut))
    except (OSError, TypeError):  # installed without its sources: no way to tell a stale table
        return None
    digest = hashlib.sha256(f"{torch.__version__}\n{code}".encode()).hexdigest()[:16]
    return Path(root) / f"colour-lut-{bins[0]}x{bins[1]}x{bins[2]}-{digest}.npy"


def _lut_dtype(bins: tuple[int, int, int]) -> torch.dtype:
    return torch.int16 if bins[0] * bins[1] * bins[2] <= 32767 else torch.int32


def _read_lut(path: Path, bins: tuple[int, int, int]) -> torch.Tensor | None:
    """The table kept at ``path`` (plain .npy, no pickle), or None if it is missing or is not
    a table of ``bins``: 2^24 indices of the right type, each a bin."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    lut = torch.from_numpy(array) if array.dtype.kind == "i" else None
    if lut is None or lut.shape != (1 << 24,) or lut.dtype != _lut_dtype(bins):
        return None
    if int(lut.min()) < 0 or int(lut.max()) >= bins[0] * bins[1] * bins[2]:
        return None
    return lut


def _keep_lut(path: Path, lut: torch.Tensor) -> None:
    """Writes the table to ``path`` (a temporary name, then a rename: readers never see half a
    file); a folder that cannot be written is left alone."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, lut.numpy(), allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def build_colour_lut(bins: tuple[int, int, int]) -> torch.Tensor:
    """:func:`colour_lut` computed: each 24-bit colour through :func:`colour_bin_index`."""
    dtype = _lut_dtype(bins)
    levels = torch.arange(256, dtype=torch.float32) / 255.0
    lut = torch.empty(1 << 24, dtype=dtype)
    g, r = (c.reshape(1, -1) for c in torch.meshgrid(levels, levels, indexing="ij"))
    for b0 in range(0, 256, 16):  # 16 chunks of 2^20 colours: bounded memory, few torch calls
        b = levels[b0 : b0 + 16, None].expand(-1, r.shape[1])
        rgb = torch.stack([r.expand_as(b), g.expand_as(b), b], -1).reshape(-1, 3)
        lut[b0 << 16 : (b0 + 16) << 16] = colour_bin_index(rgb, bins).to(dtype)
    return lut


def pack_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """24-bit codes ``r | g << 8 | b << 16`` (int32) of uint8 RGB in the last dim.

    On little-endian machines each code is one unaligned 4-byte read at the pixel's offset,
    masked to 3 bytes: a single pass over the frames.
    """
    flat = rgb.contiguous().numpy().reshape(-1)
    n = flat.size // 3
    if sys.byteorder != "little" or n < 2:
        r, g, b = (torch.from_numpy(flat[i::3].astype(np.int32)) for i in range(3))
        return (r | (g << 8) | (b << 16)).view(rgb.shape[:-1])
    out = np.empty(n, np.uint32)
    words = np.ndarray((n - 1,), dtype="<u4", buffer=flat, strides=(3,))  # bytes 3i .. 3i+3
    np.bitwise_and(words, 0xFFFFFF, out=out[:-1])
    r, g, b = (int(v) for v in flat[-3:])
    out[-1] = r | (g << 8) | (b << 16)
    return torch.from_numpy(out.view(np.int32)).view(rgb.shape[:-1])


def colour_bin_index_u8(rgb: torch.Tensor, bins: tuple[int, int, int]) -> torch.Tensor:
    """Flat colour-bin index (int32) of uint8 RGB in the last dim, through the look-up table."""
    code = pack_rgb(rgb).reshape(-1)
    index = colour_lut(tuple(bins)).index_select(0, code)
    return index.to(torch.int32).view(rgb.shape[:-1])


def colour_histograms(
    index: torch.Tensor, foreground: torch.Tensor, n_bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(foreground, background) bin counts of ``index`` split by the boolean ``foreground``."""
    joint = foreground.reshape(-1).to(index.dtype).mul_(n_bins).add_(index.reshape(-1))
    counts = torch.bincount(joint, minlength=2 * n_bins)
    return counts[n_bins:], counts[:n_bins]


def colour_scores(
    index: torch.Tensor,
    foreground: torch.Tensor,
    n_bins: int,
    bg_smoothing: float = 1.0,
    normalise: bool = True,
) -> torch.Tensor:
    """Per-pixel foreground score ``H_fg / (H_fg + H_bg)`` of the colour bins, float32.

    Both histograms pool every pixel given. ``bg_smoothing`` is added to every background
    bin. With ``normalise`` (the public code's choice) each histogram is first divided by its
    total, so the score compares class-conditional colour likelihoods with equal priors;
    without it raw counts are compared (the empirical foreground share acts as the prior).
    A bin seen in neither histogram (only possible with no smoothing) scores 0.
    """
    h_fg, h_bg = colour_histograms(index, foreground, n_bins)
    fg = h_fg.to(torch.float64)
    bg = h_bg.to(torch.float64) + bg_smoothing
    if normalise:
        fg = fg / max(float(fg.sum()), 1.0)
        bg = bg / max(float(bg.sum()), 1e-12)
    total = fg + bg
    table = torch.where(total > 0, fg / torch.where(total > 0, total, 1.0), 0.0)
    flat = table.to(torch.float32).index_select(0, index.reshape(-1))
    return flat.view(index.shape)
