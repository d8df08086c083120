"""Student population quality on the embedded world: do students beat their VideoPCA teacher?

The ICCV 2017 claim, checked end to end on held-out videos:

1. Training world ``medium`` seed 0, held-out world ``medium`` seed 1 (different videos).
2. VideoPCA teacher on both; the training world's top ``--select-top`` frames by score form
   the pseudo-label store (the students never see ground truth). The teacher's masks on the
   held-out world (it sees the whole video) are the bar to beat.
3. The student population trained concurrently on Ray Train (``train_population``), each
   validated on the held-out frames.
4. Every student's masks on the held-out frames, the Multi-Net product of them, the teacher
   and the centre prior scored with P, J and CorLoc (``Evaluator``).
5. EvalSeg-Net trained on the students' masks of the training frames with the Multi-Net cosine
   target; Spearman's rho between its score and the true J of every (held-out frame, student)
   mask.

Prints the table and writes ``OUT/population_quality.json``. Re-running reuses the worlds
and teacher stores (and resumes finished students) in ``--out``; ``--fresh`` retrains.

    .venv/bin/python benchmarks/population_quality.py --out runs/population_quality
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

# The population used for the quickstart: reduced-size variants that train in a few CPU
# minutes each (name -> create_student keywords).
STUDENTS: dict[str, dict] = {
    "lowres_tiny": {},
    "fconv_tiny": {},
    "unet_tiny": {},
    "denseunet_tiny": {},
    "dilateunet_tiny": {},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/population_quality", help="run directory")
    p.add_argument("--preset", default="medium", help="world preset (medium)")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--heldout-seed", type=int, default=1)
    p.add_argument("--videos", type=int, default=None, help="training-world videos (preset: 20)")
    p.add_argument(
        "--heldout-videos", type=int, default=None, help="held-out world videos (preset: 20)"
    )
    p.add_argument("--select-top", type=float, default=0.2, help="fraction of frames kept")
    p.add_argument("--students", default=",".join(STUDENTS), help="comma-separated names")
    p.add_argument("--models", default="{}", help="JSON: student -> create_student keywords")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=["mse", "bce"], default="mse")
    p.add_argument("--max-concurrent", type=int, default=2, help="students trained at once")
    p.add_argument("--jobs", type=int, default=2, help="local trainer: students trained at once")
    p.add_argument("--evalseg", default="evalseg_tiny", help="EvalSeg-Net variant")
    p.add_argument("--evalseg-epochs", type=int, default=10)
    p.add_argument(
        "--evalseg-frames", type=int, default=960, help="training frames for EvalSeg-Net"
    )
    p.add_argument("--fresh", action="store_true", help="retrain the students from scratch")
    p.add_argument(
        "--train-store",
        default=None,
        help="train on this pseudo-label store instead of the teacher's selection (e.g. a "
        "generation-2 selection from benchmarks/population_gen2.py)",
    )
    p.add_argument(
        "--trainer",
        choices=["ray", "local"],
        default="ray",
        help="ray: train_population (Ray Train + Tune); local: the same epoch functions in "
        "this process, one student after another (no Ray start-up)",
    )
    return p.parse_args()


# -- data ------------------------------------------------------------------------------------


def make_world(preset: str, seed: int, out: Path, videos: int | None) -> Path:
    from popdistill.data.world import make_config
    from popdistill.data.world_io import generate_world

    overrides = {"seed": seed, **({"videos": videos} if videos else {})}
    generate_world(
        make_config(preset, **overrides), out, skip_existing=True, progress=lambda s: None
    )
    return out


def run_teacher_once(data: Path, out: Path, select_top: float, check_fraction: bool = True) -> dict:
    """The teacher's report; reuses a finished run (with the same selected fraction when
    ``check_fraction``)."""
    from popdistill.teacher.pipeline import TeacherConfig, run_teacher

    report_file = out / "teacher" / "report.json"
    if report_file.exists():
        report = json.loads(report_file.read_text())
        same = report["selection"]["fraction"] == select_top or not check_fraction
        if same and report["videos"]["done"] == report["videos"]["total"]:
            return report
    from popdistill.ray_env import init_ray

    init_ray()  # the teacher runs on Ray Data
    return run_teacher(
        TeacherConfig(data=str(data), out=str(out), select_top=select_top), log=lambda s: None
    )


def subsample_store(store: Path, out: Path, every: int) -> Path:
    """Every ``every``-th frame of each video of ``store`` as one Parquet file (validation set)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(pq.read_table(f) for f in sorted(store.rglob("*.parquet")))
    keep = table["frame"].to_numpy() % every == 0
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.filter(pa.array(keep)), out / "part-0.parquet")
    return out


