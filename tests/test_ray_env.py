"""Process settings the Ray edges apply."""

from __future__ import annotations

import platform
import sys

import pytest


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_mask_actors_set_the_allocator_to_keep_freed_memory(monkeypatch, tmp_path):
    from popdistill.inference import stream
    from popdistill.ray_env import keep_freed_memory

    assert keep_freed_memory() is True
    calls = []
    monkeypatch.setattr(stream, "keep_freed_memory", lambda: calls.append(1) or True)
    stream.MaskActor(str(tmp_path / "store"), None, 1)
    assert calls == [1]
