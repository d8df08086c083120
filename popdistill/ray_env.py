"""Starting or joining Ray the same way from every entry point (CLI, jobs, tests)."""

from __future__ import annotations

import logging
import os


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as under ``ray job submit``), or
    start a local Ray without the dashboard. Idempotent."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=not quiet)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=not quiet)
    if quiet:
        # Our own progress lines say what is happening; Ray Data's per-dataset INFO lines and
        # progress bars would bury them.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray
