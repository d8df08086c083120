"""The Ray Train loop of one student: ``train_loop_per_worker(config)`` (Train V2).

Read top to bottom: unpack the config, build the student, resume from the latest checkpoint
if there is one, then per epoch ``train_epoch`` -> ``validate_epoch`` -> ``ray.train.report``
(rank 0 attaches a checkpoint: the unwrapped model, the optimiser, the step, the epoch, the
metric history and the config that built it). With ``ema_decay`` the student validated and
checkpointed is the moving average of the weights (``popdistill.train.ema``); the checkpoint
also holds the trained weights, so a resumed run continues both. Only three Ray calls do the
work: ``get_dataset_shard``, ``prepare_model`` and ``report``; the epoch helpers are plain
torch and are tested without Ray.

Workers split the training set in equal shares (DDP when there are several); the epoch's
training loss is summed over workers. Rank 0 validates on the whole validation set.
Training ends after ``epochs``, or earlier when ``max_steps`` or ``max_seconds`` is spent
(checked after every step, agreed by all workers); the forward passes run at ``precision``
(bf16 autocast with channels-last on CUDA by default, fp32 on a CPU).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from popdistill.evaluate.metrics import binarize, jaccard, pixel_accuracy, resize_mask
from popdistill.students.device import autocast, prepare_input
from popdistill.train.config import AugmentSizes
from popdistill.train.data import (
    decode_gt_masks,
    decode_soft_masks,
    eval_images,
    stack_resized,
    training_batch,
)
from popdistill.train.ema import averaged_module, make_ema
from popdistill.train.losses import LossFn, create_loss, lr_factor

__all__ = [
    "CHECKPOINT_FILE",
    "create_loss",
    "lr_factor",
    "set_lr",
    "train_epoch",
    "validate_epoch",
    "validation_metrics",
    "restore_checkpoint",
    "centre_prior_j",
    "train_loop_per_worker",
]

CHECKPOINT_FILE = "model.pt"
TRAIN_COLUMNS = ["image", "height", "width", "image_codec", "mask", "mask_height", "mask_width"]
VAL_COLUMNS = [*TRAIN_COLUMNS, "gt_mask"]

def set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> float:
    """Sets every parameter group's rate to its base rate x ``factor``; returns the first's."""
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * factor
    return optimizer.param_groups[0]["lr"]


def _all_reduce(values: list[float], device: torch.device, op: str = "sum") -> list[float]:
    """Sums (or maxima, ``op="max"``) over all workers (a no-op without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.tolist()


def budget_spent(cfg, steps: int, seconds: float) -> bool:
    """Whether a run that has taken ``steps`` optimiser steps in ``seconds`` of training has
    used up ``cfg.max_steps`` or ``cfg.max_seconds`` (either may be None: no such limit)."""
    return (cfg.max_steps is not None and steps >= cfg.max_steps) or (
        cfg.max_seconds is not None and seconds >= cfg.max_seconds)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Mapping[str, Any]],
    sizes: AugmentSizes,
    loss_fn: LossFn,
    generator: torch.Generator,
    device: torch.device,
    ema=None,
    precision: str = "fp32",
    stop: Callable[[int], bool] | None = None,
) -> tuple[float, int, int]:
    """One pass over ``batches``; returns (summed loss x items, items, optimiser steps) on
    this worker. ``ema`` (``make_ema``), if given, averages the weights after every step.
    ``precision``: the forward pass's (:mod:`popdistill.students.device`; the loss is fp32).
    ``stop(steps)``, if given, is asked after every step; True ends the epoch there (a budget)."""
    model.train()
    total, items, steps = 0.0, 0, 0
    for batch in batches:
        images, targets = training_batch(batch, sizes, generator)
        images, targets = prepare_input(images, device, precision), targets.to(device)
        with autocast(device, precision):
            pred = model(images)
        loss = loss_fn(pred.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model.module if hasattr(model, "module") else model)
        total += float(loss.detach()) * len(images)
        items += len(images)
        steps += 1
        if stop is not None and stop(steps):
            break
    return total, items, steps


