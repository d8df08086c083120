"""Student inference at scale: a trained student's soft masks for every frame of a data set.

    predict_records(model, records, batch_size)   pure: frames -> soft masks (no Ray)
    StudentPredictor / PopulationPredictor        Ray Data callable classes (one model / several)
    run_predict(cfg)                              reader -> chunks -> actor pool -> mask store
    run_predict_many(cfgs)                        several students in one pass, a store each

The pipeline is the teacher's (``popdistill.teacher.pipeline``) with a student in place of
VideoPCA (``popdistill.inference.stream``): the same chunking, FRAME_SCHEMA store, done
markers and PNG export, and only per-chunk summaries reach the driver. The store's ``teacher``
column is ``student:<registry name>``; ``score`` is the generation-1 selection score (mean of
the mask's non-zero values).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from popdistill.data.schema import FrameRecord
from popdistill.errors import UserError
from popdistill.inference.config import PredictConfig
from popdistill.inference.stream import MaskActor, stream_masks
from popdistill.storage import RunPath
from popdistill.students.base import StudentNet, parameter_count, resize_images, to_float_images
from popdistill.students.checkpoint import load_checkpoint
from popdistill.students.device import autocast, prepare_input, prepare_model

__all__ = [
    "predict_records",
    "StudentPredictor",
    "PopulationPredictor",
    "checkpoint_info",
    "predict_paths",
    "run_predict",
    "run_predict_many",
]


# -- the pure core --------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batch_tensor(images: Sequence[np.ndarray], size: int, device: torch.device) -> torch.Tensor:
    """H x W x 3 uint8 frames as B x 3 x size x size floats in [0, 1]; frames of one shape are
    resized together, mixed shapes one by one (the same antialiased bilinear resize)."""
    if len({im.shape for im in images}) == 1:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        return resize_images(to_float_images(x, device), size)
    return torch.cat(
        [resize_images(to_float_images(torch.from_numpy(np.array(im)).permute(2, 0, 1)[None], device), size)
         for im in images]
    )


def predict_records(
    model: StudentNet, records: Sequence[FrameRecord], batch_size: int = 32, precision: str = "fp32"
) -> list[np.ndarray]:
    """Soft masks (output_size x output_size float32 in [0, 1]) for ``records``, in order.

    Frames of any size are resized to the model's square ``input_size`` (as ``predict`` does)
    and run ``batch_size`` at a time in evaluation mode, at ``precision``
    (:mod:`popdistill.students.device`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    masks: list[np.ndarray] = []
    for start in range(0, len(records), batch_size):
        x = _batch_tensor([r.image for r in records[start : start + batch_size]], model.input_size, device)
        with autocast(device, precision):
            out = model.predict(prepare_input(x, device, precision))
        masks.extend(out[:, 0].float().clamp_(0.0, 1.0).cpu().numpy())
    return masks


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Load a student checkpoint (weights only: no arbitrary unpickling) and describe it."""
    model, payload = load_checkpoint(path)
    if payload["kind"] != "student":
        raise UserError(f"{path}: a {payload['kind']} checkpoint, not a student segmenter")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    gen = payload.get("config", {}).get("generation")
    return {
        "path": str(Path(path).resolve()),
        "sha256": digest.hexdigest(),
        "name": payload["name"],
        "step": payload["step"],
        "input_size": model.input_size,
        "output_size": model.output_size,
        "parameters": parameter_count(model),
        "generation": gen if isinstance(gen, int) else None,
    }


# -- the Ray Data actor ---------------------------------------------------------------------


def _actor_device() -> torch.device:
    """CUDA when this Ray actor was given a GPU (outside Ray: when CUDA is available)."""
    import ray

    if ray.is_initialized():
        has_gpu = bool(ray.get_gpu_ids())
    else:
        has_gpu = True
    return torch.device("cuda" if has_gpu and torch.cuda.is_available() else "cpu")


class StudentPredictor(MaskActor):
    """A trained student as a Ray Data actor; the checkpoint is loaded once, weights only."""

    def __init__(self, checkpoint: str, store: str, export_png: str | None, generation: int,
                 threads: int = 2, batch_size: int = 32, precision: str = "auto",
                 source: dict | None = None):
        super().__init__(store, export_png, generation, source)
        torch.set_num_threads(max(1, threads))
        self.device = _actor_device()
        model, _ = load_checkpoint(checkpoint, map_location=self.device)
        self.model = prepare_model(model, self.device, precision).eval()
        self.teacher = f"student:{model.registry_name}"
        self.batch_size = batch_size
        self.precision = precision

    def masks(self, records: list[FrameRecord]) -> list[np.ndarray]:
        return predict_records(self.model, records, self.batch_size, self.precision)


class PopulationPredictor(StudentPredictor):
    """Several trained students in one Ray Data actor, each writing its own store: the frames
    are read and decoded once for the whole population instead of once a student."""

    def __init__(self, checkpoints: list[str], stores: list[str], export_pngs: list[str | None],
                 generation: int, threads: int = 2, batch_size: int = 32,
                 precision: str = "auto", source: dict | None = None):
        super().__init__(checkpoints[0], stores[0], export_pngs[0], generation, threads,
                         batch_size, precision, source)
        first = (self.model, self.teacher)
        self.members = [first]
        for ckpt in checkpoints[1:]:
            model, _ = load_checkpoint(ckpt, map_location=self.device)
            self.members.append((prepare_model(model, self.device, precision).eval(),
                                 f"student:{model.registry_name}"))
        self.outputs = [(RunPath.of(s), RunPath.of(e) if e else None) for s, e in zip(stores, export_pngs)]

    def write(self, row: dict, records: list[FrameRecord]) -> None:
        for (model, teacher), (store, export) in zip(self.members, self.outputs):
            t0 = time.perf_counter()
            masks = predict_records(model, records, self.batch_size, self.precision)
            self.timed("masks", t0)
            self.write_masks(row, records, masks, store, export, teacher)


# -- the driver -----------------------------------------------------------------------------


def predict_paths(out: str) -> dict[str, RunPath]:
    root = RunPath.of(out)
    return {"root": root, "store": root / "store", "done": root / "done",
            "checkpoint": root / "checkpoint.json", "report": root / "report.json"}


def _same_checkpoint(paths: dict[str, RunPath], info: dict[str, Any]) -> None:
    """Record the checkpoint in OUT; a resumed run must use the same one."""
    if paths["checkpoint"].exists():
        before = paths["checkpoint"].read_json()
        if before.get("sha256") != info["sha256"]:
            raise UserError(f"{paths['root'].uri}: holds masks of another checkpoint "
                            f"({before.get('path')}); use a new --out")
    else:
        paths["checkpoint"].write_json(info)


def run_predict(cfg: PredictConfig, log=print, info: dict[str, Any] | None = None) -> dict:
    """Run (or resume) a student over a data set; returns the report (also written to JSON).

    ``info``: the checkpoint's ``checkpoint_info`` when the caller already has it.
    """
    return run_predict_many([cfg], log, [info] if info else None)[0]


_SHARED = ("data", "format", "reader_options", "batch_size", "chunk_frames", "actors",
           "actor_cpus", "actor_gpus", "read_cpus", "decode", "torch_threads", "precision", "generation")


def run_predict_many(cfgs: Sequence[PredictConfig], log=print,
                     infos: Sequence[dict[str, Any]] | None = None) -> list[dict]:
    """Run (or resume) several students over one data set in one pass (one actor holds them
    all: each frame is read and decoded once); returns each student's report, in order. The
    configs may differ only in ``checkpoint``, ``out`` and ``export_png``."""
    from popdistill.config import to_dict

    if not cfgs:
        raise UserError("predict: at least one checkpoint is needed")
    cfg = cfgs[0]
    for other in cfgs[1:]:
        if differ := [k for k in _SHARED if getattr(other, k) != getattr(cfg, k)]:
            raise UserError(f"predict: the students' configs differ in {', '.join(differ)}")
    # refuses a bad checkpoint before any work
    infos = list(infos) if infos else [checkpoint_info(c.checkpoint) for c in cfgs]
    generations = {c.generation or ((i["generation"] or 1) + 1) for c, i in zip(cfgs, infos)}
    if len(generations) > 1:
        raise UserError(f"predict: the checkpoints are of different generations {sorted(generations)}")
    generation = generations.pop()
    paths = [predict_paths(c.out) for c in cfgs]
    for p, info in zip(paths, infos):
        p["root"].mkdir()
        _same_checkpoint(p, info)
    result = stream_masks(
        fmt=cfg.format, data=cfg.data, reader_options=cfg.reader_options,
        store=[p["store"] for p in paths], done=[p["done"] for p in paths],
        actor=PopulationPredictor,
        actor_kwargs=dict(checkpoints=[i["path"] for i in infos],
                          export_pngs=[c.export_png for c in cfgs], generation=generation,
                          threads=cfg.torch_threads, batch_size=cfg.batch_size, precision=cfg.precision),
        chunk_frames=cfg.chunk_frames, min_frames=1, actors=cfg.actors, actor_cpus=cfg.actor_cpus,
        actor_gpus=cfg.actor_gpus, read_cpus=cfg.read_cpus, decode=cfg.decode_mode(),
        label=f"predict {', '.join(i['name'] for i in infos)}", log=log,
    )
    reports = []
    for c, p, info in zip(cfgs, paths, infos):
        report = {
            "checkpoint": info,
            "config": to_dict(c),
            "generation": generation,
            "teacher": f"student:{info['name']}",
            "videos": {"total": result.videos_total, "done": result.videos_done,
                       "processed_this_run": result.processed_this_run},
            "frames": result.frames,
            "seconds": result.seconds,
            "frames_per_second": result.frames_per_second,
            "actor_seconds": result.actor_seconds,
            "actor_step_seconds": result.step_seconds,
            "frames_per_actor_second": result.frames / max(result.actor_seconds, 1e-9),
            "skipped": [s.to_dict() for s in result.skipped],
            "store": p["store"].uri,
            "export_png": c.export_png,
        }
        p["report"].write_json(report)
        reports.append(report)
    return reports
