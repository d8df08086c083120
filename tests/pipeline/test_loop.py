"""The generation loop end to end on a tiny world: manifest, stores per generation, the final
table, the MLflow run tree, a resumed run that redoes nothing, and a killed driver resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from popdistill.data.schema import table_to_records
from popdistill.pipeline.config import parse_run_config

pytestmark = pytest.mark.ray

STUDENTS = ["lowres_tiny", "unet_tiny"]
STEPS = ["data/train", "data/eval", "eval/videopca",
         "gen-1/teacher", "gen-1/train", "gen-1/predict-eval", "gen-1/evaluate", "gen-1/evalseg",
         "gen-2/predict", "gen-2/select", "gen-2/train", "gen-2/predict-eval", "gen-2/evaluate"]
TRAIN_FRAMES, EVAL_FRAMES = 4 * 12, 2 * 12


def tiny_config(root: Path, out: Path) -> dict:
    return {
        "out": str(out),
        "generations": 2,
        "data": {"path": str(root / "world-train"),
                 "world": {"preset": "medium", "videos": 4, "frames": 12, "size": 64, "seed": 1}},
        "eval": {"path": str(root / "world-eval"),
                 "world": {"preset": "medium", "videos": 2, "frames": 12, "size": 64, "seed": 2}},
        "teacher": {"chunk_frames": 12,
                    "videopca": {"size": 64, "window": 12, "min_window": 4}},
        # generation 1's VideoPCA masks compete at generation 2: students trained for 3 steps
        # may output no pixel >= 0.5 anywhere, and a selection of only empty masks stops the run
        "selection": {"top": 0.5, "with_teacher": True},
        "students": {"names": STUDENTS},
        "training": {"epochs": 1, "batch_size": 8},
        "evalseg": {"model": "evalseg_tiny", "epochs": 1, "max_frames": 48},
        "grid_frames": 2,
        "resources": {"actors": 1, "actor_cpus": 0.5},
    }


def floor_config(root: Path, out: Path) -> dict:
    """One generation that learns within a minute on 2 cores: 8 training videos of 24 frames
    at 64 px, two tiny students for 6 epochs on the top half of VideoPCA's masks."""
    cfg = tiny_config(root, out)
    cfg["data"] = {"path": str(root / "floor-train"),
                   "world": {"preset": "medium", "videos": 8, "frames": 24, "size": 64, "seed": 1}}
    cfg["eval"] = {"path": str(root / "floor-eval"),
                   "world": {"preset": "medium", "videos": 3, "frames": 24, "size": 64, "seed": 2}}
    cfg["teacher"] = {**cfg["teacher"], "chunk_frames": 24,
                      "videopca": {"size": 64, "window": 24, "min_window": 4}}
    return {**cfg, "generations": 1, "selection": {"top": 0.5},
            "students": {"names": ["unet_tiny", "fconv_tiny"]},
            "training": {"epochs": 6, "batch_size": 8, "val_every": 0, "torch_threads": 1}}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("worlds")


def _rows(store: str) -> list[dict]:
    files = sorted(Path(store).rglob("*.parquet"))
    cols = ["video", "frame", "score", "teacher", "generation"]
    return [r for f in files for r in pq.read_table(f, columns=cols).to_pylist()]


def _centre_prior_j(eval_root: str, frames: int = EVAL_FRAMES) -> float:
    """Mean J of the centre prior over the held-out frames, computed here from the files."""
    from popdistill.data.readers import create_reader
    from popdistill.evaluate.baselines import centre_prior
    from popdistill.evaluate.metrics import binarize, jaccard

    js = [jaccard(binarize(centre_prior(*r.gt_mask.shape)), r.gt_mask)
          for r in create_reader("davis", eval_root) if r.gt_mask is not None]
    assert len(js) == frames
    return float(np.mean(js))


