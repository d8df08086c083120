"""The one frame-record schema used from decode to pseudo-label store.

A :class:`FrameRecord` is the in-memory form (numpy arrays); :data:`FRAME_SCHEMA` is its Arrow
form, never pickled. A frame read from an image file unchanged is stored as that file's own
bytes (``image_codec`` says which format: ``jpeg``, ``png``, ...), so a store of JPEG frames is
about as large as the JPEGs (3 KB a 128 px frame instead of 38 KB raw) and costs no encoding; a
frame decoded from a video, or resized, is stored raw (``image_codec`` null: H x W x 3 bytes),
or as JPEG when the teacher's ``image_codec`` says so. :func:`decode_image` reads either.
Masks are raw bytes plus their shape.

Columns added by later stages (teacher mask, score, provenance) are optional: a store written
by the teacher has them, a store written by a reader does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

__all__ = [
    "FRAME_SCHEMA",
    "FrameRecord",
    "Skipped",
    "records_to_table",
    "table_to_records",
    "frame_key",
    "conform",
    "decode_image",
    "with_columns",
    "read_frame_columns",
    "encode_jpeg",
    "encode_soft_mask",
    "quantise_soft_masks",
]

FRAME_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("video", pa.string(), nullable=False),
        pa.field("frame", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        # H x W x 3 uint8 RGB, row-major; or, with image_codec, an image file's bytes.
        pa.field("image", pa.binary(), nullable=False),
        # H x W uint8 in {0, 1}; null when the frame has no mask annotation.
        pa.field("gt_mask", pa.binary()),
        # N x 4 float32 [x0, y0, x1, y1] in pixels (x1, y1 exclusive); null when not annotated.
        pa.field("gt_boxes", pa.list_(pa.list_(pa.float32(), 4))),
        pa.field("source", pa.string(), nullable=False),
        # Soft mask written by a teacher: mask_h x mask_w uint8, value / 255 in [0, 1].
        pa.field("mask", pa.binary()),
        pa.field("mask_height", pa.int32()),
        pa.field("mask_width", pa.int32()),
        pa.field("score", pa.float32()),
        # Which teacher produced `mask` ("videopca", "student:unet", ...) and in which generation.
        pa.field("teacher", pa.string()),
        pa.field("generation", pa.int32()),
        # The frame's edge density (selection strata), computed where the frame was decoded, so
        # that selection reads scalars only; null in stores written before it existed.
        pa.field("density", pa.float64()),
        # null: `image` is raw RGB; else the format of the image file whose bytes it holds.
        pa.field("image_codec", pa.string()),
    ]
)


@dataclass
class Skipped:
    """An input a reader or a stage could not use, with the reason; every report lists these."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class FrameRecord:
    dataset: str
    video: str
    frame: int
    image: np.ndarray  # H x W x 3 uint8
    source: str
    gt_mask: np.ndarray | None = None  # H x W bool
    gt_boxes: np.ndarray | None = None  # N x 4 float32, [x0, y0, x1, y1]
    mask: np.ndarray | None = None  # h x w float32 in [0, 1]
    score: float | None = None
    teacher: str | None = None
    generation: int | None = None
    density: float | None = None
    # the bytes of the image file ``image`` was decoded from, unchanged, and their format
    encoded: bytes | None = None
    image_codec: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        return frame_key(self.dataset, self.video, self.frame)

    def to_row(self) -> dict:
        """The store row, as :func:`records_to_table` stores it."""
        row = {name: get(self) for name, get in _PLAIN_COLUMNS.items()}
        row["gt_mask"] = row["gt_boxes"] = row["mask"] = None
        if self.gt_mask is not None:
            row["gt_mask"] = encode_gt_mask(self.gt_mask).tobytes()
        if self.gt_boxes is not None:
            row["gt_boxes"] = np.asarray(self.gt_boxes, dtype=np.float32).reshape(-1, 4).tolist()
        if self.mask is not None:
            row["mask"] = encode_soft_mask(self.mask)
        return row

    @classmethod
    def from_row(cls, row: dict) -> FrameRecord:
        h, w = int(row["height"]), int(row["width"])
        codec = row.get("image_codec")
        image = decode_image(row["image"], h, w, codec)
        gt_mask = None
        if row.get("gt_mask") is not None:
            gt_mask = np.frombuffer(row["gt_mask"], dtype=np.uint8).reshape(h, w).astype(bool)
        gt_boxes = None
        if row.get("gt_boxes") is not None:
            gt_boxes = np.asarray(row["gt_boxes"], dtype=np.float32).reshape(-1, 4)
        mask = None
        if row.get("mask") is not None:
            mask = decode_soft_mask(row["mask"], row["mask_height"], row["mask_width"])
        return cls(
            dataset=row["dataset"],
            video=row["video"],
            frame=int(row["frame"]),
            image=image,
            source=row["source"],
            gt_mask=gt_mask,
            gt_boxes=gt_boxes,
            mask=mask,
            score=row.get("score"),
            teacher=row.get("teacher"),
            generation=row.get("generation"),
            density=row.get("density"),
            encoded=row["image"] if codec else None,
            image_codec=codec,
        )


