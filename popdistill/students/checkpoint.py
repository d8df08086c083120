"""Checkpoints that rebuild their own model (nanoGPT style), loaded without arbitrary unpickling.

A checkpoint holds the model's weights, the optimiser state, the step, the registry kind and
name and the config that built the model, plus a free-form run config (and, for a run that
keeps a moving average of its weights, the trained weights the average came from, to resume).
Everything except tensors is plain values (dict / list / str / int / float / bool / None), so
``torch.load(weights_only=True)`` reads it back and resuming never depends on the command line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from popdistill.errors import UserError
from popdistill.students._registry import REGISTRIES

__all__ = ["save_checkpoint", "load_checkpoint", "plain"]

FORMAT_VERSION = 1


def plain(value: Any, where: str = "config") -> Any:
    """``value`` as plain values only (tuples become lists, dataclasses dicts); anything else
    raises TypeError naming where it sits."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = plain(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not a plain value (dict/list/str/number)")


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    config: dict[str, Any] | None = None,
    training_model: nn.Module | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename); returns the path.

    ``training_model``: when ``model`` is a weight average (``popdistill.train.ema``), the model
    the optimiser trains, stored as ``payload["training_model"]`` (a state dict) for resuming;
    ``model`` stays what loading the checkpoint returns."""
    kind = getattr(model, "registry_kind", "")
    name = getattr(model, "registry_name", "")
    if kind not in REGISTRIES or not name:
        raise ValueError("only models built by create_student / create_evalseg can be checkpointed")
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "name": name,
        "model_config": plain(model.config, "model_config"),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "config": plain(config or {}, "config"),
    }
    if training_model is not None:
        payload["training_model"] = training_model.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the stored registry name + config and load its weights.

    Returns ``(model, payload)``; ``payload["optimizer"]`` is the optimiser's state dict (or
    None), ``payload["step"]`` and ``payload["config"]`` are as saved.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported by path
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("kind") not in REGISTRIES:
        raise UserError(f"{path}: not a popdistill model checkpoint")
    model = REGISTRIES[payload["kind"]].create(payload["name"], **payload["model_config"])
    model.load_state_dict(payload["model"])
    return model.to(map_location), payload
