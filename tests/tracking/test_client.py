"""popdistill.tracking: the MLflow run tree, lineage, resuming, NullTracker and `popdistill ui`."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from popdistill import cli, tracking
from popdistill.commands.ui import _check_port, ui_command
from popdistill.errors import UserError
from popdistill.selection.stats import selection_summary
from popdistill.tracking import (
    NullTracker,
    Tracker,
    TrackingConfig,
    create_tracker,
    flatten_config,
    table_csv,
    table_markdown,
    truncate,
)

LINEAGE = {"store": "RUN/gen1/store", "generation": 1, "threshold": 0.62, "teacher": "videopca"}
EPOCHS = [(0.9, 0.1), (0.5, 0.3), (0.2, 0.5)]  # (train/loss, val/J) per epoch


@dataclass
class _Train:
    lr: float = 1e-3
    epochs: int = 3


@dataclass
class _Cfg:
    name: str = "quick"
    train: _Train = field(default_factory=_Train)
    students: list[str] = field(default_factory=lambda: ["unet", "lowres"])
    notes: str = "n" * 7000


# -- pure helpers -----------------------------------------------------------------------------
def test_import_does_not_load_mlflow():
    code = (
        "import sys, popdistill.tracking.client, popdistill.commands.ui; "
        "print('mlflow' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_flatten_config_dotted_keys_and_limits():
    flat = flatten_config(
        {"a": {"b": 1, "c": [1, 2]}, "l": [{"q": None}], "bad key!": True, "s": "x" * 7000}
    )
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]"
    assert flat["l.0.q"] == "None" and flat["bad key_"] == "True"
    assert len(flat["s"]) == 6000 and flat["s"].endswith("...[truncated 7000 chars]")
    assert flatten_config(_Cfg())["train.lr"] == "0.001"


def test_truncate():
    assert truncate("abc", 3) == "abc"
    cut = truncate("a" * 100, 40)
    assert len(cut) == 40 and cut == "a" * 16 + "...[truncated 100 chars]"


def test_selection_summary_numbers():
    kept = np.array([True, False, True, False, False])
    j = np.array([0.8, 0.2, 0.6, 0.4, np.nan])
    s = selection_summary(kept, 0.62, j)
    assert s["selection/kept"] == 2 and s["selection/total"] == 5
    assert s["selection/kept_fraction"] == pytest.approx(0.4)
    assert s["selection/threshold"] == pytest.approx(0.62)
    assert s["selection/J_kept"] == pytest.approx(0.7)
    assert s["selection/J_rejected"] == pytest.approx(0.3)  # the NaN is left out
    assert "selection/J_kept" not in selection_summary(kept, 0.5)
    with pytest.raises(ValueError, match="4 values for 5"):
        selection_summary(kept, 0.5, j[:4])


def test_tables():
    rows = [{"model": "unet", "J": 0.51234}, {"model": "lowres", "P": 0.9, "J": float("nan")}]
    assert table_csv(rows) == "model,J,P\nunet,0.51234,\nlowres,,0.9\n"
    assert table_markdown(rows) == (
        "| model | J | P |\n|---|---|---|\n| unet | 0.5123 |  |\n| lowres |  | 0.9 |\n"
    )


def test_generation_figure():
    fig = tracking.generation_figure({"unet": {2: 0.6, 1: 0.5}, "teacher": {1: 0.4}})
    lines = fig.axes[0].get_lines()
    assert [list(ln.get_xdata()) for ln in lines] == [[1, 2], [1]]
    assert list(lines[0].get_ydata()) == [0.5, 0.6]


def test_lineage_must_be_complete():
    with pytest.raises(ValueError, match="lineage lacks threshold, teacher"):
        NullTracker().student_run(NullTracker().generation_run(None, 1), "unet", {
            "store": "s", "generation": 1})


def test_null_tracker_has_the_api(tmp_path):
    t = create_tracker(tmp_path, False)
    assert isinstance(t, NullTracker)
    assert isinstance(create_tracker(tmp_path, TrackingConfig(enabled=False)), NullTracker)
    with t.pipeline_run("x", _Cfg()) as parent:
        gen = t.generation_run(parent, 2)
        run = t.student_run(gen, "unet", LINEAGE)
        run.log_params({"a": 1})
        run.log_metrics({"val/J": 0.5}, step=1)
        run.log_image(np.zeros((4, 4)), "m.png", key="masks", step=0)
        run.log_table([{"a": 1}], "results")
        run.log_dict({"a": 1}, "report.json")
        run.set_tags({"a": "b"})
        run.end("FINISHED")
        assert t.evalseg_run(gen, LINEAGE).name == "gen-2/evalseg"
    assert list(tmp_path.iterdir()) == []


def test_remote_run_dir_needs_a_tracking_uri():
    with pytest.raises(UserError, match="s3://bucket/run"):
        tracking.default_tracking_uri("s3://bucket/run")


# -- the run tree (one MLflow store for the module: creating one costs seconds) -------------
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracker = Tracker(run_dir)
    parent = tracker.pipeline_run("quick", _Cfg())
    gen = tracker.generation_run(parent, 1)
    student = tracker.student_run(gen, "unet", LINEAGE)
    evalseg = tracker.evalseg_run(gen, LINEAGE)
    with student:
        for epoch, (loss, j) in enumerate(EPOCHS):
            student.log_metrics({"train/loss": loss, "val/J": j}, step=epoch)
        student.log_metrics({"final/P": 0.9, "final/J": 0.5, "final/CorLoc": 0.75})
        grid = np.zeros((20, 30, 3), np.uint8)
        grid[:, :15] = 255
        student.log_image(grid, "masks/gen1_unet.png", key="masks", step=2)
        ckpt = run_dir / "ckpt"
        ckpt.mkdir()
        (ckpt / "model.pt").write_bytes(b"weights")
        student.log_artifact(ckpt, "checkpoints")
    with pytest.raises(RuntimeError), evalseg:
        raise RuntimeError("training failed")
    kept = np.array([True, False, True, False])
    gen.log_metrics(selection_summary(kept, 0.62, np.array([0.8, 0.2, 0.6, 0.4])), step=1)
    gen.log_table([{"model": "unet", "J": 0.5}], "results")
    parent.log_figure(tracking.generation_figure({"unet": {1: 0.5}}), "j_by_generation.png")
    parent.log_dict({"J": np.float32(0.5), "missing": float("nan")}, "report.json")
    return SimpleNamespace(
        run_dir=run_dir, tracker=tracker, client=tracker.client, parent=parent, gen=gen,
        student=student, evalseg=evalseg,
    )


def _run(tree, handle):
    return tree.client.get_run(handle.run_id)


def _artifact(tree, handle, path: str) -> Path:
    return tree.run_dir / "mlartifacts" / handle.run_id / "artifacts" / path


def test_store_lives_in_the_run_dir(tree):
    assert tree.tracker.tracking_uri == f"sqlite:///{tree.run_dir.resolve()}/mlflow.db"
    assert (tree.run_dir / "mlflow.db").is_file()
    exp = tree.client.get_experiment(tree.tracker.experiment_id)
    assert exp.name == "popdistill"
    assert exp.artifact_location == str(tree.run_dir.resolve() / "mlartifacts")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_parent_child_links(tree):
    runs = {r.info.run_name: r for r in tree.client.search_runs([tree.tracker.experiment_id])}
    assert set(runs) == {"quick", "gen-1", "gen-1/unet", "gen-1/evalseg"}
    tags = {name: r.data.tags for name, r in runs.items()}
    assert "mlflow.parentRunId" not in tags["quick"]
    assert tags["gen-1"]["mlflow.parentRunId"] == tree.parent.run_id
    assert tags["gen-1/unet"]["mlflow.parentRunId"] == tree.gen.run_id
    assert tags["gen-1/evalseg"]["mlflow.parentRunId"] == tree.gen.run_id
    assert [tags[n]["popdistill.kind"] for n in ("quick", "gen-1", "gen-1/unet", "gen-1/evalseg")] == [
        "pipeline", "generation", "student", "evalseg"]
    assert all(t["popdistill.run_id"] == "quick" for t in tags.values())
    assert runs["gen-1/unet"].info.status == "FINISHED"
    assert runs["gen-1/evalseg"].info.status == "FAILED"
    assert runs["quick"].info.status == "RUNNING"


def test_lineage_tags(tree):
    tags = _run(tree, tree.student).data.tags
    assert tags["popdistill.lineage.store"] == "RUN/gen1/store"
    assert tags["popdistill.lineage.generation"] == "1"
    assert tags["popdistill.lineage.threshold"] == "0.62"
    assert tags["popdistill.lineage.teacher"] == "videopca"
    assert tags["popdistill.lineage.generation_run_id"] == tree.gen.run_id
    assert tags["popdistill.generation"] == "1" and tags["popdistill.student"] == "unet"
    assert _run(tree, tree.evalseg).data.tags["popdistill.lineage.teacher"] == "videopca"


def test_config_params_and_artifact(tree):
    params = _run(tree, tree.parent).data.params
    assert params["train.lr"] == "0.001" and params["train.epochs"] == "3"
    assert params["students"] == '["unet", "lowres"]'
    assert len(params["notes"]) == 6000
    config = yaml.safe_load(_artifact(tree, tree.parent, "config.yaml").read_text())
    assert config["train"] == {"lr": 0.001, "epochs": 3} and config["notes"] == "n" * 7000


def test_metrics_with_steps(tree):
    history = tree.client.get_metric_history(tree.student.run_id, "val/J")
    assert [(m.step, m.value) for m in history] == [(0, 0.1), (1, 0.3), (2, 0.5)]
    loss = tree.client.get_metric_history(tree.student.run_id, "train/loss")
    assert [m.value for m in sorted(loss, key=lambda m: m.step)] == [0.9, 0.5, 0.2]
    assert _run(tree, tree.student).data.metrics["final/CorLoc"] == 0.75
    gen = _run(tree, tree.gen).data.metrics
    assert gen["selection/kept"] == 2 and gen["selection/J_kept"] == pytest.approx(0.7)
    assert gen["selection/J_rejected"] == pytest.approx(0.3)


def test_artifacts(tree):
    from PIL import Image

    png = _artifact(tree, tree.student, "masks/gen1_unet.png")
    image = np.asarray(Image.open(png))
    assert image.shape == (20, 30, 3) and image[:, :15].min() == 255 and image[:, 15:].max() == 0
    names = [f.path for f in tree.client.list_artifacts(tree.student.run_id, "images")]
    assert any(n.startswith("images/masks+step+2+") and n.endswith(".png") for n in names)
    assert _artifact(tree, tree.student, "checkpoints/model.pt").read_bytes() == b"weights"
    assert _artifact(tree, tree.gen, "results.csv").read_text() == "model,J\nunet,0.5\n"
    assert "| unet | 0.5 |" in _artifact(tree, tree.gen, "results.md").read_text()
    report = json.loads(_artifact(tree, tree.parent, "report.json").read_text())
    assert report == {"J": 0.5, "missing": None}
    plot = _artifact(tree, tree.parent, "j_by_generation.png").read_bytes()
    assert plot.startswith(b"\x89PNG")


def test_resume_reuses_runs(tree):
    count = len(tree.client.search_runs([tree.tracker.experiment_id]))
    again = Tracker(tree.run_dir, tree.tracker.tracking_uri)
    parent = again.pipeline_run("quick", _Cfg())
    gen = again.generation_run(parent, 1)
    student = again.student_run(gen, "unet", {**LINEAGE, "teacher_run": "abc"})
    evalseg = again.evalseg_run(gen, LINEAGE)
    assert (parent.run_id, gen.run_id, student.run_id, evalseg.run_id) == (
        tree.parent.run_id, tree.gen.run_id, tree.student.run_id, tree.evalseg.run_id)
    assert parent.resumed and student.resumed
    assert len(tree.client.search_runs([tree.tracker.experiment_id])) == count
    assert _run(tree, student).data.tags["popdistill.lineage.teacher_run"] == "abc"
    gen2 = again.generation_run(parent, 2)
    assert not gen2.resumed and gen2.run_id != gen.run_id
    assert len(tree.client.search_runs([tree.tracker.experiment_id])) == count + 1
    with pytest.raises(UserError, match="param 'train.lr' was '0.001', now '0.01'"):
        again.pipeline_run("quick", _Cfg(train=_Train(lr=0.01)))


def test_tracking_uri_from_environment(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tree.tracker.tracking_uri)
    t = create_tracker(tmp_path / "elsewhere", TrackingConfig())
    assert t.tracking_uri == tree.tracker.tracking_uri
    assert t.experiment_id == tree.tracker.experiment_id
    assert not (tmp_path / "elsewhere").exists()


def _log_from_worker(handle_bytes: bytes, offset: float) -> None:
    handle = pickle.loads(handle_bytes)
    for step in range(10):
        handle.log_metrics({"worker/x": offset + step}, step=step)
    handle.log_text(f"from {offset}", "worker.txt")


def test_handles_log_from_other_processes(tree):
    """Ray workers get a pickled handle and log to the run concurrently (SQLite locking)."""
    assert pickle.loads(pickle.dumps(tree.student))._client is None
    jobs = [(pickle.dumps(tree.student), 0.0), (pickle.dumps(tree.evalseg), 100.0)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(_log_from_worker, jobs)
    for handle, offset in ((tree.student, 0.0), (tree.evalseg, 100.0)):
        history = tree.client.get_metric_history(handle.run_id, "worker/x")
        assert sorted((m.step, m.value) for m in history) == [(s, offset + s) for s in range(10)]
        assert _artifact(tree, handle, "worker.txt").read_text() == f"from {offset}"


# -- popdistill ui ----------------------------------------------------------------------------
def test_ui_command_and_errors(tree, tmp_path, capsys):
    cmd = ui_command(tree.run_dir, 5123)
    assert cmd[1:4] == ["-m", "mlflow", "ui"]
    assert cmd[cmd.index("--backend-store-uri") + 1] == tree.tracker.tracking_uri
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    assert cli.main(["ui", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "no mlflow.db" in err


def test_busy_port_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=f"--port {port}"):
            _check_port(port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if data else {}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10) as r:
        return r.status, r.read()


@pytest.mark.slow
def test_ui_serves_the_run_tree(tree, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "ui.log", "wb")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "popdistill", "ui", str(tree.run_dir), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        status = None
        for _ in range(240):  # start-up takes 10-60 s on a busy 2-core machine
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()
            try:
                status, page = _get(base + "/")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        assert status == 200 and b"<html" in page.lower()
        body = json.dumps({"experiment_ids": [tree.tracker.experiment_id]}).encode()
        _, runs = _get(base + "/api/2.0/mlflow/runs/search", body)
        names = {r["info"]["run_name"] for r in json.loads(runs)["runs"]}
        assert {"quick", "gen-1", "gen-1/unet", "gen-1/evalseg"} <= names
        query = f"/get-artifact?path=masks/gen1_unet.png&run_uuid={tree.student.run_id}"
        status, png = _get(base + query)
        assert status == 200 and png.startswith(b"\x89PNG")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0
    with pytest.raises(OSError):  # the server went down with the command
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_nan_metric_is_logged(tree):
    tree.gen.log_metrics({"teacher/J": math.nan}, step=3)
    assert math.isnan(_run(tree, tree.gen).data.metrics["teacher/J"])


def test_screenshot_pages_are_the_run_tree_and_a_student_mask_grid(tree):
    from popdistill.tracking.screenshot import masks_url, tree_url

    base = "http://127.0.0.1:5999"
    exp = tree.tracker.experiment_id
    assert tree_url(tree.run_dir, base) == f"{base}/#/experiments/{exp}/runs"
    assert masks_url(tree.run_dir, base) == (
        f"{base}/#/experiments/{exp}/runs/{tree.student.run_id}/artifacts/masks/gen1_unet.png")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium")
@pytest.mark.timeout(300)
def test_ui_screenshot_renders_the_expanded_tree(tree, tmp_path):
    from PIL import Image

    png = tmp_path / "ui.png"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "-m", "popdistill", "ui", str(tree.run_dir), "--port", str(_free_port()),
         "--screenshot", str(png), "--size", "1200,700"],
        capture_output=True, text=True, env=env, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in (png, tmp_path / "ui-masks.png"):
        image = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert image.shape[1] == 1200 and image.std() > 10  # a rendered page, not a blank one
