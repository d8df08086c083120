"""The experiments the docs report are configs run by the product (configs/experiments/).

Every config loads and builds its students. ``benchmarks/gpu_population.py`` without CUDA
runs ``popdistill run configs/experiments/gpu_population.yaml`` at tiny sizes (both
generations of the five architectures, EvalSeg-Net selecting generation 2; slow suite); the
analysis scripts then read its run directory and must agree with the run's own table. The
quality floor of the main path is in tests/pipeline/test_loop.py.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from popdistill.pipeline.config import load_run_config

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "configs" / "experiments").glob("*.yaml"))
FIVE = {"lowres", "fconv", "unet", "denseunet", "dilateunet"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_config_loads_and_builds_its_students(path):
    from popdistill.students import create_student

    cfg = load_run_config(path)
    for name in cfg.students.names:
        create_student(name, **cfg.students.models.get(name, {}))
    if path.stem.endswith("_population"):  # the population experiments train all five
        assert {n.removesuffix("_tiny") for n in cfg.students.names} == FIVE


def test_the_gpu_experiment_shares_one_gpu_among_the_five():
    cfg = load_run_config(ROOT / "configs" / "experiments" / "gpu_population.yaml")
    assert cfg.resources.gpus_per_worker * len(cfg.students.names) <= 1.0
    assert cfg.resources.gpus_per_actor * cfg.resources.actors <= 1.0  # or inference waits
    assert cfg.generations == 2 and cfg.selection.scorer == "evalseg"
    assert all(t.max_seconds and t.precision == "auto" for t in cfg.train_configs("s", None, "o"))


def _script(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, str]:
    """The GPU experiment's smoke run (no CUDA here): its run directory and its output."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("gpu_population") / "run"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_population.py"),
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc.stdout


@pytest.mark.ray
@pytest.mark.slow  # ~5 min on an idle 2-core machine: five students, two generations
@pytest.mark.timeout(1500)
def test_the_gpu_experiment_runs_both_generations_on_a_cpu(smoke):
    out, stdout = smoke
    assert "no CUDA device: a smoke run" in stdout
    report = json.loads((out / "report.json").read_text())
    table = report["table"]
    names = report["config"]["students"]["names"]
    assert {n.removesuffix("_tiny") for n in names} == FIVE
    assert [(r["method"], r["generation"]) for r in table] == [
        ("centre prior", "-"), ("VideoPCA", "-"),
        *[(m, k) for k in (1, 2) for m in (*sorted(names), "Multi-Net")]]
    assert all(r["frames"] == table[0]["frames"] > 0 and r["J"] is not None for r in table)
    # generation 2 was selected by EvalSeg-Net trained on generation 1's Multi-Net
    assert report["generations"][1]["selection"]["teacher"].startswith("evalseg(")
    assert (out / "gen-1" / "evalseg").is_dir() and not (out / "gen-2" / "evalseg").exists()
    # each student ran on its training budget (the config's max_seconds), not its 200 epochs
    for k in (1, 2):
        for n in names:
            summary = json.loads((out / f"gen-{k}" / "train" / f"{n}.json").read_text())
            assert len(summary["history"]) <= 2
    result = json.loads((out / "gpu_population.json").read_text())
    assert all(r > 0 for r in result["together"]["train_images_per_s"].values())
    assert "training images/s: generation 1" in stdout


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_analysis_scripts_read_the_run_directory(smoke, tmp_path, capsys, monkeypatch):
    out, _ = smoke
    report = json.loads((out / "report.json").read_text())
    rows = {(r["method"], r["generation"]): r for r in report["table"]}
    names = report["config"]["students"]["names"]

    # population_table: the students of generation 1 and their Multi-Net, scored again
    table = _script("population_table", monkeypatch)
    got = table.table([str(out / "gen-1" / n) for n in names])
    assert got["VideoPCA"]["J"] == pytest.approx(rows[("VideoPCA", "-")]["J"], abs=1e-9)
    assert got["centre prior"]["J"] == pytest.approx(rows[("centre prior", "-")]["J"], abs=1e-9)
    for n in names:
        assert got[f"{n} ({out.name}, gen-1)"]["J"] == pytest.approx(rows[(n, 1)]["J"], abs=1e-9)
    assert got["Multi-Net"]["J"] == pytest.approx(rows[("Multi-Net", 1)]["J"], abs=1e-9)

    # clutter_j: the "all" column is each student's J of the table
    clutter = _script("clutter_j", monkeypatch)
    scores, _ = clutter.run_rows(table.RunDir(str(out)), "J", with_teacher=True)
    assert scores["VideoPCA"][-1] == pytest.approx(rows[("VideoPCA", "-")]["J"], abs=1e-9)
    for k in (1, 2):
        for n in names:
            assert scores[f"{out.name} gen {k} {n}"][-1] == pytest.approx(rows[(n, k)]["J"], abs=1e-9)

    # video_area: per-video areas over the true area; a PNG of the masks
    area = _script("video_area", monkeypatch)
    assert area.main([str(out), "--png", str(tmp_path / "area.png"), "--frame", "3"]) == 0
    printed = capsys.readouterr().out
    assert "| all |" in printed and (tmp_path / "area.png").stat().st_size > 1000

    # generation_gain: per-video J of the run's evaluation.json, bootstrapped
    gain = _script("generation_gain", monkeypatch)
    assert gain.main([str(out), "--bootstrap", "20", "--json", str(tmp_path / "g.json")]) == 0
    g = json.loads((tmp_path / "g.json").read_text())
    mean1 = sum(rows[(n, 1)]["J"] for n in names) / len(names)
    assert g["rows"][0]["generations"]["1"]["J"] == pytest.approx(mean1)
