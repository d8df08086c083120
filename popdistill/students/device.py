"""Device and numeric precision of every network the pipeline runs: students in training and
inference, EvalSeg-Net in training and scoring.

``precision`` (``training.precision``, ``evalseg.precision``, the predict config's): ``fp32``;
``bf16``, bfloat16 autocast (with channels-last weights and inputs on CUDA); or ``auto``,
bf16 on CUDA and fp32 elsewhere (a CPU gains nothing from bf16). Losses and metrics are always
computed in fp32. ``gpu`` (``resources.gpu``): ``auto`` (CUDA when there is one), ``yes`` or
``no``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from popdistill.choices import GPU_MODES, PRECISIONS

__all__ = ["PRECISIONS", "resolve_precision", "autocast", "prepare_model", "prepare_input",
           "local_device"]



def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``device``: ``auto`` is bf16 on CUDA only."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _channels_last(device: torch.device, precision: str) -> bool:
    return device.type == "cuda" and resolve_precision(precision, device) == "bf16"


def prepare_model(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """``model`` on ``device``, in channels-last memory format where bf16 runs on CUDA."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if _channels_last(device, precision) else model


def prepare_input(x: Tensor, device: torch.device, precision: str) -> Tensor:
    """An image batch (B x C x H x W) on ``device``, channels-last where the model is."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if _channels_last(device, precision) else x


def local_device(gpu: str = "auto") -> torch.device:
    """The device of work done in this process (EvalSeg-Net training, selection scoring):
    CUDA when ``gpu`` is ``yes``, or ``auto`` and CUDA is available; else the CPU."""
    if gpu not in GPU_MODES:
        raise ValueError(f"gpu: {gpu!r} is not one of {', '.join(GPU_MODES)}")
    if gpu == "yes" and not torch.cuda.is_available():
        raise RuntimeError("resources.gpu is 'yes' but this process sees no CUDA device")
    return torch.device("cuda" if gpu != "no" and torch.cuda.is_available() else "cpu")
