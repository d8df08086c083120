"""Student inference: the pure batch function, the Ray Data actor, `popdistill predict`, and the
GPU benchmark's clean exit without CUDA."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from popdistill import cli
from popdistill.data.readers import create_reader
from popdistill.data.schema import FrameRecord
from popdistill.inference.chunks import iter_chunks
from popdistill.inference.predict import PopulationPredictor, StudentPredictor, predict_records
from popdistill.students import create_evalseg, create_student, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
HALF_LSB = 0.5 / 255 + 1e-6  # 8-bit quantisation of the store


def _record(i: int, h: int, w: int, rng: np.random.Generator) -> FrameRecord:
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return FrameRecord("t", "v", i, image, f"/x/{i:05d}.jpg")


def _model(name: str = "unet_tiny", seed: int = 0):
    torch.manual_seed(seed)
    return create_student(name).eval()


def _constant_head(model, p: float):
    """Zero the head's weights, bias = logit(p): every output pixel is exactly p."""
    for m in model.head.modules():
        if isinstance(m, torch.nn.Linear | torch.nn.Conv2d):
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.constant_(m.bias, math.log(p / (1 - p)))
    return model


@pytest.mark.parametrize("name, out_size", [("unet_tiny", 64), ("lowres_tiny", 16)])
def test_constant_model_gives_its_value_at_output_size(name, out_size):
    model = _constant_head(_model(name), 0.75)
    rng = np.random.default_rng(0)
    masks = predict_records(model, [_record(i, 40 + 8 * i, 50, rng) for i in range(3)], batch_size=2)
    assert [m.shape for m in masks] == [(out_size, out_size)] * 3
    assert all(m.dtype == np.float32 for m in masks)
    np.testing.assert_allclose(np.stack(masks), 0.75, atol=1e-6)


