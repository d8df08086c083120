"""The multi-generation loop (thesis ch. 3) as one resumable job: ``run_pipeline(cfg)``.

    data (embedded world generated if missing) ; held-out: VideoPCA + centre prior
    generation 1:  VideoPCA teacher -> top fraction by score -> population -> held-out
                   evaluation (each student, Multi-Net)
    generation k:  EvalSeg-Net trained on gen k-1's Multi-Net (step gen-<k-1>/evalseg; not
                   with selection.scorer: agreement) -> gen k-1 students predict every
                   training frame -> EvalSeg-Net scores them (and gen 1's VideoPCA masks with
                   selection.with_teacher), each frame keeps its best mask, the best frames
                   are kept -> a fresh population -> evaluation
    report:        the table (centre prior, VideoPCA, every student, Multi-Net: P, J, CorLoc)

Every step is recorded in ``RUN_DIR/manifest.json`` when it finishes (:class:`Manifest`); a
re-run continues after the last finished step, and the teacher / predict / train stages skip
their finished videos / students inside a step. Tracking (:mod:`popdistill.tracking.client`): one
parent run, a child per generation, children per student and EvalSeg-Net with lineage tags.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from popdistill.errors import UserError
from popdistill.pipeline.config import (
    DataConfig,
    RunConfig,
    resolved,
    section_defaults,
    world_config,
)
from popdistill.pipeline.manifest import RESUMABLE_CHANGES, Manifest
from popdistill.pipeline.report import write_report
from popdistill.pipeline.run_dir import CENTRE, MULTINET, VIDEOPCA
from popdistill.pipeline.steps import (
    Baselines,
    EvalSeg,
    Generation,
    Selection,
    Student,
    from_json,
    students_from_json,
)
from popdistill.storage import RunPath

__all__ = ["run_pipeline", "ensure_data"]

Log = Callable[[str], None]
TEACHER = "videopca"  # the generation-1 teacher's masks as a candidate (selection.with_teacher)


def ensure_data(data: DataConfig, log: Log = print) -> dict[str, Any]:
    """Generate the embedded world at ``data.path`` when ``world:`` is set and it is missing."""
    if data.world is not None:
        from popdistill.data.world_io import generate_world

        manifest = generate_world(world_config(data.world), data.path, skip_existing=True,
                                  progress=log)
        return {"path": data.path, "generated": manifest["generated"], "stats": manifest.get("stats")}
    if "://" not in data.path and not Path(data.path).exists():
        raise UserError(f"{data.path}: data set folder not found")
    return {"path": data.path, "generated": False}


class _Run:
    """One pipeline run's state: config, run directory, manifest, tracker and parent run."""

    def __init__(self, cfg: RunConfig, log: Log):
        from popdistill.tracking.client import create_tracker

        self.cfg = cfg
        self.root = RunPath.of(cfg.out).mkdir()
        self.log_dir = Path(self.root.path) / "logs" if self.root.is_local else None
        self.log = _tee(log, self.log_dir / "run.log") if self.log_dir is not None else log
        self.manifest = Manifest(self.root)
        self.manifest.bind_config(resolved(cfg), section_defaults())
        self.tracker = create_tracker(self.root.uri, cfg.tracking)
        # MLflow params are fixed per run: the sections a resumed run may change are tags.
        config = resolved(cfg)
        self.parent = self.tracker.pipeline_run(
            cfg.run_name, {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES})
        self.parent.set_tags({f"popdistill.config.{k}": json.dumps(config[k], default=str)
                              for k in RESUMABLE_CHANGES})

    def step(self, name: str, fn: Callable[[], Any], result: Callable[[Any], Any] | None = None) -> Any:
        """``fn()`` once (its recorded result on a resumed run), read back by ``result``."""
        return self.manifest.run(name, fn, self.log, result)

    def gen_root(self, k: int) -> RunPath:
        return self.root / f"gen-{k}"


