"""Ray Tune search of the TeachText student's Phi, distance d, lambda and learning rate.

``run_sweep(cfg)`` reuses (or trains) the frozen teachers of ``teachtext`` for the first seed,
then runs ``num_samples`` trials sampled from ``space`` under ASHA (``grace_period`` and
``reduction_factor`` in epochs; metric: validation geometric mean, both directions summed).
Each trial is one Ray Train run of the student. The driver creates the MLflow experiment and
a parent run once; every trial logs its parameters and per-epoch metrics to a child run, which
the driver marks FINISHED (ran to the end) or KILLED (stopped by ASHA). The best finished
trial's config and its test metrics go to ``OUT/sweep/report.json`` (and are returned).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from popdistill.config import load, to_dict
from popdistill.errors import UserError
from popdistill.retrieval.aggregation import list_phis
from popdistill.retrieval.losses import list_distances
from popdistill.retrieval.teachtext import (
    RayRunConfig,
    TeachTextConfig,
    ensure_corpus,
    fit_job,
    run_population,
)
from popdistill.retrieval.train import score
from popdistill.tracking.client import TrackingConfig

__all__ = ["SweepSpace", "SweepConfig", "run_sweep"]


@dataclass
class SweepSpace:
    """Choices for Phi and d; log-uniform ranges for lambda and the learning rate."""

    phi: list[str] = field(default_factory=lambda: list_phis())
    distance: list[str] = field(default_factory=lambda: list_distances())
    lam: tuple[float, float] = (1.0, 30.0)
    lr: tuple[float, float] = (3e-4, 3e-3)

    def validate(self) -> None:
        bad = [p for p in self.phi if p not in list_phis()] + [
            d for d in self.distance if d not in list_distances()]
        if bad or not self.phi or not self.distance:
            raise UserError(f"space: unknown or empty choices {bad}; phi from {list_phis()}, "
                            f"distance from {list_distances()}")
        for name in ("lam", "lr"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise UserError(f"space.{name}: need 0 < low <= high, got {(lo, hi)}")

    def tune_space(self) -> dict:
        from ray import tune

        return {"phi": tune.choice(self.phi), "distance": tune.choice(self.distance),
                "lam": tune.loguniform(*self.lam) if self.lam[0] < self.lam[1] else self.lam[0],
                "lr": tune.loguniform(*self.lr) if self.lr[0] < self.lr[1] else self.lr[0]}


@dataclass
class SweepConfig:
    """``teachtext``: corpus, teachers, student and base training settings of the trials."""

    teachtext: TeachTextConfig = field(default_factory=TeachTextConfig)
    space: SweepSpace = field(default_factory=SweepSpace)
    num_samples: int = 8
    grace_period: int = 2
    reduction_factor: int = 2
    seed: int = 0
    name: str = "sweep"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def validate(self) -> None:
        if self.num_samples < 1 or self.grace_period < 1 or self.reduction_factor < 2:
            raise UserError("num_samples, grace_period must be >= 1; reduction_factor >= 2")


def _sweep_trial(config: dict) -> None:
    """Tune trainable: the student with this trial's hyper-parameters, as one Ray Train run."""
    from ray import tune

    from popdistill.tracking.client import Tracker
    from popdistill.train.tune_bridge import fit_reporting_to_tune

    trial_id = tune.get_context().get_trial_id()
    hp = {k: config[k] for k in ("phi", "distance", "lam", "lr")}
    job = {**config["job"], "name": f"trial-{trial_id}",
           "train": {**config["job"]["train"], **hp}}
    track = config["tracking"]
    if track:
        tracker = Tracker(track["run_dir"], track["uri"], track["experiment"])
        handle = tracker.pipeline_run(f"{track['sweep']}/{trial_id}", config=hp)
        handle.set_tags({"mlflow.parentRunId": track["parent"], "popdistill.sweep": track["sweep"],
                         "popdistill.trial": trial_id})
        Path(job["dir"], f"{job['name']}.run").write_text(handle.run_id)
        job["mlflow"] = handle
    fit_reporting_to_tune(lambda callbacks: fit_job(job, config["ray"], callbacks))


