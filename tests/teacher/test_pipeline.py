"""The teacher pipeline on Ray Data: store, selection, resume and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from PIL import Image

from popdistill.config import load
from popdistill.teacher.config import TeacherConfig
from popdistill.teacher.pipeline import run_teacher

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def _square_video(root: Path, name: str, frames: int, size: int, rng: np.random.Generator, res="64p"):
    """A textured background with a slow pan and a bright square moving across it."""
    canvas = (rng.random((size + frames, size + frames, 3)) * 120).astype(np.uint8)
    img_dir = root / "JPEGImages" / res / name
    ann_dir = root / "Annotations" / res / name
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    side = size // 4
    for t in range(frames):
        frame = canvas[t // 2 : t // 2 + size, t // 3 : t // 3 + size].copy()
        x = 4 + (t * (size - side - 8)) // max(frames - 1, 1)
        y = size // 2 - side // 2 + (t % 3)
        frame[y : y + side, x : x + side] = (230, 40, 40)
        labels = np.zeros((size, size), np.uint8)
        labels[y : y + side, x : x + side] = 1
        Image.fromarray(frame).save(img_dir / f"{t:05d}.jpg", quality=95)
        Image.fromarray(labels).save(ann_dir / f"{t:05d}.png")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(3):
        _square_video(root, f"seq{i}", frames=12, size=64, rng=rng)
    _square_video(root, "short", frames=3, size=64, rng=rng)  # fewer than k + 1 frames
    # A corrupt frame inside a good video: reported, the rest of the video is kept.
    (root / "JPEGImages" / "64p" / "seq2" / "00005.jpg").write_bytes(b"not a jpeg")
    return root


def _cfg(corpus: Path, out: Path, **kw) -> TeacherConfig:
    base = {"data": str(corpus), "format": "davis", "out": str(out), "select_top": 0.25,
            "chunk_frames": 8, "actors": 2, "actor_cpus": 0.5, "read_cpus": 0.25,
            "videopca": {"size": 64, "window": 8, "min_window": 4}}
    base.update(kw)
    return load(TeacherConfig, base)


def _store_rows(path: str) -> list[dict]:
    files = sorted(str(p) for p in Path(path).rglob("*.parquet"))
    return pads.dataset(files, format="parquet").to_table(columns=["video", "frame", "score", "teacher"]).to_pylist()


@pytest.fixture(scope="module")
def first_run(ray_session, corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    png = tmp / "png"
    report = run_teacher(_cfg(corpus, tmp / "run", export_png=str(png)), log=lambda *_: None)
    return report, tmp / "run", png


def test_teacher_store_selection_and_report(first_run):
    report, out, png = first_run
    rows = _store_rows(report["store"])
    # Every good frame is in the store: 12 + 12 + 11 (one corrupt frame), none of the short video.
    assert len(rows) == 35
    assert {r["video"] for r in rows} == {"seq0", "seq1", "seq2"}
    assert all(r["teacher"] == "videopca" for r in rows)
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert "00005.jpg" in reasons and "unreadable" in reasons["00005.jpg"]
    assert "short" in reasons and "at least" in reasons["short"]
    # Selection keeps the top quarter by score, written as its own store.
    sel = report["selection"]
    assert sel["total"] == 35 and sel["kept"] >= 9
    kept = _store_rows(sel["store"])
    assert len(kept) == sel["kept"]
    scores = sorted((r["score"] for r in rows), reverse=True)
    assert min(r["score"] for r in kept) == pytest.approx(scores[8])
    # Ground truth exists: the teacher finds the square far better than the centre prior.
    m = report["metrics"]
    assert m["all"]["J"] > m["centre_prior"]["J"] + 0.15
    assert m["all"]["J"] > 0.4
    # PNG export at the frame's resolution in the data set's layout.
    pngs = sorted(png.rglob("*.png"))
    assert len(pngs) == 35
    assert Image.open(png / "seq0" / "00000.png").size == (64, 64)
    saved = json.loads((out / "teacher" / "report.json").read_text())
    assert saved["selection"]["kept"] == sel["kept"]
    # The actors' time by step, together within their chunks' time.
    steps = report["actor_step_seconds"]
    assert set(steps) == {"decode", "masks", "density", "store"}
    assert all(steps[k] > 0 for k in ("decode", "masks", "store"))  # (no strata here: no density)
    assert sum(steps.values()) <= report["actor_seconds"] <= report["seconds"] * 2
    assert (out / "teacher" / "contact_sheet.png").exists()


def test_teacher_resume_does_not_redo_finished_videos(first_run, corpus):
    report, out, _ = first_run
    assert report["videos"]["processed_this_run"] == 4
    marker = out / "teacher" / "store" / "seq0" / "chunk-00000.parquet"
    mtime = marker.stat().st_mtime_ns
    # A half-finished video (no done marker): its partial chunks are redone.
    (out / "teacher" / "done" / "seq1.json").unlink()
    second = run_teacher(_cfg(corpus, out, evaluate=False), log=lambda *_: None)
    assert second["videos"]["processed_this_run"] == 2  # seq1 and the (still too short) video
    assert second["frames_this_run"] == 12
    assert marker.stat().st_mtime_ns == mtime
    assert len(_store_rows(second["store"])) == 35
    assert second["selection"]["kept"] == report["selection"]["kept"]


def test_teacher_on_video_folder_with_a_corrupt_video(ray_session, tmp_path):
    from tests.data.fixtures import write_garbage, write_video

    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", 10, 64, 64, moving=True)
    write_video(videos / "b.mp4", 12, 64, 64, moving=True)
    write_garbage(videos / "broken.mp4")
    cfg = _cfg(videos, tmp_path / "run", format="video_folder", evaluate=False)
    report = run_teacher(cfg, log=lambda *_: None)
    rows = _store_rows(report["store"])
    # Every frame of the good videos is stored; the broken one is reported by path.
    assert sorted({r["video"] for r in rows}) == ["a", "b"]
    assert len(rows) == 22
    assert any(Path(s["path"]).name == "broken.mp4" for s in report["skipped"])
    assert report["videos"]["done"] == 2


def test_stratified_selection_keeps_the_top_of_each_edge_density_stratum(first_run, tmp_path):
    from popdistill.data.schema import FrameRecord
    from popdistill.selection.scores import edge_density, stratified_keep, stratified_thresholds
    from popdistill.selection.store import evaluate_store, select_top
    from popdistill.storage import RunPath
    from popdistill.teacher.report import contact_sheet_frames, teacher_contact_sheet

    report, _, _ = first_run
    store, selected = RunPath.of(report["store"]), RunPath.of(str(tmp_path / "selected"))
    sel = select_top(store, selected, 0.25, strata=2)
    # the same rule computed on the driver from every frame's image
    files = sorted(str(p) for p in Path(report["store"]).rglob("*.parquet"))
    recs = [FrameRecord.from_row(r) for r in pads.dataset(files, format="parquet").to_table().to_pylist()]
    scores = np.array([r.score for r in recs], np.float64)
    values = np.array([edge_density(r.image) for r in recs])
    edges, thresholds = stratified_thresholds(scores, values, 0.25, 2)
    keep = stratified_keep(scores, values, edges, thresholds)
    expected = {(r.video, r.frame) for r, k in zip(recs, keep) if k}
    assert {(r["video"], r["frame"]) for r in _store_rows(sel["store"])} == expected
    # the selection keeps the store's own row order (files in order), so training reads the
    # same batches on a rerun
    order = [(r.video, r.frame) for r, k in zip(recs, keep) if k]
    written = sorted(str(p) for p in (tmp_path / "selected").rglob("*.parquet"))
    assert [(r["video"], r["frame"]) for f in written
            for r in pq.read_table(f, columns=["video", "frame"]).to_pylist()] == order
    assert sel["kept"] == len(expected) and sel["strata"] == 2
    assert sel["strata_kept"] == [int(keep[values <= edges[0]].sum()), int(keep[values > edges[0]].sum())]
    assert min(sel["strata_kept"]) >= 4  # the top quarter of each half (17-18 frames)
    assert sel["strata_thresholds"] == pytest.approx(thresholds.tolist())
    metrics = evaluate_store(store, sel)
    assert metrics["selected"]["frames"] == len(expected)
    assert metrics["rejected"]["frames"] == len(recs) - len(expected)
    assert teacher_contact_sheet(store, selected, tmp_path / "sheet.png") is not None
    # the sheet's frames: kept ones from the selection, rejected ones from outside it, a video each
    groups = dict(contact_sheet_frames(store, selected, per_group=3))
    assert {(r.video, r.frame) for r in groups["selected"]} <= expected
    assert not {(r.video, r.frame) for r in groups["rejected"]} & expected
    kept_videos = {v for v, _ in expected}
    rejected_videos = {r.video for r, k in zip(recs, keep) if not k}
    for name, videos in (("selected", kept_videos), ("rejected", rejected_videos)):
        assert len({r.video for r in groups[name]}) == len(groups[name]) == min(3, len(videos))


def test_selection_reads_stored_edge_densities_and_computes_missing_ones_alike(first_run, tmp_path):
    """A VideoPCA actor stores each frame's edge density when the selection has strata, so
    selection reads scalars only; a store without them (select_strata 1, or written before the
    column existed) gives the same selection, the densities computed from the images."""
    from popdistill.data.schema import FrameRecord
    from popdistill.selection.scores import edge_density
    from popdistill.selection.store import select_top
    from popdistill.storage import RunPath

    report, _, _ = first_run
    files = sorted(Path(report["store"]).rglob("*.parquet"))
    table = pads.dataset([str(f) for f in files], format="parquet").to_table()
    rows = table.to_pylist()
    assert {r["density"] for r in rows} == {None}  # select_strata 1: not computed
    # each frame is its image file's own bytes, decoded to the pixels the reader decoded
    assert all(r["image"] == Path(r["source"]).read_bytes() for r in rows)
    assert {r["image_codec"] for r in rows} == {"jpeg"}
    filled, old = tmp_path / "filled", tmp_path / "old"
    for f in files:
        t = pq.read_table(f)
        values = [edge_density(FrameRecord.from_row(r).image) for r in t.to_pylist()]
        for root, out in ((filled, t.set_column(t.schema.get_field_index("density"), "density",
                                                pa.array(values, pa.float64()))),
                          (old, t.drop_columns(["density", "image_codec"]) if f.parent.name == "seq0" else t)):
            target = root / f.relative_to(report["store"])
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(out, target)
    if old.joinpath("seq0").exists():  # an old raw store file: images as raw bytes again
        for f in (old / "seq0").glob("*.parquet"):
            t = pq.read_table(f)
            raw = [FrameRecord.from_row({**r, "image_codec": "jpeg"}).image.tobytes() for r in t.to_pylist()]
            pq.write_table(t.set_column(t.schema.get_field_index("image"), "image", pa.array(raw, pa.binary())), f)
    new = select_top(RunPath.of(str(filled)), RunPath.of(str(tmp_path / "a")), 0.25, strata=2)
    legacy = select_top(RunPath.of(str(old)), RunPath.of(str(tmp_path / "b")), 0.25, strata=2)
    assert legacy["kept"] == new["kept"] and legacy["strata_thresholds"] == new["strata_thresholds"]
    assert [(r["video"], r["frame"]) for r in _store_rows(legacy["store"])] == \
        [(r["video"], r["frame"]) for r in _store_rows(new["store"])]
    # the copies are in the store's schema, the columns an old file lacks filled in as null
    assert pq.read_schema(next((tmp_path / "b" / "seq0").glob("*.parquet"))).names == table.schema.names


def test_select_strata_must_be_a_positive_integer(corpus, tmp_path):
    from popdistill.errors import UserError

    with pytest.raises(UserError, match="select_strata: 0 must be an integer >= 1"):
        _cfg(corpus, tmp_path, select_strata=0).validate()


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_the_videopca_actor_decodes_its_videos_and_stores_frames_as_the_codec_says(tmp_path, codec):
    """No Ray: the actor is given video references, decodes them, and writes each chunk; frames
    of an H.264 file have no file of their own, so `source` would store them raw."""
    import json

    from popdistill.config import to_dict
    from popdistill.data.readers import create_reader
    from popdistill.data.schema import FrameRecord
    from popdistill.selection.scores import edge_density
    from popdistill.teacher.pipeline import VideoPCAActor
    from tests.data.fixtures import write_video

    write_video(tmp_path / "videos" / "a.mp4", 10, 64, 64, moving=True)
    cfg = _cfg(tmp_path / "videos", tmp_path / "run", format="video_folder")
    source = {"fmt": "video_folder", "root": str(tmp_path / "videos"), "options": {}, "chunk_frames": 8,
              "min_frames": cfg.videopca.k + 1}
    actor = VideoPCAActor(str(tmp_path / "store"), None, 1, to_dict(cfg.videopca), 1, source=source,
                          image_codec=codec)
    refs = create_reader("video_folder", tmp_path / "videos").videos()
    out = list(actor({"ref": np.asarray([json.dumps(r.to_dict()) for r in refs], dtype=object)}))
    assert sum(int(o["n_frames"][0]) for o in out) == 10 and bool(out[-1]["last"][0])
    rows = pads.dataset(str(tmp_path / "store"), format="parquet").to_table().to_pylist()
    decoded = [r.image for r in create_reader("video_folder", tmp_path / "videos").read_video(refs[0])]
    assert [r["image_codec"] for r in rows] == [None if codec == "raw" else "jpeg"] * 10
    for row, image in zip(rows, decoded):
        back = FrameRecord.from_row(row).image
        assert row["density"] == edge_density(image)  # computed from the decoded frame
        if codec == "raw":
            np.testing.assert_array_equal(back, image)
        else:
            assert len(row["image"]) < image.nbytes / 2 and np.abs(back.astype(int) - image).mean() < 4
