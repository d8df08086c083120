"""The VideoPCA teacher at scale: a streaming Ray Data pipeline (thin edges over pure cores).

    reader.videos()  -> from_items (one row per unfinished video)
      -> flat_map(read chunks)          Ray tasks: decode, cut into chunks (chunks.py)
      -> map_batches(VideoPCAActor)     actor pool: VideoPCA + score + write chunk (sink.py)
      -> driver iterates per-chunk summaries: progress, done markers, skipped inputs
    then selection (Ray Data over the store's scores) and, with ground truth, evaluation.

Only per-chunk summaries and per-frame scalars reach the driver; frames and masks stay in the
object store and the Parquet store, so memory is flat whatever the corpus size.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from popdistill.data.readers import VideoRef, create_reader
from popdistill.data.schema import Skipped
from popdistill.errors import UserError
from popdistill.storage import RunPath, safe_name
from popdistill.teacher import sink
from popdistill.teacher.chunks import chunk_records, iter_chunks
from popdistill.teacher.videopca import VideoPCAConfig

__all__ = ["TeacherConfig", "VideoPCAActor", "run_teacher", "teacher_paths"]


@dataclass
class TeacherConfig:
    """One teacher run. ``out`` is the run directory (local path or pyarrow URI)."""

    data: str = ""
    format: str = "davis"
    out: str = ""
    reader_options: dict[str, Any] = field(default_factory=dict)
    videopca: VideoPCAConfig = field(default_factory=VideoPCAConfig)
    select_top: float = 0.1
    chunk_frames: int = 128
    actors: int = 2
    actor_cpus: float = 0.5
    read_cpus: float = 0.25
    torch_threads: int = 1
    export_png: str | None = None
    generation: int = 1
    evaluate: bool = True

    def validate(self) -> None:
        if not self.data:
            raise UserError("data: the data set folder is required")
        if not self.out:
            raise UserError("out: the run directory is required")
        if not 0.0 < self.select_top <= 1.0:
            raise UserError(f"select_top: {self.select_top} is not in (0, 1]")
        if self.actors < 1:
            raise UserError(f"actors: {self.actors} must be >= 1")
        if self.chunk_frames < self.videopca.k + 1:
            raise UserError(f"chunk_frames: {self.chunk_frames} must be > videopca.k ({self.videopca.k})")


def teacher_paths(out: str) -> dict[str, RunPath]:
    root = RunPath.of(out) / "teacher"
    return {
        "root": root,
        "store": root / "store",
        "done": root / "done",
        "selected": root / "selected",
        "report": root / "report.json",
    }


def _read_chunks(row: dict, fmt: str, root: str, options: dict, chunk_frames: int, min_frames: int):
    reader = create_reader(fmt, root, **options)
    yield from iter_chunks(reader, VideoRef.from_dict(json.loads(row["ref"])), chunk_frames, min_frames)


class VideoPCAActor:
    """Ray Data callable class: one chunk in, its summary out; writes the chunk to the store."""

    def __init__(self, cfg: dict, store: str, export_png: str | None, generation: int, threads: int):
        import torch

        from popdistill.config import load
        from popdistill.teacher.selection import scores_for_batch
        from popdistill.teacher.videopca import VideoPCA

        torch.set_num_threads(max(1, threads))
        self.videopca = VideoPCA(load(VideoPCAConfig, cfg))
        self.scores_for_batch = scores_for_batch
        self.store = RunPath.of(store)
        self.export = RunPath.of(export_png) if export_png else None
        self.generation = generation

    def __call__(self, batch: dict) -> dict:
        out = {k: [] for k in ("video", "chunk", "last", "n_chunks", "n_frames", "skipped", "seconds")}
        for i in range(len(batch["video"])):
            row = {k: batch[k][i] for k in batch}
            t0 = time.perf_counter()
            records = chunk_records(row)
            if records:
                frames = _stack_frames([r.image for r in records], self.videopca.cfg.size)
                masks = self.videopca(frames)
                scores = self.scores_for_batch(masks)
                for r, m, s in zip(records, masks, scores):
                    r.mask, r.score = m, float(s)
                    r.teacher, r.generation = "videopca", self.generation
                sink.write_chunk(self.store, str(row["video"]), int(row["chunk"]), records)
                if self.export is not None:
                    sink.export_pngs(self.export, records)
            out["video"].append(str(row["video"]))
            out["chunk"].append(int(row["chunk"]))
            out["last"].append(bool(row["last"]))
            out["n_chunks"].append(int(row["n_chunks"]))
            out["n_frames"].append(len(records))
            out["skipped"].append(str(row["skipped"]))
            out["seconds"].append(time.perf_counter() - t0)
        return {k: np.asarray(v) for k, v in out.items()}


def _stack_frames(images: list[np.ndarray], size: int) -> np.ndarray:
    """Frames of one chunk as T x H x W x 3; frames of differing size are first resized."""
    if len({im.shape for im in images}) == 1:
        return np.stack(images)
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in images])


def run_teacher(cfg: TeacherConfig, log=print) -> dict:
    """Run (or resume) the teacher over a data set; returns the report (also written to JSON)."""
    import ray
    from ray.data import ActorPoolStrategy

    from popdistill.config import to_dict
    from popdistill.teacher.report import teacher_contact_sheet
    from popdistill.teacher.selection_ray import evaluate_store, select_top

    paths = teacher_paths(cfg.out)
    reader = create_reader(cfg.format, cfg.data, **cfg.reader_options)
    refs = reader.videos()
    skipped: list[Skipped] = list(reader.skipped)
    done = sink.done_videos(paths["done"].mkdir())
    todo = [r for r in refs if safe_name(r.video) not in done]
    log(f"teacher: {len(refs)} videos in {cfg.data} ({cfg.format}); {len(refs) - len(todo)} already done, {len(todo)} to do")
    for r in todo:
        sink.clear_partial(paths["store"], r.video)

    t0 = time.perf_counter()
    frames_this_run = 0
    if todo:
        min_frames = cfg.videopca.k + 1
        ds = ray.data.from_items([{"ref": json.dumps(r.to_dict())} for r in todo], override_num_blocks=len(todo))
        ds = ds.flat_map(
            _read_chunks,
            fn_kwargs=dict(fmt=cfg.format, root=cfg.data, options=cfg.reader_options,
                           chunk_frames=cfg.chunk_frames, min_frames=min_frames),
            num_cpus=cfg.read_cpus,
        )
        ds = ds.map_batches(
            VideoPCAActor,
            fn_constructor_kwargs=dict(cfg=to_dict(cfg.videopca), store=paths["store"].uri, export_png=cfg.export_png,
                                       generation=cfg.generation, threads=cfg.torch_threads),
            batch_size=1,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=cfg.actors),
            num_cpus=cfg.actor_cpus,
        )
        chunks_seen: dict[str, int] = {}
        expected: dict[str, int] = {}
        frames_per_video: dict[str, int] = {}
        last_log = time.perf_counter()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["video"])):
                video = str(batch["video"][i])
                chunks_seen[video] = chunks_seen.get(video, 0) + 1
                frames_per_video[video] = frames_per_video.get(video, 0) + int(batch["n_frames"][i])
                frames_this_run += int(batch["n_frames"][i])
                skipped += [Skipped(**s) for s in json.loads(str(batch["skipped"][i]))]
                if bool(batch["last"][i]):
                    expected[video] = int(batch["n_chunks"][i])
                if expected.get(video) == chunks_seen[video] and frames_per_video[video] > 0:
                    sink.mark_done(paths["done"], video, {"video": video, "frames": frames_per_video[video], "chunks": chunks_seen[video]})
            if time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                rate = frames_this_run / (last_log - t0)
                log(f"teacher: {len(expected)}/{len(todo)} videos, {frames_this_run} frames, {rate:.0f} frames/s")
    seconds = time.perf_counter() - t0
    log(f"teacher: {frames_this_run} frames in {seconds:.1f} s ({frames_this_run / max(seconds, 1e-9):.0f} frames/s)")

    selection = select_top(paths["store"], paths["selected"], cfg.select_top)
    log(f"selection: kept {selection['kept']} of {selection['total']} frames (score >= {selection['threshold']:.4f})")
    report = {
        "config": to_dict(cfg),
        "videos": {"total": len(refs), "done": len(sink.done_videos(paths["done"])), "processed_this_run": len(todo)},
        "frames_this_run": frames_this_run,
        "seconds": seconds,
        "frames_per_second": frames_this_run / max(seconds, 1e-9),
        "selection": selection,
        "skipped": [s.to_dict() for s in skipped],
        "store": paths["store"].uri,
        "selected_store": paths["selected"].uri,
    }
    if cfg.evaluate:
        report["metrics"] = evaluate_store(paths["store"], selection["threshold"])
    if paths["root"].is_local and selection["total"]:
        sheet = teacher_contact_sheet(paths["store"], selection["threshold"], paths["root"].path + "/contact_sheet.png")
        report["contact_sheet"] = str(sheet)
    paths["report"].write_json(report)
    return report

