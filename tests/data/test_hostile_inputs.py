"""Hostile inputs: each is skipped or handled and reported by path and reason, and the rest is
read (docs/reliability.md has the table)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from popdistill.data.readers import create_reader
from tests.data import fixtures as fx


def hostile_video_folder(root: Path) -> dict[str, int]:
    """A folder of .mp4 files and frame folders with every kind of bad input beside two good
    videos; returns the frames each readable video must give."""
    fx.write_video(root / "good.mp4", 6, 32, 32)
    data = (root / "good.mp4").read_bytes()
    (root / "zero.mp4").write_bytes(b"")
    (root / "trunc.mp4").write_bytes(data[: len(data) // 3])
    (root / "text.mp4").write_text("this is not a video\n")
    fx.write_video(root / "tiny.mp4", 3, 2, 2)  # the smallest frame H.264 encodes (1x1 is refused)
    fx.save_image(root / "big" / "00000.jpg", np.zeros((3000, 4000, 3), np.uint8))
    (root / "grey").mkdir()
    Image.fromarray(np.full((24, 32), 128, np.uint8), "L").save(root / "grey" / "00000.jpg")
    Image.new("CMYK", (32, 24), (0, 255, 0, 0)).save(root / "grey" / "00001.jpg")
    (root / "empty").mkdir()
    with open(os.fsencode(str(root)) + b"/caf\xe9.mp4", "wb") as f:  # not UTF-8
        f.write(data)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "selfloop.mp4").symlink_to(root / "selfloop.mp4")
    return {"good": 6, "tiny": 3, "big": 1, "grey": 2}


def _read(fmt: str, root: Path, **options):
    reader = create_reader(fmt, root, **options)
    skipped = []
    frames = {ref.video: list(reader.read_video(ref, on_skip=skipped.append))
              for ref in reader.videos()}
    return frames, {s.path: s.reason for s in [*reader.skipped, *skipped]}


@pytest.mark.timeout(60)
def test_a_video_folder_of_hostile_inputs_reads_the_rest_and_reports_each(tmp_path):
    root = tmp_path / "videos"
    expected = hostile_video_folder(root)
    frames, skipped = _read("video_folder", root)
    assert {v: len(r) for v, r in frames.items() if r} == expected
    assert all(r.image.ndim == 3 and r.image.shape[2] == 3 for rs in frames.values() for r in rs)
    assert frames["grey"][1].image.shape == (24, 32, 3)  # greyscale and CMYK become RGB
    reasons = {Path(p).name: reason for p, reason in skipped.items()}
    assert reasons["zero.mp4"] == "empty file (0 bytes)"
    assert reasons["trunc.mp4"].startswith("corrupt or truncated video")
    assert reasons["text.mp4"].startswith("corrupt or truncated video")
    assert reasons["caf\\xe9.mp4"].startswith("file name is not valid UTF-8")
    assert reasons["selfloop.mp4"] == "broken or looping symlink"
    assert reasons["loop"].startswith("symlink loop")  # listed once, not 40 levels deep
    assert reasons["empty"].startswith("empty folder")
    assert len(skipped) == 7
    # with the reader's size option even the 4000 x 3000 frame arrives small
    small, _ = _read("video_folder", root, size=64)
    assert small["big"][0].image.shape == (64, 64, 3)


def test_davis_masks_of_every_kind(tmp_path):
    """RGBA and 16-bit PNG masks are read; a mask of another size or an unreadable one leaves
    its frame without ground truth, reported."""
    seq, ann = tmp_path / "JPEGImages/480p/s", tmp_path / "Annotations/480p/s"
    ann.mkdir(parents=True)
    for i in range(4):
        fx.save_image(seq / f"{i:05d}.jpg", fx.flat(i, 24, 32))
    m = np.zeros((24, 32), np.uint8)
    m[5:15, 5:20] = 1
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = m * 255, 255
    Image.fromarray(rgba, "RGBA").save(ann / "00000.png")
    Image.fromarray(m.astype(np.uint16) * 40000).save(ann / "00001.png")  # 16-bit grey
    Image.fromarray(np.ones((10, 10), np.uint8)).save(ann / "00002.png")
    (ann / "00003.png").write_text("not a png")
    frames, skipped = _read("davis", tmp_path)
    gts = [None if r.gt_mask is None else int(r.gt_mask.sum()) for r in frames["s"]]
    assert gts == [150, 150, None, None]
    reasons = {Path(p).name: r for p, r in skipped.items()}
    assert reasons["00002.png"].startswith("mask size 10x10 differs from frame size 32x24")
    assert reasons["00003.png"].startswith("unreadable annotation")


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_the_teacher_finishes_on_hostile_inputs_and_lists_them(ray_session, tmp_path):
    from popdistill.config import load
    from popdistill.teacher.config import TeacherConfig
    from popdistill.teacher.pipeline import run_teacher

    root = tmp_path / "videos"
    expected = hostile_video_folder(root)
    cfg = load(TeacherConfig, {"data": str(root), "format": "video_folder", "out": str(tmp_path / "run"),
                               "reader_options": {"size": 64}, "actors": 1, "actor_cpus": 0.5})
    report = run_teacher(cfg, log=lambda _: None)
    # VideoPCA needs a few frames of a video: the good one is masked, the shorter ones are
    # reported beside the unreadable inputs
    assert report["selection"]["total"] == report["frames_this_run"] == expected["good"]
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert {"zero.mp4", "trunc.mp4", "text.mp4", "caf\\xe9.mp4", "selfloop.mp4", "loop",
            "empty"} <= set(reasons)
    for short in ("tiny.mp4", "big", "grey"):
        assert "readable frame(s); at least" in reasons[short], reasons
