"""Streaming any mask producer over a data set on Ray Data, resumably.

Both the VideoPCA teacher and a trained student (the teacher of generations >= 2) run the
same way, with ``decode: actor`` (the default):

    reader.videos() minus finished ones -> from_items (one row per video)
      -> map_batches(MaskActor subclass)  actor pool: decode, cut into chunks (chunks.py),
                                          masks + score + edge density, chunk written (sink.py)
      -> the driver iterates per-chunk summaries: progress, done markers, skipped inputs

The frames are decoded where they are used, so they never cross Ray: nothing but video
references and per-chunk summaries goes through the object store, and memory is flat whatever
the corpus size. With ``decode: tasks``, Ray tasks decode and cut (``flat_map(read_chunks)``)
and the chunks travel to the actors as Arrow IPC: for actors whose own time is precious (a
GPU actor that should not wait on decoding).

A subclass of :class:`MaskActor` only says how to turn a chunk's records into masks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from popdistill.data.readers import VideoRef, create_reader
from popdistill.data.schema import FrameRecord, Skipped
from popdistill.inference import sink
from popdistill.inference.chunks import chunk_records, iter_chunks, read_chunks
from popdistill.inference.config import DECODE_MODES, IMAGE_CODECS
from popdistill.progress import Progress
from popdistill.ray_env import keep_freed_memory
from popdistill.selection.scores import edge_densities, edge_density, scores_for_batch
from popdistill.storage import RunPath, safe_name

__all__ = ["MaskActor", "STEPS", "StreamResult", "stream_masks"]

# How the videos are cut into actor tasks: ~VIDEOS_PER_TASK videos a task at scale (a million
# frames: ~1,250 tasks, not 20,000), at least TASKS_PER_ACTOR tasks an actor on small corpora
# (short tasks: the actors finish together), at most TASKS_IN_FLIGHT queued on one actor.
VIDEOS_PER_TASK, TASKS_PER_ACTOR, TASKS_IN_FLIGHT = 16, 32, 2
# An actor sends its chunks' summaries (progress, done markers) at most this often, and at the
# end of each task.
SUMMARY_SECONDS = 1.0

# Where an actor's time goes, summed a chunk: reading and decoding its frames, the masks, the
# edge density, and the store (scores, table, Parquet file, PNG export)
STEPS = ("decode", "masks", "density", "store")
_SUMMARY_KEYS = ("video", "chunk", "last", "n_chunks", "n_frames", "skipped", "seconds",
                 *(f"{step}_seconds" for step in STEPS))


class MaskActor:
    """Ray Data callable class; writes the masks of every chunk it is given.

    With ``source`` (the reader's format, root and options, and the chunking) a row is a video
    reference: the actor decodes the video itself and yields a summary row per chunk, a block a
    second at most. Without, a row is a chunk (``Chunk.to_row``) decoded by a read task, and
    the summaries come back as one batch. A subclass gives ``masks(records)``; one that masks the same frames several
    ways (a population of students) overrides ``write`` and calls :meth:`write_masks` once per
    store.
    """

    teacher: str = ""

    def __init__(self, store: str, export_png: str | None, generation: int, source: dict | None = None,
                 image_codec: str = "source", density: bool = True):
        if image_codec not in IMAGE_CODECS:
            raise ValueError(f"image_codec: {image_codec!r} is not one of {', '.join(IMAGE_CODECS)}")
        keep_freed_memory()  # each chunk's arrays reuse the last one's pages
        self.image_codec = image_codec
        self.density = density
        self.store = RunPath.of(store)
        self.export = RunPath.of(export_png) if export_png else None
        self.generation = generation
        self.source = source
        self.reader = create_reader(source["fmt"], source["root"], **source["options"]) if source else None
        self.step_seconds = dict.fromkeys(STEPS, 0.0)

    def timed(self, step: str, since: float) -> float:
        """Adds the seconds since ``since`` to ``step`` (:data:`STEPS`); returns the time now."""
        now = time.perf_counter()
        self.step_seconds[step] += now - since
        return now

    def _summary(self, info: dict, n_frames: int, seconds: float) -> dict:
        """A chunk's summary row, with the step seconds since the last one."""
        steps = {f"{k}_seconds": v for k, v in self.step_seconds.items()}
        self.step_seconds = dict.fromkeys(STEPS, 0.0)
        return {**info, "n_frames": n_frames, "seconds": seconds, **steps}

    def masks(self, records: list[FrameRecord]) -> list[np.ndarray] | np.ndarray:
        raise NotImplementedError

    def write(self, row: dict, records: list[FrameRecord]) -> None:
        t0 = time.perf_counter()
        masks = self.masks(records)
        self.timed("masks", t0)
        self.write_masks(row, records, masks, self.store, self.export, self.teacher)

    def write_masks(self, row: dict, records: list[FrameRecord], masks, store: RunPath,
                    export: RunPath | None, teacher: str) -> None:
        """The chunk's frames with ``masks`` (and their scores) as one chunk of ``store``."""
        from popdistill.data.schema import encode_jpeg

        t0 = time.perf_counter()
        if self.density:  # here, where the frames are decoded: selection reads it
            _fill_densities(records)
        t0 = self.timed("density", t0)
        for r, m, s in zip(records, masks, scores_for_batch(masks)):  # an array, or a list of them
            r.mask, r.score = m, float(s)
            r.teacher, r.generation = teacher, self.generation
            if self.image_codec == "raw":
                r.encoded = r.image_codec = None
            elif self.image_codec == "jpeg" and r.encoded is None:
                r.encoded, r.image_codec = encode_jpeg(r.image), "jpeg"
        sink.write_chunk(store, str(row["video"]), int(row["chunk"]), records)
        if export is not None:
            sink.export_pngs(export, records)
        self.timed("store", t0)

    def __call__(self, batch: dict):
        if self.reader is not None:
            return self._decode_and_mask(batch)
        rows = []
        for i in range(len(batch["video"])):
            row = {k: batch[k][i] for k in batch}
            t0 = time.perf_counter()
            records = chunk_records(row)  # from the Arrow IPC a read task decoded
            self.timed("decode", t0)
            if records:
                self.write(row, records)
            info = {k: row[k] for k in ("video", "chunk", "last", "n_chunks", "skipped")}
            rows.append(self._summary(info, len(records), time.perf_counter() - t0))
        return _summaries(rows)

    def _decode_and_mask(self, batch: dict):
        """Each video of ``batch`` decoded here, chunk by chunk; a chunk's summary (one row)
        is yielded with the others of the last :data:`SUMMARY_SECONDS`, and the rest at the end:
        each yield is a block the driver's Ray Data handles, so one a chunk would cost more
        than small chunks' own work, while a long video still reports as it goes."""
        rows: list[dict] = []
        last = time.perf_counter()
        for ref in batch["ref"]:
            ref = VideoRef.from_dict(json.loads(str(ref)))
            t0 = time.perf_counter()
            for chunk in iter_chunks(self.reader, ref, self.source["chunk_frames"], self.source["min_frames"]):
                self.timed("decode", t0)  # the chunk is read and decoded as it is asked for
                if chunk.records:
                    self.write(chunk.info(), chunk.records)
                rows.append(self._summary(chunk.info(), len(chunk.records), time.perf_counter() - t0))
                t0 = time.perf_counter()
                if t0 - last >= SUMMARY_SECONDS:
                    yield _summaries(rows)
                    rows, last = [], t0
        if rows:
            yield _summaries(rows)


def _fill_densities(records: list[FrameRecord]) -> None:
    """Each record's edge density, where it has none: one pass over the chunk's frames."""
    todo = [r for r in records if r.density is None]
    if not todo:
        return
    if len({r.image.shape for r in todo}) == 1:
        values = edge_densities(np.stack([r.image for r in todo]))
    else:  # frames of differing size
        values = [edge_density(r.image) for r in todo]
    for r, v in zip(todo, values):
        r.density = float(v)


def _summaries(rows: list[dict]) -> dict:
    """Chunk summaries as one block: a column a key of :data:`_SUMMARY_KEYS`."""
    return {k: np.asarray([row[k] for row in rows]) for k in _SUMMARY_KEYS}


@dataclass
class StreamResult:
    videos_total: int
    videos_done: int
    processed_this_run: int
    frames: int
    seconds: float
    actor_seconds: float
    skipped: list[Skipped] = field(default_factory=list)
    # the actors' seconds by step (:data:`STEPS`), summed over every chunk of this run
    step_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def steps_line(self) -> str:
        """The actors' time a frame by step: ``ms a frame: decode 0.48, masks 0.50, ...``;
        ``other``: the rest of their chunks' time (summaries, Ray's share inside the actor)."""
        n = max(self.frames, 1)
        other = self.actor_seconds - sum(self.step_seconds.values())
        steps = ", ".join(f"{k} {v / n * 1e3:.2f}" for k, v in self.step_seconds.items())
        return f"ms a frame: {steps}, other {other / n * 1e3:.2f}"


def stream_masks(
    *,
    fmt: str,
    data: str,
    reader_options: dict[str, Any],
    store: RunPath | list[RunPath],
    done: RunPath | list[RunPath],
    actor: type[MaskActor],
    actor_kwargs: dict[str, Any],
    chunk_frames: int,
    min_frames: int,
    actors: int,
    actor_cpus: float,
    read_cpus: float,
    actor_gpus: float = 0.0,
    decode: str = "actor",
    label: str = "masks",
    log=print,
) -> StreamResult:
    """Run ``actor`` over every unfinished video of the data set; resumable by done markers.

    ``store`` and ``done`` may be lists (an actor that writes several stores: each gets its
    own done markers, and a video is redone until every store has it); the actor is given
    ``store`` (or ``stores``, for lists) besides ``actor_kwargs``. ``decode``: where the frames
    are decoded (:data:`DECODE_MODES`, the module docstring)."""
    import ray
    from ray.data import ActorPoolStrategy

    many = isinstance(store, list)
    stores, dones = (store, done) if many else ([store], [done])
    reader = create_reader(fmt, data, **reader_options)
    refs = reader.videos()
    skipped: list[Skipped] = list(reader.skipped)
    finished = set.intersection(*(sink.done_videos(d.mkdir()) for d in dones))
    todo = [r for r in refs if safe_name(r.video) not in finished]
    log(f"{label}: {len(refs)} videos in {data} ({fmt}); {len(refs) - len(todo)} already done, {len(todo)} to do")
    for r in todo:
        for s in stores:
            sink.clear_partial(s, r.video)
    target = {"stores": [s.uri for s in stores]} if many else {"store": store.uri}

    t0 = time.perf_counter()
    frames, actor_seconds, step_seconds = 0, 0.0, dict.fromkeys(STEPS, 0.0)
    if decode not in DECODE_MODES:
        raise ValueError(f"decode: {decode!r} is not one of {', '.join(DECODE_MODES)}")
    if todo:
        # one video a task cost a quarter of the rate at a million frames (docs/benchmarks.md)
        blocks = min(len(todo), max(TASKS_PER_ACTOR * actors, len(todo) // VIDEOS_PER_TASK))
        ds = ray.data.from_items([{"ref": json.dumps(r.to_dict())} for r in todo], override_num_blocks=blocks)
        source = dict(fmt=fmt, root=data, options=reader_options, chunk_frames=chunk_frames, min_frames=min_frames)
        if decode == "tasks":
            ds = ds.flat_map(read_chunks, fn_kwargs=source, num_cpus=read_cpus)
        else:
            target["source"] = source
        ds = ds.map_batches(
            actor,
            fn_constructor_kwargs=dict(**target, **actor_kwargs),
            batch_size=1,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=TASKS_IN_FLIGHT),
            num_cpus=actor_cpus,
            num_gpus=actor_gpus or None,
        )
        # video -> {chunk: frames}, and its chunk count once its last chunk is in. By chunk
        # index: a chunk summarised twice (a task retried after its actor died) counts once
        seen: dict[str, dict[int, int]] = {}
        expected: dict[str, int] = {}
        marked: set[str] = set()
        bar = Progress(len(todo), label, "videos", log)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["video"])):
                video, chunk, n = str(batch["video"][i]), int(batch["chunk"][i]), int(batch["n_frames"][i])
                if video in marked:  # a late copy of a finished video's chunk
                    continue
                chunks = seen.setdefault(video, {})
                if chunk not in chunks:
                    frames += n
                    skipped += [Skipped(**s) for s in json.loads(str(batch["skipped"][i]))]
                chunks[chunk] = n
                actor_seconds += float(batch["seconds"][i])
                for step in STEPS:
                    step_seconds[step] += float(batch[f"{step}_seconds"][i])
                if bool(batch["last"][i]):
                    expected[video] = int(batch["n_chunks"][i])
                total = sum(chunks.values())
                if len(chunks) == expected.get(video, -1) and total > 0:
                    marked.add(video)
                    del seen[video], expected[video]  # the driver keeps O(videos) small state
                    for d in dones:
                        sink.mark_done(d, video, {"video": video, "frames": total, "chunks": len(chunks)})
                    bar.update(1, frames=frames)
        bar.close()
    result = StreamResult(
        videos_total=len(refs),
        videos_done=len(set.intersection(*(sink.done_videos(d) for d in dones))),
        processed_this_run=len(todo),
        frames=frames,
        seconds=time.perf_counter() - t0,
        actor_seconds=actor_seconds,
        skipped=skipped,
        step_seconds=step_seconds,
    )
    log(f"{label}: {frames} frames in {result.seconds:.1f} s ({result.frames_per_second:.0f} frames/s)")
    if frames:
        log(f"{label}: the actors' time, {result.steps_line()}")
    return result
