"""A tiny ASHA sweep of the TeachText student on Ray, every trial an MLflow run."""

from __future__ import annotations

import json

import pytest

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.retrieval.checkpoint import save_teacher_cache
from popdistill.retrieval.sweep import SweepConfig, SweepSpace
from popdistill.retrieval.train import CETrainConfig, teacher_cache, train_ce
from tests.retrieval.test_teachtext import TRAIN, write_tiny_corpus


def test_space_validation_names_the_field():
    with pytest.raises(UserError, match="phi"):
        SweepSpace(phi=["avg"]).validate()
    with pytest.raises(UserError, match="space.lam"):
        SweepSpace(lam=(1.0, 0.1)).validate()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_asha_sweep_logs_every_trial_to_mlflow(ray_session, tmp_path):
    from mlflow.tracking import MlflowClient

    from popdistill.retrieval.sweep import run_sweep

    corpus = tmp_path / "corpus"
    features = write_tiny_corpus(corpus)
    tt_dir = tmp_path / "run" / "teachtext"
    tt_dir.mkdir(parents=True)
    # frozen teacher cached where the sweep looks for it (trained here without Ray)
    teacher = train_ce(features, "good", CETrainConfig(**{**TRAIN, "epochs": 3}))
    save_teacher_cache(teacher_cache(teacher.model, features, "good", "t"), tt_dir / "teacher-good-s0.cache.pt")
    cfg = load(SweepConfig, {
        "teachtext": {"out": str(tmp_path / "run"), "corpus": str(corpus), "teachers": ["good"],
                      "student": "weak.sentence", "seeds": [0], "train": {**TRAIN, "epochs": 4}},
        "space": {"phi": ["mean", "max"], "distance": ["l2", "kl"], "lam": [0.5, 5.0],
                  "lr": [0.001, 0.003]},
        "num_samples": 3, "grace_period": 1, "reduction_factor": 2, "name": "sw"})
    report = run_sweep(cfg, progress=lambda m: None)
    trials = report["trials"]
    assert len(trials) == 3
    assert all(t["config"]["phi"] in ("mean", "max") and 0.5 <= t["config"]["lam"] <= 5.0
               for t in trials)
    best = report["best"]
    assert best["finished"] and best["val_score"] == max(
        t["val_score"] for t in trials if t["finished"])
    assert set(best["test"]) == {"t2v", "v2t"}
    saved = json.loads((tmp_path / "run" / "sw" / "report.json").read_text())
    assert saved["best"]["config"] == best["config"]
    # MLflow: one parent run and one child run per trial, each with its parameters
    client = MlflowClient(tracking_uri=report["mlflow"]["tracking_uri"])
    exp = client.get_experiment_by_name("popdistill")
    runs = client.search_runs([exp.experiment_id])
    parent = report["mlflow"]["parent_run_id"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(children) == 3
    for run in children:
        assert set(run.data.params) == {"phi", "distance", "lam", "lr"}
        assert run.info.status in ("FINISHED", "KILLED")
        assert "val_score" in run.data.metrics
    assert sum(r.info.status == "FINISHED" for r in children) == sum(t["finished"] for t in trials)
