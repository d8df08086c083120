"""Per-video "expert" features computed from the pixels (the video side of a CE corpus).

Collaborative Experts represents a video by several pre-extracted features from different
networks, each good at some things and blind to others. Here the experts are genuinely
different extractors, each strong on different attributes of the procedural world:

- ``colour``: HSV histograms (hue x saturation x value, plus three grey levels) of the whole
  frame and of the moving region -> object and background colour;
- ``motion``: camera translation between frames (phase correlation) and the trajectory of the
  moving region after camera compensation -> object direction and speed, camera motion;
- ``shape``: region properties of the largest moving region (area, eccentricity, solidity,
  extent, compactness, axis ratio, Hu moments; ``skimage.measure.regionprops``) -> shape and
  size; unavailable when no moving region is found;
- ``cnn``: pooled last-stage features of a student encoder (``unet_tiny`` by default) with
  *random* seeded weights, i.e. a random-feature expert of generic appearance.

The moving region ("foreground cue") needs no ground truth: for sampled frames, neighbouring
frames are aligned to the frame by phase correlation (``phase_shifts``, the integer-pixel
method of ``skimage.registration.phase_cross_correlation``, batched), their per-pixel median
(over the neighbours that exist and overlap there) is the background, and pixels far from it (median + k * MAD of the frame, at least
``threshold``) are foreground. Zoom and moving distractors are not modelled, so the cue is rough.

``extract_experts`` returns, per expert, a V x D array and a V availability mask; availability
combines what the extractor found with random dropping at ``missing_rates`` (as in CE, where
some experts are missing for some videos); random dropping never leaves a video without any
available expert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from popdistill.errors import UserError
from popdistill.registry import Registry

__all__ = [
    "ExpertConfig",
    "VideoCues",
    "ExpertFeatures",
    "phase_shifts",
    "video_cues",
    "register_expert",
    "list_experts",
    "extract_experts",
]

ExpertFn = Callable[[list["VideoCues"], "ExpertConfig"], tuple[np.ndarray, np.ndarray]]
EXPERTS: Registry[ExpertFn] = Registry("expert", "expert", builtin=__name__, bind=True)


@dataclass
class ExpertConfig:
    """Extraction settings. ``missing_rates``: expert -> fraction of videos made unavailable."""

    experts: tuple[str, ...] = ("colour", "motion", "shape", "cnn")
    work_size: int = 64  # side of the frames the foreground cue and histograms use
    samples: int = 12  # frames per video the foreground cue is computed on
    offsets: tuple[int, ...] = (3, 6, 12)  # neighbour frames (+-) for the background median
    threshold: float = 0.08  # lowest foreground difference (RGB in [0, 1])
    mad_k: float = 5.0
    fill: int = 2  # closing iterations before filling holes of the foreground (0: neither)
    min_region: int = 6  # pixels (at work_size) for a shape region
    hue_bins: int = 12
    cnn: str = "unet_tiny"
    cnn_frames: int = 8
    missing_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def validate(self) -> None:
        unknown = [e for e in self.experts if e not in EXPERTS]
        if unknown or not self.experts:
            raise UserError(f"experts: unknown {unknown}; valid names: {', '.join(list_experts())}")
        for name, rate in self.missing_rates.items():
            if name not in self.experts or not 0.0 <= rate <= 1.0:
                raise UserError(f"missing_rates.{name}: need a listed expert and a rate in [0, 1]")
        for name in ("work_size", "samples", "cnn_frames", "hue_bins"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.offsets or min(self.offsets) < 1:
            raise UserError(f"offsets: need positive frame offsets, got {self.offsets}")


@dataclass
class VideoCues:
    """What the experts share for one video (``S`` sampled frames at the work size)."""

    frames: np.ndarray  # T x H x W x 3 uint8, as given
    small: np.ndarray  # T x h x w x 3 float32 in [0, 1]
    sampled: np.ndarray  # S frame indices
    foreground: np.ndarray  # S x h x w bool
    difference: np.ndarray  # S x h x w float32, distance to the background
    camera: np.ndarray  # (T - 1) x 2 (dy, dx) rolling frame t+1 onto t (full size): the pan


@dataclass
class ExpertFeatures:
    """``features[name]``: V x D float32, ``available[name]``: V bool, in ``videos`` order."""

    videos: list[str]
    features: dict[str, np.ndarray]
    available: dict[str, np.ndarray]
    seconds: dict[str, float]


def register_expert(name: str) -> Callable[[ExpertFn], ExpertFn]:
    """Decorator: ``fn(cues, cfg) -> (V x D features, V availability)``."""
    return EXPERTS.register(name)


def create_expert(name: str) -> ExpertFn:
    return EXPERTS.create(name)


def list_experts(pattern: str = "*") -> list[str]:
    return EXPERTS.names(pattern)


# -- the shared foreground cue --------------------------------------------------------------


def phase_shifts(ref: np.ndarray, mov: np.ndarray) -> np.ndarray:
    """Integer (dy, dx) per pair that ``np.roll``s ``mov`` onto ``ref`` (N x H x W each), i.e.
    the shift ``skimage.registration.phase_cross_correlation(ref, mov)`` returns."""
    return _shifts_from_spectra(np.fft.rfft2(ref), np.fft.rfft2(mov), ref.shape[-2:])


def _shifts_from_spectra(fa: np.ndarray, fb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    cross = fa * np.conj(fb)
    cross /= np.abs(cross) + 1e-9
    corr = np.fft.irfft2(cross, s=shape)
    h, w = shape
    dy, dx = np.unravel_index(corr.reshape(len(corr), -1).argmax(1), (h, w))
    return np.stack([np.where(dy > h // 2, dy - h, dy), np.where(dx > w // 2, dx - w, dx)], 1)


def _shift_onto(moving: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``moving`` rolled by ``shift``; the wrapped-in border is NaN (unknown)."""
    dy, dx = int(shift[0]), int(shift[1])
    out = np.roll(moving, (dy, dx), axis=(0, 1))
    out[slice(0, dy) if dy > 0 else slice(dy, None) if dy < 0 else slice(0, 0)] = np.nan
    out[:, slice(0, dx) if dx > 0 else slice(dx, None) if dx < 0 else slice(0, 0)] = np.nan
    return out


