"""YouTube-Objects (Prest et al. 2012; v2.2 by Kalogeiton et al.): frames with ground-truth boxes.

``youtube_objects_v2_2`` reads::

    <class>/<8-digit>.jpg                       frames of all videos of a class, numbered
    Ranges/ranges_<class>.mat                   variable ``ranges``: 3 x n_shots
    GroundTruth/<class>/bb_gtTest_<class>.mat   variable ``bb_gtTest``: 1 x N struct
    GroundTruth/<class>/bb_gtTraining_<class>.mat  variable ``bb_gtTraining``, same form

Row 0 of ``ranges`` is each shot's first frame number, row 1 its last (inclusive) and row 2 the
id of the video it comes from; the frame numbers are the file numbers. Each element of the
ground-truth struct has ``im`` (the class name followed by the 8-digit frame number, e.g.
``aeroplane00000123``) and ``boxes`` (N x 4 [x0 y0 x1 y1] pixels, some negative). Confirmed in
public loaders: MATLAB ``bb_gtTraining(i).boxes`` and ``bb_gt(i).im(end-7:end)``; Python
``loadmat(f)['ranges']`` rows 0/1/2 expanded to ``range(start, end + 1)`` file numbers, and
``loadmat(f)['bb_gtTest'][0]`` elements unpacked as ``(id, boxes)`` with ``str(id[0])``.
Not confirmed, so read tolerantly: struct fields are taken by name when present and else by
position, a cell array works too, the frame number is the last run of digits of ``im``, an
n x 3 ``ranges`` is transposed, and ``GroundTruth/GroundTruth/<class>`` or ``Ranges/Ranges``
(as the archives may unpack) is accepted. Whether the boxes are 1-based with inclusive x1/y1
is not documented anywhere found; they are used as given (a one-pixel question).

One video per shot, id ``<class>_<shot>`` with the shot's 1-based column in ``ranges`` (4
digits); ``meta`` holds the class, the source video id, the frame range and the split ("test" /
"training") of its annotations. Frame = file number. An annotation of a frame that lies in no
shot is reported.

``youtube_objects_v1`` reads ``<class>/data/<video>/shots/<shot>/frameNNNN.jpg`` with boxes in
``frameNNNN.jpg_sticks.mat``: variable ``coor``, a cell array with one 1 x 4 box per object
(confirmed by the public loaders; the reference MATLAB code orders each box's corners with
min/max, done here too). One video per shot, id ``<class>_<video>_<shot>``; frame = the number
in the file name.

Boxes (both): corners ordered, negative values clamped to 0, x clipped to the width and y to
the height; the values are used as given otherwise (x1, y1 taken as exclusive). A box left
empty by this is dropped and reported. There are no masks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from popdistill.data.readers._images import list_images, load_rgb_file
from popdistill.data.readers._registry import Reader, SkipFn, VideoRef, register_reader
from popdistill.data.schema import FrameRecord

__all__ = ["YouTubeObjectsV1Reader", "YouTubeObjectsV22Reader", "clean_boxes", "read_gt_mat"]

Report = Callable[[str | Path, str], None]


# -- .mat helpers ------------------------------------------------------------------------


def _mat_var(path: Path, name: str) -> np.ndarray:
    data = loadmat(str(path))
    if name in data:
        return data[name]
    names = [k for k in data if not k.startswith("__")]
    if len(names) == 1:
        return data[names[0]]
    raise ValueError(f"no variable {name!r} (variables: {names})")


def _text(value) -> str:
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        return "".join(str(x) for x in arr.ravel())
    if arr.dtype == object and arr.size:
        return _text(arr.ravel()[0])
    raise ValueError(f"expected a string, got {arr.dtype} {arr.shape}")


def _frame_number(name: str) -> int:
    m = re.search(r"(\d+)\D*$", name)
    if m is None:
        raise ValueError(f"no frame number in {name!r}")
    return int(m.group(1))


def read_gt_mat(path: Path, name: str) -> dict[int, np.ndarray]:
    """Frame number -> N x 4 float64 boxes from a v2.2 ``bb_gt*`` file (struct or cell array)."""
    arr = _mat_var(path, name)
    if arr.dtype.names:
        fields = arr.dtype.names
        f_id = "im" if "im" in fields else fields[0]
        f_box = "boxes" if "boxes" in fields else fields[1]
        pairs = [(el[f_id], el[f_box]) for el in arr.ravel()]
    elif arr.dtype == object and 2 in arr.shape:
        cells = arr if arr.shape[-1] == 2 else arr.T
        pairs = [(row[0], row[1]) for row in cells.reshape(-1, 2)]
    else:
        raise ValueError(f"unexpected {name!r} of {arr.dtype} {arr.shape}")
    out: dict[int, np.ndarray] = {}
    for ident, boxes in pairs:
        out[_frame_number(_text(ident))] = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return out


def _read_ranges(path: Path) -> np.ndarray:
    """n_shots x 3 int64 (start, end, video id)."""
    arr = np.asarray(_mat_var(path, "ranges"), dtype=np.float64)
    if arr.ndim != 2 or 3 not in arr.shape:
        raise ValueError(f"'ranges' should be 3 x n_shots, got {arr.shape}")
    table = arr.T if arr.shape[0] == 3 else arr
    return np.rint(table).astype(np.int64)


def _read_sticks(path: Path) -> np.ndarray:
    arr = _mat_var(path, "coor")
    cells = arr.ravel() if arr.dtype == object else [arr]
    boxes = [np.asarray(c, dtype=np.float64).reshape(-1, 4) for c in cells if np.size(c)]
    return np.concatenate(boxes) if boxes else np.zeros((0, 4))


def clean_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Order corners, clamp to the image; returns (kept N x 4 float32, dropped empty boxes)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, x1 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y0, y1 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    out = np.stack(
        [np.clip(x0, 0, width), np.clip(y0, 0, height), np.clip(x1, 0, width), np.clip(y1, 0, height)],
        axis=1,
    )
    ok = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[ok].astype(np.float32), b[~ok]


def _pick_dir(standard: Path, nested: Path) -> Path:
    """``nested`` (the form an archive may unpack to) when it exists, else ``standard``."""
    return nested if nested.is_dir() else standard


class _YouTubeObjectsBase(Reader):
    """Frame decode + box cleaning shared by both versions."""

    def _frame(
        self, ref: VideoRef, path: Path, frame: int, boxes, box_src, on_skip: SkipFn
    ) -> FrameRecord | None:
        try:
            image, encoded, codec = load_rgb_file(path)
        except Exception as exc:  # noqa: BLE001 - any decode failure is reported by path
            self.skip(path, f"unreadable image: {exc}", on_skip)
            return None
        gt_boxes = None
        if boxes is not None:
            h, w = image.shape[:2]
            gt_boxes, dropped = clean_boxes(boxes, w, h)
            for b in dropped:
                self.skip(box_src, f"box {b.tolist()} of frame {frame} is empty inside the "
                          f"{w}x{h} image; dropped", on_skip)
        return FrameRecord(
            dataset=self.options.get("dataset_name", self.name),
            video=ref.video,
            frame=frame,
            image=image,
            source=str(path),
            gt_boxes=gt_boxes,
            encoded=encoded,
            image_codec=codec,
        )

    def _classes(self, found: list[str]) -> list[str]:
        wanted = self.options.get("classes")
        return [c for c in found if not wanted or c in wanted]


@register_reader("youtube_objects_v2_2")
class YouTubeObjectsV22Reader(_YouTubeObjectsBase):
    """Options: ``classes`` (list; default all with a ranges file), ``dataset_name``."""

    def __init__(self, root: str | Path, **options):
        super().__init__(root, **options)
        self._gt: dict[str, dict[int, tuple[np.ndarray, str, str]]] = {}

    def _ranges_dir(self) -> Path:
        return _pick_dir(self.root / "Ranges", self.root / "Ranges" / "Ranges")

    def _load_gt(self, cls: str, report: Report) -> dict[int, tuple[np.ndarray, str, str]]:
        """Frame number -> (boxes, split, source .mat) for one class; cached."""
        if cls in self._gt:
            return self._gt[cls]
        gt_dir = _pick_dir(
            self.root / "GroundTruth" / cls, self.root / "GroundTruth" / "GroundTruth" / cls
        )
        gt: dict[int, tuple[np.ndarray, str, str]] = {}
        for split, name in (("test", "bb_gtTest"), ("training", "bb_gtTraining")):
            path = gt_dir / f"{name}_{cls}.mat"
            if not path.exists():
                report(path, "missing ground-truth file; its frames are read without boxes")
                continue
            try:
                entries = read_gt_mat(path, name)
            except Exception as exc:  # noqa: BLE001
                report(path, f"unreadable ground-truth file: {exc}")
                continue
            for frame, boxes in entries.items():
                gt[frame] = (boxes, split, str(path))
        self._gt[cls] = gt
        return gt

    def list_videos(self) -> list[VideoRef]:
        ranges_dir = self._ranges_dir()
        if not ranges_dir.is_dir():
            raise FileNotFoundError(f"not a YouTube-Objects v2.2 layout (no Ranges/ folder): {self.root}")
        found = sorted(p.stem[len("ranges_"):] for p in ranges_dir.glob("ranges_*.mat"))
        refs = []
        for cls in self._classes(found):
            path = ranges_dir / f"ranges_{cls}.mat"
            if not (self.root / cls).is_dir():
                self.skip(self.root / cls, f"class folder missing (listed by {path.name})")
                continue
            try:
                table = _read_ranges(path)
            except Exception as exc:  # noqa: BLE001
                self.skip(path, f"unreadable ranges file: {exc}")
                continue
            gt = self._load_gt(cls, self.skip)
            covered: set[int] = set()
            for shot, (start, end, video) in enumerate(table, start=1):
                if end < start:
                    self.skip(path, f"shot {shot} ends ({end}) before it starts ({start})")
                    continue
                frames = range(int(start), int(end) + 1)
                covered.update(frames)
                splits = sorted({gt[f][1] for f in frames if f in gt})
                meta = {"class": cls, "source_video": int(video), "start": int(start),
                        "end": int(end), "split": "/".join(splits) or None}
                refs.append(VideoRef(video=f"{cls}_{shot:04d}", path=str(self.root / cls), meta=meta))
            for frame in sorted(set(gt) - covered):
                self.skip(gt[frame][2], f"annotated frame {frame} lies in no shot of {path.name}")
        return refs

    def iter_frames(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        cls = ref.meta["class"]
        # Ground-truth problems were reported by list_videos; a fresh reader reloads quietly.
        gt = self._load_gt(cls, lambda path, reason: None)
        for frame in range(int(ref.meta["start"]), int(ref.meta["end"]) + 1):
            path = self.root / cls / f"{frame:08d}.jpg"
            if not path.exists():
                self.skip(path, f"missing frame listed by ranges_{cls}.mat", on_skip)
                continue
            boxes, _, src = gt.get(frame, (None, None, None))
            record = self._frame(ref, path, frame, boxes, src, on_skip)
            if record is not None:
                yield record


@register_reader("youtube_objects_v1")
class YouTubeObjectsV1Reader(_YouTubeObjectsBase):
    """Options: ``classes`` (list; default every folder with a ``data/`` sub-folder),
    ``dataset_name``."""

    def list_videos(self) -> list[VideoRef]:
        found = sorted(p.name for p in self.root.iterdir() if (p / "data").is_dir())
        if not found:
            raise FileNotFoundError(f"not a YouTube-Objects v1 layout (no <class>/data/): {self.root}")
        refs = []
        for cls in self._classes(found):
            for video in sorted(p for p in (self.root / cls / "data").iterdir() if p.is_dir()):
                shots = video / "shots"
                if not shots.is_dir():
                    self.skip(video, "video folder without shots/")
                    continue
                for shot in sorted(p for p in shots.iterdir() if p.is_dir()):
                    meta = {"class": cls, "source_video": video.name, "shot": shot.name}
                    refs.append(VideoRef(f"{cls}_{video.name}_{shot.name}", str(shot), meta))
        return refs

    def iter_frames(self, ref: VideoRef, on_skip: SkipFn) -> Iterator[FrameRecord]:
        shot = Path(ref.path)
        images = list_images(shot)
        if not images:
            self.skip(shot, "empty shot folder: no frame images", on_skip)
            return
        sticks: dict[str, tuple[np.ndarray, Path]] = {}
        for path in sorted(shot.glob("*_sticks.mat")):
            image_name = path.name[: -len("_sticks.mat")]
            try:
                sticks[Path(image_name).stem] = (_read_sticks(path), path)
            except Exception as exc:  # noqa: BLE001
                self.skip(path, f"unreadable sticks file: {exc}", on_skip)
        by_stem = {p.stem for p in images}
        for stem in sorted(set(sticks) - by_stem):
            self.skip(sticks[stem][1], "sticks file without its frame image", on_skip)
        for index, path in enumerate(images):
            digits = re.sub(r"\D", "", path.stem)
            frame = int(digits) if digits else index
            boxes, src = sticks.get(path.stem, (None, None))
            record = self._frame(ref, path, frame, boxes, src, on_skip)
            if record is not None:
                yield record