def validate_epoch(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    input_size: int,
    output_size: int,
    loss_fn: LossFn,
    device: torch.device,
    precision: str = "fp32",
) -> dict[str, float]:
    """Sums over the validation rows: loss to the teacher mask (``loss``, ``n``) and,
    on frames with ground truth, P and J of the mask binarised at 0.5 at the frame's size
    (``p``, ``j``, ``n_gt``)."""
    sums = {"loss": 0.0, "n": 0.0, "p": 0.0, "j": 0.0, "n_gt": 0.0}
    model.eval()
    with torch.no_grad():
        for batch in batches:
            with autocast(device, precision):
                pred = model(prepare_input(eval_images(batch, input_size), device, precision))
            pred = pred.float().cpu()
            if batch["mask"] is not None and all(m is not None for m in batch["mask"]):
                target = stack_resized(decode_soft_masks(batch), output_size)
                sums["loss"] += float(loss_fn(pred, target)) * len(pred)
                sums["n"] += len(pred)
            for soft, gt in zip(pred[:, 0].numpy(), decode_gt_masks(batch)):
                if gt is None:
                    continue
                binary = binarize(resize_mask(soft, gt.shape))
                sums["p"] += pixel_accuracy(binary, gt)
                sums["j"] += jaccard(binary, gt)
                sums["n_gt"] += 1
    model.train()
    return sums


def validation_metrics(sums: dict[str, float]) -> dict[str, float]:
    """Means from ``validate_epoch`` sums: val_loss, and with ground truth
    val_p, val_j and val_frames."""
    out: dict[str, float] = {}
    if sums["n"]:
        out["val_loss"] = sums["loss"] / sums["n"]
    if sums["n_gt"]:
        out["val_p"], out["val_j"] = sums["p"] / sums["n_gt"], sums["j"] / sums["n_gt"]
        out["val_frames"] = sums["n_gt"]
    return out


def _maybe_fail(cfg, epoch: int) -> None:
    """Test-only fault injection: the worker process dies once at ``fault_epoch``.

    It first waits until Ray Train has registered every checkpoint reported so far (reports
    reach the controller asynchronously), so the run resumes from the previous epoch's
    checkpoint, deterministically.
    """
    if cfg.fault_epoch is None or epoch != cfg.fault_epoch or not cfg.fault_marker:
        return
    marker = Path(cfg.fault_marker)
    if marker.exists():
        return
    import ray.train

    ray.train.get_all_reported_checkpoints(
        consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED
    )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"worker died at epoch {epoch}\n")
    os._exit(1)


def restore_checkpoint(
    checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer, ema=None
) -> dict[str, Any]:
    """Load model and optimiser state (and the weights' average, given ``ema``) from a Ray
    checkpoint; returns the stored run state.

    A checkpoint of a run with a moving average holds the average as its model and the trained
    weights beside it: ``model`` gets the trained weights, ``ema`` the average and its count.
    Turning the average on when resuming a run without one starts it from the trained weights."""
    from popdistill.students.checkpoint import load_checkpoint

    with checkpoint.as_directory() as d:
        saved, payload = load_checkpoint(Path(d) / CHECKPOINT_FILE)
    trained = payload.get("training_model") or saved.state_dict()
    model.load_state_dict(trained)  # copies onto the model's device
    if ema is not None and "training_model" in payload:
        ema.module.load_state_dict(saved.state_dict())
        ema.n_averaged.fill_(int(payload["config"].get("ema_updates", 0)))
    if payload["optimizer"] is not None:
        optimizer.load_state_dict(payload["optimizer"])
    state = dict(payload["config"])
    state["step"] = payload["step"]
    return state


