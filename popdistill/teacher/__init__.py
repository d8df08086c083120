"""Teachers that produce soft masks (VideoPCA for generation 1) and the selection of masks.

The names below are imported lazily: Ray Data read tasks import ``popdistill.inference.chunks``
and must not pay for torch, which ``videopca`` needs.
"""

from popdistill._lazy import lazy_getattr

_EXPORTS = {
    "TooFewFrames": "videopca",
    "VideoPCA": "videopca",
    "VideoPCAConfig": "config",
    "TeacherConfig": "config",
    "iter_videopca": "videopca",
    "videopca_video": "videopca",
    "videopca_window": "videopca",
    "window_spans": "videopca",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
