"""Training EvalSeg-Net (IJCV 2019): a mask-quality scorer learned without human labels.

For every frame of a store, each trained student predicts a soft mask and the Multi-Net mask is
their pixel-wise product; the training target of a (frame, student mask) pair is
``quality_target(student_mask, multinet_mask)`` (cosine similarity). EvalSeg-Net regresses it
from (image, mask) with MSE, Adam lr 1e-4, batch 16. ``score_masks`` then scores any masks;
generation >= 2 keeps the best-scored ones.

Everything runs at EvalSeg-Net's ``input_size``: images, student masks and the Multi-Net
product are all resized to it first. Images and masks are kept as uint8 tensors (frames x ...)
and pairs are sampled by index, so memory grows with frames, not frames x students x float.
The pure functions below are the whole algorithm; ``train_evalseg`` is a small one-process
driver over a store (cheap with tiny variants).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from popdistill.choices import ENSEMBLES, GPU_MODES, PRECISIONS
from popdistill.config import choice, job
from popdistill.errors import UserError
from popdistill.students.base import resize_to
from popdistill.students.device import autocast, local_device, resolve_precision
from popdistill.students.evalseg_net import quality_target
from popdistill.students.multinet import multinet_mask

__all__ = [
    "EvalSegTrainConfig",
    "PairSet",
    "student_masks",
    "evalseg_targets",
    "build_pairs",
    "fit_evalseg",
    "score_masks",
    "spread_rows",
    "train_evalseg",
]


@dataclass
class EvalSegTrainConfig:
    """``students``: checkpoint files of the trained population; ``out``: the run directory
    (the model goes to ``out/evalseg/<model>.pt``); ``ensemble``: the Multi-Net mask of the
    target (:func:`evalseg_targets`)."""

    store: str = job("", required=True)
    students: list[str] = job(default_factory=list, required=True)
    out: str = job("", required=True)
    # the EvalSeg-Net variant (`popdistill.students.list_evalseg()`)
    model: str = "evalseg"
    # its `create_evalseg` keywords
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # passes over the (frame, student mask) pairs
    epochs: int = 10
    # pairs per step
    batch_size: int = 16
    # Adam learning rate (the thesis: 1e-4)
    lr: float = 1e-4
    # weights and pair order
    seed: int = 0
    max_frames: int = 5000  # frames used, spread evenly over all of the store's videos
    # frames read from the store at a time
    read_batch: int = 64
    # torch threads while building pairs and training
    torch_threads: int = 1
    ensemble: str = job(ENSEMBLES[0])  # selection.ensemble in a run
    # the students' masks and EvalSeg-Net's training run on CUDA when ``gpu`` allows it
    # (resources.gpu), at ``precision`` (popdistill.students.device)
    gpu: str = job(GPU_MODES[0])  # resources.gpu in a run
    # fp32, bf16 (autocast) or auto (bf16 on CUDA)
    precision: str = choice("auto", PRECISIONS)

    def validate(self) -> None:
        if self.ensemble not in ENSEMBLES or self.gpu not in GPU_MODES:
            raise UserError(f"ensemble, gpu: {self.ensemble!r}, {self.gpu!r} not in "
                            f"{ENSEMBLES}, {GPU_MODES}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_frames < 1:
            raise UserError("epochs, batch_size, max_frames: must be >= 1")


@dataclass
class PairSet:
    """Training pairs: images (N x 3 x s x s uint8), each student's masks (N x S x s x s
    uint8, value / 255) and targets (N x S float): pair (i, k) is frame i with student k's mask."""

    images: Tensor
    masks: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return int(self.targets.numel())

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Float images, masks (B x 1 x s x s) and targets of flat pair indices."""
        s = self.targets.shape[1]
        frame, student = index // s, index % s
        images = self.images[frame].float() / 255.0
        masks = self.masks[frame, student].unsqueeze(1).float() / 255.0
        return images, masks, self.targets[frame, student]


def student_masks(students: Sequence[nn.Module], images: Tensor, size: int,
                  precision: str = "fp32") -> list[Tensor]:
    """Each student's soft masks (B x 1 x size x size) for images (uint8 or float, any size),
    run on each student's device at ``precision``."""
    out = []
    for s in students:
        with autocast(next(s.parameters()).device, precision):
            out.append(resize_to(s.predict(images).float().cpu(), size))
    return out


