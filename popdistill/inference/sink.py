"""Where the teacher's output goes: the pseudo-label store, done markers, PNG export.

Store layout under a run directory (local path or bucket URI)::

    <store>/<video>/chunk-00000.parquet   FrameRecords with mask, score, teacher, generation
    <done>/<video>.json                   written once every chunk of the video is stored

A video without its done marker is unfinished: a resumed run deletes its partial chunks and
does it again; a video with one is never redone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from popdistill.data.schema import FrameRecord, records_to_table
from popdistill.evaluate.metrics import resize_mask
from popdistill.storage import RunPath, safe_name

__all__ = ["write_chunk", "frame_stem", "export_pngs", "done_videos", "mark_done", "clear_partial"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def write_chunk(store: RunPath, video: str, chunk: int, records: list[FrameRecord]) -> str:
    target = store / safe_name(video) / f"chunk-{chunk:05d}.parquet"
    target.write_table(records_to_table(records))
    return target.uri


def frame_stem(record: FrameRecord) -> str:
    """The frame's own file name without suffix (image data sets) or its 5-digit index."""
    p = Path(record.source)
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES else f"{record.frame:05d}"


def export_pngs(root: RunPath, records: list[FrameRecord]) -> None:
    """Each soft mask as an 8-bit PNG at its frame's resolution: ``root/<video>/<stem>.png``."""
    for r in records:
        h, w = r.image.shape[:2]
        q = np.rint(resize_mask(r.mask, (h, w)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(q).save(buf, format="PNG")
        (root / safe_name(r.video) / f"{frame_stem(r)}.png").write_bytes(buf.getvalue())


def done_videos(done: RunPath) -> set[str]:
    return {n[: -len(".json")] for n in done.listdir() if n.endswith(".json")}


def mark_done(done: RunPath, video: str, info: dict) -> None:
    (done / f"{safe_name(video)}.json").write_json(info)


def clear_partial(store: RunPath, video: str) -> None:
    (store / safe_name(video)).delete()
