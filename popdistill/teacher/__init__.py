"""Teachers that produce soft masks (VideoPCA for generation 1) and the selection of masks.

The names below are imported lazily: Ray Data read tasks import ``popdistill.inference.chunks``
and must not pay for torch, which ``videopca`` needs.
"""

import importlib

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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"popdistill.teacher.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'popdistill.teacher' has no attribute {name!r}")