def _optional(value, kind):
    return None if value is None else kind(value)


# Every column but the array ones (gt_mask, gt_boxes, mask): its value from a record.
_PLAIN_COLUMNS = {
    "dataset": lambda r: r.dataset,
    "video": lambda r: r.video,
    "frame": lambda r: int(r.frame),
    "height": lambda r: int(r.image.shape[0]),
    "width": lambda r: int(r.image.shape[1]),
    "image": lambda r: r.encoded if r.encoded is not None else np.ascontiguousarray(r.image, dtype=np.uint8).tobytes(),
    "source": lambda r: r.source,
    "mask_height": lambda r: None if r.mask is None else int(r.mask.shape[0]),
    "mask_width": lambda r: None if r.mask is None else int(r.mask.shape[1]),
    "score": lambda r: _optional(r.score, float),
    "teacher": lambda r: r.teacher,
    "generation": lambda r: r.generation,
    "density": lambda r: _optional(r.density, float),
    "image_codec": lambda r: r.image_codec if r.encoded is not None else None,
}


def frame_key(dataset: str, video: str, frame: int) -> tuple[str, str, int]:
    return (dataset, video, int(frame))


def decode_image(data: bytes, height: int, width: int, codec: str | None = None) -> np.ndarray:
    """A stored ``image``: H x W x 3 uint8 RGB from raw bytes (``codec`` None) or from an image
    file's bytes (decoded as the readers decode files: Pillow, converted to RGB)."""
    if not codec:
        return np.frombuffer(data, dtype=np.uint8).reshape(int(height), int(width), 3)
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        image = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if image.shape[:2] != (int(height), int(width)):
        raise ValueError(f"stored {codec} image is {image.shape[1]}x{image.shape[0]}, "
                         f"its row says {width}x{height}")
    return image


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """An RGB frame as JPEG bytes (``image_codec: jpeg`` for frames that have no file)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def encode_soft_mask(mask: np.ndarray) -> bytes:
    """Quantise a soft mask in [0, 1] to uint8 bytes (the store's and the PNG export's form)."""
    return quantise_soft_masks(mask).tobytes()


def quantise_soft_masks(masks: np.ndarray) -> np.ndarray:
    """Soft masks in [0, 1] (any shape, a stack or one) as uint8: ``rint(mask * 255)``, clipped."""
    q = np.multiply(masks, np.float32(255), dtype=np.float32)
    np.rint(q, out=q)
    np.clip(q, 0, 255, out=q)
    return q.astype(np.uint8)


def encode_gt_mask(mask: np.ndarray) -> np.ndarray:
    """An annotation (bool or {0, 1}, any shape) as the store's uint8 {0, 1}."""
    return np.asarray(mask).astype(np.uint8, copy=False)


def decode_soft_mask(data: bytes, height: int, width: int) -> np.ndarray:
    q = np.frombuffer(data, dtype=np.uint8).reshape(int(height), int(width))
    return q.astype(np.float32) / 255.0


