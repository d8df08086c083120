"""VideoPCA: unsupervised soft foreground masks from a video (Stretcu & Leordeanu, BMVC 2015).

The generation-1 teacher of PAPERS.md section 1. Per window of frames: a rank-k PCA of the
frames models the background; the per-pixel reconstruction error is the foreground cue;
the blurred, centre-weighted cue splits pixels into rough foreground and background; colour
histograms of the two, pooled over the window, score every pixel; a hysteresis threshold on
the centre-weighted score keeps the supported regions. Output: one soft mask in [0, 1] per
frame at the working size.

Long videos are cut into windows of ``window`` frames every ``stride`` frames; the masks of
overlapping windows are averaged, and a short tail is merged into the last window, so memory
stays bounded whatever the length (``iter_videopca`` streams). Pure numpy/torch/scipy: no
loop over pixels or frames; everything below runs on a whole window at once.

Speed (one core, 128 px): the Gram matrix of the uint8 frames is an exact int8 matmul; the
blur is two small matmuls; colours go through a look-up table (``colour.py``); bool
comparisons and float x bool products run in numpy, which is several times faster than torch
for them; hysteresis labels the whole window at once with an in-plane structure. The array
building blocks (PCA basis, Gram matrix, blur, centre prior) are in ``videopca_ops``, the
hysteresis in :mod:`popdistill.masks`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from popdistill.masks import above_fraction, hysteresis, minmax_normalise
from popdistill.teacher.colour import (
    colour_bin_index,
    colour_bin_index_u8,
    colour_lut,
    colour_scores,
)
from popdistill.teacher.config import VideoPCAConfig
from popdistill.teacher.videopca_ops import (
    centre_prior,
    foreground_cue,
    gaussian_blur,
    resize_frames,
)

__all__ = [
    "TooFewFrames",
    "VideoPCA",
    "videopca_window",
    "videopca_video",
    "iter_videopca",
    "window_spans",
]


class TooFewFrames(ValueError):
    """A video has fewer frames than the PCA needs (k + 1); callers report it and skip."""

    def __init__(self, n_frames: int, needed: int):
        super().__init__(f"video has {n_frames} frame(s); VideoPCA needs at least {needed}")
        self.n_frames = n_frames
        self.needed = needed


# ----------------------------------------------------------------------------- one window


class _Clock:
    """Adds the seconds since the previous tick to ``timings[name]`` (no-op without a dict)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


def _window_masks(
    frames: torch.Tensor, cfg: VideoPCAConfig, timings: dict[str, float] | None = None
) -> torch.Tensor:
    """(T, S, S, 3) uint8 frames at the working size -> (T, S, S) float32 soft masks."""
    t, h, w, _ = frames.shape
    if t < cfg.k + 1:
        raise TooFewFrames(t, cfg.k + 1)
    clock = _Clock(timings)
    cue = foreground_cue(frames, cfg.k)
    clock("pca_cue")
    blurred = gaussian_blur(cue, cfg.blur_sigma, cfg.blur_truncate)
    clock("blur")
    prior = centre_prior(h, w, cfg.prior_sigma_frac)
    foreground = torch.from_numpy(above_fraction(blurred.mul_(prior), cfg.fg_threshold, cfg.norm_scope))
    clock("rough_split")
    if cfg.colour_lut:
        index = colour_bin_index_u8(frames, cfg.bins)
    else:
        index = colour_bin_index(frames.to(torch.float32) / 255.0, cfg.bins)
    clock("colour_index")
    n_bins = cfg.bins[0] * cfg.bins[1] * cfg.bins[2]
    score = colour_scores(index, foreground, n_bins, cfg.bg_smoothing, cfg.hist_normalise)
    clock("colour_hist")
    weighted = score * prior
    high = above_fraction(weighted, cfg.hysteresis_high, cfg.norm_scope)
    low = above_fraction(weighted, cfg.hysteresis_low, cfg.norm_scope)
    support = hysteresis(high, low)
    clock("hysteresis")
    np.multiply(score.numpy(), support, out=score.numpy())  # numpy: ~2x torch's float * bool
    masks = minmax_normalise(score, cfg.norm_scope)
    clock("output")
    return masks


