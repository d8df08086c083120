"""TeachText files, written and read weights-only: a trained CE model (its config as plain
values and its state dict) and a teacher's cached embeddings. ``torch.load(weights_only=True)``
refuses any other pickle, so a crafted file is never run."""

from __future__ import annotations

from pathlib import Path

import torch

from popdistill.errors import UserError
from popdistill.retrieval.model import CEConfig, CEModel, TextEmbedding, VideoEmbedding
from popdistill.retrieval.train import TeacherCache

__all__ = ["save_model", "load_model", "save_teacher_cache", "load_teacher_cache"]


def save_teacher_cache(cache: TeacherCache, path: str | Path) -> None:
    """Write ``cache`` as plain tensors and numbers, loadable with ``weights_only=True``."""
    torch.save({"name": cache.name, "val_score": float(cache.val_score),
                "text_experts": cache.text.experts, "text_weights": cache.text.weights,
                "video_experts": cache.video.experts, "video_available": cache.video.available},
               path)


def _load_weights(path: str | Path, what: str) -> dict:
    """A file written by this module, read with ``weights_only=True``: tensors and plain values
    only, so a crafted pickle is refused instead of run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
        raise UserError(f"{path}: not a {what} file that loads weights-only ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); files from older "
                        "versions or other sources are refused rather than unpickled") from exc


def load_teacher_cache(path: str | Path) -> TeacherCache:
    """A teacher cache written by :func:`save_teacher_cache` (weights-only)."""
    d = _load_weights(path, "teacher cache")
    return TeacherCache(d["name"], TextEmbedding(d["text_experts"], d["text_weights"]),
                        VideoEmbedding(d["video_experts"], d["video_available"]),
                        float(d["val_score"]))


def save_model(model: CEModel, path: str | Path) -> None:
    """A trained CE model as its config (plain values) and state dict."""
    from popdistill.config import to_dict

    torch.save({"config": to_dict(model.cfg), "state": model.state_dict()}, path)


def load_model(path: str | Path) -> CEModel:
    """A CE model written by :func:`save_model` (weights-only)."""
    from popdistill.config import load

    saved = _load_weights(path, "TeachText model")
    model = CEModel(load(CEConfig, saved["config"]))
    model.load_state_dict(saved["state"])
    return model