def test_predict_records_matches_a_direct_forward_for_any_batching():
    model = _model()
    rng = np.random.default_rng(1)
    # Mixed frame sizes: 64 (no resize), 96x80 (shrink, antialiased), 30x40 (enlarge).
    records = [_record(i, *hw, rng) for i, hw in enumerate([(64, 64), (96, 80), (30, 40), (64, 64), (96, 80)])]
    expected = []
    with torch.no_grad():
        for r in records:
            x = torch.from_numpy(r.image).permute(2, 0, 1)[None].float() / 255
            x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
            expected.append(model(x)[0, 0].numpy())
    assert np.ptp(np.stack(expected)) > 0.05  # the model's output does depend on the image
    for batch_size in (1, 2, 5, 32):
        got = predict_records(model, records, batch_size=batch_size)
        np.testing.assert_allclose(np.stack(got), np.stack(expected), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        predict_records(model, records, batch_size=0)


# -- a tiny DAVIS corpus ----------------------------------------------------------------------

SIZES = {"seqA": (64, 64, 3), "seqB": (48, 80, 3)}  # video -> (height, width, frames)


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    rng = np.random.default_rng(0)
    for seq, (h, w, n) in SIZES.items():
        img_dir, ann_dir = root / "JPEGImages" / "64p" / seq, root / "Annotations" / "64p" / seq
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for t in range(n):
            frame = (rng.random((h, w, 3)) * 100).astype(np.uint8)
            frame[10 : 10 + h // 3, 5 + 4 * t : 5 + 4 * t + w // 3] = (230, 40, 40)
            labels = np.zeros((h, w), np.uint8)
            labels[10 : 10 + h // 3, 5 + 4 * t : 5 + 4 * t + w // 3] = 1
            Image.fromarray(frame).save(img_dir / f"{t:05d}.jpg", quality=95)
            Image.fromarray(labels).save(ann_dir / f"{t:05d}.png")
    # A corrupt frame: reported as skipped, the rest of seqB is kept.
    (root / "JPEGImages" / "64p" / "seqB" / "00001.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "unet_tiny.pt"
    return save_checkpoint(path, _model(seed=3), step=11, config={"generation": 1})


def _reader_records(root: Path) -> list[FrameRecord]:
    reader = create_reader("davis", root)
    return [r for ref in reader.videos() for r in reader.read_video(ref)]


def _store(path: Path) -> list[dict]:
    files = sorted(str(p) for p in path.rglob("*.parquet"))
    return pads.dataset(files, format="parquet").to_table().to_pylist()


def test_actor_writes_a_chunk_without_ray(davis, checkpoint, tmp_path):
    reader = create_reader("davis", davis)
    ref = reader.videos()[0]
    rows = [c.to_row() for c in iter_chunks(reader, ref, chunk_frames=2, min_frames=1)]
    assert [r["n_frames"] for r in rows] == [2, 1]
    actor = StudentPredictor(str(checkpoint), str(tmp_path / "store"), None, generation=4, threads=1, batch_size=2)
    assert actor.device.type in ("cpu", "cuda")
    out = actor({k: np.asarray([r[k] for r in rows], dtype=object) for k in rows[0]})
    assert out["n_frames"].tolist() == [2, 1] and out["last"].tolist() == [False, True]
    stored = _store(tmp_path / "store")
    assert sorted(r["frame"] for r in stored) == [0, 1, 2]
    assert {(r["teacher"], r["generation"], r["mask_height"]) for r in stored} == {("student:unet_tiny", 4, 64)}
    mean = [np.frombuffer(r["mask"], np.uint8).astype(np.float64).mean() / 255 for r in stored]
    # score = the selection score (mean of the non-zero values; sigmoid outputs are never 0)
    np.testing.assert_allclose([r["score"] for r in stored], mean, atol=HALF_LSB)


@pytest.mark.parametrize("every", [0.0, 3600.0])
def test_an_actor_that_decodes_its_videos_writes_the_store_that_read_tasks_feed_it(davis, checkpoint, tmp_path,
                                                                                   monkeypatch, every):
    """``decode: actor``: video references in, a summary row a chunk out, sent in blocks at most
    every SUMMARY_SECONDS (0: a block a chunk; an hour: one block for the task), with the
    actor's seconds by step; the store is the one written from chunk rows decoded elsewhere,
    row for row."""
    import json

    from popdistill.inference import stream

    monkeypatch.setattr(stream, "SUMMARY_SECONDS", every)
    reader = create_reader("davis", davis)
    refs = reader.videos()
    rows = [c.to_row() for ref in refs for c in iter_chunks(reader, ref, chunk_frames=2, min_frames=1)]
    fed = StudentPredictor(str(checkpoint), str(tmp_path / "fed"), None, generation=2, threads=1, batch_size=2)
    fed({k: np.asarray([r[k] for r in rows], dtype=object) for k in rows[0]})
    source = {"fmt": "davis", "root": str(davis), "options": {}, "chunk_frames": 2, "min_frames": 1}
    own = StudentPredictor(str(checkpoint), str(tmp_path / "own"), None, generation=2, threads=1,
                           batch_size=2, source=source)
    blocks = list(own({"ref": np.asarray([json.dumps(r.to_dict()) for r in refs], dtype=object)}))
    assert len(blocks) == (len(rows) if every == 0 else 1)
    out = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    assert list(zip(out["video"].tolist(), out["chunk"].tolist(), out["n_frames"].tolist())) == \
        [(r["video"], r["chunk"], r["n_frames"]) for r in rows]
    steps = np.stack([out[f"{k}_seconds"] for k in stream.STEPS])
    assert (steps > 0).all() and (steps.sum(axis=0) <= out["seconds"]).all()
    assert _store(tmp_path / "own") == _store(tmp_path / "fed")


def test_a_population_actor_writes_each_students_store_as_its_own_actor_would(davis, checkpoint, tmp_path):
    """One pass for several students: each store equals the one a single-student actor writes."""
    other = save_checkpoint(tmp_path / "fconv.pt", create_student("fconv_tiny"), config={"generation": 1})
    reader = create_reader("davis", davis)
    rows = [c.to_row() for ref in reader.videos() for c in iter_chunks(reader, ref, chunk_frames=2, min_frames=1)]
    batch = {k: np.asarray([r[k] for r in rows], dtype=object) for k in rows[0]}
    both = PopulationPredictor([str(checkpoint), str(other)],
                               [str(tmp_path / "a"), str(tmp_path / "b")], [None, None],
                               generation=2, threads=1, batch_size=2)
    out = both(batch)
    assert out["n_frames"].sum() == sum(r["n_frames"] for r in rows)
    for ckpt, name, teacher in ((checkpoint, "a", "student:unet_tiny"), (other, "b", "student:fconv_tiny")):
        alone = StudentPredictor(str(ckpt), str(tmp_path / f"{name}-alone"), None, generation=2,
                                 threads=1, batch_size=2)
        alone(batch)
        key = lambda r: (r["video"], r["frame"])  # noqa: E731
        got = sorted(_store(tmp_path / name), key=key)
        want = sorted(_store(tmp_path / f"{name}-alone"), key=key)
        assert [(r["video"], r["frame"], r["teacher"], r["mask"]) for r in got] == [
            (r["video"], r["frame"], teacher, r["mask"]) for r in want]


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_predict_cli_store_pngs_report_and_evaluate(ray_session, davis, checkpoint, tmp_path, capsys):
    out, png = tmp_path / "pred", tmp_path / "png"
    argv = ["predict", "--checkpoint", str(checkpoint), "--data", str(davis), "--format", "davis",
            "--out", str(out), "--export-png", str(png), "--batch-size", "2", "--actors", "1",
            "--actor-cpus", "0.5", "--threads", "1", "--chunk-frames", "2"]
    assert cli.main(argv) == 0
    records = _reader_records(davis)
    assert len(records) == 5  # 3 + 2 (one corrupt frame of seqB)
    expected = {(r.video, r.frame): m for r, m in zip(records, predict_records(_model(seed=3), records, 4))}
    rows = _store(out / "store")
    assert sorted((r["video"], r["frame"]) for r in rows) == sorted(expected)
    for r in rows:
        assert (r["mask_height"], r["mask_width"]) == (64, 64)
        assert r["teacher"] == "student:unet_tiny" and r["generation"] == 2  # checkpoint's gen + 1
        mask = np.frombuffer(r["mask"], np.uint8).reshape(64, 64).astype(np.float32) / 255
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        np.testing.assert_allclose(mask, expected[(r["video"], r["frame"])], atol=HALF_LSB)
        # PNG at the frame's own resolution: the store's mask resized to it
        h, w, _ = SIZES[r["video"]]
        image = Image.open(png / r["video"] / f"{r['frame']:05d}.png")
        assert image.size == (w, h) and image.mode == "L"
    assert sorted(p.relative_to(png).as_posix() for p in png.rglob("*.png")) == [
        "seqA/00000.png", "seqA/00001.png", "seqA/00002.png", "seqB/00000.png", "seqB/00002.png"]

    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 5 and report["videos"] == {"total": 2, "done": 2, "processed_this_run": 2}
    assert report["frames_per_second"] > 0 and report["checkpoint"]["step"] == 11
    assert [Path(s["path"]).name for s in report["skipped"]] == ["00001.jpg"]
    assert "predict: student:unet_tiny" in capsys.readouterr().out

    # Resume: nothing is redone; another checkpoint into the same folder is refused.
    assert cli.main(argv) == 0
    assert json.loads((out / "report.json").read_text())["frames"] == 0
    other = save_checkpoint(tmp_path / "other.pt", _model(seed=9))
    assert cli.main([*argv[:2], str(other), *argv[3:]]) == 2
    assert "another checkpoint" in capsys.readouterr().err

    # The store is a mask store `popdistill evaluate` scores: every annotated frame.
    assert cli.main(["evaluate", "--data", str(davis), "--format", "davis", "--masks", str(out / "store"),
                     "--out", str(tmp_path / "eval"), "--progress-every", "0"]) == 0
    ev = json.loads((tmp_path / "eval" / "report.json").read_text())["methods"]["store"]
    assert ev["overall"]["frames"] == 5 and ev["skipped"] == []


class _Payload:
    """Unpickling this would write a file: a loader that runs pickled code is caught by it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_checkpoint_needing_arbitrary_unpickling_is_refused(davis, tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.pt"
    good = save_checkpoint(tmp_path / "good.pt", _model())
    payload = torch.load(good, weights_only=True)
    payload["config"] = {"x": _Payload(marker)}
    torch.save(payload, evil)
    rc = cli.main(["predict", "--checkpoint", str(evil), "--data", str(davis), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_a_checkpoint_that_is_not_a_student_is_refused(davis, tmp_path, capsys):
    path = save_checkpoint(tmp_path / "evalseg.pt", create_evalseg("evalseg_tiny"))
    rc = cli.main(["predict", "--checkpoint", str(path), "--data", str(davis), "--out", str(tmp_path / "o")])
    assert rc == 2 and "not a student segmenter" in capsys.readouterr().err


# -- the GPU benchmark -------------------------------------------------------------------------


def _load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_exits_cleanly_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _load_benchmark("students_gpu").main(["--archs", "unet_tiny"]) == 0
    assert "no CUDA device" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_benchmark_runs_on_cuda(capsys):
    assert _load_benchmark("students_gpu").main(["--archs", "unet_tiny,lowres_tiny", "--batch", "8", "--iters", "2"]) == 0
    out = capsys.readouterr().out
    assert "| unet_tiny |" in out and "| lowres_tiny |" in out
