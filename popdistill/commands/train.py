"""`popdistill train`: train a population of student segmenters on a pseudo-label store."""

from __future__ import annotations

import argparse

from popdistill.choices import GPU_MODES, LOSSES, LR_SCHEDULES
from popdistill.commands import add_set_option

HELP = "train the student population (one Ray Train run per student, run concurrently)"
DESCRIPTION = """\
Train a population of student segmenters on the teacher's selected pseudo-labels: one Ray
Train run per student, all run concurrently (Ray Tune schedules them). Each student learns to
regress the teacher's soft masks (MSE by default) from joint random crops and flips of the
images; ground truth, where the validation store has it, is used for validation P and J only.

Checkpoints go to RUN_DIR/train/<student>/epoch-NNNN/model.pt (model, optimiser, step, the
config that built it) and a summary to RUN_DIR/train/<student>.json. Re-running the same
command resumes each student from its latest checkpoint; a killed worker is restarted from it
(up to max_failures times). On a cluster with GPUs every worker gets one GPU.

--config FILE is YAML with the fields of PopulationConfig: `train:` (fields of TrainConfig:
epochs, batch_size, lr, lr_schedule constant|cosine, ema_decay, loss mse|bce, augment, num_workers,
cpus_per_worker, ...),
`students:` (a list of names) and `models:` (per-student create_student keywords).
Flags override the file.

examples:
  popdistill train --store runs/q/teacher/selected --val-store runs/q/teacher/store \\
      --students lowres,fconv,unet,denseunet,dilateunet --out runs/q
  popdistill train --store runs/q/teacher/selected --students unet_tiny,lowres_tiny \\
      --out runs/tiny --epochs 3
  popdistill train --config configs/train.yaml --out s3://bucket/run1
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from popdistill.train.config import TrainConfig as T

    p.add_argument("--config", help="YAML file with a PopulationConfig; flags override it")
    add_set_option(p, "--set train.max_seconds=60 --set train.augment.flip=false")
    p.add_argument("--store", help="pseudo-label store to train on (e.g. RUN_DIR/teacher/selected)")
    p.add_argument("--val-store", help="store to validate on; its ground truth gives P and J")
    p.add_argument(
        "--students", help="comma-separated student names (default: the five of the thesis)"
    )
    p.add_argument("--out", help="run directory (local path or s3://, gs:// URI)")
    p.add_argument("--epochs", type=int, help=f"epochs per student (default {T.epochs})")
    p.add_argument(
        "--batch-size", type=int, help="batch size (default: 32 LowRes-style, 16 others)"
    )
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {T.lr:g})")
    p.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help=f"constant or cosine: annealed towards zero over the epochs (default {T.lr_schedule})",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        help="keep a moving average of the weights with this decay and use it as the student "
        f"(0: off; e.g. 0.995 averages about the last 200 steps; default {T.ema_decay:g})",
    )
    p.add_argument("--loss", choices=LOSSES, help=f"loss to the teacher mask (default {T.loss})")
    p.add_argument("--workers", type=int, help=f"Ray Train workers per student (default {T.num_workers})")
    p.add_argument("--cpus-per-worker", type=float, help=f"CPUs per training worker (default {T.cpus_per_worker})")
    p.add_argument(
        "--gpu",
        choices=GPU_MODES,
        default=None,
        help="one GPU per worker: auto (when the cluster has GPUs), yes, no",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        help="students trained at once (default: as many as the cluster's CPUs/GPUs fit)",
    )
    p.add_argument("--fresh", action="store_true", help="start from scratch, ignoring checkpoints")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")


def build_config(args: argparse.Namespace):
    """The PopulationConfig from --config and the flags (validated once, here)."""
    from pathlib import Path

    from popdistill.choices import use_gpu
    from popdistill.config import apply_overrides, load, safe_load_unique
    from popdistill.errors import UserError
    from popdistill.train.config import PopulationConfig

    data: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = safe_load_unique(path.read_text()) or {}
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping with train / students / models")
    train = dict(data.get("train") or {})
    flags = {
        "store": args.store,
        "val_store": args.val_store,
        "out": args.out,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "ema_decay": args.ema_decay,
        "loss": args.loss,
        "num_workers": args.workers,
        "cpus_per_worker": args.cpus_per_worker,
    }
    train.update({k: v for k, v in flags.items() if v is not None})
    if args.gpu is not None:
        train["use_gpu"] = use_gpu(args.gpu)
    if args.fresh:
        train["resume"] = False
    data["train"] = train
    if args.max_concurrent is not None:
        data["max_concurrent"] = args.max_concurrent
    if args.students:
        data["students"] = [s.strip() for s in args.students.split(",") if s.strip()]
    try:
        return load(PopulationConfig, apply_overrides(data, args.overrides))
    except UserError as exc:
        raise UserError(f"{args.config}: {exc}" if args.config else str(exc)) from exc


def _fmt(value, spec: str = ".4f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def print_population(results: dict) -> None:
    head = ("student", "epochs", "train_loss", "val_loss", "val_P", "val_J")
    print("{:<16} {:>6} {:>10} {:>9} {:>7} {:>7}  checkpoint".format(*head))
    for name, s in results.items():
        if "error" in s:
            print(f"{name:<16} FAILED: {s['error']}")
            continue
        m = s["metrics"]
        epochs = m["epoch"] + 1 if "epoch" in m else "-"
        print(
            f"{name:<16} {epochs:>6} {_fmt(m.get('train_loss')):>10} {_fmt(m.get('val_loss')):>9} "
            f"{_fmt(m.get('val_p'), '.3f'):>7} {_fmt(m.get('val_j'), '.3f'):>7}  {s['checkpoint']}"
        )


def main(args: argparse.Namespace) -> int:
    from popdistill.errors import UserError
    from popdistill.ray_env import init_ray
    from popdistill.students import list_students
    from popdistill.train.launcher import train_population

    cfg = build_config(args)
    unknown = [s for s in cfg.students if s not in list_students()]
    if unknown:
        raise UserError(
            f"unknown student {unknown[0]!r}; valid names: {', '.join(list_students())}"
        )
    from popdistill.pipeline.lock import writer_lock

    with writer_lock(cfg.train.out):
        init_ray(args.address)
        results = train_population(cfg.configs(), cfg.max_concurrent)
    print_population(results)
    return 1 if any("error" in s for s in results.values()) else 0