def train_loop_per_worker(config: dict) -> dict[str, Any]:
    """Ray Train entry: ``config = {"train": TrainConfig as a dict, "has_val": bool}``.

    Returns (rank 0's value becomes ``Result.return_value``) the metric history, the epoch this
    attempt started at, the attempt number and wall-clock start / end times.
    """
    import ray.train
    import ray.train.torch

    from popdistill.config import load, to_dict
    from popdistill.students import create_student
    from popdistill.students.checkpoint import save_checkpoint
    from popdistill.students.device import prepare_model, resolve_precision
    from popdistill.train.config import TrainConfig, resolve_batch_size, resolve_sizes

    started = time.time()
    cfg = load(TrainConfig, config["train"])
    has_val = bool(config.get("has_val"))
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, cfg.torch_threads))
    torch.manual_seed(cfg.seed)

    model = create_student(cfg.student, **cfg.model)
    input_size, output_size = model.input_size, model.output_size
    sizes = resolve_sizes(cfg.augment, input_size, output_size)
    batch_size = resolve_batch_size(cfg.batch_size, input_size, output_size)
    loss_fn = create_loss(cfg.loss)
    precision = resolve_precision(cfg.precision, device)
    model = prepare_model(model, device, precision)  # channels_last for bf16 on CUDA
    model = ray.train.torch.prepare_model(model, move_to_device=False)  # DDP when > 1 worker
    raw_model = model.module if hasattr(model, "module") else model
    optimizer = torch.optim.Adam(raw_model.param_groups(cfg.lr, cfg.weight_decay))
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # before any restore
    ema = make_ema(raw_model, cfg.ema_decay)  # None when off

    start_epoch, step, history, attempt, seconds = 0, 0, [], 0, 0.0
    checkpoint = ray.train.get_checkpoint()  # every worker restores the same checkpoint
    if checkpoint is not None:
        state = restore_checkpoint(checkpoint, raw_model, optimizer, ema)
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        history, attempt = list(state["history"]), int(state.get("attempt", 0)) + 1
        seconds = float(state.get("train_seconds", sum(h["epoch_seconds"] for h in history)))
        if budget_spent(cfg, step, seconds):
            start_epoch = cfg.epochs  # the run ended on its budget: nothing left to train

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if has_val else None  # not split: see launcher
    plain_cfg = to_dict(cfg)
    for epoch in range(start_epoch, cfg.epochs):
        _maybe_fail(cfg, epoch)
        t0 = time.perf_counter()

        def stop(steps: int, step=step, seconds=seconds, t0=t0) -> bool:  # this epoch's start
            # every worker asks after every step, and they agree
            spent = budget_spent(cfg, step + steps, seconds + time.perf_counter() - t0)
            return bool(_all_reduce([float(spent)], device, op="max")[0])

        epoch_seed = cfg.seed * 100_003 + epoch * 1_009 + rank  # augmentation and shuffle
        generator = torch.Generator().manual_seed(epoch_seed)
        lr = set_lr(optimizer, base_lrs, lr_factor(cfg.lr_schedule, epoch, cfg.epochs))
        batches = train_shard.iter_batches(
            batch_size=batch_size,
            batch_format="numpy",
            local_shuffle_buffer_size=cfg.shuffle_buffer or None,
            local_shuffle_seed=epoch_seed if cfg.shuffle_buffer else None,
        )
        budgeted = cfg.max_steps is not None or cfg.max_seconds is not None
        loss_sum, items, steps = train_epoch(
            model, optimizer, batches, sizes, loss_fn, generator, device, ema, precision,
            stop if budgeted else None,
        )
        loss_sum, items = _all_reduce([loss_sum, float(items)], device)
        step += steps
        seconds += time.perf_counter() - t0
        spent = budgeted and bool(
            _all_reduce([float(budget_spent(cfg, step, seconds))], device, op="max")[0])
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss_sum / max(items, 1.0),
            "train_frames": items,
            "lr": lr,
            "attempt": attempt,
        }
        last = epoch == cfg.epochs - 1 or spent
        # the whole validation store, on rank 0, every ``val_every`` epochs and after the last
        if val_shard is not None and rank == 0 and (last or (epoch + 1) % cfg.val_every == 0):
            t_val = time.perf_counter()
            val_batches = val_shard.iter_batches(
                batch_size=cfg.val_batch_size, batch_format="numpy"
            )
            student = averaged_module(raw_model, ema)
            sums = validate_epoch(student, val_batches, input_size, output_size, loss_fn, device,
                                  precision)
            metrics.update(validation_metrics(sums))
            metrics["val_seconds"] = time.perf_counter() - t_val
        metrics["epoch_seconds"] = time.perf_counter() - t0
        history.append(metrics)
        if rank == 0 and (last or (epoch + 1) % cfg.checkpoint_every == 0):
            with tempfile.TemporaryDirectory() as d:
                state = {"train": plain_cfg, "epoch": epoch, "history": history, "attempt": attempt,
                         "train_seconds": seconds, "budget_spent": bool(spent)}
                if ema is not None:
                    state["ema_updates"] = int(ema.n_averaged)
                save_checkpoint(
                    Path(d) / CHECKPOINT_FILE,
                    averaged_module(raw_model, ema),
                    optimizer,
                    step,
                    state,
                    training_model=None if ema is None else raw_model,
                )
                ray.train.report(
                    metrics,
                    checkpoint=ray.train.Checkpoint.from_directory(d),
                    checkpoint_dir_name=f"epoch-{epoch:04d}",
                )
        else:
            ray.train.report(metrics)
        if spent:
            break
    return {
        "history": history,
        "start_epoch": start_epoch,
        "attempt": attempt,
        "started": started,
        "finished": time.time(),
        "device": str(device),
        "input_size": input_size,
        "output_size": output_size,
        "batch_size": batch_size,
        "precision": precision,
        "steps": step,
        "train_seconds": seconds,
        "sizes": {"resize": sizes.resize, "crop": sizes.crop, "label": sizes.label},
    }


def centre_prior_j(gts: Iterable[np.ndarray]) -> float:
    """Mean J of the centre prior (binarised at 0.5) over ground-truth masks: the bar to beat."""
    from popdistill.evaluate.baselines import centre_prior

    js = [jaccard(binarize(centre_prior(*gt.shape)), gt) for gt in gts]
    return float(np.mean(js)) if js else float("nan")
