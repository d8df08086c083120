"""The retrieval corpus built from a tiny generated world, read back with ``load_safe``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from popdistill.cli import main as cli_main
from popdistill.errors import UserError
from popdistill.retrieval.captions import tokenize
from popdistill.retrieval.ce_layout import load_safe
from popdistill.retrieval.corpus import build_retrieval_corpus, split_videos
from popdistill.retrieval.model import CEConfig, CEModel
from popdistill.retrieval.text_encoders import TextFeatures

QUIET = lambda msg: None  # noqa: E731
OPTIONS = dict(encoders=("word2vec", "tfidf"), wrong_rate=0.1, vague_rate=0.1,
               partly_wrong_rate=0.1, experts={"missing_rates": {"shape": 0.25}, "samples": 6})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    assert cli_main(["world", "--out", str(out), "--videos", "12", "--frames", "12",
                     "--size", "64"]) == 0
    return out


@pytest.fixture(scope="module")
def corpus(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    built = build_retrieval_corpus(world, out, captions_per_video=10, seed=4, progress=QUIET,
                                   **OPTIONS)
    return built, load_safe(out)


def test_corpus_reads_back_with_every_part(corpus, world):
    built, data = corpus
    attrs = json.loads((world / "attributes.json").read_text())
    assert data.videos == sorted(attrs) and len(data.videos) == 12
    assert data.expert_dims == {"colour": 102, "motion": 27, "shape": 30, "cnn": 128}
    for name, feats in data.experts.items():
        np.testing.assert_array_equal(feats, built.features.experts[name])
        assert data.available[name].shape == (12,)
    # shape: round(0.25 * 12) = 3 dropped at random (more if no region was found)
    assert (~data.available["shape"]).sum() >= 3
    assert data.availability().any(1).all()
    # Splits: 12 videos at 0.6 / 0.2 / 0.2 -> 8 / 2 / 2, disjoint, covering all videos.
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 8, "val": 2, "test": 2}
    assert sorted(sum(data.splits.values(), [])) == data.videos


def test_captions_and_their_noise_bookkeeping(corpus):
    built, data = corpus
    meta = json.loads((built.path / "caption_meta.json").read_text())
    kinds = [m["kind"] for v in data.videos for m in meta["meta"][v]]
    assert len(kinds) == 120
    assert {k: kinds.count(k) for k in set(kinds)} == {"full": 84, "vague": 12,
                                                       "partly_wrong": 12, "wrong": 12}
    for v in data.videos:
        assert data.captions[v] == [tokenize(c) for c in meta["captions"][v]]
        assert [m["source"] != v for m in meta["meta"][v]] == [
            m["kind"] == "wrong" for m in meta["meta"][v]]
    summary = json.loads((built.path / "corpus.json").read_text())
    assert summary["captions"] == {"full": 84, "vague": 12, "partly_wrong": 12, "wrong": 12}
    assert summary["config"]["experts"]["missing_rates"] == {"shape": 0.25}


def test_text_features_per_encoder_tokens_and_sentences(corpus):
    built, data = corpus
    assert sorted(data.text) == ["tfidf", "tfidf.sentence", "word2vec", "word2vec.sentence"]
    train_words = {w for v in data.splits["train"] for cap in data.captions[v] for w in cap}
    for name, dim in (("word2vec", 300), ("tfidf", 256)):
        tokens, sentences = data.text[name], data.text[name + ".sentence"]
        assert sorted(tokens) == data.videos
        for v in data.videos:
            assert len(tokens[v]) == len(sentences[v]) == 10
            for cap, tok, sent in zip(data.captions[v], tokens[v], sentences[v]):
                known = sum(w in train_words for w in cap)  # fitted on training captions only
                assert tok.shape == (max(known, 1), dim) and sent.shape == (1, dim)
                assert np.linalg.norm(sent) == pytest.approx(1.0, abs=1e-5) or known == 0
    # word2vec sentence = normalised mean of its token rows
    v = data.videos[0]
    mean = data.text["word2vec"][v][0].mean(0)
    np.testing.assert_allclose(data.text["word2vec.sentence"][v][0][0],
                               mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)


def test_a_ce_model_runs_on_the_corpus(corpus):
    _, data = corpus
    videos = data.splits["train"][:4]
    idx = data.video_indices(videos)
    experts = {k: torch.from_numpy(v[idx]) for k, v in data.experts.items()}
    avail = torch.from_numpy(data.availability(list(data.experts))[idx])
    rows = [data.text["tfidf"][v][0] for v in videos]
    text = TextFeatures.from_rows(rows, np.stack([data.text["tfidf.sentence"][v][0][0]
                                                  for v in videos]))
    model = CEModel(CEConfig(expert_dims=data.expert_dims, text_dim=256, shared_dim=32,
                             netvlad_clusters=4)).eval()
    sim = model(torch.from_numpy(text.tokens), experts, torch.from_numpy(text.mask), avail)
    assert sim.shape == (4, 4) and torch.isfinite(sim).all()


def test_the_build_is_deterministic(corpus, world, tmp_path):
    built, data = corpus
    again = build_retrieval_corpus(world, tmp_path, captions_per_video=10, seed=4,
                                   progress=QUIET, **OPTIONS)
    for rel in ("captions.json", "splits.json", "caption_meta.json"):
        assert (tmp_path / rel).read_bytes() == (built.path / rel).read_bytes()
    for sub in ("experts", "text"):
        for path in sorted((built.path / sub).glob("*.npz")):
            with np.load(path) as a, np.load(tmp_path / sub / path.name) as b:
                for key in a.files:
                    np.testing.assert_array_equal(a[key], b[key])
    assert again.captions.captions == built.captions.captions


def test_bad_inputs_are_user_errors(world, tmp_path):
    with pytest.raises(UserError, match="attributes.json"):
        build_retrieval_corpus(tmp_path, tmp_path / "out", progress=QUIET)
    with pytest.raises(UserError, match="valid names"):
        build_retrieval_corpus(world, tmp_path / "out", encoders=("glove",), progress=QUIET)
    with pytest.raises(UserError, match="split"):
        build_retrieval_corpus(world, tmp_path / "out", split=(0.5, 0.5, 0.5), progress=QUIET)
    with pytest.raises(UserError, match="too few"):
        split_videos(["a", "b"], (0.6, 0.2, 0.2), 0)
    assert not (tmp_path / "out" / "manifest.json").exists()