def evalseg_targets(masks: Sequence[Tensor], ensemble: str = ENSEMBLES[0]) -> tuple[Tensor, Tensor]:
    """(ensemble masks B x 1 x s x s, targets B x S): cosine similarity of each student's mask
    to the Multi-Net of all of them (``ensemble``: its product, or the geometric mean;
    :func:`popdistill.students.multinet.multinet_mask`)."""
    multinet = multinet_mask(list(masks), ensemble=ensemble)
    targets = torch.stack([quality_target(m, multinet) for m in masks], dim=1)
    return multinet, targets


def _quantise(x: Tensor) -> Tensor:
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)


def build_pairs(students: Sequence[nn.Module], images: Tensor, size: int,
                ensemble: str = ENSEMBLES[0], precision: str = "fp32") -> PairSet:
    """Pairs for one batch of frames (images B x 3 x H x W): masks and targets at ``size``.

    Targets are computed from the 8-bit masks that EvalSeg-Net will see.
    """
    from popdistill.students.base import resize_images, to_float_images

    masks = [_quantise(m).float() / 255.0 for m in student_masks(students, images, size, precision)]
    _, targets = evalseg_targets(masks, ensemble)
    small = _quantise(resize_images(to_float_images(images), size))
    return PairSet(small, _quantise(torch.cat(masks, dim=1)), targets.float())


def _concat(parts: Sequence[PairSet]) -> PairSet:
    return PairSet(
        *(torch.cat([getattr(p, k) for p in parts]) for k in ("images", "masks", "targets"))
    )


