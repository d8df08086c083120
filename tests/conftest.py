"""Shared fixtures. Ray is started once per session, only by tests that ask for it."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (2 CPUs). Never `ray stop` in tests.

    With its dashboard (as `popdistill.ray_env.init_ray` starts it): Ray Train's placement-group
    cleaner needs the State API, or runs that Tune stops early leak their CPUs and later trials
    wait forever.
    """
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                 log_to_driver=False)
    yield ray
    ray.shutdown()