def records_to_table(records: Iterable[FrameRecord]) -> pa.Table:
    """``records`` as one table in :data:`FRAME_SCHEMA`, built column by column: the boxes from
    one stacked float32 array, the masks (a chunk's are one size) quantised as one stack into
    one buffer: a fraction of the time of Arrow's row-wise ``from_pylist`` (docs/benchmarks.md)."""
    records = list(records)
    boxes = [None if r.gt_boxes is None else np.asarray(r.gt_boxes, np.float32).reshape(-1, 4) for r in records]
    columns = {name: pa.array([get(r) for r in records], type=FRAME_SCHEMA.field(name).type)
               for name, get in _PLAIN_COLUMNS.items()}
    columns["gt_boxes"] = _boxes_column(boxes)
    columns["gt_mask"] = _stacked_bytes_column([r.gt_mask for r in records], encode_gt_mask)
    columns["mask"] = _stacked_bytes_column([r.mask for r in records], quantise_soft_masks)
    return pa.Table.from_arrays([columns[n] for n in FRAME_SCHEMA.names], schema=FRAME_SCHEMA)


def _stacked_bytes_column(arrays: list[np.ndarray | None], encode) -> pa.Array:
    """A binary column of ``encode(array)``'s bytes (null for None). Arrays all present and of
    one shape are encoded as one stack, and the column is that stack's buffer with fixed-step
    offsets; otherwise one by one."""
    present = [a for a in arrays if a is not None]
    if present and len(present) == len(arrays) and len({a.shape for a in present}) == 1:
        data = np.ascontiguousarray(encode(np.stack(present)))
        step = data.nbytes // len(data)
        if data.nbytes < 2**31:  # int32 offsets
            offsets = np.arange(len(data) + 1, dtype=np.int32) * np.int32(step)
            return pa.Array.from_buffers(pa.binary(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pa.array([None if a is None else encode(a).tobytes() for a in arrays], type=pa.binary())


def _boxes_column(boxes: list[np.ndarray | None]) -> pa.Array:
    """N x 4 float32 box arrays (or None) as the ``gt_boxes`` list<list<float32, 4>> column."""
    sizes = np.array([0 if b is None else len(b) for b in boxes], np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
    flat = np.concatenate([b.ravel() for b in boxes if b is not None] or [np.zeros(0, np.float32)])
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), 4)
    missing = pa.array([b is None for b in boxes])
    return pa.ListArray.from_arrays(offsets, inner, type=FRAME_SCHEMA.field("gt_boxes").type, mask=missing)


def conform(table: pa.Table) -> pa.Table:
    """``table`` in :data:`FRAME_SCHEMA`: columns in its order, optional ones it lacks (a store
    written before they existed) as nulls."""
    if table.schema.equals(FRAME_SCHEMA):
        return table
    return pa.Table.from_arrays(with_columns(table, FRAME_SCHEMA.names).columns, schema=FRAME_SCHEMA)


def with_columns(table: pa.Table, columns: list[str]) -> pa.Table:
    """``columns`` of ``table``, those it lacks (optional ones, from a store written before
    they existed) as nulls of their :data:`FRAME_SCHEMA` type."""
    return pa.table({c: table[c] if c in table.column_names
                     else pa.nulls(table.num_rows, FRAME_SCHEMA.field(c).type) for c in columns})


def read_frame_columns(path: str, columns: list[str], filesystem=None) -> pa.Table:
    """``columns`` of one store file, reading only those (:func:`with_columns` for the missing).

    One open of the file, its footer read once (``ParquetFile``, not ``read_table``'s dataset
    machinery): 0.17 ms for a chunk's scores instead of 0.85, which is most of a selection pass."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path, filesystem=filesystem) as f:
        names = set(f.schema_arrow.names)
        table = f.read(columns=[c for c in columns if c in names])
    return with_columns(table, columns)


def table_to_records(table: pa.Table) -> list[FrameRecord]:
    return [FrameRecord.from_row(row) for row in table.to_pylist()]
