"""The teacher's configs, importable without torch (``popdistill teacher --help``, run configs):
:class:`VideoPCAConfig` (the algorithm's settings) and :class:`TeacherConfig` (one teacher run
over a data set, :func:`popdistill.teacher.pipeline.run_teacher`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from popdistill.config import choice, job
from popdistill.errors import UserError
from popdistill.inference.config import DECODE_MODES, IMAGE_CODECS
from popdistill.resources import ResourcesConfig

__all__ = ["VideoPCAConfig", "TeacherConfig"]


@dataclasses.dataclass
class VideoPCAConfig:
    """VideoPCA settings; defaults are the paper's values (working size 128 instead of 300).

    - ``size``: frames are resized (antialiased bilinear, rounded back to uint8 as the public
      code does before its HSV conversion) to ``size`` x ``size``.
    - ``k``: number of principal directions that model the background.
    - ``blur_sigma_at_300``: blur sigma for 300-px frames, scaled by ``size / 300``;
      ``blur_truncate``: kernel radius in sigmas (scipy's default, 4).
    - ``prior_sigma_frac``: the centre prior's sigma as a fraction of min(H, W).
    - ``fg_threshold``: threshold on the renormalised blurred cue for the rough split.
    - ``norm_scope``: scope of the min-max "renormalise" of steps 5 and 7 (PAPERS.md does not
      say): ``frame`` (each frame to [0, 1], as the public code does, the default) or
      ``window``. The raw cue of step 4 is always normalised over the whole window.
    - ``bins``: colour bins (x, y, v); see ``popdistill.teacher.colour``.
    - ``bg_smoothing``: added to every background bin; ``hist_normalise``: compare
      histograms divided by their totals (public code) rather than raw counts.
    - ``hysteresis_high`` / ``hysteresis_low``: on the renormalised score x prior,
      8-connected within a frame (never across frames).
    - ``window`` / ``stride``: frames per window and window step (0 = ``window``, no
      overlap); ``min_window``: a tail shorter than this is merged into the previous window.
    - ``colour_lut``: code colours through a 2^24 look-up table (fast) instead of arithmetic;
      the table is kept under ``$POPDISTILL_LUT_CACHE`` (default ``~/.cache/popdistill/colour``).
    """

    # frames are resized to size x size pixels (the paper: 300)
    size: int = 128
    # principal directions that model the background
    k: int = 3
    # Gaussian blur sigma for 300-px frames, scaled by size / 300
    blur_sigma_at_300: float = 5.0
    # the blur kernel's radius in sigmas
    blur_truncate: float = 4.0
    # the centre prior's sigma as a fraction of min(height, width)
    prior_sigma_frac: float = 1.0 / 3.0
    # threshold on the renormalised blurred cue for the rough foreground / background split
    fg_threshold: float = 0.5
    # scope of the min-max renormalisation: each frame (frame) or the whole window (window)
    norm_scope: str = choice("frame", ["frame", "window"])
    # colour histogram bins (x, y, v)
    bins: tuple[int, int, int] = (100, 25, 10)
    # added to every background histogram bin
    bg_smoothing: float = 1.0
    # compare histograms divided by their totals (the public code) rather than raw counts
    hist_normalise: bool = True
    # hysteresis threshold: seeds, on the renormalised score x prior
    hysteresis_high: float = 0.8
    # hysteresis threshold: pixels kept when 8-connected to a seed
    hysteresis_low: float = 0.5
    # frames per PCA window
    window: int = 64
    # window step in frames (0: `window`, no overlap)
    stride: int = 0
    # a tail shorter than this is merged into the previous window
    min_window: int = 16
    # code colours through a 2^24 look-up table (fast) instead of arithmetic; the table is kept
    # on disk under $POPDISTILL_LUT_CACHE (default ~/.cache/popdistill/colour; empty: not kept)
    colour_lut: bool = True

    def validate(self) -> None:
        if self.size < 8:
            raise UserError(f"size: must be at least 8, got {self.size}")
        if self.k < 1:
            raise UserError(f"k: must be at least 1, got {self.k}")
        if len(self.bins) != 3 or min(self.bins) < 2:
            raise UserError(f"bins: expected three counts >= 2, got {self.bins}")
        if not 0.0 <= self.hysteresis_low <= self.hysteresis_high <= 1.0:
            raise UserError("hysteresis_low/hysteresis_high: need 0 <= low <= high <= 1")
        if self.window < self.k + 1:
            raise UserError(f"window: must be at least k + 1 = {self.k + 1}, got {self.window}")
        if not 0 <= self.stride <= self.window:
            raise UserError(f"stride: must be in [0, window], got {self.stride}")
        if not 1 <= self.min_window <= self.window:
            raise UserError(f"min_window: must be in [1, window], got {self.min_window}")
        if self.norm_scope not in ("frame", "window"):
            raise UserError(f"norm_scope: {self.norm_scope!r} is not one of frame, window")

    @property
    def blur_sigma(self) -> float:
        return self.blur_sigma_at_300 * self.size / 300.0



@dataclass
class TeacherConfig:
    """One teacher run. ``out`` is the run directory (local path or pyarrow URI)."""

    data: str = job("", required=True)
    format: str = job("davis")
    out: str = job("", required=True)
    reader_options: dict[str, Any] = job(default_factory=dict)
    # the VideoPCA algorithm's settings
    videopca: VideoPCAConfig = field(default_factory=VideoPCAConfig)
    select_top: float = job(0.1)
    select_strata: int = job(1)
    # frames per unit of work sent to an actor (a video is cut into chunks of this many)
    chunk_frames: int = 128
    actors: int = job(ResourcesConfig.actors)
    actor_cpus: float = job(ResourcesConfig.actor_cpus)
    # where frames are decoded: in the VideoPCA actor (no frames cross Ray) or in Ray read tasks
    decode: str = choice("actor", DECODE_MODES)
    # how the store keeps frames: source (an image file's own bytes, else raw), raw, or jpeg
    # (source, else JPEG at quality 95: lossy, a tenth of raw's size, for video frames at scale)
    image_codec: str = choice("source", IMAGE_CODECS)
    # CPUs of each Ray Data read task (decode: tasks)
    read_cpus: float = 0.25
    # torch threads in each VideoPCA actor
    torch_threads: int = 1
    # also write every soft mask as an 8-bit PNG under this folder
    export_png: str | None = None
    generation: int = job(1)
    evaluate: bool = job(True)

    def validate(self) -> None:
        if not 0.0 < self.select_top <= 1.0:
            raise UserError(f"select_top: {self.select_top} is not in (0, 1]")
        if not isinstance(self.select_strata, int) or self.select_strata < 1:
            raise UserError(f"select_strata: {self.select_strata!r} must be an integer >= 1")
        if self.actors < 1:
            raise UserError(f"actors: {self.actors} must be >= 1")
        if self.chunk_frames < self.videopca.k + 1:
            raise UserError(f"chunk_frames: {self.chunk_frames} must be > videopca.k ({self.videopca.k})")
