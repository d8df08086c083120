"""Starting or joining Ray the same way from every entry point (CLI, jobs, tests)."""

from __future__ import annotations

import os

from popdistill.resources import ResourcesConfig

QUIET_LOGGERS = ("ray", "ray.data", "ray.tune", "ray.train", "mlflow", "alembic")


def quiet_ray(log_dir: str | os.PathLike | None = None) -> None:
    """Keep Ray's and MLflow's INFO lines and internal warnings out of the terminal (errors
    still show): the console handlers of their loggers show errors only, and the lines go to
    ``log_dir/ray.log`` (Ray Data's also to its own session log); Ray Tune prints no
    experiment boxes. Ray Data's logging configuration itself is left alone (configuring it
    anew changed a rerun's numbers). ``--verbose`` commands skip this; call it after Ray has
    started (the settings are this process's, not its workers'), and :func:`quiet_mlflow`
    before MLflow is imported. What stays: Ray's raylet notices (printed by Ray outside its
    loggers, e.g. that a node started many worker processes) and the Ray Data actor pool's
    core-worker line about constructor arguments in the object store, which Ray Data's own
    design prints for every restartable actor (ray-project/ray#57733; popdistill keeps actor
    restarts on)."""
    import logging

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy output honours verbose=0
    run_log = (logging.FileHandler(os.path.join(os.fspath(log_dir), "ray.log"))
               if log_dir is not None else None)
    if run_log is not None:
        run_log.set_name("popdistill-run-log")
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "popdistill-run-log"]:
            logger.removeHandler(old)  # an earlier run's log in this process
            old.close()
        if run_log is not None and name in ("ray", "ray.data", "mlflow", "alembic"):
            # the roots of what propagates (Ray Data's logger does not propagate to "ray")
            run_log.setLevel(logging.INFO)
            logger.addHandler(run_log)
        for handler in logger.handlers:
            if handler is not run_log:
                handler.setLevel(logging.ERROR)
    _quiet_root_console()


def quiet_mlflow() -> None:
    """MLflow's INFO lines (database set-up) stay out of the terminal."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow is imported


def _quiet_root_console() -> None:
    """The root logger's console handlers (MLflow's and Ray's INFO lines propagate there)
    show errors only."""
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)


def release_orphan_placement_groups(log=None) -> int:
    """Remove the placement groups that jobs which have died still hold; returns how many.

    A driver killed while its students train (SIGKILL, a lost node) can leave its Ray Train
    workers' placement groups reserved on a long-lived cluster: nothing of that job uses them,
    yet their CPUs are taken, and the resumed run's students wait for CPUs forever (seen with
    ``benchmarks/chaos.py``: two 0.9-CPU groups of dead jobs on 2 CPUs). Only groups that are
    not detached and whose creating job is dead are removed."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state import list_placement_groups

    try:
        dead = {j["JobID"] for j in ray._private.state.jobs() if j["IsDead"]}
        groups = list_placement_groups(filters=[("state", "=", "CREATED")], detail=True,
                                       raise_on_missing_output=False)
    except Exception:  # noqa: BLE001 - no State API (no dashboard): nothing to check
        return 0
    released = 0
    for pg in groups:
        if not pg.is_detached and pg.creator_job_id in dead:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg.placement_group_id)))
            released += 1
    if released and log is not None:
        log(f"ray: released {released} placement group(s) left by jobs that died")
    return released


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True,
             object_store_gib: float | None = ResourcesConfig.object_store_gib):
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as under ``ray job submit``), or
    start a local Ray of ``num_cpus`` CPUs and an object store of ``object_store_gib`` GiB
    (None: Ray's own default). Idempotent.

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
        gib = object_store_gib
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 log_to_driver=not quiet,
                 object_store_memory=None if gib is None else int(gib * 2**30))
    if quiet:
        # Our own progress bars say what is happening; Ray Data's would bury them.
        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


def keep_freed_memory(mmap_threshold_mib: int = 32, trim_threshold_mib: int = 1024) -> bool:
    """Have glibc's allocator keep the memory a worker frees, for a process that handles
    same-sized chunks over and over (the mask actors).

    By default glibc hands large freed blocks back to the OS and lifts its mmap threshold as it
    goes, so each chunk's arrays (a few MiB) come back as fresh pages that the kernel must fault
    in and zero: on a 128 px corpus VideoPCA took 0.72-0.75 ms a frame inside an actor, and
    0.48-0.52 with this setting. A fixed mmap threshold and a high trim threshold keep those
    pages in the heap; the process's memory stays at its working set. Returns whether it
    applied (glibc only; elsewhere nothing changes).
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, mmap_threshold_mib << 20)) and bool(mallopt(m_trim_threshold, trim_threshold_mib << 20))
