"""Dataset readers: one registry, one file per on-disk format, all yielding FrameRecords.

A reader is cheap to construct from ``(root, **options)`` so that a Ray worker can rebuild it
from plain values. ``videos()`` lists the videos (no pixels decoded); ``read_video(ref)`` yields
that video's frames in order. Anything unusable (corrupt video, unreadable image, mask of the
wrong size, empty folder) is reported through ``on_skip`` with its path and reason and the
reader goes on with the rest: nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from popdistill.data.readers._images import load_label_png
from popdistill.data.schema import FrameRecord, Skipped
from popdistill.registry import Registry

__all__ = [
    "Reader",
    "VideoRef",
    "register_reader",
    "create_reader",
    "list_readers",
]

SkipFn = Callable[[Skipped], None]


@dataclass
class VideoRef:
    """One video (or image collection) of a data set; plain values only, so it crosses Ray."""

    video: str
    path: str
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VideoRef:
        return cls(video=d["video"], path=d["path"], meta=dict(d.get("meta") or {}))


class Reader:
    """Base class: subclasses implement ``list_videos`` and ``iter_frames``.

    Options every reader takes: ``repeat`` (list the corpus N times, for soak tests and
    benchmarks), ``dataset_name`` (the ``dataset`` field of the records, where supported).
    """

    name: str = ""

    def __init__(self, root: str | Path, **options):
        self.root = Path(root)
        self.options = options
        self.skipped: list[Skipped] = []

    # -- subclass API -------------------------------------------------------------------
    def list_videos(self) -> list[VideoRef]:
        raise NotImplementedError

    def iter_frames(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        raise NotImplementedError

    # -- public API ---------------------------------------------------------------------
    def skip(self, path: str | Path, reason: str, on_skip: SkipFn | None = None) -> None:
        item = Skipped(str(path), reason)
        (on_skip or self.skipped.append)(item)

    def labels_for(self, ann: Path, image: np.ndarray, on_skip: SkipFn) -> np.ndarray | None:
        """The label image of an annotation file, or None (reported) when it cannot be read
        or its size differs from its frame's; the frame itself is kept either way."""
        if not ann.exists():
            return None
        try:
            labels = load_label_png(ann)
        except Exception as exc:  # noqa: BLE001
            self.skip(ann, f"unreadable annotation: {exc}", on_skip)
            return None
        if labels.shape != image.shape[:2]:
            self.skip(
                ann,
                f"mask size {labels.shape[1]}x{labels.shape[0]} differs from frame size "
                f"{image.shape[1]}x{image.shape[0]}; frame kept without ground truth",
                on_skip,
            )
            return None
        return labels

    def videos(self) -> list[VideoRef]:
        if not self.root.exists():
            raise FileNotFoundError(f"{self.name} data set root does not exist: {self.root}")
        refs = self.list_videos()
        if not refs:
            self.skip(self.root, f"no videos found in the {self.name} layout")
        repeat = int(self.options.get("repeat", 1))
        if repeat > 1:
            # Soak and benchmark runs: the corpus N times, each copy a video of its own.
            refs = [
                VideoRef(f"{r.video}~{i}", r.path, {**r.meta, "repeat_of": r.video})
                for i in range(repeat)
                for r in refs
            ]
        return refs

    def read_video(self, ref: VideoRef, on_skip: SkipFn | None = None) -> Iterator[FrameRecord]:
        """Yield the frames of one video; a failure mid-video is reported, never raised."""
        on_skip = on_skip or self.skipped.append
        original = ref.meta.get("repeat_of")
        source = VideoRef(original, ref.path, ref.meta) if original else ref
        try:
            for record in self.iter_frames(source, on_skip):
                if original:
                    record.video = ref.video
                yield record
        except Exception as exc:  # noqa: BLE001 - any decode failure is reported by path
            self.skip(ref.path, f"{type(exc).__name__}: {exc}", on_skip)

    def __iter__(self) -> Iterator[FrameRecord]:
        for ref in self.videos():
            yield from self.read_video(ref)


READERS: Registry[type[Reader]] = Registry("reader", "data set format",
                                           builtin="popdistill.data.readers")


def register_reader(name: str):
    """Class decorator adding a reader to the registry under ``name``."""

    def deco(cls: type[Reader]) -> type[Reader]:
        cls.name = name
        return READERS.register(name)(cls)

    return deco


def list_readers(pattern: str = "*") -> list[str]:
    return READERS.names(pattern)


def create_reader(name: str, root: str | Path, **options) -> Reader:
    return READERS.get(name)(root, **options)
