"""TeachText on Ray: the teacher population launch, and the whole experiment on a tiny corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from popdistill.config import load
from popdistill.retrieval.ce_layout import save_safe
from popdistill.retrieval.checkpoint import load_teacher_cache
from popdistill.retrieval.metrics import mean_std
from popdistill.retrieval.teachtext import (
    RayRunConfig,
    TeachTextConfig,
    denoise_stats,
    expand_job,
    format_table,
    group_seeds,
    run_population,
    run_teachtext,
)
from popdistill.retrieval.train import split_data
from tests.retrieval.test_train import tiny_features

TRAIN = {"epochs": 2, "batch_size": 8, "shared_dim": 8, "netvlad_clusters": 2}


def write_tiny_corpus(path, wrong_every: int = 5):
    """The synthetic corpus in the safe layout, with caption_meta.json marking every
    ``wrong_every``-th caption as wrong."""
    features = tiny_features(videos=20, captions=3)
    save_safe(features, path)
    meta = {v: [{"kind": "wrong" if (i * 3 + j) % wrong_every == 0 else "full"}
                for j in range(3)] for i, v in enumerate(features.videos)}
    (path / "caption_meta.json").write_text(json.dumps({"meta": meta}))
    return features


def test_denoise_stats_hand_computed():
    keep = np.array([True, False, False, True, False])
    wrong = np.array([False, True, False, True, True])
    stats = denoise_stats(keep, wrong)
    # dropped = {1, 2, 4}; wrong = {1, 3, 4}; dropped & wrong = {1, 4}
    assert stats == {"dropped": 3, "wrong": 3, "dropped_wrong": 2,
                     "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3)}


def test_format_table_shows_mean_and_std_per_direction():
    m = {d: {"R1": 10.0, "R5": 20.0, "R10": 40.0, "MdR": 3.0, "MnR": 4.5, "GeoMean": 20.0}
         for d in ("t2v", "v2t")}
    m2 = {d: {**v, "R1": 20.0} for d, v in m.items()}
    row = {"model": "base", **mean_std([m, m2])}
    text = format_table([row, {"model": "x", "error": "boom"}])
    assert "| base | 15.0 ± 5.0 | 20.0 ± 0.0 |" in text and "failed: boom" in text


def test_group_seeds_makes_one_job_per_model_and_expand_job_restores_them():
    jobs = [{"name": f"{m}-s{s}", "dir": "d", "train": {"seed": s}, "teachers": [f"t{s}"]}
            for m in ("base", "student-few") for s in (0, 1)]
    grouped = group_seeds(jobs)
    assert [g["name"] for g in grouped] == ["base", "student-few"]
    assert [r["name"] for r in grouped[1]["runs"]] == ["student-few-s0", "student-few-s1"]
    assert expand_job(grouped[1]) == jobs[2:]
    assert expand_job(jobs[0]) == [jobs[0]]


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_teacher_population_on_ray_writes_models_and_caches(ray_session, tmp_path):
    corpus = tmp_path / "corpus"
    features = write_tiny_corpus(corpus)
    ray_cfg = RayRunConfig(out=str(tmp_path))
    jobs = [{"corpus": str(corpus), "dir": str(tmp_path / "tt"), "name": f"teacher-{k}",
             "text_key": k, "cache": True, "train": {**TRAIN, "lam": 0.0}}
            for k in ("good", "weak.sentence")]
    out = run_population(jobs, ray_cfg, "teachers")
    assert set(out) == {"teacher-good", "teacher-weak.sentence"}
    n_train = len(split_data(features, "good", "train").caption_ids)
    for name, summary in out.items():
        assert "error" not in summary, summary
        assert len(summary["history"]) == 2 and set(summary["metrics"]) == {"val", "test"}
        cache = load_teacher_cache(tmp_path / "tt" / f"{name}.cache.pt")
        assert cache.text.experts.shape[0] == n_train  # one row per training caption
        assert cache.video.experts.shape[0] == 12  # 20 videos at 0.6
    assert (tmp_path / "train" / "teacher-good").is_dir()  # the Ray Train run's storage


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_whole_teachtext_experiment_tiny(ray_session, tmp_path):
    corpus = tmp_path / "corpus"
    write_tiny_corpus(corpus)
    cfg = load(TeachTextConfig, {
        "out": str(tmp_path / "run"), "corpus": str(corpus), "teachers": ["good"],
        "student": "weak.sentence", "seeds": [0], "train": TRAIN,
        "modality_experts": ["b"], "denoise_fraction": 0.25})
    report = run_teachtext(cfg, progress=lambda m: None)
    rows = {r["model"]: r for r in report["table"]}
    assert set(rows) == {"teacher good", "base weak.sentence", "TeachText student weak.sentence",
                         "base, experts b", "student, experts b", "base, denoised",
                         "student, denoised"}
    assert all(r.get("seeds") == 1 for r in rows.values()), rows
    stats = report["denoise"][0]
    assert stats["wrong"] == 8  # captions 0, 5, ..., 35 of the 36 training captions
    assert stats["dropped"] == 9 and 0 <= stats["dropped_wrong"] <= 9  # round(0.25 * 36)
    times = report["inference_s_per_query"]
    assert times["base"] > 0 and times["student"] > 0
    base = torch.load(tmp_path / "run/teachtext/base-s0.model.pt", weights_only=True)
    student = torch.load(tmp_path / "run/teachtext/student-s0.model.pt", weights_only=True)
    # the student is the base architecture: same config, same parameter shapes
    assert base["config"] == student["config"]
    assert {k: v.shape for k, v in base["state"].items()} == {
        k: v.shape for k, v in student["state"].items()}
    assert json.loads((tmp_path / "run/teachtext/report.json").read_text())["markdown"]


@pytest.mark.parametrize("report_epochs, expected", [(False, [2]), (True, [1, 2])])
def test_train_one_reports_to_ray_once_unless_a_scheduler_needs_every_epoch(
        tmp_path, monkeypatch, report_epochs, expected):
    # each ray.train.report blocks until Ray's controller polls it (2 s by default), so a
    # teachtext training reports its last evaluation only; the sweep (ASHA) needs every one
    import ray.train

    from popdistill.retrieval.teachtext import _train_one

    reported = []
    monkeypatch.setattr(ray.train, "report", lambda metrics: reported.append(metrics["epoch"]))
    monkeypatch.setattr(ray.train, "get_context",
                        lambda: type("Ctx", (), {"get_world_rank": lambda self: 0})())
    features = tiny_features(videos=20, captions=3)
    job = {"name": "base-s0", "text_key": "good", "dir": str(tmp_path),
           "train": {**TRAIN, "lam": 0.0}, "report_epochs": report_epochs}
    _train_one(job, features, None)
    assert reported == expected
    assert json.loads((tmp_path / "base-s0.json").read_text())["best_epoch"] in (1, 2)


def test_ensure_corpus_refuses_a_corpus_built_from_another_world_size(tmp_path):
    # a finished corpus from an older, smaller world was silently reused after world.videos
    # changed in the config
    from popdistill.errors import UserError
    from popdistill.retrieval.teachtext import ensure_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.json").write_text("{}")
    (corpus / "corpus.json").write_text(json.dumps({"videos": 80}))
    cfg = load(TeachTextConfig, {"out": str(tmp_path), "world": {"videos": 150}})
    with pytest.raises(UserError, match="80 videos, world.videos is 150"):
        ensure_corpus(cfg)
    cfg.world.videos = 80
    assert ensure_corpus(cfg) == corpus
    cfg.corpus, cfg.world.videos = str(corpus), 150  # an explicit corpus is used as it is
    assert ensure_corpus(cfg) == corpus
