"""Encoders trained on the training captions: word2vec and fastText (gensim), TF-IDF + SVD.

All are deterministic given ``seed``: gensim trains with one worker thread (its documented
condition for reproducible vectors) and ``TruncatedSVD`` uses a seeded randomised solver.

- word2vec / fastText: skip-gram vectors; a caption's tokens are its words' vectors (word2vec
  drops words it never saw, fastText builds them from character n-grams); the sentence
  vector is their L2-normalised mean.
- tfidf: ``TfidfVectorizer`` (words and word pairs, sublinear tf) then ``TruncatedSVD`` to
  ``dim`` (zero-padded when the vocabulary is smaller); the sentence vector is the
  L2-normalised projection of the caption, a token is its word's idf-scaled SVD direction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from popdistill.retrieval.captions import tokenize
from popdistill.retrieval.text_encoders.base import TextEncoder, TextFeatures, caption_hash

__all__ = ["GensimEncoder", "TfidfEncoder"]


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


class GensimEncoder(TextEncoder):
    """Skip-gram word vectors trained on the captions: ``kind`` is word2vec or fasttext."""

    trainable = True

    def __init__(self, kind: str, dim: int = 300, window: int = 5, epochs: int = 30,
                 min_count: int = 1, buckets: int = 1 << 15, seed: int = 0, cache_dir=None):
        super().__init__(cache_dir)
        self.name, self.dim = kind, dim
        self.window, self.epochs, self.min_count, self.seed = window, epochs, min_count, seed
        self.buckets = buckets  # fastText n-gram hash buckets (gensim's default 2M is ~2.4 GB)
        self._fit_hash = ""
        self._wv = None

    def settings(self) -> dict:
        return {"dim": self.dim, "window": self.window, "epochs": self.epochs,
                "min_count": self.min_count, "seed": self.seed,
                **({"buckets": self.buckets} if self.name == "fasttext" else {})}

    def fit_key(self) -> str:
        return self._fit_hash

    def _fit(self, captions: Sequence[str]) -> None:
        from gensim.models import FastText, Word2Vec

        extra = {"bucket": self.buckets} if self.name == "fasttext" else {}
        cls = FastText if self.name == "fasttext" else Word2Vec
        model = cls(sentences=[tokenize(c) for c in captions], vector_size=self.dim,
                    window=self.window, min_count=self.min_count, sg=1, epochs=self.epochs,
                    seed=self.seed, workers=1, **extra)
        self._wv = model.wv
        self._fit_hash = caption_hash(captions)

    def _token_vectors(self, caption: str) -> np.ndarray:
        words = tokenize(caption)
        if self.name != "fasttext":
            words = [w for w in words if w in self._wv.key_to_index]
        if not words:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._wv[w] for w in words]).astype(np.float32)

    def _encode(self, captions: Sequence[str]) -> TextFeatures:
        rows = [self._token_vectors(c) for c in captions]
        means = np.stack([r.mean(0) if len(r) else np.zeros(self.dim, np.float32) for r in rows])
        return TextFeatures.from_rows(rows, _normalise(means))


class TfidfEncoder(TextEncoder):
    """TF-IDF of words and word pairs reduced to ``dim`` by a seeded truncated SVD."""

    name = "tfidf"
    trainable = True

    def __init__(self, dim: int = 256, seed: int = 0, cache_dir=None):
        super().__init__(cache_dir)
        self.dim, self.seed = dim, seed
        self._fit_hash = ""
        self._vectorizer = self._svd = None

    def settings(self) -> dict:
        return {"dim": self.dim, "seed": self.seed}

    def fit_key(self) -> str:
        return self._fit_hash

    def _fit(self, captions: Sequence[str]) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(tokenizer=tokenize, token_pattern=None,
                                           lowercase=False, ngram_range=(1, 2), sublinear_tf=True)
        tfidf = self._vectorizer.fit_transform(captions)
        k = max(1, min(self.dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
        self._svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7,
                                 random_state=self.seed).fit(tfidf)
        self._fit_hash = caption_hash(captions)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((*x.shape[:-1], self.dim), np.float32)
        out[..., : x.shape[-1]] = x
        return out

    def _encode(self, captions: Sequence[str]) -> TextFeatures:
        sentence = _normalise(self._pad(self._svd.transform(self._vectorizer.transform(captions))))
        vocab = self._vectorizer.vocabulary_
        idf = self._vectorizer.idf_
        directions = self._pad(self._svd.components_.T)  # features x dim
        rows = []
        for c in captions:
            ids = [vocab[w] for w in tokenize(c) if w in vocab]
            rows.append(directions[ids] * idf[ids, None] if ids else np.zeros((0, self.dim)))
        return TextFeatures.from_rows([r.astype(np.float32) for r in rows], sentence)
