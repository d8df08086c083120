"""FrameRecord <-> Arrow <-> Parquet round trips."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from popdistill.data.schema import (
    FRAME_SCHEMA,
    FrameRecord,
    Skipped,
    decode_soft_mask,
    encode_soft_mask,
    frame_key,
    records_to_table,
    table_to_records,
)


def _records() -> list[FrameRecord]:
    rng = np.random.default_rng(0)
    plain = FrameRecord("world", "v0", 0, rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "a.mp4")
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    with_gt = FrameRecord(
        "davis", "seq", 3, rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "x/00003.jpg",
        gt_mask=mask, gt_boxes=np.array([[2, 1, 7, 4], [0.5, 0, 1.5, 2]], np.float32),
    )
    boxes_only = FrameRecord(
        "yto", "car_0001", 17, rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "car/00000017.jpg",
        gt_boxes=np.zeros((0, 4), np.float32),
    )
    soft = rng.random((4, 4)).astype(np.float32)  # a teacher mask at its own size
    taught = FrameRecord(
        "world", "v1", 2, rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "b.mp4",
        gt_mask=mask, mask=soft, score=0.75, teacher="videopca", generation=1,
    )
    return [plain, with_gt, boxes_only, taught]


def test_parquet_round_trip(tmp_path):
    records = _records()
    path = tmp_path / "frames.parquet"
    pq.write_table(records_to_table(records), path)
    table = pq.read_table(path)
    assert table.schema.equals(FRAME_SCHEMA)
    back = table_to_records(table)
    assert len(back) == len(records)
    for a, b in zip(records, back):
        assert (a.dataset, a.video, a.frame, a.source) == (b.dataset, b.video, b.frame, b.source)
        assert b.image.dtype == np.uint8
        np.testing.assert_array_equal(a.image, b.image)
        for name in ("gt_mask", "gt_boxes"):
            va, vb = getattr(a, name), getattr(b, name)
            assert (va is None) == (vb is None), name
            if va is not None:
                np.testing.assert_array_equal(va, vb)
        assert (a.teacher, a.generation) == (b.teacher, b.generation)
    plain, with_gt, boxes_only, taught = back
    assert plain.mask is None and plain.score is None and plain.gt_mask is None
    assert with_gt.gt_mask.dtype == bool and with_gt.gt_boxes.dtype == np.float32
    assert boxes_only.gt_boxes.shape == (0, 4) and boxes_only.gt_mask is None
    # The soft mask is stored as uint8: back within half a quantisation step, same shape.
    assert taught.mask.shape == (4, 4) and taught.mask.dtype == np.float32
    np.testing.assert_allclose(taught.mask, records[3].mask, atol=0.5 / 255 + 1e-7)
    assert taught.score == pytest.approx(0.75)
    assert taught.key == frame_key("world", "v1", 2) == ("world", "v1", 2)


def test_soft_mask_quantisation():
    m = np.array([[0.0, 1.0], [0.5, 1.7], [-0.2, 0.1]], np.float32)
    q = np.frombuffer(encode_soft_mask(m), np.uint8).reshape(3, 2)
    np.testing.assert_array_equal(q, [[0, 255], [128, 255], [0, 26]])  # clipped, rounded
    np.testing.assert_allclose(decode_soft_mask(encode_soft_mask(m), 3, 2), q / 255.0)


def test_parquet_filters_and_skipped(tmp_path):
    pq.write_table(records_to_table(_records()), tmp_path / "f.parquet")
    only = pq.read_table(tmp_path / "f.parquet", filters=[("dataset", "=", "world")])
    assert sorted(only.column("video").to_pylist()) == ["v0", "v1"]
    assert Skipped("a.mp4", "truncated").to_dict() == {"path": "a.mp4", "reason": "truncated"}


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "RGBA"])
def test_a_frame_stored_as_its_files_bytes_decodes_to_the_pixels_the_reader_read(tmp_path, mode):
    from PIL import Image

    from popdistill.data.readers._images import load_rgb_file

    rng = np.random.default_rng(1)
    fmt, suffix = ("PNG", "png") if mode == "RGBA" else ("JPEG", "jpg")
    path = tmp_path / f"f.{suffix}"
    Image.fromarray(rng.integers(0, 256, (12, 10, 4), dtype=np.uint8), "RGBA").convert(mode).save(path, fmt)
    image, data, codec = load_rgb_file(path)
    rec = FrameRecord("d", "v", 0, image, str(path), encoded=data, image_codec=codec)
    table = records_to_table([rec])
    assert table["image"][0].as_py() == path.read_bytes() and table["image_codec"][0].as_py() == suffix.replace("jpg", "jpeg")
    back = table_to_records(table)[0]
    np.testing.assert_array_equal(back.image, image)
    # written again (a rescored or selected store), the bytes stay the file's
    assert records_to_table([back])["image"][0].as_py() == data


def test_raw_and_jpeg_frames_and_a_store_without_the_newer_columns(tmp_path):
    import pyarrow as pa

    from popdistill.data.schema import conform, decode_image, encode_jpeg, read_frame_columns

    rng = np.random.default_rng(2)
    image = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 32 x 32 blocks
    data = encode_jpeg(image)
    assert len(data) < image.nbytes / 3
    assert np.abs(decode_image(data, 32, 32, "jpeg").astype(int) - image).mean() < 3  # lossy, close
    np.testing.assert_array_equal(decode_image(image.tobytes(), 32, 32, None), image)
    with pytest.raises(ValueError, match="16x32"):
        decode_image(data, 32, 16, "jpeg")
    # a store file written before `density` and `image_codec` existed: read as nulls (raw)
    old = records_to_table(_records()).drop_columns(["density", "image_codec"])
    pq.write_table(old, tmp_path / "old.parquet")
    cols = read_frame_columns(str(tmp_path / "old.parquet"), ["image", "density", "image_codec"])
    assert cols.column_names == ["image", "density", "image_codec"]
    assert cols["density"].null_count == cols["image_codec"].null_count == len(old)
    assert conform(old).schema.equals(FRAME_SCHEMA)
    np.testing.assert_array_equal(table_to_records(conform(old))[0].image, _records()[0].image)
    assert conform(records_to_table(_records())) is not None and isinstance(old, pa.Table)


def test_the_table_built_by_columns_equals_arrows_row_by_row_table():
    """``records_to_table`` builds its columns itself (boxes from one stacked array); it must
    give what Arrow builds from the rows: frames without boxes, with none, with several."""
    import pyarrow as pa

    records = _records()
    records[0].mask, records[0].score, records[0].density = np.full((3, 4), 0.5, np.float32), 0.5, 0.01
    records.append(FrameRecord("davis", "seq", 4, np.zeros((6, 8, 3), np.uint8), "x/00004.jpg",
                               gt_boxes=np.zeros((0, 4), np.float32)))
    by_rows = pa.Table.from_pylist([r.to_row() for r in records], schema=FRAME_SCHEMA)
    table = records_to_table(records)
    assert table.validate(full=True) is None
    assert table.equals(by_rows)
    assert table["gt_boxes"].to_pylist()[-1] == [] and table["gt_boxes"].to_pylist()[0] is None


def test_a_teachers_chunk_has_its_masks_stacked_into_one_buffer_with_the_same_bytes():
    """A chunk whose frames all have a mask and an annotation of one size: both columns are
    built from one stacked buffer, and equal the row-by-row table; mask values on the
    quantisation's edges (0, 1, x.5 / 255, out of range) land where ``encode_soft_mask`` puts them."""
    import pyarrow as pa

    rng = np.random.default_rng(3)
    edges = np.array([0, 1, 0.5 / 255, 1.5 / 255, 254.5 / 255, -0.2, 1.3, 0.999], np.float32)
    records = []
    for i in range(5):
        mask = rng.random((4, 6)).astype(np.float32)
        mask.flat[:8] = edges
        records.append(FrameRecord("world", "v", i, rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), f"{i}.jpg",
                                   gt_mask=rng.random((6, 8)) > 0.5, mask=mask, score=0.5, teacher="videopca",
                                   generation=1, density=0.01 * i))
    table = records_to_table(records)
    assert table.validate(full=True) is None
    assert table["mask"].chunk(0).buffers()[2].size == 5 * 4 * 6  # one buffer, no copies a row
    assert table.equals(pa.Table.from_pylist([r.to_row() for r in records], schema=FRAME_SCHEMA))
    assert [table["mask"][i].as_py() for i in range(5)] == [encode_soft_mask(r.mask) for r in records]
    assert np.frombuffer(table["mask"][0].as_py(), np.uint8)[:8].tolist() == [0, 255, 0, 2, 254, 0, 255, 255]
    back = table_to_records(table)
    for r, b in zip(records, back):
        np.testing.assert_array_equal(b.gt_mask, r.gt_mask)
    # one frame without a mask, or masks of two sizes: the row-by-row path, the same table
    for change in ("none", "size"):
        mixed = table_to_records(table)
        mixed[2].mask = None if change == "none" else np.zeros((3, 3), np.float32)
        assert records_to_table(mixed).equals(pa.Table.from_pylist([r.to_row() for r in mixed], schema=FRAME_SCHEMA))


def test_a_store_file_has_no_dictionaries_or_statistics_for_its_images_and_masks(tmp_path):
    """RunPath.write_table: dictionary pages and min/max statistics for the scalar and string
    columns only (a filter on them still prunes); images and masks plain, zstd-compressed."""
    from popdistill.storage import RunPath

    RunPath.of(str(tmp_path / "f.parquet")).write_table(records_to_table(_records()))
    meta = pq.ParquetFile(tmp_path / "f.parquet").metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    for name in ("image", "gt_mask", "mask"):
        assert not columns[name].has_dictionary_page and not columns[name].is_stats_set, name
        assert columns[name].compression == "ZSTD"
    assert columns["dataset"].has_dictionary_page and columns["frame"].is_stats_set
    assert columns["frame"].statistics.min == 0 and columns["frame"].statistics.max == 17
    only = pq.read_table(tmp_path / "f.parquet", filters=[("frame", ">", 10)])
    assert only["frame"].to_pylist() == [17]