def videopca_window(
    frames: np.ndarray, cfg: VideoPCAConfig | None = None, timings: dict[str, float] | None = None
) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> (T, size, size) float32 soft masks, as one window.

    Raises ``TooFewFrames`` below k + 1 frames. ``timings``, when given, accumulates the
    seconds spent per step.
    """
    cfg = cfg or VideoPCAConfig()
    cfg.validate()
    clock = _Clock(timings)
    small = resize_frames(frames, cfg.size)
    clock("resize")
    return _window_masks(small, cfg, timings).numpy()


# ----------------------------------------------------------------------------- long videos


def _min_window(cfg: VideoPCAConfig) -> int:
    return max(cfg.min_window, cfg.k + 1)


def _ready(start: int, available: int, cfg: VideoPCAConfig) -> bool:
    """Whether the full window at ``start`` can run before the stream's end is known.

    It can once the next window (``stride`` later) is sure to exist and to hold at least
    ``min_window`` frames; otherwise it may still absorb a short tail.
    """
    stride = cfg.stride or cfg.window
    return available >= start + max(cfg.window + 1, stride + _min_window(cfg))


def window_spans(n_frames: int, cfg: VideoPCAConfig) -> list[tuple[int, int]]:
    """The [start, end) frame spans that ``iter_videopca`` processes for a video of n frames."""
    if n_frames < cfg.k + 1:
        raise TooFewFrames(n_frames, cfg.k + 1)
    stride = cfg.stride or cfg.window
    spans, start = [], 0
    while _ready(start, n_frames, cfg):
        spans.append((start, start + cfg.window))
        start += stride
    spans.append((start, n_frames))
    return spans


def _batches(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Frame batches (t, H, W, 3) from one array or an iterable of batches or single frames."""
    if isinstance(frames, np.ndarray | torch.Tensor):
        frames = [frames]
    for batch in frames:
        batch = np.asarray(batch)
        yield batch[None] if batch.ndim == 3 else batch


def iter_videopca(
    frames: np.ndarray | Iterable[np.ndarray],
    cfg: VideoPCAConfig | None = None,
    timings: dict[str, float] | None = None,
) -> Iterator[np.ndarray]:
    """Stream soft masks: yields (t, size, size) float32 batches, in frame order.

    ``frames`` is a (T, H, W, 3) uint8 array or an iterable of such batches (or of single
    frames). Only about one window of frames is held at a time. Frames covered by several
    windows get the mean of their masks. Raises ``TooFewFrames`` for a video shorter than
    k + 1 frames.
    """
    cfg = cfg or VideoPCAConfig()
    cfg.validate()
    stride = cfg.stride or cfg.window
    queue = _FrameQueue()  # resized frames from ``start`` on
    start = 0  # first frame of the next window (global index)
    carry = carry_hits = None  # mask sums and counts of frames already seen by a window

    def run(length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        masks = _window_masks(queue.take(length), cfg, timings)
        if carry is None or not len(carry):
            return masks, None
        hits = torch.ones(length)
        masks[: len(carry)] += carry
        hits[: len(carry)] += carry_hits
        return masks, hits

    def mean(masks: torch.Tensor, hits: torch.Tensor | None) -> np.ndarray:
        return (masks if hits is None else masks / hits[:, None, None]).numpy()

    for batch in _batches(frames):
        clock = _Clock(timings)
        queue.put(resize_frames(batch, cfg.size))
        clock("resize")
        while _ready(start, start + len(queue), cfg):
            masks, hits = run(cfg.window)
            yield mean(masks[:stride], None if hits is None else hits[:stride])
            carry = masks[stride:]
            carry_hits = torch.ones(len(carry)) if hits is None else hits[stride:]
            queue.drop(stride)
            start += stride
    if start == 0 and len(queue) < cfg.k + 1:
        raise TooFewFrames(len(queue), cfg.k + 1)
    if len(queue):
        yield mean(*run(len(queue)))


class _FrameQueue:
    """Frames held as a list of tensors; taking and dropping leading frames copies little."""

    def __init__(self):
        self.parts: list[torch.Tensor] = []

    def __len__(self) -> int:
        return sum(p.shape[0] for p in self.parts)

    def put(self, frames: torch.Tensor) -> None:
        if len(frames):
            self.parts.append(frames)

    def take(self, n: int) -> torch.Tensor:
        """The first n frames as one tensor (a view when they lie in one part)."""
        if self.parts[0].shape[0] >= n:
            return self.parts[0][:n]
        out, got = [], 0
        for p in self.parts:
            out.append(p[: n - got])
            got += out[-1].shape[0]
            if got == n:
                break
        return torch.cat(out)

    def drop(self, n: int) -> None:
        while n and self.parts:
            first = self.parts[0]
            if first.shape[0] <= n:
                n -= first.shape[0]
                self.parts.pop(0)
            else:
                self.parts[0] = first[n:]
                n = 0


def videopca_video(
    frames: np.ndarray | Iterable[np.ndarray],
    cfg: VideoPCAConfig | None = None,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """(T, size, size) float32 soft masks of a whole video, processed window by window."""
    return np.concatenate(list(iter_videopca(frames, cfg, timings)))


class VideoPCA:
    """Callable form (e.g. for a Ray Data actor): ``VideoPCA(cfg)(frames) -> masks``.

    Construction validates the config and builds the colour look-up table (0.3-1 s, 32 MiB; or
    reads the one kept on disk: ``colour.py``), so the first call is as fast as the others.
    """

    def __init__(self, cfg: VideoPCAConfig | None = None):
        self.cfg = cfg or VideoPCAConfig()
        self.cfg.validate()
        if self.cfg.colour_lut:
            colour_lut(tuple(self.cfg.bins))

    def __call__(self, frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """(T, size, size) float32 soft masks of one video (array or iterable of batches)."""
        return videopca_video(frames, self.cfg)
