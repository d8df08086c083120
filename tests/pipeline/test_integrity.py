"""A resumed run checks the outputs of its finished steps (popdistill.pipeline.integrity)."""

from __future__ import annotations

from pathlib import Path

import pytest

from popdistill.inference.sink import mark_done, write_chunk
from popdistill.pipeline.integrity import damaged_outputs, repair
from popdistill.pipeline.manifest import Manifest
from popdistill.storage import RunPath
from popdistill.students import create_student, save_checkpoint
from tests.train.toy import square_records


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # as after a full disk or a copy cut short


@pytest.fixture
def run_dir(tmp_path) -> RunPath:
    """A run directory with a teacher store of two videos and a student checkpoint, laid out
    as the pipeline writes them."""
    root = RunPath.of(tmp_path / "run")
    teacher = root / "gen-1" / "teacher"
    for video in ("v0", "v1"):
        write_chunk(teacher / "store", video, 0, square_records(4, size=32, mask_size=16, seed=1))
        mark_done(teacher / "done", video, {"video": video})
    ckpt = Path(root.path) / "gen-1" / "train" / "unet_tiny" / "epoch-0001" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(ckpt, create_student("unet_tiny"))
    (Path(root.path) / "gen-1" / "train" / "unet_tiny.json").write_text("{}")
    return root


def test_whole_outputs_pass_and_damaged_ones_are_named(run_dir):
    base = run_dir.uri
    teacher = {"store": f"{base}/gen-1/teacher/store", "teacher": "videopca"}
    train = {"unet_tiny": {"checkpoint": f"{base}/gen-1/train/unet_tiny/epoch-0001/model.pt"}}
    assert damaged_outputs(teacher, run_dir) == [] and damaged_outputs(train, run_dir) == []
    chunk = Path(run_dir.path) / "gen-1/teacher/store/v1/chunk-00000.parquet"
    _truncate(chunk)
    _truncate(Path(run_dir.path) / "gen-1/train/unet_tiny/epoch-0001/model.pt")
    [(path, problem)] = damaged_outputs(teacher, run_dir)
    assert path == f"{base}/gen-1/teacher/store/v1/chunk-00000.parquet"
    assert problem.startswith("unreadable Parquet")
    [(ckpt, problem)] = damaged_outputs(train, run_dir)
    assert ckpt.endswith("model.pt") and "checkpoint" in problem
    # inputs outside the run directory are not the run's to check
    assert damaged_outputs({"data": str(chunk.parent)}, RunPath.of(chunk.parent.parent / "x")) == []

    # the damaged video goes with its done marker; the other stays
    assert repair(path) == [f"{base}/gen-1/teacher/store/v1", f"{base}/gen-1/teacher/done/v1.json"]
    assert (Path(run_dir.path) / "gen-1/teacher/done/v0.json").exists()
    # the damaged checkpoint takes the student's run and summary: it is trained again
    assert repair(ckpt) == [f"{base}/gen-1/train/unet_tiny", f"{base}/gen-1/train/unet_tiny.json"]


def test_a_resumed_run_redoes_a_step_whose_output_is_damaged(run_dir):
    base = run_dir.uri
    log: list[str] = []
    m = Manifest(run_dir)
    m.run("data", lambda: {"n": 1}, log.append)
    m.run("gen-1/teacher", lambda: {"store": f"{base}/gen-1/teacher/store"}, log.append)
    m.run("gen-1/train", lambda: {"ckpt": f"{base}/gen-1/train/unet_tiny/epoch-0001/model.pt"},
          log.append)
    _truncate(Path(run_dir.path) / "gen-1/teacher/store/v0/chunk-00000.parquet")

    again = Manifest(run_dir)  # the resumed driver
    calls = []
    assert again.run("data", lambda: calls.append("data"), log.append) == {"n": 1}
    again.run("gen-1/teacher", lambda: calls.append("teacher") or {"redone": True}, log.append)
    assert calls == ["teacher"]  # the damaged step ran again, the whole one did not
    said = "\n".join(log)
    assert f"[gen-1/teacher] {base}/gen-1/teacher/store/v0/chunk-00000.parquet: unreadable Parquet" in said
    assert "[gen-1/teacher] redone (and after it: gen-1/train)" in said
    assert "gen-1/train" not in again.steps  # steps after it are forgotten: they run again
    assert not (Path(run_dir.path) / "gen-1/teacher/done/v0.json").exists()
    assert Manifest(run_dir).result("gen-1/teacher") == {"redone": True}
