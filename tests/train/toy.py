"""Toy pseudo-label stores: a bright square on noise, its mask derivable from the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from popdistill.data.schema import FrameRecord, records_to_table


def square_frame(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image H x W x 3 uint8, mask H x W bool): dark noise with one bright square."""
    image = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    side = int(rng.integers(size // 4, size // 2 + 1))
    y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    mask = np.zeros((size, size), bool)
    mask[y : y + side, x : x + side] = True
    image[mask] = rng.integers(200, 256, size=(int(mask.sum()), 3), dtype=np.uint8)
    return image, mask


def square_records(
    n: int,
    size: int = 64,
    seed: int = 0,
    mask_size: int = 32,
    video: str = "toy",
    with_gt: bool = True,
) -> list[FrameRecord]:
    """``n`` frames; the teacher mask is the square at ``mask_size`` (nearest), gt at full size."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        image, mask = square_frame(rng, size)
        idx = (np.arange(mask_size) * size) // mask_size
        soft = mask[np.ix_(idx, idx)].astype(np.float32)
        records.append(
            FrameRecord(
                dataset="toy",
                video=video,
                frame=i,
                image=image,
                source=f"{video}/{i:05d}",
                gt_mask=mask if with_gt else None,
                mask=soft,
                score=float(soft.mean()),
                teacher="videopca",
                generation=1,
            )
        )
    return records


def write_store(root: Path, records: list[FrameRecord], files: int = 2) -> Path:
    """Write records as ``files`` Parquet chunks under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(records)), files)):
        pq.write_table(
            records_to_table([records[i] for i in part]), root / f"chunk-{k:05d}.parquet"
        )
    return root
