"""Builders of tiny data sets in each reader's exact on-disk format, with known contents.

Every builder writes under a given root and returns a dict of what the reader must find. Frames
are flat colours that encode their index (``colour(i)``), so order survives JPEG / H.264.
Each builder also plants the bad inputs that the reader must report and get past.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from PIL import Image
from scipy.io import savemat


def colour(i: int) -> tuple[int, int, int]:
    return ((20 + 7 * i) % 256, (230 - 6 * i) % 256, (60 + 11 * i) % 256)


def flat(i: int, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour(i), np.uint8), (height, width, 3)).copy()


def save_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(image).save(path, **options)
    return path


def write_garbage(path: Path, size: int = 300) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_video(
    path: Path,
    n: int,
    height: int,
    width: int,
    codec: str = "libx264",
    faststart: bool = False,
    moving: bool = False,
) -> np.ndarray:
    """Encode ``n`` frames (flat colours, or a red square over a moving colour ramp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = np.stack([4 * xx, 6 * yy, 2 * (xx + yy)], axis=-1) % 256
    frames = []
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            image = flat(i, height, width)
            if moving:
                image = np.roll(ramp, 2 * i, axis=1).astype(np.uint8)
                image[4:12, i % (width - 8) : i % (width - 8) + 8] = (250, 30, 30)
            frames.append(image)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.stack(frames)


# -- DAVIS -------------------------------------------------------------------------------


def build_davis(root: Path) -> dict:
    """seqA: 3 frames 24x32, annotations with objects 1 and 2 on frames 0 and 2 (none on 1).
    seqB: frame 1 unreadable, frame 2's annotation is 10x10. seqC: empty."""
    res = root / "JPEGImages" / "480p"
    ann = root / "Annotations" / "480p"
    for i in range(3):
        save_image(res / "seqA" / f"{i:05d}.jpg", flat(i, 24, 32))
    labels = np.zeros((24, 32), np.uint8)
    labels[2:6, 3:10] = 1  # object 1: x 3..9, y 2..5
    labels[10:20, 20:31] = 2  # object 2: x 20..30, y 10..19
    for i in (0, 2):
        im = Image.frombytes("P", (32, 24), labels.tobytes())
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
        ann.joinpath("seqA").mkdir(parents=True, exist_ok=True)
        im.save(ann / "seqA" / f"{i:05d}.png")
    save_image(res / "seqB" / "00000.jpg", flat(0, 16, 16))
    write_garbage(res / "seqB" / "00001.jpg")
    save_image(res / "seqB" / "00002.jpg", flat(2, 16, 16))
    save_image(ann / "seqB" / "00002.png", np.ones((10, 10), np.uint8))
    (res / "seqC").mkdir(parents=True)
    (root / "attributes.json").write_text(json.dumps({"seqA": {"motion": "slow"}}))
    return {
        "labels": labels,
        "boxes": np.array([[3, 2, 10, 6], [20, 10, 31, 20]], np.float32),
        "skipped": [res / "seqB" / "00001.jpg", ann / "seqB" / "00002.png", res / "seqC"],
    }


# -- video folder ------------------------------------------------------------------------


def build_video_folder(root: Path) -> dict:
    """clip_a.mp4 (H.264 10 frames 32x48), sub/clip_b.avi (MPEG-4 6 frames 48x32), frames_c/
    (1.png, 2.png, 10.png + an unreadable broken.jpg), and the bad inputs: garbage bad.mp4,
    trunc.mp4 (cut to 80 %), empty/, notes.txt."""
    a = write_video(root / "clip_a.mp4", 10, 32, 48)
    b = write_video(root / "sub" / "clip_b.avi", 6, 48, 32, codec="mpeg4")
    c = [flat(i, 20, 24) for i in (0, 1, 2)]
    for name, image in zip(("1.png", "2.png", "10.png"), c):
        save_image(root / "frames_c" / name, image)
    write_garbage(root / "frames_c" / "broken.jpg")
    write_garbage(root / "bad.mp4", 3000)
    full = root / "full_tmp.mp4"
    write_video(full, 30, 32, 32, faststart=True)
    data = full.read_bytes()
    (root / "trunc.mp4").write_bytes(data[: int(len(data) * 0.8)])
    full.unlink()
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a video")
    return {
        "clip_a": a,
        "sub/clip_b": b,
        "frames_c": np.stack(c),
        "skipped": {
            root / "bad.mp4": "corrupt or truncated video",
            root / "trunc.mp4": "truncated",
            root / "frames_c" / "broken.jpg": "unreadable image",
            root / "empty": "empty folder",
            root / "notes.txt": "not a video or image file",
        },
    }


# -- YouTube-Objects ---------------------------------------------------------------------


def _gt_struct(cls: str, entries: dict[int, list[list[float]]]) -> np.ndarray:
    """A 1 x N MATLAB struct array with fields ``im`` and ``boxes``, as in bb_gt*_<class>.mat."""
    arr = np.empty((1, len(entries)), dtype=[("im", object), ("boxes", object)])
    for j, (frame, boxes) in enumerate(entries.items()):
        arr[0, j] = (f"{cls}{frame:08d}", np.asarray(boxes, dtype=np.float64))
    return arr


def build_youtube_objects_v2_2(root: Path) -> dict:
    """aeroplane: frames 1..9 (40 wide, 30 high), shots 1-4 / 5-7 (video 1) and 8-9 (video 2);
    frame 4 missing, frame 8 unreadable; test boxes on frames 2 and 6 (one empty after
    clamping), training boxes on frame 9 and on frame 12, which is in no shot. car: frames 1..2,
    one shot, no GroundTruth files."""
    for i in range(1, 10):
        if i == 4:
            continue
        path = root / "aeroplane" / f"{i:08d}.jpg"
        if i == 8:
            write_garbage(path)
        else:
            save_image(path, flat(i, 30, 40))
    for i in (1, 2):
        save_image(root / "car" / f"{i:08d}.jpg", flat(i, 30, 40))
    (root / "Ranges").mkdir()
    ranges = np.array([[1, 5, 8], [4, 7, 9], [1, 1, 2]], dtype=np.float64)  # 3 x n_shots
    savemat(root / "Ranges" / "ranges_aeroplane.mat", {"ranges": ranges})
    savemat(root / "Ranges" / "ranges_car.mat", {"ranges": np.array([[1.0], [2.0], [1.0]])})
    gt = root / "GroundTruth" / "aeroplane"
    gt.mkdir(parents=True)
    test = {2: [[-3, 5, 20, 25]], 6: [[1, 2, 10, 12], [15, 3, 39, 29], [-9, -9, -1, 10]]}
    train = {9: [[5, 5, 50, 28]], 12: [[1, 1, 5, 5]]}
    savemat(gt / "bb_gtTest_aeroplane.mat", {"bb_gtTest": _gt_struct("aeroplane", test)})
    savemat(gt / "bb_gtTraining_aeroplane.mat", {"bb_gtTraining": _gt_struct("aeroplane", train)})
    return {
        "videos": {"aeroplane_0001": [1, 2, 3], "aeroplane_0002": [5, 6, 7],
                   "aeroplane_0003": [9], "car_0001": [1, 2]},
        "boxes": {
            ("aeroplane_0001", 2): [[0, 5, 20, 25]],
            ("aeroplane_0002", 6): [[1, 2, 10, 12], [15, 3, 39, 29]],
            ("aeroplane_0003", 9): [[5, 5, 40, 28]],
        },
        "splits": {"aeroplane_0001": "test", "aeroplane_0002": "test",
                   "aeroplane_0003": "training", "car_0001": None},
        "skipped": {
            root / "aeroplane" / "00000004.jpg": "missing frame",
            root / "aeroplane" / "00000008.jpg": "unreadable image",
            gt / "bb_gtTest_aeroplane.mat": "empty",
            gt / "bb_gtTraining_aeroplane.mat": "annotated frame 12 lies in no shot",
            root / "GroundTruth" / "car" / "bb_gtTest_car.mat": "missing ground-truth file",
        },
    }


def _sticks(path: Path, boxes: list[list[float]]) -> None:
    coor = np.empty((1, len(boxes)), dtype=object)
    for j, box in enumerate(boxes):
        coor[0, j] = np.asarray([box], dtype=np.float64)
    savemat(path, {"coor": coor})


def build_youtube_objects_v1(root: Path) -> dict:
    """boat/data/0001/shots/001: frame0001..3 (36 wide, 24 high), sticks on frames 2 (corners
    swapped) and 3 (two boxes, one negative), and a sticks file for a missing frame 9;
    shots/002 empty; boat/data/0002 has no shots/."""
    shot = root / "boat" / "data" / "0001" / "shots" / "001"
    for i in (1, 2, 3):
        save_image(shot / f"frame{i:04d}.jpg", flat(i, 24, 36))
    _sticks(shot / "frame0002.jpg_sticks.mat", [[30, 20, 5, 2]])
    _sticks(shot / "frame0003.jpg_sticks.mat", [[-2, 1, 10, 11], [12, 12, 20, 18]])
    _sticks(shot / "frame0009.jpg_sticks.mat", [[1, 1, 4, 4]])
    (root / "boat" / "data" / "0001" / "shots" / "002").mkdir(parents=True)
    (root / "boat" / "data" / "0002").mkdir(parents=True)
    return {
        "videos": {"boat_0001_001": [1, 2, 3], "boat_0001_002": []},
        "boxes": {2: [[5, 2, 30, 20]], 3: [[0, 1, 10, 11], [12, 12, 20, 18]]},
        "skipped": {
            shot / "frame0009.jpg_sticks.mat": "without its frame image",
            shot.parent / "002": "empty shot folder",
            root / "boat" / "data" / "0002": "without shots",
        },
    }


# -- Object Discovery --------------------------------------------------------------------


def build_object_discovery(root: Path) -> dict:
    """Data/Airplane100: 0001 (RGB ground truth, two blobs in channel 0, channel 1 set
    elsewhere), 0002 (ground truth 8x8, wrong size), 0003 (no ground truth), 0004 unreadable,
    orphan GroundTruth/0009.png; Data/Horse100 empty; Data/Car (not a 100-subset) ignored."""
    folder = root / "Data" / "Airplane100"
    for i in (1, 2, 3):
        save_image(folder / f"{i:04d}.jpg", flat(i, 20, 30))
    write_garbage(folder / "0004.jpg")
    gt = np.zeros((20, 30, 3), np.uint8)
    gt[2:5, 1:4, 0] = 255  # blob 1: x 1..3, y 2..4
    gt[5, 4, 0] = 255  # touches blob 1 diagonally: same 8-connected component
    gt[10:18, 12:27, 0] = 255  # blob 2: x 12..26, y 10..17
    gt[0:2, 25:30, 1] = 255  # channel 1 only: background
    save_image(folder / "GroundTruth" / "0001.png", gt)
    save_image(folder / "GroundTruth" / "0002.png", np.full((8, 8), 255, np.uint8))
    save_image(folder / "GroundTruth" / "0009.png", np.zeros((20, 30), np.uint8))
    (root / "Data" / "Horse100").mkdir(parents=True)
    save_image(root / "Data" / "Car" / "0001.jpg", flat(0, 20, 30))
    return {
        "mask": gt[..., 0] > 0,
        "components": [[1, 2, 5, 6], [12, 10, 27, 18]],
        "union": [[1, 2, 27, 18]],
        "skipped": {
            folder / "0004.jpg": "unreadable image",
            folder / "GroundTruth" / "0002.png": "differs from frame size",
            folder / "GroundTruth" / "0009.png": "without its image",
            root / "Data" / "Horse100": "empty folder",
        },
    }


BUILDERS = {
    "davis": build_davis,
    "video_folder": build_video_folder,
    "youtube_objects_v2_2": build_youtube_objects_v2_2,
    "youtube_objects_v1": build_youtube_objects_v1,
    "object_discovery": build_object_discovery,
}
