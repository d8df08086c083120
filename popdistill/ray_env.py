"""Starting or joining Ray the same way from every entry point (CLI, jobs, tests)."""

from __future__ import annotations

import logging
import os


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as under ``ray job submit``), or
    start a local Ray. Idempotent.

    The local Ray runs its dashboard process: Ray Train's placement-group cleaner asks the
    State API (served by the dashboard) whether a run's controller is still alive, and without
    it the placement groups of runs that Tune stops early (ASHA) are never released, so later
    trials wait for CPUs forever.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=not quiet)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 log_to_driver=not quiet)
    if quiet:
        # Our own progress lines say what is happening; Ray Data's per-dataset INFO lines and
        # progress bars would bury them.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray
