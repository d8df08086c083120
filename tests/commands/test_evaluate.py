"""`popdistill evaluate` end to end on a tiny DAVIS-layout fixture with known answers.

Fixture (frames 48 x 64 = 3072 pixels, all object edges on even coordinates):
  seqA/00000: object 1 at x 16..48, y 8..32 (768 px, 1/4 of the frame)
  seqA/00001: object 1 at x 0..32, y 8..32 (768 px) + object 2 at x 56..64, y 40..48 (64 px)
  seqA/00002: object 1 at x 0..48, y 0..48 (2304 px, 3/4 of the frame)
  seqB/00000: object 1 at x 16..32, y 16..32 (256 px, 1/12 of the frame)
  seqB/00001: no annotation file (no ground truth)
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from popdistill.commands import evaluate as cli
from popdistill.data.readers import create_reader
from popdistill.data.schema import FrameRecord, records_to_table
from popdistill.errors import UserError
from popdistill.evaluate.masks_io import (
    MaskReadError,
    ParquetMaskStore,
    PngMaskStore,
    open_mask_store,
)

H, W = 48, 64
OBJECTS = {  # (video, frame) -> [(id, x0, y0, x1, y1)]
    ("seqA", 0): [(1, 16, 8, 48, 32)],
    ("seqA", 1): [(1, 0, 8, 32, 32), (2, 56, 40, 64, 48)],
    ("seqA", 2): [(1, 0, 0, 48, 48)],
    ("seqB", 0): [(1, 16, 16, 32, 32)],
}
FRACTIONS = np.array([768, 832, 2304, 256]) / (H * W)


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    rng = np.random.default_rng(0)
    for video, n in (("seqA", 3), ("seqB", 2)):
        (root / "JPEGImages" / "64p" / video).mkdir(parents=True)
        (root / "Annotations" / "64p" / video).mkdir(parents=True)
        for f in range(n):
            image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "JPEGImages" / "64p" / video / f"{f:05d}.jpg")
            if (video, f) not in OBJECTS:
                continue
            labels = np.zeros((H, W), np.uint8)
            for obj, x0, y0, x1, y1 in OBJECTS[video, f]:
                labels[y0:y1, x0:x1] = obj
            png = Image.fromarray(labels, mode="P")
            png.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [0] * (256 * 3 - 9))
            png.save(root / "Annotations" / "64p" / video / f"{f:05d}.png")
    return root


def _gt_records(davis, scale: int = 1, drop: tuple = ()) -> list[FrameRecord]:
    """The reader's frames with the ground truth as their soft mask (downsampled by ``scale``)."""
    out = []
    for rec in create_reader("davis", davis):
        if rec.gt_mask is None or (rec.video, rec.frame) in drop:
            continue
        rec.mask = rec.gt_mask[::scale, ::scale].astype(np.float32)
        out.append(rec)
    return out


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(argv))


