"""Dataset readers on tiny fixtures in each exact on-disk format (see fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from scipy.io import loadmat

from popdistill.data.readers import VideoRef, create_reader, list_readers
from popdistill.data.readers.object_discovery import mask_boxes
from popdistill.data.readers.youtube_objects import clean_boxes, read_gt_mat
from popdistill.data.schema import FrameRecord, records_to_table
from popdistill.data.video_decode import (
    VideoDecodeError,
    count_frames,
    decode_video,
    decode_video_indexed,
)
from popdistill.errors import UserError
from tests.data import fixtures as fx


def read_all(name: str, root: Path, **options) -> tuple[dict[str, list[FrameRecord]], dict]:
    """Records per video id, and {path: reason} of everything reported."""
    reader = create_reader(name, root, **options)
    out = {ref.video: list(reader.read_video(ref)) for ref in reader.videos()}
    return out, {Path(s.path): s.reason for s in reader.skipped}


def assert_reported(skipped: dict, expected: dict) -> None:
    for path, words in expected.items():
        assert path in skipped, f"{path} not reported; reported: {skipped}"
        assert words in skipped[path], (path, skipped[path])


# -- generic: every reader ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(fx.BUILDERS))
def test_reader_contract(name, tmp_path):
    fx.BUILDERS[name](tmp_path)
    assert name in list_readers()
    reader = create_reader(name, tmp_path)
    refs = reader.videos()
    assert refs
    n = 0
    for ref in refs:
        # A ref crosses Ray as plain values: a fresh reader reads the same frames from it.
        fresh = create_reader(name, tmp_path)
        again = fresh.read_video(VideoRef.from_dict(ref.to_dict()))
        for rec, rec2 in zip(reader.read_video(ref), again, strict=True):
            n += 1
            h, w = rec.image.shape[:2]
            assert rec.image.dtype == np.uint8 and rec.image.shape == (h, w, 3)
            assert rec.dataset == name and rec.video == ref.video
            np.testing.assert_array_equal(rec.image, rec2.image)
            assert rec.frame == rec2.frame
            if rec.gt_mask is not None:
                assert rec.gt_mask.dtype == bool and rec.gt_mask.shape == (h, w)
            if rec.gt_boxes is not None:
                b = rec.gt_boxes
                assert b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4
                assert np.all((0 <= b[:, 0]) & (b[:, 0] < b[:, 2]) & (b[:, 2] <= w))
                assert np.all((0 <= b[:, 1]) & (b[:, 1] < b[:, 3]) & (b[:, 3] <= h))
    assert n > 0
    assert reader.skipped, "every fixture plants bad inputs that must be reported"
    keys = [r.key for ref in refs for r in create_reader(name, tmp_path).read_video(ref)]
    assert len(keys) == len(set(keys)) == n


def test_unknown_format_lists_valid_ones(tmp_path):
    with pytest.raises(UserError, match="video_folder"):
        create_reader("youtube_object", tmp_path)


@pytest.mark.parametrize("name", sorted(fx.BUILDERS))
def test_missing_root_is_an_error(name, tmp_path):
    with pytest.raises(FileNotFoundError):
        create_reader(name, tmp_path / "nope").videos()


# -- DAVIS -------------------------------------------------------------------------------


def test_davis(tmp_path):
    exp = fx.build_davis(tmp_path)
    videos, skipped = read_all("davis", tmp_path)
    assert sorted(videos) == ["seqA", "seqB", "seqC"]
    a = videos["seqA"]
    assert [r.frame for r in a] == [0, 1, 2]
    for i, rec in enumerate(a):
        assert rec.image.shape == (24, 32, 3)
        np.testing.assert_allclose(rec.image.reshape(-1, 3).mean(0), fx.colour(i), atol=3)
    np.testing.assert_array_equal(a[0].gt_mask, exp["labels"] > 0)
    np.testing.assert_array_equal(a[0].gt_boxes, exp["boxes"])
    assert a[1].gt_mask is None and a[1].gt_boxes is None
    np.testing.assert_array_equal(a[2].gt_boxes, exp["boxes"])
    b = videos["seqB"]
    assert [r.frame for r in b] == [0, 2]  # the unreadable frame 1 is reported, not yielded
    assert b[1].gt_mask is None  # 10x10 annotation of a 16x16 frame
    assert videos["seqC"] == []
    assert_reported(skipped, dict(zip(exp["skipped"], ["unreadable image", "differs", "empty"])))
    assert len(skipped) == 3
    reader = create_reader("davis", tmp_path)
    assert {r.video: r.meta.get("attributes") for r in reader.videos()}["seqA"] == {"motion": "slow"}


def test_davis_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        create_reader("davis", tmp_path).videos()
    (tmp_path / "JPEGImages" / "Full-Resolution").mkdir(parents=True)
    (tmp_path / "JPEGImages" / "1080p").mkdir()
    with pytest.raises(UserError, match="resolution"):
        create_reader("davis", tmp_path).videos()
    assert create_reader("davis", tmp_path, resolution="1080p").videos() == []


# -- video decode ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def textured_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "moving.mp4"
    fx.write_video(path, 40, 32, 48, moving=True)
    return path


def test_decode_matches_pyav_rgb24(textured_clip):
    with av.open(str(textured_clip)) as container:
        ref = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    batches = list(decode_video(textured_clip, batch=16))
    assert [len(b) for b in batches] == [16, 16, 8]
    numbers = np.concatenate([i for i, _ in decode_video_indexed(textured_clip, batch=16)])
    np.testing.assert_array_equal(numbers, np.arange(40))
    got = np.concatenate(batches)
    assert got.shape == (40, 32, 48, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, ref)
    assert count_frames(textured_clip) == 40


def test_decode_resize(textured_clip):
    got = np.concatenate(list(decode_video(textured_clip, size=(16, 24))))
    assert got.shape == (40, 16, 24, 3)
    full = np.concatenate(list(decode_video(textured_clip)))
    # A 2x bilinear downscale stays close to the 2x2 block means of the full frames.
    blocks = full.reshape(40, 16, 2, 24, 2, 3).mean(axis=(2, 4))
    assert np.abs(got.astype(float) - blocks).mean() < 8
    assert next(decode_video(textured_clip, size=8)).shape[1:] == (8, 8, 3)


def test_decode_truncated_keeps_decoded_frames(tmp_path):
    full = tmp_path / "full.mp4"
    written = fx.write_video(full, 30, 32, 32, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    numbers, frames = [], []
    with pytest.raises(VideoDecodeError, match="truncated") as info:
        for index, batch in decode_video_indexed(cut, batch=4):
            numbers.append(index)
            frames.append(batch)
    numbers, frames = np.concatenate(numbers), np.concatenate(frames)
    assert 0 < len(frames) < 30 and info.value.decoded == len(frames) and info.value.expected == 30
    # Every kept frame is the frame its number says (flat colours survive H.264 within 6).
    assert np.all(np.diff(numbers) > 0) and numbers[0] == 0
    means = frames.reshape(len(frames), -1, 3).mean(1)
    np.testing.assert_allclose(means, written[numbers, 0, 0], atol=6)


def test_decode_garbage_and_count_without_header(tmp_path):
    bad = fx.write_garbage(tmp_path / "bad.mp4", 3000)
    with pytest.raises(VideoDecodeError, match="cannot open"):
        list(decode_video(bad))
    with pytest.raises(VideoDecodeError):
        count_frames(bad)
    mkv = tmp_path / "a.mkv"
    fx.write_video(mkv, 7, 16, 16, codec="mpeg4")
    with av.open(str(mkv)) as container:
        assert container.streams.video[0].frames == 0  # Matroska declares no count: demux path
    assert count_frames(mkv) == 7
    numbers = np.concatenate([i for i, _ in decode_video_indexed(mkv, batch=3)])
    np.testing.assert_array_equal(numbers, np.arange(7))  # from millisecond timestamps


# -- video folder ------------------------------------------------------------------------


def test_video_folder(tmp_path):
    exp = fx.build_video_folder(tmp_path)
    videos, skipped = read_all("video_folder", tmp_path)
    assert sorted(videos) == ["bad", "clip_a", "frames_c", "sub/clip_b", "trunc"]
    for vid in ("clip_a", "sub/clip_b", "frames_c"):
        recs = videos[vid]
        written = exp[vid]
        assert [r.frame for r in recs] == list(range(len(written)))
        assert all(r.image.shape == written.shape[1:] for r in recs)
        means = np.stack([r.image.reshape(-1, 3).mean(0) for r in recs])
        np.testing.assert_allclose(means, written[:, 0, 0], atol=6)
        assert all(r.gt_mask is None and r.gt_boxes is None for r in recs)
    # Natural order: 1.png, 2.png, 10.png (broken.jpg reported).
    assert [Path(r.source).name for r in videos["frames_c"]] == ["1.png", "2.png", "10.png"]
    assert videos["bad"] == []
    assert 0 < len(videos["trunc"]) < 30
    assert_reported(skipped, exp["skipped"])
    assert len(skipped) == len(exp["skipped"])
    assert f"the {len(videos['trunc'])} decoded frames are kept" in skipped[tmp_path / "trunc.mp4"]


def test_video_folder_options(tmp_path):
    fx.build_video_folder(tmp_path)
    videos, _ = read_all("video_folder", tmp_path, size=(16, 24))
    assert {r.image.shape for v in videos.values() for r in v} == {(16, 24, 3)}
    assert len(videos["frames_c"]) == 3 and len(videos["clip_a"]) == 10
    single, _ = read_all("video_folder", tmp_path / "clip_a.mp4")
    assert list(single) == ["clip_a"] and len(single["clip_a"]) == 10


def test_video_folder_name_clash(tmp_path):
    fx.write_video(tmp_path / "x.mp4", 2, 16, 16)
    fx.save_image(tmp_path / "x" / "0.png", fx.flat(0, 8, 8))
    reader = create_reader("video_folder", tmp_path)
    assert sorted(r.video for r in reader.videos()) == ["x", "x.mp4"]


# -- YouTube-Objects ---------------------------------------------------------------------


def test_youtube_objects_v2_2_fixture_matches_public_loaders(tmp_path):
    """The fixture reads the way public loaders of the real files read them."""
    fx.build_youtube_objects_v2_2(tmp_path)
    gt = loadmat(tmp_path / "GroundTruth/aeroplane/bb_gtTest_aeroplane.mat")["bb_gtTest"][0]
    ident, boxes = gt[0]
    assert str(ident[0]) == "aeroplane00000002" and boxes.shape == (1, 4)
    ranges = loadmat(tmp_path / "Ranges/ranges_aeroplane.mat")["ranges"]
    assert list(ranges[0]) == [1, 5, 8] and list(ranges[1]) == [4, 7, 9]
    assert sorted(read_gt_mat(tmp_path / "GroundTruth/aeroplane/bb_gtTraining_aeroplane.mat",
                              "bb_gtTraining")) == [9, 12]


def test_youtube_objects_v2_2(tmp_path):
    exp = fx.build_youtube_objects_v2_2(tmp_path)
    videos, skipped = read_all("youtube_objects_v2_2", tmp_path)
    assert {v: [r.frame for r in recs] for v, recs in videos.items()} == exp["videos"]
    for vid, recs in videos.items():
        for rec in recs:
            assert rec.image.shape == (30, 40, 3) and rec.gt_mask is None
            np.testing.assert_allclose(rec.image.reshape(-1, 3).mean(0), fx.colour(rec.frame), atol=3)
            expected = exp["boxes"].get((vid, rec.frame))
            if expected is None:
                assert rec.gt_boxes is None
            else:
                np.testing.assert_array_equal(rec.gt_boxes, np.asarray(expected, np.float32))
    assert_reported(skipped, exp["skipped"])
    reader = create_reader("youtube_objects_v2_2", tmp_path)
    refs = {r.video: r for r in reader.videos()}
    assert {v: r.meta["split"] for v, r in refs.items()} == exp["splits"]
    assert refs["aeroplane_0003"].meta["source_video"] == 2
    only_car = create_reader("youtube_objects_v2_2", tmp_path, classes=["car"]).videos()
    assert [r.video for r in only_car] == ["car_0001"]


def test_youtube_objects_v2_2_tolerates_variants(tmp_path):
    """n_shots x 3 ranges, a cell-array ground truth and GroundTruth/GroundTruth nesting."""
    from scipy.io import savemat

    for i in (1, 2, 3):
        fx.save_image(tmp_path / "cat" / f"{i:08d}.jpg", fx.flat(i, 12, 16))
    (tmp_path / "Ranges").mkdir()
    savemat(tmp_path / "Ranges/ranges_cat.mat", {"ranges": np.array([[1.0, 3.0, 7.0]])})
    gt = tmp_path / "GroundTruth" / "GroundTruth" / "cat"
    gt.mkdir(parents=True)
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0], cells[0, 1] = "cat00000003", np.array([[2.0, 3.0, 9.0, 8.0]])
    savemat(gt / "bb_gtTest_cat.mat", {"bb_gtTest": cells})
    savemat(gt / "bb_gtTraining_cat.mat", {"bb_gtTraining": fx._gt_struct("cat", {})})
    videos, skipped = read_all("youtube_objects_v2_2", tmp_path)
    assert [r.frame for r in videos["cat_0001"]] == [1, 2, 3]
    np.testing.assert_array_equal(videos["cat_0001"][2].gt_boxes, [[2, 3, 9, 8]])
    assert skipped == {}


def test_clean_boxes():
    kept, dropped = clean_boxes(np.array([[30, 20, 5, 2], [-4, -1, 50, 9], [-5, 3, -1, 8]]), 40, 30)
    np.testing.assert_array_equal(kept, [[5, 2, 30, 20], [0, 0, 40, 9]])
    np.testing.assert_array_equal(dropped, [[-5, 3, -1, 8]])


def test_youtube_objects_v1(tmp_path):
    exp = fx.build_youtube_objects_v1(tmp_path)
    videos, skipped = read_all("youtube_objects_v1", tmp_path)
    assert {v: [r.frame for r in recs] for v, recs in videos.items()} == exp["videos"]
    for rec in videos["boat_0001_001"]:
        assert rec.image.shape == (24, 36, 3)
        np.testing.assert_allclose(rec.image.reshape(-1, 3).mean(0), fx.colour(rec.frame), atol=3)
        expected = exp["boxes"].get(rec.frame)
        if expected is None:
            assert rec.gt_boxes is None
        else:
            np.testing.assert_array_equal(rec.gt_boxes, np.asarray(expected, np.float32))
    assert_reported(skipped, exp["skipped"])
    assert len(skipped) == len(exp["skipped"])


# -- Object Discovery --------------------------------------------------------------------


def test_object_discovery(tmp_path):
    exp = fx.build_object_discovery(tmp_path)
    videos, skipped = read_all("object_discovery", tmp_path)
    assert sorted(videos) == ["Airplane100", "Horse100"]  # Data/Car is not a 100-subset
    recs = videos["Airplane100"]
    assert [Path(r.source).name for r in recs] == ["0001.jpg", "0002.jpg", "0003.jpg"]
    assert [r.frame for r in recs] == [0, 1, 2]
    np.testing.assert_array_equal(recs[0].gt_mask, exp["mask"])
    np.testing.assert_array_equal(recs[0].gt_boxes, np.asarray(exp["components"], np.float32))
    assert recs[1].gt_mask is None and recs[2].gt_mask is None
    assert_reported(skipped, exp["skipped"])
    assert len(skipped) == len(exp["skipped"])
    union, _ = read_all("object_discovery", tmp_path / "Data", boxes="union")
    np.testing.assert_array_equal(union["Airplane100"][0].gt_boxes, exp["union"])
    every, _ = read_all("object_discovery", tmp_path, folders="*")
    assert sorted(every) == ["Airplane100", "Car", "Horse100"]
    with pytest.raises(UserError, match="boxes"):
        create_reader("object_discovery", tmp_path, boxes="all")


def test_mask_boxes():
    m = np.zeros((6, 8), bool)
    assert mask_boxes(m).shape == (0, 4) and mask_boxes(m, "union").shape == (0, 4)
    m[1, 1] = m[2, 2] = True  # diagonal neighbours: one 8-connected component
    m[4:6, 5:8] = True
    np.testing.assert_array_equal(mask_boxes(m), [[1, 1, 3, 3], [5, 4, 8, 6]])
    np.testing.assert_array_equal(mask_boxes(m, "union"), [[1, 1, 8, 6]])


def test_records_of_every_reader_fit_the_schema(tmp_path):
    for name, build in fx.BUILDERS.items():
        root = tmp_path / name
        root.mkdir()
        build(root)
        records = list(create_reader(name, root))
        table = records_to_table(records)
        assert table.num_rows == len(records) > 0


def test_reader_size_option_accepts_command_line_text():
    from popdistill.data.video_decode import parse_size

    assert parse_size("128") == (128, 128)
    assert parse_size("96x128") == (96, 128)
    assert parse_size(64) == (64, 64)
    assert parse_size([48, 80]) == (48, 80)
    assert parse_size(None) is None
