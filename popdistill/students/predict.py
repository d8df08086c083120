"""Student inference at scale: a trained student's soft masks for every frame of a data set.

    predict_records(model, records, batch_size)   pure: frames -> soft masks (no Ray)
    StudentPredictor                              Ray Data callable class (one model per actor)
    run_predict(cfg)                              reader -> chunks -> actor pool -> mask store

The pipeline is the teacher's (``popdistill.teacher.pipeline``) with a student in place of
VideoPCA: videos are cut into chunk rows by ``popdistill.teacher.chunks.iter_chunks``, each
actor writes its chunks with ``popdistill.teacher.sink`` (same FRAME_SCHEMA store, done
markers, PNG export), and only per-chunk summaries reach the driver. The store's ``teacher``
column is ``student:<registry name>``; ``score`` is the generation-1 selection score (mean of
the mask's non-zero values).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from popdistill.data.readers import VideoRef, create_reader
from popdistill.data.schema import FrameRecord, Skipped
from popdistill.errors import UserError
from popdistill.storage import RunPath, safe_name
from popdistill.students.base import StudentNet, parameter_count, resize_images, to_float_images
from popdistill.students.checkpoint import load_checkpoint
from popdistill.teacher import sink
from popdistill.teacher.chunks import chunk_records, iter_chunks
from popdistill.teacher.selection import scores_for_batch

__all__ = [
    "PredictConfig",
    "predict_records",
    "StudentPredictor",
    "checkpoint_info",
    "predict_paths",
    "run_predict",
]


@dataclass
class PredictConfig:
    """One prediction run. ``out`` is its directory (local path or pyarrow URI)."""

    checkpoint: str = ""
    data: str = ""
    format: str = "davis"
    out: str = ""
    reader_options: dict[str, Any] = field(default_factory=dict)
    export_png: str | None = None
    batch_size: int = 32
    chunk_frames: int = 128
    actors: int = 1
    actor_cpus: float = 1.0
    actor_gpus: float = 0.0
    read_cpus: float = 0.25
    torch_threads: int = 2
    autocast: bool = True  # bf16 autocast + channels_last when the actor has a GPU
    generation: int | None = None  # None: the checkpoint's config "generation" + 1, else 2

    def validate(self) -> None:
        for name in ("checkpoint", "data", "out"):
            if not getattr(self, name):
                raise UserError(f"{name}: required")
        for name in ("batch_size", "chunk_frames", "actors", "torch_threads"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: {getattr(self, name)} must be >= 1")
        if self.generation is not None and self.generation < 1:
            raise UserError(f"generation: {self.generation} must be >= 1")
        if self.actor_cpus < 0 or self.actor_gpus < 0 or self.read_cpus < 0:
            raise UserError("actor_cpus, actor_gpus, read_cpus: must be >= 0")


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
    model: StudentNet, records: Sequence[FrameRecord], batch_size: int = 32, autocast: bool = False
) -> list[np.ndarray]:
    """Soft masks (output_size x output_size float32 in [0, 1]) for ``records``, in order.

    Frames of any size are resized to the model's square ``input_size`` (as ``predict`` does)
    and run ``batch_size`` at a time in evaluation mode. ``autocast``: bf16 on CUDA only.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    use_amp = autocast and device.type == "cuda"
    masks: list[np.ndarray] = []
    for start in range(0, len(records), batch_size):
        x = _batch_tensor([r.image for r in records[start : start + batch_size]], model.input_size, device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            out = model.predict(x.contiguous(memory_format=torch.channels_last) if use_amp else x)
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


class StudentPredictor:
    """Ray Data callable class: chunk rows in, per-chunk summaries out; writes the masks.

    The checkpoint is loaded once per actor, weights only.
    """

    def __init__(self, checkpoint: str, store: str, export_png: str | None, generation: int,
                 threads: int = 2, batch_size: int = 32, autocast: bool = True):
        torch.set_num_threads(max(1, threads))
        self.device = _actor_device()
        model, _ = load_checkpoint(checkpoint, map_location=self.device)
        if self.device.type == "cuda" and autocast:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        self.teacher = f"student:{model.registry_name}"
        self.store = RunPath.of(store)
        self.export = RunPath.of(export_png) if export_png else None
        self.generation = generation
        self.batch_size = batch_size
        self.autocast = autocast

    def __call__(self, batch: dict) -> dict:
        keys = ("video", "chunk", "last", "n_chunks", "n_frames", "skipped", "seconds")
        out: dict[str, list] = {k: [] for k in keys}
        for i in range(len(batch["video"])):
            row = {k: batch[k][i] for k in batch}
            t0 = time.perf_counter()
            records = chunk_records(row)
            if records:
                masks = predict_records(self.model, records, self.batch_size, self.autocast)
                for r, m, s in zip(records, masks, scores_for_batch(np.stack(masks))):
                    r.mask, r.score = m, float(s)
                    r.teacher, r.generation = self.teacher, self.generation
                sink.write_chunk(self.store, str(row["video"]), int(row["chunk"]), records)
                if self.export is not None:
                    sink.export_pngs(self.export, records)
            for k in ("video", "chunk", "last", "n_chunks", "skipped"):
                out[k].append(row[k])
            out["n_frames"].append(len(records))
            out["seconds"].append(time.perf_counter() - t0)
        return {k: np.asarray(v) for k, v in out.items()}


# -- the driver -----------------------------------------------------------------------------


def predict_paths(out: str) -> dict[str, RunPath]:
    root = RunPath.of(out)
    return {"root": root, "store": root / "store", "done": root / "done",
            "checkpoint": root / "checkpoint.json", "report": root / "report.json"}


def _read_chunks(row: dict, fmt: str, root: str, options: dict, chunk_frames: int):
    reader = create_reader(fmt, root, **options)
    yield from iter_chunks(reader, VideoRef.from_dict(json.loads(row["ref"])), chunk_frames, 1)


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
    import ray
    from ray.data import ActorPoolStrategy

    from popdistill.config import to_dict

    info = info or checkpoint_info(cfg.checkpoint)  # refuses a bad checkpoint before any work
    generation = cfg.generation or ((info["generation"] or 1) + 1)
    paths = predict_paths(cfg.out)
    reader = create_reader(cfg.format, cfg.data, **cfg.reader_options)
    refs = reader.videos()
    skipped: list[Skipped] = list(reader.skipped)
    paths["root"].mkdir()
    _same_checkpoint(paths, info)
    done = sink.done_videos(paths["done"].mkdir())
    todo = [r for r in refs if safe_name(r.video) not in done]
    log(f"predict: {info['name']} on {len(refs)} videos of {cfg.data} ({cfg.format}); "
        f"{len(refs) - len(todo)} already done, {len(todo)} to do")
    for r in todo:
        sink.clear_partial(paths["store"], r.video)

    t0 = time.perf_counter()
    frames = 0
    model_seconds = 0.0
    if todo:
        ds = ray.data.from_items([{"ref": json.dumps(r.to_dict())} for r in todo], override_num_blocks=len(todo))
        ds = ds.flat_map(_read_chunks, num_cpus=cfg.read_cpus, fn_kwargs=dict(
            fmt=cfg.format, root=cfg.data, options=cfg.reader_options, chunk_frames=cfg.chunk_frames))
        ds = ds.map_batches(
            StudentPredictor,
            fn_constructor_kwargs=dict(checkpoint=info["path"], store=paths["store"].uri, export_png=cfg.export_png,
                                       generation=generation, threads=cfg.torch_threads,
                                       batch_size=cfg.batch_size, autocast=cfg.autocast),
            batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=cfg.actors),
            num_cpus=cfg.actor_cpus, num_gpus=cfg.actor_gpus,
        )
        seen: dict[str, list[int]] = {}  # video -> [chunks seen, frames, chunks expected or -1]
        last_log = t0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["video"])):
                video, n = str(batch["video"][i]), int(batch["n_frames"][i])
                state = seen.setdefault(video, [0, 0, -1])
                state[0] += 1
                state[1] += n
                frames += n
                model_seconds += float(batch["seconds"][i])
                skipped += [Skipped(**s) for s in json.loads(str(batch["skipped"][i]))]
                if bool(batch["last"][i]):
                    state[2] = int(batch["n_chunks"][i])
                if state[0] == state[2] and state[1] > 0:
                    sink.mark_done(paths["done"], video, {"video": video, "frames": state[1], "chunks": state[0]})
            if time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                log(f"predict: {frames} frames, {frames / (last_log - t0):.1f} frames/s")
    seconds = time.perf_counter() - t0
    log(f"predict: {frames} frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s)")
    report = {
        "checkpoint": info,
        "config": to_dict(cfg),
        "generation": generation,
        "teacher": f"student:{info['name']}",
        "videos": {"total": len(refs), "done": len(sink.done_videos(paths["done"])), "processed_this_run": len(todo)},
        "frames": frames,
        "seconds": seconds,
        "frames_per_second": frames / max(seconds, 1e-9),
        "actor_seconds": model_seconds,
        "frames_per_actor_second": frames / max(model_seconds, 1e-9),
        "skipped": [s.to_dict() for s in skipped],
        "store": paths["store"].uri,
        "export_png": cfg.export_png,
    }
    paths["report"].write_json(report)
    return report