def test_full_baseline_known_answers(davis, tmp_path, capsys):
    out = tmp_path / "out"
    rc = run(["--data", str(davis), "--format", "davis", "--baseline", "full", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    o = report["methods"]["full"]["overall"]
    assert o["J"] == pytest.approx(FRACTIONS.mean())  # J of the full mask = gt area fraction
    assert o["P"] == pytest.approx(FRACTIONS.mean())
    assert o["MAE"] == pytest.approx(1 - FRACTIONS.mean())
    assert o["CorLoc"] == pytest.approx(0.25)  # only seqA/2: frame box IoU 2304 / 3072
    mean_p = FRACTIONS.mean()
    assert o["F_max"] == pytest.approx(1.3 * mean_p / (0.3 * mean_p + 1))
    assert o["F_adaptive"] == pytest.approx(np.mean(1.3 * FRACTIONS / (0.3 * FRACTIONS + 1)))
    assert (o["frames"], o["frames_with_boxes"], o["frames_without_gt"]) == (4, 4, 1)
    per_video = report["methods"]["full"]["videos"]
    assert per_video["seqA"]["J"] == pytest.approx(FRACTIONS[:3].mean())
    assert per_video["seqB"]["J"] == pytest.approx(FRACTIONS[3])
    mov = report["methods"]["full"]["mean_over_videos"]
    assert mov["J"] == pytest.approx((FRACTIONS[:3].mean() + FRACTIONS[3]) / 2)
    assert report["frames_read"] == 5 and report["videos"] == 2
    assert report["reader_skipped"] == [] and report["methods"]["full"]["skipped"] == []
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("full"))
    assert row.split() == ["full", "33.9", "33.9", "25.0", "0.400", "0.382", "0.661", "4"]
    assert "skipped inputs: 0" in text
    grid = np.asarray(Image.open(out / "masks.png"))
    assert grid.shape[0] == 16 + 2 * (128 + 2)  # header + one row per video
    assert (grid == [255, 40, 40]).all(axis=2).any()  # ground-truth outline drawn


def test_perfect_parquet_store_and_centre_baseline(davis, tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    records = _gt_records(davis)
    pq.write_table(records_to_table(records[:2]), store / "part-0.parquet")
    pq.write_table(records_to_table(records[2:]), store / "part-1.parquet")
    out = tmp_path / "out"
    argv = ["--data", str(davis), "--format", "davis", "--masks", str(store)]
    rc = run([*argv, "--baseline", "centre", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    o = report["methods"]["store"]["overall"]
    assert (o["J"], o["P"], o["CorLoc"], o["MAE"], o["F_max"]) == (1.0, 1.0, 1.0, 0.0, 1.0)
    assert o["frames"] == 4 and report["methods"]["store"]["skipped"] == []
    assert report["mask_stores"]["store"]["masks"] == 4
    centre = report["methods"]["centre"]["overall"]
    assert 0 < centre["J"] < 1 and centre["frames"] == 4
    assert "centre" in capsys.readouterr().out

    # CorLoc with the box around all foreground: seqA/1's two objects give one box
    # x 0..64, y 8..48 (2560 px) vs object 1 (768 px): IoU 0.3 -> a miss.
    run([*argv, "--box-mode", "all", "--out", str(tmp_path / "all")])
    o = json.loads((tmp_path / "all" / "report.json").read_text())["methods"]["store"]["overall"]
    assert o["CorLoc"] == pytest.approx(0.75)


def test_small_masks_are_resized_and_missing_masks_reported(davis, tmp_path):
    # Half-size masks of even-aligned rectangles upsample back to the exact masks.
    path = tmp_path / "half.parquet"
    pq.write_table(records_to_table(_gt_records(davis, scale=2, drop=[("seqA", 2)])), path)
    out = tmp_path / "out"
    run(["--data", str(davis), "--format", "davis", "--masks", str(path), "--out", str(out)])
    method = json.loads((out / "report.json").read_text())["methods"]["half"]
    assert method["overall"]["J"] == 1.0 and method["overall"]["frames"] == 3
    assert len(method["skipped"]) == 1
    skipped = method["skipped"][0]
    assert skipped["path"].endswith("seqA/00002.jpg") and "no mask for frame" in skipped["reason"]


def test_png_store_and_limit_videos(davis, tmp_path):
    masks = tmp_path / "png"
    for rec in _gt_records(davis):
        (masks / rec.video).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rec.gt_mask.astype(np.uint8) * 255).save(
            masks / rec.video / f"{rec.frame:05d}.png"
        )
    out = tmp_path / "out"
    argv = ["--data", str(davis), "--format", "davis", "--masks", str(masks), "--out", str(out)]
    run([*argv, "--limit-videos", "1"])
    report = json.loads((out / "report.json").read_text())
    o = report["methods"]["png"]["overall"]
    assert (o["J"], o["CorLoc"], o["frames"], o["videos"]) == (1.0, 1.0, 3, 1)
    assert report["videos"] == 1 and report["frames_read"] == 3


def test_errors_name_the_bad_path(davis, tmp_path):
    missing = tmp_path / "nowhere"
    base = ["--format", "davis", "--out", str(tmp_path / "o")]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run(["--data", str(davis), "--masks", str(missing), *base])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run(["--data", str(missing), "--baseline", "full", *base])
    with pytest.raises(UserError, match="nothing to evaluate"):
        run(["--data", str(davis), *base])
    with pytest.raises(UserError, match="unknown baseline 'center'"):
        run(["--data", str(davis), "--baseline", "center", *base])
    with pytest.raises(UserError, match="threshold"):
        run(["--data", str(davis), "--baseline", "full", "--threshold", "2", *base])
    bad = tmp_path / "masks.txt"
    bad.write_text("x")
    with pytest.raises(UserError, match="masks.txt"):
        run(["--data", str(davis), "--masks", str(bad), *base])


def test_reader_skips_are_reported(davis, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(davis, data)
    (data / "JPEGImages" / "64p" / "seqB" / "00002.jpg").write_bytes(b"broken")
    out = tmp_path / "out"
    run(["--data", str(data), "--format", "davis", "--baseline", "full", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert len(report["reader_skipped"]) == 1
    assert report["reader_skipped"][0]["path"].endswith("seqB/00002.jpg")
    assert report["methods"]["full"]["overall"]["frames"] == 4
    assert "skipped inputs: 1 (reader 1, evaluate 0)" in capsys.readouterr().out


def test_dispatcher_prints_errors_without_traceback(davis, tmp_path, monkeypatch, capsys):
    import popdistill.cli

    monkeypatch.setattr(popdistill.cli, "COMMANDS", {"evaluate": "popdistill.commands.evaluate"})
    argv = ["evaluate", "--data", str(davis), "--format", "davis", "--out", str(tmp_path)]
    assert popdistill.cli.main([*argv, "--masks", str(tmp_path / "missing")]) == 2
    assert "mask store not found" in capsys.readouterr().err
    assert popdistill.cli.main([*argv, "--baseline", "full"]) == 0


def test_parquet_store_lookup_and_errors(davis, tmp_path):
    records = _gt_records(davis)
    path = tmp_path / "s.parquet"
    pq.write_table(records_to_table(records), path)
    store = open_mask_store(path)
    assert isinstance(store, ParquetMaskStore) and len(store) == 4
    np.testing.assert_array_equal(store.get("seqA", 1), records[1].gt_mask.astype(np.float32))
    assert store.get("seqA", 7) is None and store.get("nope", 0) is None

    dup = tmp_path / "dup.parquet"
    pq.write_table(records_to_table(records + records[:1]), dup)
    with pytest.raises(UserError, match="dup.parquet.*several masks"):
        open_mask_store(dup)
    no_masks = tmp_path / "plain.parquet"
    pq.write_table(records_to_table(records).drop_columns(["mask"]), no_masks)
    with pytest.raises(UserError, match="plain.parquet.*missing columns mask"):
        open_mask_store(no_masks)


def test_png_store_lookup_and_bad_files(tmp_path):
    (tmp_path / "v").mkdir()
    Image.fromarray(np.array([[0, 51], [255, 102]], np.uint8)).save(tmp_path / "v" / "00003.png")
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(tmp_path / "v" / "frame_a.png")
    (tmp_path / "v" / "00004.png").write_bytes(b"not a png")
    store = open_mask_store(tmp_path)
    assert isinstance(store, PngMaskStore)
    np.testing.assert_allclose(store.get("v", 3), [[0, 0.2], [1, 0.4]])  # by frame number
    np.testing.assert_allclose(store.get("v", 99, stem="00003"), [[0, 0.2], [1, 0.4]])  # by stem
    assert store.get("v", 5) is None and store.get("w", 3) is None
    with pytest.raises(MaskReadError, match="00004.png"):
        store.get("v", 4)
    with pytest.raises(MaskReadError, match="frame_a.png.*8-bit"):
        store.get("v", 0, stem="frame_a")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="not a mask store"):
        open_mask_store(empty)
