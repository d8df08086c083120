"""Teachers that produce soft masks (VideoPCA for generation 1) and the selection of masks."""

from popdistill.teacher.selection import (
    ScorePool,
    keep_mask,
    mask_score,
    scores_for_batch,
    top_fraction_threshold,
)
from popdistill.teacher.videopca import (
    TooFewFrames,
    VideoPCA,
    VideoPCAConfig,
    iter_videopca,
    videopca_video,
    videopca_window,
    window_spans,
)

__all__ = [
    "ScorePool",
    "TooFewFrames",
    "VideoPCA",
    "VideoPCAConfig",
    "iter_videopca",
    "keep_mask",
    "mask_score",
    "scores_for_batch",
    "top_fraction_threshold",
    "videopca_video",
    "videopca_window",
    "window_spans",
]
