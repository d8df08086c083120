"""Launch student training on Ray: one Ray Train run per student, a population via Ray Tune.

``train_student(cfg)`` builds ``ScalingConfig``, ``RunConfig`` (storage under
``RUN_DIR/train``, the run named after the student), ``CheckpointConfig`` and
``FailureConfig`` explicitly, runs one ``TorchTrainer`` and returns a summary dict (also
written to ``RUN_DIR/train/<name>.json``). ``train_population(cfgs)`` runs several students
concurrently: a Ray Tune grid over a tiny driver function (``tune.with_resources(fn,
{"cpu": driver_cpus})``) whose every trial builds and fits one ``TorchTrainer`` — the
Train V2 form (the legacy ``Tuner(TorchTrainer)`` form is not supported by Train V2).

Resources: each worker asks for ``cpus_per_worker`` CPUs (0.9 by default, so two runs and
their drivers fit a 2-CPU machine) and, when the cluster has GPUs (``use_gpu`` None), one GPU.
Ray Data read tasks ask for ``data_cpus`` only: with whole CPUs they could never be placed
beside the training workers and the run would wait forever.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from popdistill.config import load, to_dict
from popdistill.errors import UserError
from popdistill.storage import RunPath
from popdistill.train.config import TrainConfig
from popdistill.train.loop import TRAIN_COLUMNS, VAL_COLUMNS, train_loop_per_worker

__all__ = [
    "train_root",
    "cluster_has_gpus",
    "store_megabytes",
    "read_store",
    "build_trainer",
    "train_student",
    "train_population",
]


def train_root(out: str) -> RunPath:
    """``RUN_DIR/train``: Ray Train runs, population trials and per-student summaries."""
    return RunPath.of(out) / "train"


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def store_megabytes(store: str) -> float:
    """Total size of the Parquet files below ``store``, in MB (10^6 bytes)."""
    root = RunPath.of(store)
    return sum(root.fs.get_file_info(f).size or 0 for f in root.files(".parquet")) / 1e6


def read_store(store: str, columns: list[str], data_cpus: float, shuffle: bool, cache_mb: float = 0.0):
    """A Ray Dataset over every Parquet file below ``store`` (local path or URI).

    A store of at most ``cache_mb`` MB on disk is read once into the object store
    (materialised): every later epoch then iterates memory instead of re-reading the files,
    which on a small store is most of an epoch's time. Larger stores stream every epoch.
    """
    import ray

    root = RunPath.of(store)
    files = root.files(".parquet")
    if not files:
        raise UserError(f"{store}: no Parquet files (expected a pseudo-label store)")
    ds = ray.data.read_parquet(files, filesystem=root.fs, columns=columns,
                               ray_remote_args={"num_cpus": data_cpus})
    if store_megabytes(store) <= cache_mb:
        ds = ds.materialize()
    return ds.randomize_block_order() if shuffle else ds


def build_trainer(cfg: TrainConfig, callbacks: Sequence[Any] = ()):
    """The ``TorchTrainer`` of one student run, every Ray config spelled out."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = cluster_has_gpus() if cfg.use_gpu is None else cfg.use_gpu
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    scaling = ScalingConfig(num_workers=cfg.num_workers, use_gpu=use_gpu, resources_per_worker=resources)
    root = train_root(cfg.out)
    run = RunConfig(
        name=cfg.run_name,
        storage_path=root.path,
        storage_filesystem=None if root.is_local else root.fs,
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        failure_config=FailureConfig(max_failures=cfg.max_failures),
        callbacks=list(callbacks),
    )
    datasets = {"train": read_store(cfg.store, TRAIN_COLUMNS, cfg.data_cpus, True, cfg.cache_mb)}
    if cfg.val_store:
        datasets["val"] = read_store(cfg.val_store, VAL_COLUMNS, cfg.data_cpus, False, cfg.cache_mb)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": to_dict(cfg), "has_val": "val" in datasets},
        scaling_config=scaling,
        run_config=run,
        datasets=datasets,
    )


def train_student(cfg: TrainConfig, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train one student (Ray must be initialised); returns its summary.

    The summary holds the run name, the student, the last reported metrics, the latest
    checkpoint's path (``<dir>/model.pt`` loads with ``popdistill.students.load_checkpoint``),
    the metric history and the training loop's start / end times.
    """
    cfg = load(TrainConfig, to_dict(cfg))
    root = train_root(cfg.out)
    if not cfg.resume:
        (root / cfg.run_name).delete()
    t0 = time.time()
    result = build_trainer(cfg, callbacks).fit()
    value = result.return_value or {}
    summary = {
        "name": cfg.run_name,
        "student": cfg.student,
        "metrics": dict(result.metrics or {}),
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "path": result.path,
        "history": value.get("history", []),
        "start_epoch": value.get("start_epoch"),
        "attempt": value.get("attempt"),
        "started": value.get("started"),
        "finished": value.get("finished"),
        "wall_seconds": time.time() - t0,
        "sizes": value.get("sizes"),
        "batch_size": value.get("batch_size"),
        "config": to_dict(cfg),
    }
    (root / f"{cfg.run_name}.json").write_json(summary)
    return summary


def _population_trial(config: dict) -> None:
    """Tune function trainable: one student's Ray Train run; reports its headline numbers."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    summary = train_student(load(TrainConfig, config["train"]), callbacks=[TuneReportCallback()])
    final = {k: v for k, v in summary["metrics"].items() if isinstance(v, int | float)}
    tune.report({**final, "done": True, "wall_seconds": summary["wall_seconds"]})


def train_population(cfgs: Sequence[TrainConfig]) -> dict[str, dict[str, Any]]:
    """Train several students concurrently (Ray must be initialised); name -> summary.

    A student whose run failed maps to ``{"name", "student", "error"}``; the others' results
    are kept.
    """
    from ray import tune

    if not cfgs:
        raise UserError("students: at least one student is needed")
    cfgs = [load(TrainConfig, to_dict(c)) for c in cfgs]
    names = [c.run_name for c in cfgs]
    if len(set(names)) != len(names):
        raise UserError(f"students: run names must differ, got {names}")
    outs = {c.out for c in cfgs}
    if len(outs) != 1:
        raise UserError(f"out: all students of a population share one run directory, got {sorted(outs)}")
    root = train_root(cfgs[0].out)
    by_name = {c.run_name: c for c in cfgs}

    trainable = tune.with_resources(_population_trial, {"cpu": max(c.driver_cpus for c in cfgs)})
    tuner = tune.Tuner(
        trainable,
        param_space={"train": tune.grid_search([to_dict(c) for c in cfgs])},
        tune_config=tune.TuneConfig(
            num_samples=1,
            max_concurrent_trials=len(cfgs),
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name="population",
            storage_path=root.path,
            storage_filesystem=None if root.is_local else root.fs,
            failure_config=tune.FailureConfig(max_failures=0),  # retries happen inside Train
            verbose=0,
        ),
    )
    grid = tuner.fit()
    out: dict[str, dict[str, Any]] = {}
    for result in grid:
        train = result.config["train"]
        name = train.get("name") or train["student"]
        summary_file = root / f"{name}.json"
        if result.error is None and summary_file.exists():
            out[name] = summary_file.read_json()
        else:
            out[name] = {"name": name, "student": by_name[name].student, "error": str(result.error)}
    return out


def _trial_name(trial) -> str:
    train = trial.config["train"]
    return train.get("name") or train["student"]