def _teachers(cfg: SweepConfig, corpus: Path, seed: int, ray_cfg: RayRunConfig) -> list[str]:
    """Cached teacher embeddings for ``seed``: reused from a teachtext run, else trained."""
    tt = cfg.teachtext
    tt_dir = (Path(tt.out) / "teachtext").resolve()
    names = [f"teacher-{k.split('.')[0]}-s{seed}" for k in tt.teachers]
    missing = [(n, k) for n, k in zip(names, tt.teachers) if not (tt_dir / f"{n}.cache.pt").is_file()]
    if missing:
        tt_dir.mkdir(parents=True, exist_ok=True)
        jobs = [{"corpus": str(corpus.resolve()), "dir": str(tt_dir), "name": n, "text_key": k,
                 "cache": True, "train": {**to_dict(tt.train), "seed": seed, "lam": 0.0,
                                          **tt.teacher_train}} for n, k in missing]
        run_population(jobs, ray_cfg, "teachers")
    caches = [str(tt_dir / f"{n}.cache.pt") for n in names]
    if not all(Path(c).is_file() for c in caches):
        raise UserError(f"sweep: teachers did not finish; see {tt_dir}")
    return caches


def run_sweep(cfg: SweepConfig, progress=print) -> dict:
    """Run the sweep (Ray must be initialised); returns the report."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from popdistill.tracking.client import RunHandle, create_tracker
    from popdistill.train.launcher import concurrent_runs, train_root

    t0 = time.perf_counter()
    cfg = load(SweepConfig, to_dict(cfg))
    tt = cfg.teachtext
    out = Path(tt.out).resolve()
    corpus = ensure_corpus(tt, progress)
    ray_cfg = load(RayRunConfig, {**to_dict(tt.ray), "out": str(out)})
    seed = tt.seeds[0]
    caches = _teachers(cfg, corpus, seed, ray_cfg)
    sweep_dir = out / cfg.name
    sweep_dir.mkdir(parents=True, exist_ok=True)

    tracker = create_tracker(out, cfg.tracking)  # the experiment is created here, once
    parent = tracker.pipeline_run(cfg.name, config=cfg)
    track = None
    if getattr(tracker, "tracking_uri", None):
        track = {"run_dir": str(out), "uri": tracker.tracking_uri,
                 "experiment": cfg.tracking.experiment, "parent": parent.run_id, "sweep": cfg.name}
    job = {"corpus": str(corpus.resolve()), "dir": str(sweep_dir), "text_key": tt.student,
           "teachers": caches, "train": {**to_dict(tt.train), "seed": seed},
           "report_epochs": True}
    root = train_root(str(out))
    fits = concurrent_runs([ray_cfg] * cfg.num_samples, ray.cluster_resources(), False)

    tuner = tune.Tuner(
        tune.with_resources(_sweep_trial, {"cpu": ray_cfg.driver_cpus}),
        param_space={**cfg.space.tune_space(), "job": job, "ray": to_dict(ray_cfg),
                     "tracking": track},
        tune_config=tune.TuneConfig(
            metric="val_score", mode="max", num_samples=cfg.num_samples,
            search_alg=BasicVariantGenerator(random_state=cfg.seed,
                                             max_concurrent=ray_cfg.max_concurrent or fits),
            trial_name_creator=lambda t: f"trial-{t.trial_id}",
            trial_dirname_creator=lambda t: f"trial-{t.trial_id}",
            scheduler=ASHAScheduler(max_t=tt.train.epochs, grace_period=cfg.grace_period,
                                    reduction_factor=cfg.reduction_factor),
        ),
        run_config=tune.RunConfig(name=cfg.name, storage_path=root.path, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    grid = tuner.fit()
    trials = []
    for result in grid:
        name = f"trial-{result.metrics.get('trial_id', '') if result.metrics else ''}"
        summary_path = sweep_dir / f"{name}.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        entry = {"trial": name, "config": {k: result.config[k] for k in
                                           ("phi", "distance", "lam", "lr")},
                 "finished": summary is not None,
                 "epochs": int((result.metrics or {}).get("epoch", 0)),
                 "val_score": (result.metrics or {}).get("val_score")}
        if summary is not None:
            entry["val_score"] = score(summary["metrics"]["val"])
            entry["test"] = summary["metrics"]["test"]
        run_file = sweep_dir / f"{name}.run"
        if track and run_file.is_file():
            handle = RunHandle(track["uri"], run_file.read_text().strip())
            handle.end("FINISHED" if summary is not None else "KILLED")
        trials.append(entry)
    finished = [t for t in trials if t["finished"]]
    if not finished:
        raise UserError(f"sweep: no trial finished; see {root / cfg.name}")
    best = max(finished, key=lambda t: t["val_score"])
    report = {"best": best, "trials": trials, "seconds": time.perf_counter() - t0,
              "mlflow": {"tracking_uri": track["uri"] if track else None,
                         "parent_run_id": getattr(parent, "run_id", None)}}
    parent.log_dict(report, "report.json")
    parent.end()
    (sweep_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report
