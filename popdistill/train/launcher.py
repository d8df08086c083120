"""Launch student training on Ray: one Ray Train run per student, a population via Ray Tune.

``train_student(cfg)`` builds ``ScalingConfig``, ``RunConfig`` (storage under
``RUN_DIR/train``, the run named after the student), ``CheckpointConfig`` and
``FailureConfig`` explicitly, runs one ``TorchTrainer`` and returns a summary dict (also
written to ``RUN_DIR/train/<name>.json``). ``train_population(cfgs)`` runs several students
concurrently: a Ray Tune grid over a tiny driver function (``tune.with_resources(fn,
{"cpu": driver_cpus})``) whose every trial builds and fits one ``TorchTrainer`` — the
Train V2 form (the legacy ``Tuner(TorchTrainer)`` form is not supported by Train V2).

Resources: each worker asks for ``cpus_per_worker`` CPUs (0.9 by default, so two runs and
their drivers fit a 2-CPU machine) and, when the cluster has GPUs (``use_gpu`` None),
``gpus_per_worker`` GPUs (one by default). Tune starts only as many runs as fit at once
(:func:`concurrent_runs`). Ray Data read tasks ask for ``data_cpus`` only: a task that needs a
whole CPU can never be placed beside two training workers on 2 CPUs, and the runs would wait
for their data forever, silently (see :func:`read_store`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
    "scaling_config",
    "run_config",
    "build_trainer",
    "train_student",
    "concurrent_runs",
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


def _read_files(batch: dict, store: str, columns: list[str], rows_per_block: int):
    """Ray Data batch function: the Parquet files named in ``batch["path"]``, in blocks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from popdistill.data.schema import with_columns

    fs = RunPath.of(store).fs
    for path in batch["path"]:
        with fs.open_input_file(str(path)) as f:
            pf = pq.ParquetFile(f)
            present = [c for c in columns if c in pf.schema_arrow.names]
            for rb in pf.iter_batches(batch_size=rows_per_block, columns=present):
                yield with_columns(pa.Table.from_batches([rb]), columns)


def read_store(
    store: str,
    columns: list[str],
    data_cpus: float,
    shuffle: bool,
    cache_mb: float = 0.0,
    rows_per_block: int = 256,
    seed: int | None = None,
):
    """A Ray Dataset over every Parquet file below ``store`` (local path or URI).

    A store of at most ``cache_mb`` MB on disk is read once by the driver into the object
    store: every epoch then iterates memory, with no read tasks to start (on a small store,
    re-reading the files is most of an epoch's time). Larger stores stream from storage every
    epoch, one read task of ``data_cpus`` CPUs per file. ``ray.data.read_parquet`` is not used
    for them: in Ray 2.60 it starts with a file-listing task that asks for a whole CPU, which
    never fits beside the training workers of a population (2 x 0.9 CPU on 2 CPUs), so the
    runs would wait for their data forever. ``seed`` fixes the shuffled block order, the same
    every epoch, and rows keep their order through the pipeline; each epoch's own shuffle is
    the workers' local shuffle, seeded by the epoch (``train.loop``). So a rerun sees the same
    batches, and so does a student resumed from a checkpoint in a new process: an order that
    changed with each execution of the dataset would start again at epoch 0's there.
    """
    import ray

    from popdistill.data.schema import read_frame_columns

    root = RunPath.of(store)
    files = root.files(".parquet")
    if not files:
        raise UserError(f"{store}: no Parquet files (expected a pseudo-label store)")
    if store_megabytes(store) <= cache_mb:
        ds = ray.data.from_arrow([read_frame_columns(f, columns, root.fs) for f in files])
    else:
        ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
        ds = ds.map_batches(
            _read_files,
            batch_size=1,
            batch_format="numpy",
            num_cpus=data_cpus,
            fn_kwargs={"store": root.uri, "columns": columns, "rows_per_block": rows_per_block},
        )
    ds.context.execution_options.preserve_order = True
    if not shuffle:
        return ds
    if seed is None:
        return ds.randomize_block_order()
    from ray.data._internal.random_config import RandomSeedConfig

    return ds.randomize_block_order(seed=RandomSeedConfig(seed, reseed_after_execution=False))


def scaling_config(cfg: TrainConfig, has_gpus: bool):
    """Workers of one run: ``cpus_per_worker`` CPUs each, plus ``gpus_per_worker`` (one by
    default) when ``use_gpu`` is true, or is None (auto) and the cluster has GPUs."""
    from ray.train import ScalingConfig

    use_gpu = has_gpus if cfg.use_gpu is None else cfg.use_gpu
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if use_gpu else {})}
    return ScalingConfig(
        num_workers=cfg.num_workers, use_gpu=use_gpu, resources_per_worker=resources
    )


