"""Any folder of videos: video files decoded with PyAV, and sub-folders of frame images.

Every video file under the root (searched recursively; hidden names are ignored) (``.mp4 .avi .mkv .webm .mov .m4v``) is one video, and every
folder that holds image files is one video whose frames are those images in natural order
(``2.jpg`` before ``10.jpg``). Frame numbers: a video file's come from frame timestamps
(so frames lost in a corrupt stretch leave gaps); an image folder's are positions in that
order. There is no ground truth. Video ids are paths relative to the
root, without the suffix for video files (with it when two names would clash). The root may
also be a single video file.

Nothing is dropped silently: a file that is neither a video nor an image, an empty folder, a
video that cannot be opened, an image that cannot be decoded, and a video that ends early (its
decoded frames are kept) are each reported with their path and reason.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from popdistill.data.readers._images import IMAGE_SUFFIXES, load_rgb_file
from popdistill.data.readers._registry import Reader, SkipFn, VideoRef, register_reader
from popdistill.data.schema import FrameRecord
from popdistill.data.video_decode import VideoDecodeError, decode_video_indexed, parse_size

__all__ = ["VIDEO_SUFFIXES", "VideoFolderReader", "natural_key"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


def natural_key(path: Path) -> list:
    """Sort key comparing runs of digits as numbers (``frame2`` before ``frame10``)."""
    parts = re.split(r"(\d+)", path.name)  # text, digits, text, ...: odd parts are digits
    return [int(t) if i % 2 else t.lower() for i, t in enumerate(parts)]


def _resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or image.shape[:2] == size:
        return image
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


@register_reader("video_folder")
class VideoFolderReader(Reader):
    """Options: ``size`` (int, (height, width) or text "H" / "HxW": resize every frame), ``batch`` (decode batch,
    default 64), ``thread_type`` (PyAV decoder threading), ``dataset_name`` (default
    "video_folder")."""

    def _size(self) -> tuple[int, int] | None:
        return parse_size(self.options.get("size"))

    def _walk(self, folder: Path, refs: list[VideoRef], seen: set[Path] | None = None) -> None:
        seen = set() if seen is None else seen
        real = folder.resolve()
        if real in seen:  # a symlink back to a folder already listed
            self.skip(folder, f"symlink loop: {real} is listed already")
            return
        seen.add(real)
        entries = []
        for p in sorted(folder.iterdir(), key=natural_key):
            try:
                p.name.encode("utf-8")
            except UnicodeEncodeError:  # undecodable bytes: ids and stores are UTF-8 text
                shown = os.fsencode(p.name).decode("utf-8", "backslashreplace")
                self.skip(str(p.parent / shown), "file name is not valid UTF-8; rename it to read it")
                continue
            entries.append(p)
        files = [p for p in entries if p.is_file() and not p.name.startswith(".")]
        dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        for p in entries:
            if p.is_symlink() and not p.exists():
                self.skip(p, "broken or looping symlink")
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
        for p in files:
            if p.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                self.skip(p, "not a video or image file")
        if not files and not dirs:
            self.skip(folder, "empty folder: no videos or frame images")
        if images:
            rel = folder.relative_to(self.root).as_posix()
            video = rel if rel != "." else folder.name
            refs.append(VideoRef(video=video, path=str(folder), meta={"kind": "frames"}))
        for p in videos:
            video = p.relative_to(self.root).with_suffix("").as_posix()
            refs.append(VideoRef(video=video, path=str(p), meta={"kind": "file"}))
        for d in dirs:
            self._walk(d, refs, seen)

    def list_videos(self) -> list[VideoRef]:
        if self.root.is_file():
            # A single video file given as the root.
            return [VideoRef(video=self.root.stem, path=str(self.root), meta={"kind": "file"})]
        refs: list[VideoRef] = []
        self._walk(self.root, refs)
        counts = Counter(ref.video for ref in refs)
        for ref in refs:
            if counts[ref.video] > 1 and ref.meta["kind"] == "file":
                ref.video = Path(ref.path).relative_to(self.root).as_posix()
        return refs

    def _record(self, ref: VideoRef, frame: int, image: np.ndarray, source: str,
                encoded: bytes | None = None, codec: str | None = None) -> FrameRecord:
        return FrameRecord(
            dataset=self.options.get("dataset_name", "video_folder"),
            video=ref.video,
            frame=frame,
            image=image,
            source=source,
            encoded=encoded,
            image_codec=codec,
        )

    def iter_frames(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        if ref.meta.get("kind") == "frames":
            yield from self._iter_images(ref, on_skip)
        else:
            yield from self._iter_file(ref, on_skip)

    def _iter_file(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        if Path(ref.path).stat().st_size == 0:
            self.skip(ref.path, "empty file (0 bytes)", on_skip)
            return
        kept = 0
        try:
            for numbers, batch in decode_video_indexed(
                ref.path,
                batch=int(self.options.get("batch", 64)),
                size=self._size(),
                thread_type=self.options.get("thread_type"),
            ):
                for number, image in zip(numbers, batch):
                    yield self._record(ref, int(number), image, ref.path)
                    kept += 1
        except VideoDecodeError as exc:
            note = f"; the {kept} decoded frames are kept" if kept else ""
            self.skip(ref.path, f"corrupt or truncated video: {exc}{note}", on_skip)

    def _iter_images(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        folder = Path(ref.path)
        paths = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=natural_key,
        )
        size = self._size()
        for index, path in enumerate(paths):
            try:
                image, encoded, codec = load_rgb_file(path)
            except Exception as exc:  # noqa: BLE001 - any decode failure is reported by path
                self.skip(path, f"unreadable image: {exc}", on_skip)
                continue
            if size is None:  # the file's own bytes are the stored frame
                yield self._record(ref, index, image, str(path), encoded, codec)
            else:
                yield self._record(ref, index, _resize(image, size), str(path))
