"""The TeachText experiment: teachers, base model and distilled student, 3 seeds, one table.

``run_teachtext(cfg)``:

1. builds the corpus if needed (world -> ``build_retrieval_corpus``; reused when complete);
2. trains the teachers — one CE model per text encoder and seed — as a population on Ray
   Train (:func:`run_population`: a Ray Tune grid over a tiny driver function, one
   ``TorchTrainer`` per run, the pattern of ``popdistill.train.launcher``, whose
   ``scaling_config`` / ``run_config`` / ``concurrent_runs`` it reuses); each frozen teacher
   writes its cached embeddings of the training split (the seeds of one model share one
   Ray Train run, :func:`group_seeds`: starting a run costs more than training a tiny model);
3. trains, per seed, the base model (student encoder, no teachers), the TeachText student
   (``ranking + lam * d(S, Phi(S_1..S_N))``), and optionally a modality-distilled student
   (fewer experts than its teachers, with its base) and a denoised student and base (the
   ``denoise_fraction`` of training captions with the lowest best-teacher margin dropped;
   precision / recall against the corpus's injected wrong captions);
4. measures inference seconds per query of base and student and prints the table (mean +- std
   over seeds, both directions), also written to ``OUT/teachtext/report.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from popdistill.config import job as job_field
from popdistill.config import load, section, to_dict
from popdistill.errors import UserError
from popdistill.resources import ResourcesConfig
from popdistill.retrieval.train import CETrainConfig
from popdistill.train.config import TrainConfig

__all__ = ["RayRunConfig", "WorldSpec", "TeachTextConfig", "fit_job", "run_population",
           "expand_job", "group_seeds",
           "run_teachtext", "format_table", "ensure_corpus", "denoise_stats"]

COLUMNS = ("R1", "R5", "R10", "MdR", "MnR", "GeoMean")


@dataclass
class RayRunConfig:
    """Resources of one Ray Train run (the attribute names ``popdistill.train.launcher`` reads)."""

    num_workers: int = TrainConfig.num_workers
    use_gpu: bool | None = False  # the CE models are small: CPU workers unless asked
    gpus_per_worker: float = ResourcesConfig.gpus_per_worker
    cpus_per_worker: float = ResourcesConfig.cpus_per_worker
    driver_cpus: float = TrainConfig.driver_cpus
    keep_checkpoints: int = 1
    max_failures: int = 0
    max_concurrent: int | None = None
    out: str = job_field("")  # TeachTextConfig.out
    run_name: str = job_field("")  # the job's name


@dataclass
class WorldSpec:
    """The procedural world the corpus is built from (``popdistill world`` options)."""

    videos: int = 80
    frames: int = 24
    size: int = 64
    preset: str = "medium"
    seed: int = 0


@dataclass
class TeachTextConfig:
    """``corpus``: a built corpus folder (default ``OUT/corpus``, built from ``world`` when
    missing). ``corpus_options``: further ``build_retrieval_corpus`` options."""

    out: str = "runs/teachtext"
    corpus: str | None = None
    world: WorldSpec = field(default_factory=WorldSpec)
    corpus_options: dict[str, Any] = field(default_factory=dict)
    teachers: list[str] = field(default_factory=lambda: ["minilm.sentence", "mpnet.sentence",
                                                         "tfidf.sentence"])
    student: str = "word2vec.sentence"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train: CETrainConfig = field(default_factory=CETrainConfig)
    teacher_train: dict[str, Any] = field(default_factory=dict)
    modality_experts: list[str] | None = None
    denoise_fraction: float | None = None
    ray: RayRunConfig = section(RayRunConfig)

    def validate(self) -> None:
        if not self.teachers:
            raise UserError("teachers: at least one teacher text encoder is needed")
        if not self.seeds:
            raise UserError("seeds: at least one seed is needed")


# -- Ray: one Train run per job, jobs as a Tune population ----------------------------------
def expand_job(job: dict) -> list[dict]:
    """The trainings of a job: one, or one per entry of ``job["runs"]`` (e.g. per seed; each
    entry overrides name, train, teachers, keep)."""
    return [{k: v for k, v in {**job, **run}.items() if k != "runs"} for run in job.get("runs", [{}])]


def group_seeds(jobs: list[dict]) -> list[dict]:
    """Jobs named ``<prefix>-s<seed>`` merged into one job per prefix (one Ray Train run that
    trains every seed in turn: a run's start-up costs more than a tiny model's training)."""
    groups: dict[str, list[dict]] = {}
    for job in jobs:
        groups.setdefault(job["name"].rsplit("-s", 1)[0], []).append(job)
    return [{**members[0], "name": prefix,
             "runs": [{k: m[k] for k in ("name", "train", "teachers", "keep") if k in m}
                      for m in members]} for prefix, members in groups.items()]


def _train_one(job: dict, features, handle) -> None:
    """One CE training. ``job["report_epochs"]``: report every evaluation to Ray (for a Tune
    scheduler); otherwise only the last one, since each ``ray.train.report`` blocks until the
    controller polls it (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default)."""
    import ray.train

    from popdistill.retrieval.checkpoint import load_teacher_cache, save_model, save_teacher_cache
    from popdistill.retrieval.train import score as sel_score
    from popdistill.retrieval.train import teacher_cache, train_ce

    cfg = load(CETrainConfig, job["train"])
    teachers = [load_teacher_cache(p) for p in job.get("teachers", [])]
    keep = np.load(job["keep"]) if job.get("keep") else None

    def report(entry: dict) -> None:
        if handle is not None:
            handle.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, entry["epoch"])
        if job.get("report_epochs"):
            ray.train.report({k: float(v) for k, v in entry.items()})

    res = train_ce(features, job["text_key"], cfg, teachers or None, keep, report)
    if not job.get("report_epochs") and res.history:
        ray.train.report({k: float(v) for k, v in res.history[-1].items()})
    if ray.train.get_context().get_world_rank() != 0:
        return
    out = Path(job["dir"])
    out.mkdir(parents=True, exist_ok=True)
    save_model(res.model, out / f"{job['name']}.model.pt")
    if job.get("cache"):
        cache = teacher_cache(res.model, features, job["text_key"], job["name"],
                              sel_score(res.metrics["val"]))
        save_teacher_cache(cache, out / f"{job['name']}.cache.pt")
    summary = {"name": job["name"], "metrics": res.metrics, "history": res.history,
               "best_epoch": res.best_epoch, "seconds": res.seconds}
    (out / f"{job['name']}.json").write_text(json.dumps(summary))
    if handle is not None:
        flat = {f"{s}/{d}/{k}": v for s, m in res.metrics.items() for d, mm in m.items()
                for k, v in mm.items()}
        handle.log_metrics(flat)


def _job_loop(config: dict) -> None:
    """Ray Train loop: the job's CE trainings (teacher, base or student); rank 0 writes
    ``<name>.json``, ``<name>.model.pt`` and, for teachers, ``<name>.cache.pt``."""
    import torch

    from popdistill.retrieval.ce_layout import load_safe

    torch.set_num_threads(1)
    job = config["job"]
    features = load_safe(job["corpus"])
    for one in expand_job(job):
        _train_one(one, features, job.get("mlflow"))


def fit_job(job: dict, ray_options: dict, callbacks: list | None = None):
    """One job as one ``TorchTrainer`` run (launcher's scaling and run configs); its Result."""
    from ray.train.torch import TorchTrainer

    from popdistill.train.launcher import run_config, scaling_config

    ray_cfg = load(RayRunConfig, {**ray_options, "run_name": job["name"]})
    trainer = TorchTrainer(
        _job_loop,
        train_loop_config={"job": job},
        scaling_config=scaling_config(ray_cfg, has_gpus=False),
        run_config=run_config(ray_cfg, callbacks=callbacks or []),
    )
    return trainer.fit()


def _job_trial(config: dict) -> None:
    """Tune trainable: one job; each epoch's report reaches Tune (``train.tune_bridge``)."""
    from popdistill.train.tune_bridge import fit_reporting_to_tune

    fit_reporting_to_tune(lambda callbacks: fit_job(config["job"], config["ray"], callbacks))


def run_population(jobs: list[dict], ray_cfg: RayRunConfig, name: str, scheduler=None,
                   metric: str | None = None) -> dict[str, dict]:
    """Run ``jobs`` (dicts with name, corpus, text_key, train, dir, ...; optionally ``runs``,
    see :func:`expand_job`) concurrently on Ray, one Ray Train run each; training name ->
    summary (or ``{"error": ...}``). Ray must be initialised."""
    import ray
    from ray import tune

    from popdistill.train.launcher import concurrent_runs, train_root

    ray_cfg = load(RayRunConfig, to_dict(ray_cfg))
    root = train_root(ray_cfg.out)
    fits = concurrent_runs([ray_cfg] * len(jobs), ray.cluster_resources(), False)
    tuner = tune.Tuner(
        tune.with_resources(_job_trial, {"cpu": ray_cfg.driver_cpus}),
        param_space={"job": tune.grid_search(jobs), "ray": to_dict(ray_cfg)},
        tune_config=tune.TuneConfig(
            num_samples=1, max_concurrent_trials=ray_cfg.max_concurrent or fits,
            scheduler=scheduler, metric=metric, mode="max" if metric else None,
            trial_name_creator=lambda t: t.config["job"]["name"],
            trial_dirname_creator=lambda t: t.config["job"]["name"],
        ),
        run_config=tune.RunConfig(name=name, storage_path=root.path, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    grid = tuner.fit()
    out = {}
    for result in grid:
        for job in expand_job(result.config["job"]):
            path = Path(job["dir"]) / f"{job['name']}.json"
            if path.is_file():
                out[job["name"]] = json.loads(path.read_text())
            else:
                out[job["name"]] = {"name": job["name"], "error": str(result.error or "stopped")}
    return out


# -- the experiment ---------------------------------------------------------------------------
def ensure_corpus(cfg: TeachTextConfig, progress=print) -> Path:
    """The corpus folder: ``cfg.corpus`` if complete, else built from ``cfg.world``."""
    corpus = Path(cfg.corpus or Path(cfg.out) / "corpus")
    if (corpus / "manifest.json").is_file():
        built = corpus / "corpus.json"
        videos = json.loads(built.read_text()).get("videos") if built.is_file() else None
        if cfg.corpus is None and videos not in (None, cfg.world.videos):
            raise UserError(f"{corpus}: built from {videos} videos, world.videos is "
                            f"{cfg.world.videos}; choose another out or delete that folder")
        return corpus
    from popdistill.data.world import make_config
    from popdistill.data.world_io import generate_world
    from popdistill.retrieval.corpus import build_retrieval_corpus

    world = Path(cfg.out) / "world"
    w = cfg.world
    generate_world(make_config(w.preset, videos=w.videos, frames=w.frames, size=w.size,
                               seed=w.seed), world, skip_existing=True, progress=progress)
    encoders = sorted({k.split(".")[0] for k in [*cfg.teachers, cfg.student]})
    options = {"encoders": tuple(encoders), **cfg.corpus_options}
    build_retrieval_corpus(world, corpus, progress=progress, **options)
    return corpus


def denoise_stats(keep: np.ndarray, wrong: np.ndarray) -> dict[str, float]:
    """Dropped captions vs the truly wrong ones: counts, precision and recall."""
    dropped = ~keep
    hit = int((dropped & wrong).sum())
    return {"dropped": int(dropped.sum()), "wrong": int(wrong.sum()), "dropped_wrong": hit,
            "precision": hit / max(int(dropped.sum()), 1), "recall": hit / max(int(wrong.sum()), 1)}


def _train_dict(cfg: TeachTextConfig, seed: int, **over) -> dict:
    return {**to_dict(cfg.train), "seed": seed, **over}


def _denoise(cfg, corpus: Path, seed: int, caches: list[str], run_dir: Path) -> tuple[str, dict]:

    from popdistill.retrieval.ce_layout import load_safe
    from popdistill.retrieval.checkpoint import load_teacher_cache
    from popdistill.retrieval.train import caption_agreement_margins, denoise_keep, split_data

    features = load_safe(corpus)
    train = split_data(features, cfg.student, "train")
    teachers = [load_teacher_cache(p) for p in caches]
    margins = caption_agreement_margins(teachers, train.caption_video)
    keep = denoise_keep(margins, cfg.denoise_fraction)
    meta = json.loads((corpus / "caption_meta.json").read_text())["meta"]
    wrong = np.array([meta[v][j]["kind"] == "wrong" for v, j in train.caption_ids])
    path = run_dir / f"keep-seed{seed}.npy"
    np.save(path, keep)
    return str(path), denoise_stats(keep, wrong)


def _row(name: str, runs: list[dict], split: str = "test") -> dict:
    from popdistill.retrieval.metrics import mean_std

    ok = [r for r in runs if "metrics" in r]
    if not ok:
        return {"model": name, "error": runs[0].get("error", "no runs") if runs else "no runs"}
    return {"model": name, "seeds": len(ok), **mean_std([r["metrics"][split] for r in ok])}


def format_table(rows: list[dict]) -> str:
    """Markdown table: one row per model, mean +- std per metric, both directions."""
    from popdistill.tracking.tables import table_markdown

    cells = []
    for row in rows:
        cell = {"model": row["model"]}
        for d in ("t2v", "v2t"):
            for c in COLUMNS:
                cell[f"{d} {c}"] = ("" if "error" in row else
                                    f"{row[d][c][0]:.1f} ± {row[d][c][1]:.1f}")
        if "error" in row:
            cell[f"t2v {COLUMNS[0]}"] = f"failed: {row['error'][:60]}"
        cells.append(cell)
    return table_markdown(cells).rstrip("\n")


def _inference_times(corpus: Path, run_dir: Path, names: dict[str, str]) -> dict[str, float]:

    from popdistill.retrieval.ce_layout import load_safe
    from popdistill.retrieval.checkpoint import load_model
    from popdistill.retrieval.train import inference_seconds_per_query, split_data

    features = load_safe(corpus)
    out = {}
    for label, (name, text_key) in names.items():
        model = load_model(run_dir / f"{name}.model.pt")
        data = split_data(features, text_key, "test", model.expert_names)
        out[label] = inference_seconds_per_query(model, data)
    return out


def run_teachtext(cfg: TeachTextConfig, progress=print) -> dict:
    """The whole experiment (Ray must be initialised); returns the report."""
    t_start = time.perf_counter()
    cfg = load(TeachTextConfig, to_dict(cfg))
    corpus = ensure_corpus(cfg, progress)
    run_dir = (Path(cfg.out) / "teachtext").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    ray_cfg = load(RayRunConfig, {**to_dict(cfg.ray), "out": str(Path(cfg.out).resolve())})
    base_job = {"corpus": str(corpus.resolve()), "dir": str(run_dir)}
    seconds = {"corpus": time.perf_counter() - t_start}

    t0 = time.perf_counter()
    teacher_jobs = [{**base_job, "name": f"teacher-{k.split('.')[0]}-s{s}", "text_key": k,
                     "train": _train_dict(cfg, s, lam=0.0, **cfg.teacher_train), "cache": True}
                    for s in cfg.seeds for k in cfg.teachers]
    teachers = run_population(group_seeds(teacher_jobs), ray_cfg, "teachers")
    seconds["teachers"] = time.perf_counter() - t0
    progress(f"teachtext: {len(teacher_jobs)} teacher trainings in {seconds['teachers']:.0f} s")

    t0 = time.perf_counter()
    jobs, denoise = [], {}
    for s in cfg.seeds:
        caches = [str(run_dir / f"teacher-{k.split('.')[0]}-s{s}.cache.pt") for k in cfg.teachers]
        caches = [c for c in caches if Path(c).is_file()]
        if not caches:
            raise UserError(f"seed {s}: no teacher finished; see {run_dir}")
        common = {**base_job, "text_key": cfg.student}
        jobs.append({**common, "name": f"base-s{s}", "train": _train_dict(cfg, s, lam=0.0)})
        jobs.append({**common, "name": f"student-s{s}", "train": _train_dict(cfg, s),
                     "teachers": caches})
        if cfg.modality_experts:
            few = {"experts": list(cfg.modality_experts)}
            jobs.append({**common, "name": f"base-few-s{s}", "train": _train_dict(cfg, s, lam=0.0,
                                                                                  **few)})
            jobs.append({**common, "name": f"student-few-s{s}", "train": _train_dict(cfg, s, **few),
                         "teachers": caches})
        if cfg.denoise_fraction is not None:
            keep, denoise[s] = _denoise(cfg, corpus, s, caches, run_dir)
            jobs.append({**common, "name": f"base-denoised-s{s}", "keep": keep,
                         "train": _train_dict(cfg, s, lam=0.0)})
            jobs.append({**common, "name": f"student-denoised-s{s}", "keep": keep,
                         "train": _train_dict(cfg, s), "teachers": caches})
    students = run_population(group_seeds(jobs), ray_cfg, "students")
    seconds["students"] = time.perf_counter() - t0
    progress(f"teachtext: {len(jobs)} base/student trainings in {seconds['students']:.0f} s")

    runs = {**teachers, **students}
    groups = [(f"teacher {k}", f"teacher-{k.split('.')[0]}") for k in cfg.teachers]
    groups += [(f"base {cfg.student}", "base"), (f"TeachText student {cfg.student}", "student")]
    if cfg.modality_experts:
        few = "+".join(cfg.modality_experts)
        groups += [(f"base, experts {few}", "base-few"), (f"student, experts {few}", "student-few")]
    if cfg.denoise_fraction is not None:
        groups += [("base, denoised", "base-denoised"), ("student, denoised", "student-denoised")]
    rows = [_row(label, [runs.get(f"{prefix}-s{s}", {}) for s in cfg.seeds])
            for label, prefix in groups]
    s0 = cfg.seeds[0]
    timing = _inference_times(corpus, run_dir, {"base": (f"base-s{s0}", cfg.student),
                                                "student": (f"student-s{s0}", cfg.student)})
    seconds["total"] = time.perf_counter() - t_start
    report = {"table": rows, "markdown": format_table(rows), "inference_s_per_query": timing,
              "denoise": denoise, "seconds": seconds, "config": to_dict(cfg),
              "val_table": [_row(label, [runs.get(f"{p}-s{s}", {}) for s in cfg.seeds], "val")
                            for label, p in groups]}
    (run_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report