def _run_tree(out: Path) -> dict[str, tuple[str | None, dict]]:
    """run name -> (parent name, tags, status, client) from the run's MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("popdistill")
    runs = client.search_runs([exp.experiment_id])
    names = {r.info.run_id: r.info.run_name for r in runs}
    return {r.info.run_name: (names.get(r.data.tags.get("mlflow.parentRunId")), r.data.tags,
                              r.info.status, client) for r in runs}


@pytest.mark.timeout(600)
def test_the_main_path_trains_students_that_beat_the_centre_prior(ray_session, worlds, tmp_path):
    """`popdistill run` end to end (data, teacher, selection, the population on Ray Train,
    held-out predictions, the table): every student beats the centre prior on held-out J, a
    floor that a broken pipeline (empty or constant masks, labels that never reach training,
    predictions of another frame) cannot reach."""
    from popdistill.pipeline.loop import run_pipeline

    cfg = parse_run_config(floor_config(worlds, tmp_path / "run"))
    report = run_pipeline(cfg, log=lambda m: None)
    rows = {r["method"]: r for r in report["table"]}
    centre = rows["centre prior"]["J"]
    assert centre == pytest.approx(_centre_prior_j(cfg.eval.path, 72), abs=1e-9)
    for student in ("unet_tiny", "fconv_tiny"):
        assert rows[student]["frames"] == 72
        assert rows[student]["J"] > centre + 0.05, (student, rows[student]["J"], centre)
    assert rows["VideoPCA"]["J"] > centre


@pytest.mark.slow  # ~3 min on an idle 2-core machine (Ray start-ups dominate)
@pytest.mark.timeout(900)
def test_two_generations_end_to_end_then_a_rerun_redoes_nothing(ray_session, worlds, tmp_path):
    from popdistill.pipeline.loop import run_pipeline

    out = tmp_path / "run"
    cfg = parse_run_config(tiny_config(worlds, out))
    report = run_pipeline(cfg, log=lambda m: None)

    manifest = json.loads((out / "manifest.json").read_text())
    steps = manifest["steps"]
    assert sorted(steps, key=lambda s: steps[s]["finished"]) == STEPS  # all, in this order

    # generation 1 trains on the top half of the VideoPCA frames
    teacher = manifest["steps"]["gen-1/teacher"]["result"]
    rows1 = _rows(teacher["selected"])
    assert {r["teacher"] for r in rows1} == {"videopca"}
    assert TRAIN_FRAMES / 2 <= len(rows1) < TRAIN_FRAMES
    assert min(r["score"] for r in rows1) >= teacher["threshold"]
    assert teacher["stats"]["selection/kept"] == len(rows1)
    # generation 2 on each frame's best mask by EvalSeg-Net (the students' and VideoPCA's), the
    # top half of them, less any frame whose every mask is empty (score 0: never kept)
    sel = manifest["steps"]["gen-2/select"]["result"]
    rows2 = _rows(sel["selected"])
    assert sel["selected"] == str(out / "gen-2/selection/selected")
    assert {r["generation"] for r in rows2} == {2}
    assert {r["teacher"] for r in rows2} <= {f"evalseg:{s}" for s in (*STUDENTS, "videopca")}
    assert sel["teacher"] == "evalseg(product)+students:gen-1+videopca:gen-1"  # scorer(ensemble)+sources
    assert min(r["score"] for r in rows2) >= sel["threshold"]
    assert 1 <= len(rows2) == sel["stats"]["selection/kept"] and min(r["score"] for r in rows2) > 0
    assert set(sel["chosen"]) == {*STUDENTS, "videopca"}
    assert sum(sel["chosen"].values()) == sel["stats"]["selection/total"] == TRAIN_FRAMES
    for k in (1, 2):
        for s in STUDENTS:
            assert Path(manifest["steps"][f"gen-{k}/train"]["result"][s]["checkpoint"]).is_file()
        assert len(_rows(out / f"gen-{k}/eval/{STUDENTS[0]}/store")) == EVAL_FRAMES
    # EvalSeg-Net is trained to select generation 2's labels, not after the last generation
    assert (out / "gen-1/evalseg/evalseg_tiny.pt").is_file()
    assert not (out / "gen-2/evalseg").exists()

    # the table: baselines, then each generation's students and Multi-Net, on held-out frames
    table = report["table"]
    assert [(r["method"], r["generation"]) for r in table] == [
        ("centre prior", "-"), ("VideoPCA", "-"),
        *[(m, k) for k in (1, 2) for m in (*STUDENTS, "Multi-Net")]]
    assert all(r["frames"] == EVAL_FRAMES and 0 <= r["P"] <= 1 for r in table)
    assert table[0]["J"] == pytest.approx(_centre_prior_j(cfg.eval.path), abs=1e-9)
    eval_teacher = json.loads((out / "eval/teacher/report.json").read_text())
    assert table[1]["J"] == pytest.approx(eval_teacher["metrics"]["all"]["J"], abs=1e-6)
    assert json.loads((out / "report.json").read_text())["table"] == table

    # the MLflow run tree: pipeline -> generation -> students + evalseg, with lineage
    tree = _run_tree(out)
    assert tree["run"][0] is None and tree["run"][2] == "FINISHED"
    for k in (1, 2):
        assert tree[f"gen-{k}"][0] == "run"
        assert (f"gen-{k}/evalseg" in tree) == (k == 1)  # only what selects generation 2
        for s in (*STUDENTS, "evalseg")[: len(STUDENTS) + (k == 1)]:
            parent, tags, status, client = tree[f"gen-{k}/{s}"]
            assert parent == f"gen-{k}" and status == "FINISHED"
            store = teacher["selected"] if k == 1 else sel["selected"]
            assert tags["popdistill.lineage.store"] == store
            assert tags["popdistill.lineage.generation"] == str(k)
        _, tags, _, client = tree[f"gen-{k}/{STUDENTS[1]}"]
        run = client.get_run(tags["popdistill.lineage.generation_run_id"])
        assert run.info.run_name == f"gen-{k}"
    student = client.get_run(next(r for r in client.search_runs(
        [run.info.experiment_id], "tags.`popdistill.kind` = 'student'")).info.run_id)
    assert {"train/loss", "train/lr", "val/J", "final/P", "final/J", "final/CorLoc"} <= set(student.data.metrics)
    assert student.data.params["lr_schedule"] == "constant" and student.data.params["ema_decay"] == "0.0"
    artifacts = {a.path for a in client.list_artifacts(student.info.run_id)}
    assert {"checkpoint", "masks"} <= artifacts
    parent_artifacts = {a.path for a in client.list_artifacts(
        client.search_runs([run.info.experiment_id], "tags.`popdistill.kind` = 'pipeline'")[0]
        .info.run_id)}
    assert {"report.json", "results.csv", "results.md", "J_by_generation.png"} <= parent_artifacts

    # the same command again: every step is found finished, nothing is redone
    finished = {k: v["finished"] for k, v in manifest["steps"].items()}
    again = run_pipeline(parse_run_config(tiny_config(worlds, out)), log=lambda m: None)
    after = json.loads((out / "manifest.json").read_text())["steps"]
    assert {k: v["finished"] for k, v in after.items()} == finished
    assert again["table"] == table
    assert len(_run_tree(out)) == len(tree)  # the tracker found its runs again


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_killed_driver_resumes_after_its_last_finished_step(ray_session, worlds, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    cfg = tiny_config(worlds, out)
    cfg["selection"].update(support=True, keep_teacher=True)  # checked at the end
    config.write_text(yaml.safe_dump(cfg))
    address = ray_session.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "popdistill.cli", "run", str(config), "--address", address]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        manifest = out / "manifest.json"
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None:
            if manifest.exists() and "gen-1/teacher" in json.loads(manifest.read_text())["steps"]:
                break
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, mid-run (training generation 1)
        proc.wait(60)
    killed_at = time.time()
    before = json.loads(manifest.read_text())["steps"]
    assert "gen-1/teacher" in before and "gen-1/evalseg" not in before
    done_markers = {p: p.stat().st_mtime_ns for p in (out / "gen-1/teacher/done").iterdir()}

    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[gen-1/teacher] finished before" in result.stdout
    steps = json.loads(manifest.read_text())["steps"]
    assert sorted(steps, key=lambda s: steps[s]["finished"]) == STEPS
    for name, step in before.items():  # finished steps were not redone
        assert steps[name]["finished"] == step["finished"]
    for name in set(STEPS) - set(before):
        assert steps[name]["started"] >= killed_at - 1
    assert {p: p.stat().st_mtime_ns for p in (out / "gen-1/teacher/done").iterdir()} == done_markers
    assert "Multi-Net" in result.stdout and (out / "report.json").is_file()
    sel = steps["gen-2/select"]["result"]
    assert sum(sel["chosen"].values()) == TRAIN_FRAMES and len(_rows(sel["selected"])) >= 1

    # selection.support: the kept masks are zero outside their hysteresis support; selection.
    # keep_teacher: generation 1's selected frames that generation 2 left out train it too
    assert sel["teacher"] == "evalseg(product,support,keep_teacher)+students:gen-1+videopca:gen-1"
    rows2 = _rows(sel["selected"])
    key = lambda r: (r["video"], r["frame"])  # noqa: E731
    ours = {key(r) for r in rows2 if r["generation"] == 2}
    added = {key(r) for r in rows2 if r["generation"] == 1}
    gen1 = {key(r) for r in _rows(steps["gen-1/teacher"]["result"]["selected"])}
    assert len(ours) == sel["stats"]["selection/kept"] and len(rows2) == len(ours | added)
    assert added == gen1 - ours and len(added) == sel["stats"]["selection/teacher_frames"]
    assert {r["teacher"] for r in rows2 if r["generation"] == 1} <= {"videopca"}
    for f in Path(sel["selected"]).glob("*.parquet"):
        for r in table_to_records(pq.read_table(f)):
            if r.generation == 2:  # >= half its maximum, or zero (uint8 / 255 in the store)
                assert r.mask[r.mask > 0].min() >= 0.5 * r.mask.max() - 0.01, (r.video, r.frame)


@pytest.mark.slow  # ~3 min on an idle 2-core machine
@pytest.mark.timeout(900)
def test_generation_two_selects_from_later_data(ray_session, worlds, tmp_path):
    """``later_data``: generation 1's students predict every frame of a larger world (the same
    four videos and two more that the teacher never saw) and generation 2 selects among them;
    ``selection.keep_teacher`` still adds generation 1's selected frames by (video, frame)."""
    from popdistill.pipeline.loop import run_pipeline

    out = tmp_path / "run"
    cfg = tiny_config(worlds, out)
    more = {**cfg["data"]["world"], "videos": 6}  # the first four are `data`'s videos
    cfg["later_data"] = {"path": str(worlds / "world-more"), "world": more}
    cfg["selection"] = {"top": 0.5, "scorer": "agreement", "ensemble": "geomean", "keep_teacher": True}
    cfg["training"]["epochs"] = 4  # students of a few steps may output no mask at all
    run_pipeline(parse_run_config(cfg), log=lambda m: None)

    steps = json.loads((out / "manifest.json").read_text())["steps"]
    # the agreement scorer needs no EvalSeg-Net: none is trained
    assert sorted(steps, key=lambda s: steps[s]["finished"]) == [
        *STEPS[:2], "data/later", *(s for s in STEPS[2:] if s != "gen-1/evalseg")]
    assert not (out / "gen-1" / "evalseg").exists()
    assert steps["data/later"]["result"]["path"] == str(worlds / "world-more")
    train_videos = {r["video"] for r in _rows(steps["gen-1/teacher"]["result"]["store"])}
    scored = _rows(out / "gen-2/selection/scored")
    assert len(scored) == 6 * 12 and len(train_videos) == 4
    new_videos = {r["video"] for r in scored} - train_videos
    assert len(new_videos) == 2  # two videos generation 1's teacher never saw
    sel = steps["gen-2/select"]["result"]
    assert sum(sel["chosen"].values()) == sel["stats"]["selection/total"] == 6 * 12
    rows2 = _rows(sel["selected"])
    ours = [r for r in rows2 if r["generation"] == 2]
    added = {(r["video"], r["frame"]) for r in rows2 if r["generation"] == 1}
    assert len(ours) == sel["stats"]["selection/kept"] >= 1
    assert min(r["score"] for r in ours) >= sel["threshold"]
    gen1 = {(r["video"], r["frame"]) for r in _rows(steps["gen-1/teacher"]["result"]["selected"])}
    assert added == gen1 - {(r["video"], r["frame"]) for r in ours}
    # the kept frames are the top half of all 72 by the recorded scores (ties aside)
    by_score = sorted(scored, key=lambda r: -r["score"])
    assert {(r["video"], r["frame"]) for r in ours} >= {
        (r["video"], r["frame"]) for r in by_score if r["score"] > sel["threshold"]}
