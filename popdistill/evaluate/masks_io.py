"""Reading soft-mask stores to evaluate: Parquet (the frame-record schema) or a PNG export.

- Parquet: one ``.parquet`` file or a directory of them (searched recursively) with the
  :data:`~popdistill.data.schema.FRAME_SCHEMA` columns; only ``video``, ``frame``, ``mask``,
  ``mask_height`` and ``mask_width`` are read, through ``pyarrow.dataset``. Rows whose
  ``mask`` is null are ignored; two masks for one (video, frame) are an error. Masks are
  loaded one video at a time (a filtered scan, cheap when the store is written video by
  video, as the teacher does) and the last video is cached.
- PNG: ``DIR/<video>/<frame file stem>.png``, 8-bit grey, value / 255. A frame is found by
  its file stem, or else by its frame number (``00042.png`` for frame 42).

``get`` returns ``None`` when the store has no mask for the frame and raises
:class:`MaskReadError` when the mask exists but cannot be decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from popdistill.data.schema import decode_soft_mask
from popdistill.errors import UserError

__all__ = ["MaskStore", "ParquetMaskStore", "PngMaskStore", "MaskReadError", "open_mask_store"]

MASK_COLUMNS = ["video", "frame", "mask", "mask_height", "mask_width"]


class MaskReadError(Exception):
    """A mask exists in the store but cannot be used; ``path`` names it."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class MaskStore:
    """Soft masks indexed by (video, frame)."""

    kind = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def get(self, video: str, frame: int, stem: str | None = None) -> np.ndarray | None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class ParquetMaskStore(MaskStore):
    kind = "parquet"

    def __init__(self, path: str | Path):
        super().__init__(path)
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        try:
            self._ds = ds.dataset(str(self.path), format="parquet")
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
            raise UserError(f"{self.path}: cannot open as a Parquet mask store: {exc}") from exc
        missing = [c for c in MASK_COLUMNS if c not in self._ds.schema.names]
        if missing:
            raise UserError(f"{self.path}: not a mask store, missing columns {', '.join(missing)}")
        self._valid = pc.field("mask").is_valid()
        index = self._ds.to_table(columns=["video", "frame"], filter=self._valid)
        counts = index.group_by(["video", "frame"]).aggregate([([], "count_all")])
        dup = counts.filter(pc.field("count_all") > 1)
        if dup.num_rows:
            row = dup.slice(0, 1).to_pylist()[0]
            raise UserError(
                f"{self.path}: {dup.num_rows} (video, frame) pairs have several masks, e.g. "
                f"video {row['video']!r} frame {row['frame']} ({row['count_all']} masks)"
            )
        self._n = index.num_rows
        self._videos = set(index.column("video").to_pylist())
        self._cache_video: str | None = None
        self._cache: dict[int, tuple[bytes, int, int]] = {}

    def __len__(self) -> int:
        return self._n

    def _load(self, video: str) -> None:
        import pyarrow.dataset as ds

        self._cache_video, self._cache = video, {}
        if video not in self._videos:
            return
        table = self._ds.to_table(
            columns=["frame", "mask", "mask_height", "mask_width"],
            filter=(ds.field("video") == video) & self._valid,
        )
        for row in table.to_pylist():
            self._cache[int(row["frame"])] = (row["mask"], row["mask_height"], row["mask_width"])

    def get(self, video: str, frame: int, stem: str | None = None) -> np.ndarray | None:
        if video != self._cache_video:
            self._load(video)
        item = self._cache.get(int(frame))
        if item is None:
            return None
        data, h, w = item
        where = f"{self.path} (video {video!r}, frame {frame})"
        if h is None or w is None or h <= 0 or w <= 0:
            raise MaskReadError(where, f"bad mask size {h}x{w}")
        if len(data) != h * w:
            raise MaskReadError(where, f"mask has {len(data)} bytes, expected {h}x{w} = {h * w}")
        return decode_soft_mask(data, h, w)


class PngMaskStore(MaskStore):
    kind = "png"

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._index: dict[str, tuple[dict[str, Path], dict[int, Path]]] = {}

    def _video(self, video: str) -> tuple[dict[str, Path], dict[int, Path]]:
        if video not in self._index:
            folder = self.path / video
            files = sorted(folder.glob("*.png")) if folder.is_dir() else []
            by_stem = {p.stem: p for p in files}
            by_number = {int(p.stem): p for p in files if p.stem.isdigit()}
            self._index[video] = (by_stem, by_number)
        return self._index[video]

    def __len__(self) -> int:
        return sum(1 for _ in self.path.glob("*/*.png"))

    def get(self, video: str, frame: int, stem: str | None = None) -> np.ndarray | None:
        by_stem, by_number = self._video(video)
        path = by_stem.get(stem) if stem is not None else None
        path = path or by_number.get(int(frame))
        if path is None:
            return None
        return read_mask_png(path)


def read_mask_png(path: str | Path) -> np.ndarray:
    """An 8-bit grey PNG as a float32 soft mask (value / 255); colour PNGs are converted."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "F", "P", "PA"):
                raise MaskReadError(str(path), f"not an 8-bit grey mask PNG (mode {im.mode})")
            grey = im if im.mode == "L" else im.convert("L")
            return np.asarray(grey, dtype=np.float32) / 255.0
    except MaskReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises several types
        raise MaskReadError(str(path), f"unreadable mask PNG: {exc}") from exc


def open_mask_store(path: str | Path) -> MaskStore:
    """Open a Parquet file, a folder of Parquet files, or a PNG export folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mask store not found: {path}")
    if path.is_file():
        if path.suffix.lower() == ".parquet":
            return ParquetMaskStore(path)
        raise UserError(f"{path}: a mask store file must be .parquet")
    if any(path.rglob("*.parquet")):
        return ParquetMaskStore(path)
    if any(path.glob("*/*.png")):
        return PngMaskStore(path)
    raise UserError(
        f"{path}: not a mask store (no .parquet files and no <video>/<frame>.png files)"
    )
