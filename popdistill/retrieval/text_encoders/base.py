"""The text-encoder interface, its features and its disk cache.

An encoder turns captions into token-level features (B x T x D, zero-padded, with a B x T mask
of real tokens) and one sentence vector per caption (B x D). Pre-trained encoders ignore
``fit``; trained ones (word2vec, fastText, TF-IDF) learn from the training captions in ``fit``
and are deterministic given their seed.

With a ``cache_dir``, ``encode`` stores its result as ``<name>-<key>.npz`` (no pickle) where the
key hashes the encoder's name, its settings, what it was fitted on and the captions, and
returns the stored arrays on the next identical call without running the encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from popdistill.errors import UserError

__all__ = ["TextFeatures", "TextEncoder", "caption_hash"]


def caption_hash(captions: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(captions)).encode()).hexdigest()


@dataclass
class TextFeatures:
    """``tokens`` B x T x D float32, ``mask`` B x T bool (True = real token), ``sentence`` B x D."""

    tokens: np.ndarray
    mask: np.ndarray
    sentence: np.ndarray

    def __post_init__(self) -> None:
        b, t, d = self.tokens.shape
        if self.mask.shape != (b, t) or self.sentence.shape != (b, d):
            raise ValueError(
                f"inconsistent text features: tokens {self.tokens.shape}, mask {self.mask.shape}, "
                f"sentence {self.sentence.shape}"
            )

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[2])

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def token_rows(self) -> list[np.ndarray]:
        """Per caption, its real tokens as a (tokens x D) array (at least one row)."""
        out = []
        for tok, m in zip(self.tokens, self.mask):
            rows = tok[m]
            out.append(rows if len(rows) else np.zeros((1, self.dim), np.float32))
        return out

    @staticmethod
    def from_rows(rows: Sequence[np.ndarray], sentence: np.ndarray) -> TextFeatures:
        """Pad per-caption (tokens x D) arrays into one batch."""
        dim = sentence.shape[1]
        t = max([len(r) for r in rows] + [1])
        tokens = np.zeros((len(rows), t, dim), np.float32)
        mask = np.zeros((len(rows), t), bool)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = r
            mask[i, : len(r)] = True
        return TextFeatures(tokens, mask, sentence.astype(np.float32))


class TextEncoder:
    """Base class: subclasses set ``name`` and ``dim`` and implement ``_encode``; trained ones
    also implement ``_fit`` and ``fit_key``."""

    name: str = ""
    dim: int = 0
    trainable: bool = False

    def __init__(self, cache_dir: str | Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.computed = 0  # captions actually encoded (not served from the cache)
        self._fitted = not self.trainable

    # -- subclass API --------------------------------------------------------------------------
    def settings(self) -> dict:
        """What changes the output besides the captions (part of the cache key)."""
        return {}

    def fit_key(self) -> str:
        return ""

    def _fit(self, captions: Sequence[str]) -> None:
        raise NotImplementedError

    def _encode(self, captions: Sequence[str]) -> TextFeatures:
        raise NotImplementedError

    # -- public --------------------------------------------------------------------------------
    def fit(self, captions: Sequence[str]) -> TextEncoder:
        """Learn from the training captions (a no-op for pre-trained encoders)."""
        if self.trainable:
            if not captions:
                raise UserError(f"text encoder {self.name!r}: fit needs at least one caption")
            self._fit(list(captions))
            self._fitted = True
        return self

    def cache_key(self, captions: Sequence[str]) -> str:
        parts = {"name": self.name, "settings": self.settings(), "fit": self.fit_key(),
                 "captions": caption_hash(captions)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]

    def encode(self, captions: Sequence[str]) -> TextFeatures:
        """Token features, mask and sentence vectors of ``captions`` (cached when configured)."""
        captions = [str(c) for c in captions]
        if not self._fitted:
            raise UserError(f"text encoder {self.name!r} is trained on captions: call fit first")
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f"{self.name}-{self.cache_key(captions)}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    return TextFeatures(z["tokens"], z["mask"], z["sentence"])
        feats = self._encode(captions) if captions else TextFeatures(
            np.zeros((0, 1, self.dim), np.float32), np.zeros((0, 1), bool),
            np.zeros((0, self.dim), np.float32))
        self.computed += len(captions)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, tokens=feats.tokens, mask=feats.mask, sentence=feats.sentence)
            tmp.replace(path)
        return feats
