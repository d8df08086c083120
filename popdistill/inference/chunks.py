"""Work units for the teacher: a video's frames cut into chunks.

:func:`iter_chunks` cuts one video into :class:`Chunk` s. Where the masking actor decodes the
video itself (the default), chunks never leave it; where read tasks decode (``decode:
tasks``), a chunk crosses Ray as a plain row (:meth:`Chunk.to_row`) that carries its frames
as an Arrow IPC stream of FrameRecords (no pickling, any frame size). Either way the driver
gets the bookkeeping it needs to know when a video is finished: the chunk index and, on the
last chunk, how many chunks the video had. Inputs the reader could not use travel with the
chunk as ``skipped`` (JSON), so they reach the run's report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from popdistill.data.readers import Reader, VideoRef, create_reader
from popdistill.data.schema import FrameRecord, Skipped, records_to_table, table_to_records

__all__ = ["Chunk", "iter_chunks", "read_chunks", "table_to_ipc", "ipc_to_table", "chunk_records"]


def table_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ipc_to_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def chunk_records(row: dict) -> list[FrameRecord]:
    return table_to_records(ipc_to_table(row["ipc"]))


@dataclass
class Chunk:
    """Frames ``index * chunk_frames ...`` of one video, and the inputs skipped on the way."""

    video: str
    index: int
    records: list[FrameRecord]
    skipped: list[Skipped]
    last: bool

    def info(self) -> dict:
        """The bookkeeping the driver needs (no frames)."""
        return {
            "video": self.video,
            "chunk": self.index,
            "last": self.last,
            "n_chunks": self.index + 1 if self.last else -1,
            "skipped": json.dumps([s.to_dict() for s in self.skipped]),
        }

    def to_row(self) -> dict:
        """The chunk as a row that crosses Ray: :meth:`info`, and its frames as Arrow IPC."""
        return {**self.info(), "n_frames": len(self.records),
                "ipc": table_to_ipc(records_to_table(self.records))}


def iter_chunks(
    reader: Reader, ref: VideoRef, chunk_frames: int, min_frames: int
) -> Iterator[Chunk]:
    """Yield the chunks of one video, streaming (at most two chunks held at a time).

    A tail shorter than ``min_frames`` is merged into the chunk before it. A whole video
    shorter than ``min_frames`` yields one chunk with no frames and a skip reason, so the
    driver still hears of it.
    """
    if chunk_frames < min_frames:
        raise ValueError(f"chunk_frames ({chunk_frames}) must be >= min_frames ({min_frames})")
    skipped: list[Skipped] = []
    pending: list[FrameRecord] | None = None  # a full chunk waiting to know if it is the last
    current: list[FrameRecord] = []
    index = 0
    for record in reader.read_video(ref, on_skip=skipped.append):
        current.append(record)
        if len(current) == chunk_frames:
            if pending is not None:
                yield Chunk(ref.video, index, pending, skipped, last=False)
                skipped = []
                index += 1
            pending, current = current, []
    if pending is not None and len(current) < min_frames:
        pending, current = pending + current, []
    if pending is not None and current:
        yield Chunk(ref.video, index, pending, skipped, last=False)
        skipped = []
        index += 1
        pending, current = current, []
    final = pending if pending is not None else current
    if len(final) < min_frames:
        if final or not skipped:  # an unreadable video was already reported by the reader
            skipped.append(
                Skipped(ref.path, f"video has {len(final)} readable frame(s); at least {min_frames} needed")
            )
        final = []
    yield Chunk(ref.video, index, final, skipped, last=True)


def read_chunks(row: dict, fmt: str, root: str, options: dict, chunk_frames: int, min_frames: int):
    """Ray Data ``flat_map`` step (``decode: tasks``): a row ``{"ref": json}`` -> that video's
    chunk rows.

    Lives here, away from torch, so read tasks stay small (see the package docstring)."""
    reader = create_reader(fmt, root, **options)
    ref = VideoRef.from_dict(json.loads(row["ref"]))
    for chunk in iter_chunks(reader, ref, chunk_frames, min_frames):
        yield chunk.to_row()