def train_local(cfg, log=print) -> dict:
    """One student trained in this process with the Ray loop's own ``train_epoch`` /
    ``validate_epoch`` (same augmentation, loss, optimiser and validation); returns a summary
    shaped like ``train_student``'s."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from popdistill.config import to_dict
    from popdistill.students import create_student, save_checkpoint
    from popdistill.train.config import resolve_batch_size, resolve_sizes
    from popdistill.train.loop import (
        LOSSES,
        TRAIN_COLUMNS,
        VAL_COLUMNS,
        train_epoch,
        validate_epoch,
        validation_metrics,
    )

    def columns(store: str, cols: list[str]) -> dict:
        files = sorted(Path(store).rglob("*.parquet"))
        return pa.concat_tables(pq.read_table(f, columns=cols) for f in files).to_pydict()

    ckpt = Path(cfg.out) / "train" / cfg.run_name / "local" / "model.pt"
    summary_file = Path(cfg.out) / "train" / f"{cfg.run_name}.json"
    if cfg.resume and ckpt.exists() and summary_file.exists():
        return json.loads(summary_file.read_text())
    torch.set_num_threads(max(1, cfg.torch_threads))
    torch.manual_seed(cfg.seed)
    started = time.time()
    model = create_student(cfg.student, **cfg.model)
    sizes = resolve_sizes(cfg.augment, model.input_size, model.output_size)
    bs = resolve_batch_size(cfg.batch_size, model.input_size, model.output_size)
    optimizer = torch.optim.Adam(model.param_groups(cfg.lr, cfg.weight_decay))
    train = columns(cfg.store, TRAIN_COLUMNS)
    val = columns(cfg.val_store, VAL_COLUMNS) if cfg.val_store else None
    n, cpu, history, step = len(train["image"]), torch.device("cpu"), [], 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 1_009)
        order = torch.randperm(n, generator=generator).tolist()
        batches = [
            {k: [v[i] for i in order[s : s + bs]] for k, v in train.items()}
            for s in range(0, n, bs)
        ]
        loss, items, steps = train_epoch(
            model, optimizer, batches, sizes, LOSSES[cfg.loss], generator, cpu
        )
        step += steps
        metrics = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss / max(items, 1),
            "train_frames": items,
        }
        if val is not None:
            sums = validate_epoch(
                model, [val], model.input_size, model.output_size, LOSSES[cfg.loss], cpu
            )
            metrics.update(validation_metrics(sums))
        metrics["epoch_seconds"] = time.perf_counter() - t0
        history.append(metrics)
        log(
            f"  {cfg.run_name} epoch {epoch + 1}/{cfg.epochs}: loss {metrics['train_loss']:.4f} "
            f"val J {metrics.get('val_j', float('nan')):.3f}"
        )
    plain = to_dict(cfg)
    save_checkpoint(
        ckpt, model, optimizer, step, {"train": plain, "epoch": cfg.epochs - 1, "history": history}
    )
    summary = {
        "name": cfg.run_name,
        "student": cfg.student,
        "metrics": history[-1],
        "checkpoint": str(ckpt.parent),
        "history": history,
        "started": started,
        "finished": time.time(),
        "batch_size": bs,
        "config": plain,
        "sizes": {"resize": sizes.resize, "crop": sizes.crop, "label": sizes.label},
    }
    summary_file.write_text(json.dumps(summary))
    return summary


def read_records(store: Path):
    import pyarrow.parquet as pq

    from popdistill.data.schema import table_to_records

    files = sorted(store.rglob("*.parquet"))
    records = [r for f in files for r in table_to_records(pq.read_table(f))]
    return sorted(records, key=lambda r: (r.video, r.frame))


# -- evaluation ------------------------------------------------------------------------------


def evaluate(records, masks) -> dict:
    """P, J, CorLoc (means over frames) of ``masks`` (one soft mask per record)."""
    from popdistill.evaluate.metrics import Evaluator

    ev = Evaluator()
    for r, m in zip(records, masks):
        ev.add(r.video, m, r.gt_mask, r.gt_boxes)
    o = ev.overall()
    return {"P": o["P"], "J": o["J"], "CorLoc": o["CorLoc"], "frames": o["frames"]}


def frame_js(records, masks) -> np.ndarray:
    from popdistill.evaluate.metrics import binarize, jaccard, resize_mask

    return np.array(
        [
            jaccard(binarize(resize_mask(m, r.gt_mask.shape)), r.gt_mask)
            for r, m in zip(records, masks)
        ]
    )


def student_masks(checkpoints: dict[str, str], records) -> dict[str, list[np.ndarray]]:
    from popdistill.students import load_checkpoint
    from popdistill.students.predict import predict_records

    out = {}
    for name, ckpt in checkpoints.items():
        model = load_checkpoint(ckpt)[0].eval()
        out[name] = predict_records(model, records, batch_size=64)
    return out


def multinet_masks(masks: dict[str, list[np.ndarray]], records) -> list[np.ndarray]:
    import torch

    from popdistill.students.multinet import multinet_product

    out = []
    for i, r in enumerate(records):
        parts = [torch.from_numpy(m[i])[None, None] for m in masks.values()]
        out.append(multinet_product(parts, r.gt_mask.shape)[0, 0].numpy())
    return out


def evalseg_rho(cfg_kwargs: dict, checkpoints: dict[str, str], records, masks, js) -> dict:
    """Train EvalSeg-Net on the training store; Spearman rho of its scores vs true J."""
    import torch
    from scipy.stats import spearmanr

    from popdistill.students import load_checkpoint
    from popdistill.train.evalseg import EvalSegTrainConfig, score_masks, train_evalseg

    summary = train_evalseg(
        EvalSegTrainConfig(students=list(checkpoints.values()), **cfg_kwargs), log=lambda s: None
    )
    model = load_checkpoint(summary["checkpoint"])[0].eval()
    images = torch.from_numpy(np.stack([r.image for r in records])).permute(0, 3, 1, 2)
    scores = {}
    for name, ms in masks.items():
        scores[name] = np.concatenate(
            [
                score_masks(
                    model, images[s : s + 128], torch.from_numpy(np.stack(ms[s : s + 128]))[:, None]
                ).numpy()
                for s in range(0, len(ms), 128)
            ]
        )
    all_scores = np.concatenate([scores[n] for n in masks])
    all_js = np.concatenate([js[n] for n in masks])
    per_student = {n: float(spearmanr(scores[n], js[n]).statistic) for n in masks}
    return {
        "rho": float(spearmanr(all_scores, all_js).statistic),
        "rho_per_student": per_student,
        "pairs": int(all_scores.size),
        "train": {k: summary[k] for k in ("frames", "pairs", "target_mean", "seconds")},
        "final_loss": summary["losses"][-1],
    }


# -- the experiment --------------------------------------------------------------------------


def main() -> int:
    a = parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from popdistill.ray_env import init_ray
    from popdistill.train.config import TrainConfig
    from popdistill.train.launcher import train_population

    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [s.strip() for s in a.students.split(",") if s.strip()]
    models = {**{n: STUDENTS.get(n, {}) for n in names}, **json.loads(a.models)}
    t_start = time.perf_counter()

    w_train = make_world(a.preset, a.train_seed, out / "world_train", a.videos)
    w_held = make_world(a.preset, a.heldout_seed, out / "world_heldout", a.heldout_videos)
    t0 = time.perf_counter()
    rep_train = run_teacher_once(w_train, out / "teacher_train", a.select_top)
    rep_held = run_teacher_once(w_held, out / "teacher_heldout", a.select_top, check_fraction=False)
    teacher_s = time.perf_counter() - t0
    selected = rep_train["selection"]["kept"]
    store = out / "teacher_train" / "teacher" / "selected"
    if a.train_store:
        import pyarrow.dataset as ds

        store = Path(a.train_store).resolve()
        selected = ds.dataset(store, format="parquet").count_rows()
        print(f"training store: {store} ({selected} frames)")
    print(
        f"teacher: {teacher_s:.0f} s; selected {selected} of {rep_train['selection']['total']} training frames"
    )

    base = TrainConfig(
        store=str(store),
        val_store=str(
            subsample_store(out / "teacher_heldout" / "teacher" / "store", out / "heldout_val", 8)
        ),
        out=str(out),
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        loss=a.loss,
        resume=not a.fresh,
    )
    from dataclasses import replace

    cfgs = [replace(base, student=n, name=n, model=models.get(n, {})) for n in names]
    t0 = time.perf_counter()
    if a.trainer == "ray":
        init_ray()
        results = train_population(cfgs, max_concurrent=a.max_concurrent)
    else:
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 2) // a.jobs)
        with ProcessPoolExecutor(a.jobs) as pool:
            done = pool.map(train_local, [replace(c, torch_threads=threads) for c in cfgs])
            results = {c.run_name: s for c, s in zip(cfgs, done)}
    train_s = time.perf_counter() - t0
    failed = {n: s["error"] for n, s in results.items() if "error" in s}
    if failed:
        raise SystemExit(f"students failed: {failed}")
    checkpoints = {n: str(Path(results[n]["checkpoint"]) / "model.pt") for n in names}
    seconds = {n: results[n]["finished"] - results[n]["started"] for n in names}

    held = [
        r
        for r in read_records(out / "teacher_heldout" / "teacher" / "store")
        if r.gt_mask is not None
    ]
    from popdistill.evaluate.baselines import centre_prior

    masks = student_masks(checkpoints, held)
    rows = {
        "teacher (VideoPCA, held-out)": evaluate(held, [r.mask for r in held]),
        "centre prior": evaluate(held, [centre_prior(*r.image.shape[:2]) for r in held]),
    }
    js = {}
    for n in names:
        rows[n] = evaluate(held, masks[n])
        js[n] = frame_js(held, masks[n])
    products = multinet_masks(masks, held)
    rows["Multi-Net (product)"] = evaluate(held, products)
    # the product binarised at 0.5 ** n (its geometric mean at 0.5): "every student, on average
    # over them, says foreground", the per-student threshold applied to n factors
    rows["Multi-Net (product >= 0.5^n)"] = evaluate(held, [p ** (1 / len(names)) for p in products])

    evalseg = evalseg_rho(
        dict(
            store=str(out / "teacher_train" / "teacher" / "store"),
            out=str(out),
            model=a.evalseg,
            epochs=a.evalseg_epochs,
            max_frames=a.evalseg_frames,
        ),
        checkpoints,
        held,
        masks,
        js,
    )
    total_s = time.perf_counter() - t_start

    teacher_j = rows["teacher (VideoPCA, held-out)"]["J"]
    print(
        f"\nheld-out world {a.preset} seed {a.heldout_seed}: {len(held)} frames; training set: "
        f"{selected} frames (top {a.select_top:.0%} of world seed {a.train_seed}), "
        f"{a.epochs} epochs, batch {a.batch_size}, lr {a.lr:g}, loss {a.loss}"
    )
    print(f"{'method':<30} {'P':>6} {'J':>6} {'CorLoc':>7} {'train s':>8}  beats teacher J")
    for name, m in rows.items():
        t = f"{seconds[name]:8.0f}" if name in seconds else " " * 8
        beat = (
            ("yes" if m["J"] > teacher_j else "NO")
            if name in seconds or name.startswith("Multi")
            else ""
        )
        print(f"{name:<30} {m['P']:6.3f} {m['J']:6.3f} {m['CorLoc']:7.3f} {t}  {beat}")
    print(
        f"EvalSeg-Net ({a.evalseg}, {evalseg['train']['pairs']} training pairs): Spearman rho "
        f"(score vs true J, {evalseg['pairs']} held-out masks) = {evalseg['rho']:.3f}; per student "
        + ", ".join(f"{n} {r:.2f}" for n, r in evalseg["rho_per_student"].items())
    )
    print(f"total {total_s:.0f} s (teacher {teacher_s:.0f} s, population {train_s:.0f} s)")

    report = {
        "args": vars(a),
        "models": models,
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "training_frames": selected,
        "heldout_frames": len(held),
        "teacher_train": rep_train.get("metrics"),
        "teacher_heldout": rep_held.get("metrics"),
        "table": rows,
        "train_seconds": seconds,
        "val_j_history": {n: [h.get("val_j") for h in results[n]["history"]] for n in names},
        "evalseg": evalseg,
        "seconds": {"total": total_s, "teacher": teacher_s, "population": train_s},
    }
    (out / "population_quality.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