def _nan_median(stack: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Median over axis 1 ignoring NaN (``fallback`` where all are NaN); one sort, no loop."""
    ordered = np.sort(stack, axis=1)  # NaN last
    n = (~np.isnan(stack)).sum(1, keepdims=True)
    lo = np.take_along_axis(ordered, np.maximum(n - 1, 0) // 2, axis=1)[:, 0]
    hi = np.take_along_axis(ordered, n // 2 - (n == 0), axis=1)[:, 0]
    return np.where(n[:, 0] > 0, 0.5 * (lo + hi), fallback)


def _downsample(frames: np.ndarray, size: int) -> np.ndarray:
    """T x size x size x 3 float32 in [0, 1] by area averaging."""
    t, h, w, _ = frames.shape
    if h % size == 0 and w % size == 0:
        return frames.reshape(t, size, h // size, size, w // size, 3).mean((2, 4), dtype=np.float32) / 255.0
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    return F.adaptive_avg_pool2d(x, size).permute(0, 2, 3, 1).contiguous().numpy()


def video_cues(frames: np.ndarray, cfg: ExpertConfig) -> VideoCues:
    """Camera shifts and the rough foreground of ``S`` sampled frames of one video."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ValueError(f"expected T x H x W x 3 frames with T >= 2, got {frames.shape}")
    t, h, w, _ = frames.shape
    small = _downsample(frames, cfg.work_size)
    spectra = np.fft.rfft2(frames.mean(-1, dtype=np.float32) / 255.0)  # grey, full size
    camera = _shifts_from_spectra(spectra[:-1], spectra[1:], (h, w))  # = camera velocity
    sampled = np.unique(np.linspace(0, t - 1, min(cfg.samples, t)).round().astype(int))
    offs = np.array([*cfg.offsets, *(-o for o in cfg.offsets)])
    nb = sampled[:, None] + offs[None]
    inside = (nb >= 0) & (nb < t)
    nb = nb.clip(0, t - 1)
    s, k = nb.shape
    refs = np.repeat(sampled, k)
    shifts = _shifts_from_spectra(spectra[refs], spectra[nb.reshape(-1)], (h, w))
    shifts = np.round(shifts * (cfg.work_size / np.array([h, w]))).astype(int).reshape(s, k, 2)
    aligned = np.full((s, k, *small.shape[1:]), np.nan, np.float32)
    for i, j in zip(*np.nonzero(inside)):
        aligned[i, j] = _shift_onto(small[nb[i, j]], shifts[i, j])
    background = _nan_median(aligned, small[sampled])
    diff = np.abs(small[sampled] - background).max(-1)
    diff = ndi.gaussian_filter(diff, (0, 0.7, 0.7))
    med = np.median(diff, axis=(1, 2), keepdims=True)
    mad = np.median(np.abs(diff - med), axis=(1, 2), keepdims=True)
    fg = diff > np.maximum(cfg.threshold, med + cfg.mad_k * 1.4826 * mad)
    if cfg.fill:
        fg = np.stack([ndi.binary_fill_holes(ndi.binary_closing(m, iterations=cfg.fill)) for m in fg])
    return VideoCues(frames, small, sampled, fg, diff.astype(np.float32), camera)


# -- experts --------------------------------------------------------------------------------


def _colour_bins(rgb: np.ndarray, hue_bins: int) -> np.ndarray:
    """Bin of every pixel: hue x (saturation 2) x (value 2) for chromatic pixels, then 3 grey
    levels (dark, mid, bright) for pixels with saturation < 0.25."""
    from skimage.color import rgb2hsv

    hh, ss, vv = np.moveaxis(rgb2hsv(rgb), -1, 0)
    hue = np.minimum((hh * hue_bins).astype(np.int64), hue_bins - 1)
    chroma = hue * 4 + (ss >= 0.6) * 2 + (vv >= 0.55)
    grey = hue_bins * 4 + np.digitize(vv, [0.3, 0.7])
    return np.where(ss < 0.25, grey, chroma)


@register_expert("colour")
def colour_expert(cues: list[VideoCues], cfg: ExpertConfig) -> tuple[np.ndarray, np.ndarray]:
    """sqrt-normalised histograms of the foreground and (at half weight) of whole frames."""
    n_bins = cfg.hue_bins * 4 + 3
    out = np.zeros((len(cues), 2 * n_bins), np.float32)
    for i, c in enumerate(cues):
        bins = _colour_bins(c.small[c.sampled], cfg.hue_bins).reshape(-1)
        whole = np.bincount(bins, minlength=n_bins).astype(np.float32)
        fg = np.bincount(bins, weights=c.foreground.reshape(-1), minlength=n_bins)
        out[i, :n_bins] = 0.5 * np.sqrt(whole / max(whole.sum(), 1.0))
        out[i, n_bins:] = np.sqrt(fg / max(fg.sum(), 1.0))
    return out, np.ones(len(cues), bool)


def _direction_histogram(vectors: np.ndarray, weights: np.ndarray, n: int = 8) -> np.ndarray:
    """Soft histogram over ``n`` compass directions (image axes, y down) of weighted vectors."""
    angles = np.arctan2(vectors[:, 1], vectors[:, 0])  # vectors as (dx, dy)
    centres = np.arange(n) * (2 * np.pi / n)
    tuning = np.clip(np.cos(angles[:, None] - centres[None]), 0, None) ** 4
    hist = (weights[:, None] * tuning).sum(0)
    return hist / max(hist.sum(), 1e-9)


@register_expert("motion")
def motion_expert(cues: list[VideoCues], cfg: ExpertConfig) -> tuple[np.ndarray, np.ndarray]:
    """Object direction (unit vector and tuning histogram of the least-squares velocity of the
    foreground centroid), speed, histogram of step directions, camera velocity and shake,
    motion energy and foreground area; speeds in % of the frame side per frame."""
    rows = []
    for c in cues:
        s = c.foreground.shape[-1]
        yy, xx = np.mgrid[:s, :s]
        mass = c.foreground.sum((1, 2)).astype(np.float64)
        seen = mass > 0
        cx = (c.foreground * xx).sum((1, 2)) / np.maximum(mass, 1)
        cy = (c.foreground * yy).sum((1, 2)) / np.maximum(mass, 1)
        vel, steps, step_w = np.zeros(2), np.zeros((1, 2)), np.zeros(1)
        if seen.sum() >= 2:
            t = c.sampled[seen].astype(np.float64)
            design = np.stack([t, np.ones_like(t)], 1)
            coef = np.linalg.lstsq(design, np.stack([cx[seen], cy[seen]], 1), rcond=None)[0]
            vel = coef[0] * (100.0 / s)
            steps = np.diff(np.stack([cx[seen], cy[seen]], 1), axis=0) / np.diff(t)[:, None]
            step_w = np.linalg.norm(steps, axis=1)
        speed = float(np.linalg.norm(vel))
        cam = c.camera[:, ::-1] * (100.0 / c.frames.shape[2])  # (dx, dy), % per frame
        cam_mean = cam.mean(0) if len(cam) else np.zeros(2)
        rows.append(np.concatenate([
            vel / max(speed, 1e-6), [speed],
            _direction_histogram(vel[None], np.array([1.0 if speed > 0 else 0.0])),
            _direction_histogram(steps, step_w),
            cam_mean, [np.linalg.norm(cam_mean)], cam.std(0) if len(cam) else np.zeros(2),
            [c.difference.mean(), c.foreground.mean(), c.foreground.mean((1, 2)).std()],
        ]))
    return np.asarray(rows, np.float32), np.ones(len(cues), bool)


_SHAPE_PROPS = ("area", "eccentricity", "solidity", "extent", "euler_number", "perimeter",
                "axis_major_length", "axis_minor_length", "moments_hu")


@register_expert("shape")
def shape_expert(cues: list[VideoCues], cfg: ExpertConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of region properties of the largest filled foreground region."""
    from skimage.measure import label, regionprops_table

    dim = 2 * 15
    out = np.zeros((len(cues), dim), np.float32)
    available = np.zeros(len(cues), bool)
    for i, c in enumerate(cues):
        per_frame = []
        area_full = c.foreground.shape[1] * c.foreground.shape[2]
        for mask in c.foreground:
            filled = ndi.binary_fill_holes(ndi.binary_closing(mask, iterations=1))
            labels = label(filled)
            if labels.max() == 0:
                continue
            largest = 1 + int(np.argmax(np.bincount(labels.reshape(-1))[1:]))
            if (labels == largest).sum() < cfg.min_region:
                continue
            p = regionprops_table((labels == largest).astype(np.uint8), properties=_SHAPE_PROPS)
            area = float(p["area"][0])
            hu = np.array([p[f"moments_hu-{j}"][0] for j in range(7)])
            per_frame.append([
                area / area_full, p["eccentricity"][0], p["solidity"][0], p["extent"][0],
                p["euler_number"][0], p["perimeter"][0] ** 2 / (4 * np.pi * area),
                p["axis_minor_length"][0] / max(p["axis_major_length"][0], 1e-6),
                *(-np.sign(hu) * np.log10(np.abs(hu) + 1e-12) / 10.0),
                np.sqrt(area / area_full),
            ])
        if len(per_frame) >= 2:
            arr = np.asarray(per_frame, np.float64)
            out[i] = np.concatenate([arr.mean(0), arr.std(0)])
            available[i] = True
    return out, available


@register_expert("cnn")
def cnn_expert(cues: list[VideoCues], cfg: ExpertConfig) -> tuple[np.ndarray, np.ndarray]:
    """Average- and max-pooled deepest encoder features of a randomly initialised student."""
    from popdistill.students import create_student

    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        net = create_student(cfg.cnn)
    net.eval()
    picks = [np.unique(np.linspace(0, len(c.frames) - 1, cfg.cnn_frames).round().astype(int))
             for c in cues]
    frames = np.concatenate([c.frames[p] for c, p in zip(cues, picks)])
    owner = np.repeat(np.arange(len(cues)), [len(p) for p in picks])
    pooled = []
    with torch.no_grad():
        for start in range(0, len(owner), 64):
            x = torch.from_numpy(frames[start : start + 64])
            x = x.permute(0, 3, 1, 2).float().div_(255)
            x = F.interpolate(x, size=(net.input_size,) * 2, mode="bilinear", antialias=True)
            feats = net.encoder(x)
            deep = feats[-1] if isinstance(feats, list | tuple) else feats
            pooled.append(torch.cat([deep.mean((2, 3)), deep.amax((2, 3))], 1).numpy())
    per_frame = np.concatenate(pooled)
    out = np.stack([per_frame[owner == i].mean(0) for i in range(len(cues))])
    return out.astype(np.float32), np.ones(len(cues), bool)


# -- all experts ----------------------------------------------------------------------------


def _drop(available: dict[str, np.ndarray], rates: Mapping[str, float],
          seed: int) -> dict[str, np.ndarray]:
    """Make ``round(rate * V)`` videos of each expert unavailable (seeded, experts in name
    order), choosing only among videos that keep another available expert; when fewer such
    videos exist, all of them are dropped."""
    rng = np.random.default_rng([seed, 7])
    out = {k: v.copy() for k, v in available.items()}
    for name in sorted(rates):
        others = np.zeros(len(out[name]), int)
        for other, avail in out.items():
            if other != name:
                others += avail
        candidates = np.nonzero(out[name] & (others > 0))[0]
        k = min(round(rates[name] * len(out[name])), len(candidates))
        out[name][rng.permutation(candidates)[:k]] = False
    return out


def extract_experts(videos: Mapping[str, np.ndarray], cfg: ExpertConfig | None = None,
                    ) -> ExpertFeatures:
    """Expert features of ``videos`` (id -> T x H x W x 3 uint8 frames), in the given order."""
    cfg = cfg or ExpertConfig()
    cfg.validate()
    start = time.perf_counter()
    cues = [video_cues(np.asarray(frames), cfg) for frames in videos.values()]
    seconds = {"cues": time.perf_counter() - start}
    feats, avail = {}, {}
    for name in cfg.experts:
        start = time.perf_counter()
        feats[name], avail[name] = create_expert(name)(cues, cfg)
        seconds[name] = time.perf_counter() - start
    avail = _drop(avail, cfg.missing_rates, cfg.seed)
    for name in feats:
        feats[name][~avail[name]] = 0.0
    return ExpertFeatures(list(videos), feats, avail, seconds)
