"""Ray Train's cost on the product's training loop: the same epochs in plain PyTorch and through
``popdistill train``'s Ray Train run (Ray Data streaming the store), step for step.

Given a pseudo-label store (e.g. ``RUN_DIR/gen-1/teacher/selected`` of a finished run), one
student is trained for ``--epochs`` epochs twice, with one torch thread:

- plain: the store read into memory once, the loop's own ``train_epoch`` over batches of it;
- Ray: ``train_student`` (``TorchTrainer`` with one worker, Ray Data reading the store), no
  validation set, the same config.

Both report seconds per epoch; the first epoch of each is warm-up and not compared. Printed:
ms per step, median over the epochs, and Ray's overhead over plain PyTorch (target <= 5 %).

    .venv/bin/python benchmarks/train_overhead.py runs/two_generations/gen-1/teacher/selected \\
        --student unet_tiny --model '{"input_size": 128, "encoder_channels": [16, 32, 64]}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np


def _plain(cfg, epochs: int) -> list[float]:
    """Seconds of each epoch of the loop's ``train_epoch``, in this process, without Ray."""
    import pyarrow.dataset as ds
    import torch

    from popdistill.students import create_student
    from popdistill.train.config import resolve_batch_size, resolve_sizes
    from popdistill.train.loop import TRAIN_COLUMNS, create_loss, train_epoch

    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    model = create_student(cfg.student, **cfg.model)
    sizes = resolve_sizes(cfg.augment, model.input_size, model.output_size)
    batch = resolve_batch_size(cfg.batch_size, model.input_size, model.output_size)
    opt = torch.optim.Adam(model.param_groups(cfg.lr, cfg.weight_decay))
    table = ds.dataset(cfg.store, format="parquet").to_table(columns=TRAIN_COLUMNS)
    rows = {c: np.asarray(table.column(c).to_pylist(), dtype=object) for c in TRAIN_COLUMNS}
    n = table.num_rows
    seconds = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(n)
        batches = ({c: v[order[s : s + batch]] for c, v in rows.items()} for s in range(0, n, batch))
        g = torch.Generator().manual_seed(epoch)
        t0 = time.perf_counter()
        train_epoch(model, opt, batches, sizes, create_loss(cfg.loss), g, torch.device("cpu"))
        seconds.append(time.perf_counter() - t0)
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="a pseudo-label store (Parquet frame records with masks)")
    p.add_argument("--student", default="unet_tiny")
    p.add_argument("--model", default="{}", help="JSON: create_student keywords")
    p.add_argument("--epochs", type=int, default=4, help="epochs each way; the first is warm-up (4)")
    p.add_argument("--batch-size", type=int, default=8)
    a = p.parse_args(argv)

    from popdistill.config import load
    from popdistill.ray_env import init_ray
    from popdistill.train.config import TrainConfig
    from popdistill.train.launcher import train_student

    with tempfile.TemporaryDirectory() as out:
        cfg = load(TrainConfig, {"store": a.store, "out": out, "student": a.student,
                                 "model": json.loads(a.model), "epochs": a.epochs,
                                 "batch_size": a.batch_size, "torch_threads": 1,
                                 "cpus_per_worker": 1.0})
        plain = _plain(cfg, a.epochs)
        init_ray(num_cpus=2)
        summary = train_student(cfg)
    history = summary["history"]
    steps = history[0]["step"]  # optimiser steps of one epoch
    ray_s = [h["epoch_seconds"] for h in history]
    ms = {"plain": 1000 * statistics.median(plain[1:]) / steps,
          "ray": 1000 * statistics.median(ray_s[1:]) / steps}
    print(f"{a.student}, {steps} steps an epoch (batch {a.batch_size}), epochs 2-{a.epochs}, one torch thread\n")
    print("| loop | ms / step (median over epochs) | each epoch, s |\n|---|---|---|")
    print(f"| plain PyTorch | {ms['plain']:.1f} | {', '.join(f'{s:.1f}' for s in plain)} |")
    print(f"| popdistill train (Ray Train + Ray Data) | {ms['ray']:.1f} | "
          f"{', '.join(f'{s:.1f}' for s in ray_s)} |")
    print(f"\nRay Train over plain PyTorch: {100 * (ms['ray'] / ms['plain'] - 1):+.1f} % per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
