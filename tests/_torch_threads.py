"""One torch thread around each test of the packages whose conftest imports this fixture.

Tiny models run single-threaded: on shared 2-core machines, OpenMP threads waiting on each
other make these small convolutions several times slower, not faster (Ray workers set their
own thread count).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