def _tee(log: Log, path: Path) -> Log:
    """``log``, and every line also appended to ``path`` with its time."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def both(message: str) -> None:
        log(message)
        with open(path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    return both


# -- steps ----------------------------------------------------------------------------------
def _write_evaluation(path: RunPath, results: dict[str, dict]) -> None:
    """Every method's held-out metrics, overall and per video (what analyses of a run read:
    ``benchmarks/generation_gain.py --bootstrap`` resamples the videos)."""
    path.write_json({name: {"overall": r["overall"], "videos": r["videos"]}
                     for name, r in results.items()})


def _heldout_baselines(run: _Run) -> Baselines:
    """VideoPCA on the evaluation videos (also the students' validation store) and the
    held-out scores of VideoPCA and the centre prior."""
    from popdistill.pipeline.heldout import evaluate_heldout
    from popdistill.teacher.pipeline import run_teacher

    cfg = run.cfg
    report = run_teacher(cfg.teacher_config(cfg.eval, (run.root / "eval").uri), log=run.log)
    results, _ = evaluate_heldout(cfg.eval, {VIDEOPCA: report["store"]}, baselines=["centre"],
                                  eval_config=cfg.eval_config(), log=run.log)
    results[CENTRE] = results.pop("centre")
    _write_evaluation(run.root / "eval" / "evaluation.json", results)
    return Baselines(report["store"], {k: v["overall"] for k, v in results.items()})


def _teacher(run: _Run, gen_run) -> Selection:
    from popdistill.teacher.pipeline import run_teacher

    report = run_teacher(run.cfg.teacher_config(run.cfg.data, run.gen_root(1).uri, 1), log=run.log)
    sel, metrics = report["selection"], report.get("metrics") or {}
    stats = {"selection/total": sel["total"], "selection/kept": sel["kept"],
             "selection/kept_fraction": sel["kept"] / max(sel["total"], 1),
             "selection/threshold": sel["threshold"],
             "throughput/frames_per_s": report["frames_per_second"]}
    for part, key in (("selected", "selection/J_kept"), ("rejected", "selection/J_rejected"),
                      ("all", "teacher/J")):
        if metrics.get(part, {}).get("J") is not None:
            stats[key] = metrics[part]["J"]
    gen_run.log_metrics(stats)
    return Selection(selected=report["selected_store"], threshold=sel["threshold"], stats=stats,
                     teacher="videopca", store=report["store"])


def _predict(run: _Run, checkpoints: dict[str, str], data: DataConfig, out: RunPath, k: int) -> dict:
    from popdistill.inference.predict import run_predict_many

    cfgs = [run.cfg.predict_config(ckpt, data, (out / name).uri, k)
            for name, ckpt in checkpoints.items()]
    reports = run_predict_many(cfgs, log=run.log)  # one pass over the frames for all of them
    return {name: r["store"] for name, r in zip(checkpoints, reports)}


def _select(run: _Run, gen_run, k: int, stores: dict[str, str], evalseg: str,
            teacher_store: str, teacher_selected: str) -> Selection:
    import numpy as np

    from popdistill.selection.rescore import rescore_predictions
    from popdistill.selection.select import add_missing_frames, select_scored
    from popdistill.selection.stats import selection_summary

    sel = run.cfg.selection
    if sel.with_teacher:
        stores = {**stores, TEACHER: teacher_store}
    root = run.gen_root(k) / "selection"
    scored = rescore_predictions(stores, evalseg, root / "scored", k, log=run.log,
                                 scorer=sel.scorer, ensemble=sel.ensemble,
                                 support=sel.support, labels=sel.labels, gpu=run.cfg.resources.gpu,
                                 precision=run.cfg.evalseg.precision)
    chosen = select_scored(root / "scored", root / "selected", scored["scores"], sel.top,
                           sel.threshold, scored["densities"], sel.strata)
    threshold, kept = chosen.threshold, chosen.kept
    j = np.asarray(scored["j"], np.float64)
    stats = selection_summary(kept, threshold, j if np.isfinite(j).any() else None)
    if sel.keep_teacher:
        stats["selection/teacher_frames"] = add_missing_frames(root / "selected",
                                                               RunPath.of(teacher_selected))
    if np.isfinite(j).any():
        stats["teacher/J"] = float(np.nanmean(j))
    gen_run.log_metrics(stats)
    run.log(f"selection: kept {int(stats['selection/kept'])} of {int(stats['selection/total'])} "
            f"frames ({sel.scorer} score >= {threshold:.4f}"
            + (f", the lowest of {sel.strata} edge-density strata's thresholds)" if sel.strata > 1
               and sel.threshold is None else ")")
            + (f" + {int(stats['selection/teacher_frames'])} of generation 1's selected frames "
               "(selection.keep_teacher)" if sel.keep_teacher else ""))
    if root.is_local:
        from popdistill.teacher.report import teacher_contact_sheet

        teacher_contact_sheet(root / "scored", root / "selected",
                              Path(root.path) / "contact_sheet.png", method="label")
    if not kept.any():
        raise RuntimeError(
            f"generation {k}: selection kept no frame: every candidate mask is empty at 0.5"
            + (f" or scores below selection.threshold {sel.threshold}" if sel.threshold else "")
            + f"; train generation {k - 1} longer or set selection.with_teacher")
    source = f"students:gen-{k - 1}" + ("+videopca:gen-1" if sel.with_teacher else "")
    how = ",".join([sel.ensemble] + ([sel.labels] if sel.labels != "best" else [])
                   + (["support"] if sel.support else []) + (["keep_teacher"] if sel.keep_teacher else []))
    return Selection(selected=(root / "selected").uri, threshold=threshold, stats=stats,
                     teacher=f"{sel.scorer}({how})+{source}", chosen=scored["chosen"])


def _train(run: _Run, gen_run, k: int, sel: Selection, val_store: str) -> dict[str, Student]:
    from popdistill.train.launcher import train_population
    from popdistill.train.loop import CHECKPOINT_FILE

    cfgs = run.cfg.train_configs(sel.selected, val_store, run.gen_root(k).uri)
    results = train_population(cfgs, run.cfg.students.max_concurrent, log=run.log)
    failed = {n: s["error"] for n, s in results.items() if "error" in s}
    if failed:
        name = sorted(failed)[0]
        raise RuntimeError(f"generation {k}: student {name} failed: {failed[name]}")
    out = {}
    for name, s in results.items():
        ckpt = f"{s['checkpoint']}/{CHECKPOINT_FILE}"
        handle = run.tracker.student_run(gen_run, name, sel.lineage(k))
        handle.log_params({"student": s["student"], "model": s["config"]["model"],
                           "epochs": s["config"]["epochs"], "lr": s["config"]["lr"],
                           "lr_schedule": s["config"].get("lr_schedule", "constant"),
                           "ema_decay": s["config"].get("ema_decay", 0.0),
                           "batch_size": s["batch_size"]})
        for h in s["history"]:
            metrics = {"train/loss": h["train_loss"]}
            if h.get("lr") is not None:
                metrics["train/lr"] = h["lr"]
            if h.get("val_j") is not None:
                metrics["val/J"] = h["val_j"]
            handle.log_metrics(metrics, step=int(h["epoch"]))
        handle.log_metrics({"throughput/frames_per_s": sum(h["train_frames"] for h in s["history"])
                            / max(sum(h["epoch_seconds"] for h in s["history"]), 1e-9)})
        if RunPath.of(ckpt).is_local:
            handle.log_artifact(ckpt, "checkpoint")
        out[name] = Student(ckpt, s["metrics"], s["wall_seconds"], handle.run_id)
    return out


def _evaluate(run: _Run, gen_run, k: int, stores: dict[str, str], sel: Selection,
              teacher_store: str) -> dict:
    """Held-out scores of generation ``k``'s students and Multi-Net; mask grids with VideoPCA's
    masks (``teacher_store``, unscored here) beside them."""
    from popdistill.evaluate.report import save_mask_grid
    from popdistill.pipeline.heldout import evaluate_heldout

    cfg = run.cfg
    results, grid = evaluate_heldout(cfg.eval, stores, {MULTINET: list(stores)},
                                     eval_config=cfg.eval_config(), grid_frames=cfg.grid_frames,
                                     log=run.log, grid_stores={VIDEOPCA: teacher_store})
    overall = {name: r["overall"] for name, r in results.items()}
    _write_evaluation(run.gen_root(k) / "evaluation.json", results)
    local = run.root.is_local
    for name in stores:
        handle = run.tracker.student_run(gen_run, name, sel.lineage(k))
        handle.log_metrics({f"final/{m}": overall[name][m] for m in ("P", "J", "CorLoc")
                            if overall[name][m] is not None})
        if local and grid:
            png = save_mask_grid(Path(run.gen_root(k).path) / "grids" / f"{name}.png", grid,
                                 [name, MULTINET])
            handle.log_artifact(png, "masks")
        handle.end("FINISHED")
    gen_run.log_metrics({f"{MULTINET}/{m}": overall[MULTINET][m] for m in ("P", "J", "CorLoc")
                         if overall[MULTINET][m] is not None})
    if local and grid:
        png = save_mask_grid(Path(run.gen_root(k).path) / "grids" / "all.png", grid,
                             [VIDEOPCA, *stores, MULTINET])
        gen_run.log_artifact(png, "masks")
    return overall


def _evalseg(run: _Run, gen_run, k: int, frames_store: str, train: dict[str, Student],
             sel: Selection) -> EvalSeg:
    from popdistill.train.evalseg import train_evalseg

    cfg = run.cfg.evalseg_config(frames_store, [t.checkpoint for t in train.values()],
                                 run.gen_root(k).uri)
    summary = train_evalseg(cfg, log=run.log)
    handle = run.tracker.evalseg_run(gen_run, {**sel.lineage(k), "frames": frames_store})
    handle.log_params({"model": cfg.model, "epochs": cfg.epochs, "lr": cfg.lr,
                       "students": ",".join(train)})
    for epoch, loss in enumerate(summary["losses"]):
        handle.log_metrics({"train/loss": loss}, step=epoch)
    handle.log_metrics({"train/target_mean": summary["target_mean"], "train/pairs": summary["pairs"]})
    if RunPath.of(summary["checkpoint"]).is_local:
        handle.log_artifact(summary["checkpoint"], "checkpoint")
    handle.end("FINISHED")
    return EvalSeg(**summary)


def _generation(run: _Run, k: int, prev: Generation | None, baselines: Baselines) -> Generation:
    gen_run = run.tracker.generation_run(run.parent, k)
    g = f"gen-{k}"
    selection = lambda data: from_json(Selection, data)  # noqa: E731
    if k == 1:
        sel = run.step(f"{g}/teacher", lambda: _teacher(run, gen_run), selection)
        frames_store, teacher_selected = sel.store, sel.selected
    else:
        frames_store, teacher_selected = prev.frames_store, prev.teacher_selected
        if run.cfg.selection.scorer == "evalseg":
            # trained when a generation needs it to select, not after the last generation
            prev.evalseg = run.step(f"gen-{k - 1}/evalseg", lambda: _evalseg(
                run, run.tracker.generation_run(run.parent, k - 1), k - 1, frames_store,
                prev.train, prev.selection), lambda data: from_json(EvalSeg, data))
        ckpts = {n: t.checkpoint for n, t in prev.train.items()}
        preds = run.step(f"{g}/predict", lambda: _predict(
            run, ckpts, run.cfg.candidates_data(k), run.gen_root(k) / "predict", k))
        evalseg = prev.evalseg.checkpoint if prev.evalseg else None
        sel = run.step(f"{g}/select", lambda: _select(
            run, gen_run, k, preds, evalseg, frames_store, teacher_selected), selection)
    train = run.step(f"{g}/train", lambda: _train(run, gen_run, k, sel, baselines.store),
                     students_from_json)
    ckpts = {n: t.checkpoint for n, t in train.items()}
    eval_stores = run.step(f"{g}/predict-eval", lambda: _predict(
        run, ckpts, run.cfg.eval, run.gen_root(k) / "eval", k))
    overall = run.step(f"{g}/evaluate", lambda: _evaluate(run, gen_run, k, eval_stores, sel,
                                                                         baselines.store))
    gen_run.end("FINISHED")
    return Generation(k, sel, train, overall, frames_store, teacher_selected)


def run_pipeline(cfg: RunConfig, log: Log = print, verbose: bool = True) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; returns the report (also ``RUN_DIR/report.json``).
    Holds the run directory's writer lock (:mod:`popdistill.pipeline.lock`) throughout. Not
    ``verbose``: Ray's INFO lines and internal warnings go to ``RUN_DIR/logs/ray.log``, not to
    the terminal (:func:`popdistill.ray_env.quiet_ray`); our own lines also go to
    ``RUN_DIR/logs/run.log``."""
    from popdistill.pipeline.lock import writer_lock

    with writer_lock(cfg.out, log):
        return _run_pipeline(cfg, log, verbose)


def _run_pipeline(cfg: RunConfig, log: Log, verbose: bool = True) -> dict[str, Any]:
    from popdistill.ray_env import init_ray, quiet_mlflow, quiet_ray

    t0 = time.time()
    if not verbose:
        quiet_mlflow()
    run = _Run(cfg, log)
    try:
        data = {"train": run.step("data/train", lambda: ensure_data(cfg.data, log)),
                "eval": run.step("data/eval", lambda: ensure_data(cfg.eval, log))}
        if cfg.later_data is not None and cfg.generations > 1:
            data["later"] = run.step("data/later", lambda: ensure_data(cfg.later_data, log))
        init_ray(cfg.resources.address, cfg.resources.num_cpus, quiet=not verbose,
                 object_store_gib=cfg.resources.object_store_gib)
        if not verbose:
            quiet_ray(run.log_dir)
        baselines = run.step("eval/videopca", lambda: _heldout_baselines(run),
                             lambda data: from_json(Baselines, data))
        generations: list[Generation] = []
        for k in range(1, cfg.generations + 1):
            generations.append(_generation(run, k, generations[-1] if generations else None,
                                           baselines))
        report = write_report(run.root, cfg, run.manifest.seconds(), run.parent, baselines,
                              generations, data)
    except BaseException:
        run.parent.end("FAILED")
        raise
    run.parent.end("FINISHED")
    log(f"run: finished in {time.time() - t0:.1f} s -> {run.root.uri}/report.json")
    return report