def fit_evalseg(
    model: nn.Module,
    pairs: PairSet,
    epochs: int,
    batch_size: int = 16,
    lr: float = 1e-4,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    precision: str = "fp32",
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Train ``model`` (EvalSeg-Net) on ``pairs`` with MSE (forward at ``precision``, the loss
    in fp32); returns the mean loss per epoch. With ``log``, progress over the epochs."""
    from popdistill.progress import Progress

    device = next(model.parameters()).device
    optimizer = optimizer or torch.optim.Adam(_param_groups(model, lr))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    bar = Progress(epochs, "evalseg", "epochs", log) if log is not None else None
    for _ in range(epochs):
        total, n = 0.0, 0
        order = torch.randperm(len(pairs), generator=generator)
        for start in range(0, len(order), batch_size):
            images, masks, targets = (
                t.to(device) for t in pairs.batch(order[start : start + batch_size])
            )
            if len(targets) < 2 and n:  # a lone last item would break batch norm
                continue
            with autocast(device, precision):
                pred = model(images, masks)
            loss = F.mse_loss(pred.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(targets)
            n += len(targets)
        losses.append(total / max(n, 1))
        if bar is not None:
            bar.update(1, loss=f"{losses[-1]:.4f}")
    if bar is not None:
        bar.close()
    return losses


def _param_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """EvalSeg-Net's own groups (its FC head at a lower rate), one group for any other model."""
    if hasattr(model, "param_groups"):
        return model.param_groups(lr)
    return [{"params": list(model.parameters()), "lr": lr}]


def score_masks(evalseg: nn.Module, images: Tensor, masks: Tensor, precision: str = "fp32") -> Tensor:
    """Quality scores (B, in [0, 1]) of soft masks (B x 1 x h x w or B x h x w) for images,
    on EvalSeg-Net's device at ``precision``."""
    with autocast(next(evalseg.parameters()).device, precision):
        return evalseg.predict(images, masks).float().cpu()


def spread_rows(counts: Sequence[int], max_frames: int) -> list[list[int]]:
    """Row indices to read from each file (``counts``: rows per file, in store order) so that at
    most ``max_frames`` rows are taken, evenly spaced over the whole store: every video
    contributes, not only the first ones in file order."""
    total = int(sum(counts))
    take = min(total, max_frames)
    picks = (torch.arange(take, dtype=torch.float64) * total / max(take, 1)).floor().long().tolist()
    out: list[list[int]] = [[] for _ in counts]
    bounds = torch.tensor([0, *counts]).cumsum(0).tolist()
    f = 0
    for g in picks:
        while g >= bounds[f + 1]:
            f += 1
        out[f].append(g - bounds[f])
    return out


def _store_images(store: str, max_frames: int, read_batch: int):
    """Batches of store images (B x 3 x H x W uint8 tensors, one frame size per batch): at most
    ``max_frames`` frames spread evenly over the store (:func:`spread_rows`)."""
    import pyarrow.parquet as pq

    from popdistill.data.schema import read_frame_columns
    from popdistill.storage import RunPath
    from popdistill.train.data import decode_images

    root = RunPath.of(store)
    files = root.files(".parquet")
    if not files:
        raise UserError(f"{store}: no Parquet files (expected a frame store)")
    counts = [pq.ParquetFile(root.fs.open_input_file(f)).metadata.num_rows for f in files]
    pending: dict[tuple, list[Tensor]] = {}
    for f, rows in zip(files, spread_rows(counts, max_frames)):
        if not rows:
            continue
        table = read_frame_columns(f, ["image", "height", "width", "image_codec"], root.fs)
        for im in decode_images(table.take(rows).to_pydict()):
            group = pending.setdefault(tuple(im.shape), [])
            group.append(im)
            if len(group) >= read_batch:
                yield torch.stack(pending.pop(tuple(im.shape)))
    for ims in pending.values():
        yield torch.stack(ims)


def train_evalseg(cfg: EvalSegTrainConfig, log=print) -> dict[str, Any]:
    """Build the pairs from a store and trained students, train EvalSeg-Net, save it."""
    from popdistill.config import load, to_dict
    from popdistill.storage import RunPath
    from popdistill.students import create_evalseg, load_checkpoint, save_checkpoint

    cfg = load(EvalSegTrainConfig, to_dict(cfg))
    torch.set_num_threads(max(1, cfg.torch_threads))
    torch.manual_seed(cfg.seed)
    device = local_device(cfg.gpu)
    precision = resolve_precision(cfg.precision, device)
    students = [load_checkpoint(p, map_location=device)[0].eval() for p in cfg.students]
    model = create_evalseg(cfg.model, **cfg.model_kwargs).to(device)
    t0 = time.perf_counter()
    parts = [
        build_pairs(students, images, model.input_size, cfg.ensemble, precision)
        for images in _store_images(cfg.store, cfg.max_frames, cfg.read_batch)
    ]
    pairs = _concat(parts)
    log(
        f"evalseg: {pairs.images.shape[0]} frames x {len(students)} students = {len(pairs)} pairs "
        f"(mean target {float(pairs.targets.mean()):.3f}) in {time.perf_counter() - t0:.1f} s"
    )
    optimizer = torch.optim.Adam(_param_groups(model, cfg.lr))
    losses = fit_evalseg(model, pairs, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, optimizer,
                         precision, log)
    model = model.cpu()  # saved as a CPU checkpoint, loadable anywhere
    target = RunPath.of(cfg.out) / "evalseg" / f"{cfg.model}.pt"
    with tempfile.TemporaryDirectory() as d:
        local = save_checkpoint(
            Path(d) / "evalseg.pt",
            model,
            optimizer,
            step=cfg.epochs,
            config={"evalseg": to_dict(cfg), "losses": losses},
        )
        target.write_bytes(local.read_bytes())
    return {
        "checkpoint": target.uri,
        "frames": int(pairs.images.shape[0]),
        "pairs": len(pairs),
        "target_mean": float(pairs.targets.mean()),
        "losses": losses,
        "seconds": time.perf_counter() - t0,
        "device": str(device),
        "precision": precision,
    }
