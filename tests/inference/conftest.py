"""Tiny models run single-threaded (see tests/_torch_threads.py)."""

from tests._torch_threads import _one_torch_thread  # noqa: F401 (an autouse fixture)