def run_config(cfg: TrainConfig, callbacks: Sequence[Any] = ()):
    """The run ``RUN_DIR/train/<run_name>``: checkpoints kept, worker-group restarts allowed."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    root = train_root(cfg.out)
    return RunConfig(
        name=cfg.run_name,
        storage_path=root.path,
        storage_filesystem=None if root.is_local else root.fs,
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        failure_config=FailureConfig(max_failures=cfg.max_failures),
        callbacks=list(callbacks),
    )


def build_trainer(cfg: TrainConfig, callbacks: Sequence[Any] = ()):
    """The ``TorchTrainer`` of one student run, every Ray config spelled out."""
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer

    datasets = {"train": read_store(cfg.store, TRAIN_COLUMNS, cfg.data_cpus, True, cfg.cache_mb,
                                    seed=cfg.seed)}
    if cfg.val_store and cfg.val_every > 0:
        datasets["val"] = read_store(cfg.val_store, VAL_COLUMNS, cfg.data_cpus, False, cfg.cache_mb)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": to_dict(cfg), "has_val": "val" in datasets},
        scaling_config=scaling_config(cfg, cluster_has_gpus()),
        run_config=run_config(cfg, callbacks),
        datasets=datasets,
        # Only the training set is split between workers (equal shares, so every worker takes
        # the same number of steps); rank 0 validates on the whole validation set.
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest_options()),
    )


def ingest_options():
    """Ray Data's options for the workers' shards: Train's defaults, rows kept in order.

    Train replaces a dataset's own execution options (``read_store`` asks for its order to be
    kept) by these; with Ray's default, blocks come in the order their read tasks finish, so
    a loaded machine changed the batches, and a resumed student's weights no longer equalled
    an uninterrupted one's."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


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
        "device": value.get("device"),
        "config": to_dict(cfg),
    }
    (root / f"{cfg.run_name}.json").write_json(summary)
    return summary


def _population_trial(config: dict) -> None:
    """Tune function trainable: one student's Ray Train run.

    Each epoch's report reaches Tune (:mod:`popdistill.train.tune_bridge`); the run's summary
    is the file :func:`train_student` writes, which :func:`train_population` reads.
    """
    from popdistill.train.tune_bridge import fit_reporting_to_tune

    cfg = load(TrainConfig, config["train"])
    fit_reporting_to_tune(lambda callbacks: train_student(cfg, callbacks=callbacks))


def concurrent_runs(
    cfgs: Sequence[TrainConfig], resources: dict[str, float], has_gpus: bool
) -> int:
    """How many of these runs fit the cluster's ``resources`` at once (at least 1).

    Tune starts only that many trial drivers; the rest wait in Tune's queue rather than as
    Train controllers that time out waiting for workers and retry.
    """
    need_cpu = max(c.num_workers * c.cpus_per_worker + c.driver_cpus for c in cfgs)
    fits = int(resources.get("CPU", 0.0) / need_cpu + 1e-9) if need_cpu > 0 else len(cfgs)
    if any(has_gpus if c.use_gpu is None else c.use_gpu for c in cfgs):
        need_gpu = max(c.num_workers * c.gpus_per_worker for c in cfgs)
        fits = min(fits, int(resources.get("GPU", 0.0) / need_gpu + 1e-9))
    return max(1, min(len(cfgs), fits))


def train_population(
    cfgs: Sequence[TrainConfig], max_concurrent: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train several students concurrently (Ray must be initialised); name -> summary.

    At most ``max_concurrent`` runs at once (default: as many as the cluster's resources fit,
    :func:`concurrent_runs`). A student whose run failed maps to ``{"name", "student",
    "error"}``; the others' results are kept. With ``log``, each student's epochs as progress.
    """
    import ray
    from ray import tune

    if not cfgs:
        raise UserError("students: at least one student is needed")
    cfgs = [load(TrainConfig, to_dict(c)) for c in cfgs]
    names = [c.run_name for c in cfgs]
    if len(set(names)) != len(names):
        raise UserError(f"students: run names must differ, got {names}")
    outs = {c.out for c in cfgs}
    if len(outs) != 1:
        raise UserError(
            f"out: all students of a population share one run directory, got {sorted(outs)}"
        )
    root = train_root(cfgs[0].out)
    by_name = {c.run_name: c for c in cfgs}
    from popdistill.ray_env import release_orphan_placement_groups

    release_orphan_placement_groups(log)  # a killed earlier run's workers must not hold the CPUs

    trainable = tune.with_resources(_population_trial, {"cpu": max(c.driver_cpus for c in cfgs)})
    tuner = tune.Tuner(
        trainable,
        param_space={"train": tune.grid_search([to_dict(c) for c in cfgs])},
        tune_config=tune.TuneConfig(
            num_samples=1,
            max_concurrent_trials=max_concurrent
            or concurrent_runs(cfgs, ray.cluster_resources(), cluster_has_gpus()),
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name="population",
            storage_path=root.path,
            storage_filesystem=None if root.is_local else root.fs,
            failure_config=tune.FailureConfig(max_failures=0),  # retries happen inside Train
            verbose=0,
            callbacks=[_epoch_progress(by_name, log)] if log is not None else None,
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


def _epoch_progress(cfgs: dict[str, TrainConfig], log: Callable[[str], None]):
    """A Tune callback: one progress bar per student over its epochs, with its last loss."""
    from ray import tune

    from popdistill.progress import Progress

    class EpochProgress(tune.Callback):
        def __init__(self) -> None:
            self.bars: dict[str, Progress] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            name = _trial_name(trial)
            if "epoch" not in result or name not in cfgs:
                return
            bar = self.bars.get(name)
            if bar is None:
                bar = self.bars[name] = Progress(cfgs[name].epochs, f"train {name}", "epochs", log)
            step = int(result["epoch"]) + 1 - bar.done
            if step > 0:
                bar.update(step, loss=f"{float(result.get('train_loss', float('nan'))):.4f}")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            bar = self.bars.pop(_trial_name(trial), None)
            if bar is not None:
                bar.close()

    return EpochProgress()


def _trial_name(trial) -> str:
    train = trial.config["train"]
    return train.get("name") or train["student"]
