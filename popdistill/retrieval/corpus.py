"""Build a text-video retrieval corpus from a procedural world folder (``popdistill world``).

Per video: expert features from its frames (``experts``), captions from its attributes
(``captions``), and for every text encoder the per-caption token features and sentence vectors
(``text_encoders``; trained encoders are fitted on the training split's captions only). Videos
are split into train / val / test by a seeded permutation.

Written with ``ce_layout.save_safe`` so ``ce_layout.load_safe(out_dir)`` reads it: experts
(npz), ``captions.json`` (token lists), ``splits.json`` and text features named ``<encoder>``
(tokens x D per caption) and ``<encoder>.sentence`` (1 x D per caption). Beside them:
``caption_meta.json`` (caption strings, and per caption its kind, the video it really
describes and any changed attribute) and ``corpus.json`` (the config, counts and timings).
``manifest.json`` is written last, so its presence means the corpus is complete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from popdistill.config import load, to_dict
from popdistill.errors import UserError
from popdistill.retrieval.captions import CaptionConfig, CaptionSet, make_captions
from popdistill.retrieval.ce_layout import CEFeatures, save_safe
from popdistill.retrieval.experts import ExpertConfig, extract_experts
from popdistill.retrieval.text_encoders import create_text_encoder, list_text_encoders

__all__ = ["CorpusConfig", "RetrievalCorpus", "SENTENCE_SUFFIX", "build_retrieval_corpus",
           "read_world", "split_videos"]

SENTENCE_SUFFIX = ".sentence"


@dataclass
class CorpusConfig:
    """Everything that shapes the corpus; ``text_cache``: folder for encoded-caption caches."""

    captions_per_video: int = 10
    seed: int = 0
    encoders: tuple[str, ...] = ("word2vec", "fasttext", "tfidf", "minilm")
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    vague_rate: float = 0.1
    partly_wrong_rate: float = 0.1
    wrong_rate: float = 0.0
    experts: ExpertConfig = field(default_factory=ExpertConfig)
    text_cache: str | None = None

    def validate(self) -> None:
        unknown = [e for e in self.encoders if e not in list_text_encoders()]
        if unknown:
            raise UserError(
                f"encoders: unknown {unknown}; valid names: {', '.join(list_text_encoders())}"
            )
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise UserError(f"split: need three fractions (train, val, test) summing to 1, got {self.split}")
        self.caption_config().validate()
        self.experts.validate()

    def caption_config(self) -> CaptionConfig:
        return CaptionConfig(per_video=self.captions_per_video, seed=self.seed,
                             vague_rate=self.vague_rate, partly_wrong_rate=self.partly_wrong_rate,
                             wrong_rate=self.wrong_rate)


@dataclass
class RetrievalCorpus:
    """What was written: the features (as ``load_safe`` returns them), captions and timings."""

    path: Path
    features: CEFeatures
    captions: CaptionSet
    seconds: dict[str, float]


def read_world(world_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Frames (video -> T x H x W x 3 uint8) and attributes of a world folder."""
    from popdistill.data.readers import create_reader

    world_dir = Path(world_dir)
    attrs_path = world_dir / "attributes.json"
    if not attrs_path.is_file():
        raise UserError(f"{world_dir}: no attributes.json; generate it with popdistill world")
    attributes = json.loads(attrs_path.read_text())
    reader = create_reader("davis", world_dir)
    frames = {}
    for ref in reader.videos():
        if ref.video not in attributes:
            raise UserError(f"{attrs_path}: no attributes for video {ref.video!r}")
        frames[ref.video] = np.stack([r.image for r in reader.read_video(ref)])
    if not frames:
        raise UserError(f"{world_dir}: no videos found")
    return frames, {v: attributes[v] for v in frames}


def split_videos(videos: list[str], fractions: tuple[float, float, float],
                 seed: int) -> dict[str, list[str]]:
    """Seeded train / val / test lists (sorted); every split is non-empty when there are at
    least three videos and its fraction is positive."""
    n = len(videos)
    order = np.random.default_rng([seed, 11]).permutation(n)
    n_val = max(int(fractions[1] > 0), round(fractions[1] * n))
    n_test = max(int(fractions[2] > 0), round(fractions[2] * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise UserError(f"split: {n} videos are too few for train/val/test fractions {fractions}")
    cuts = {"train": order[:n_train], "val": order[n_train : n_train + n_val],
            "test": order[n_train + n_val :]}
    return {name: sorted(videos[i] for i in idx) for name, idx in cuts.items()}


def build_retrieval_corpus(world_dir: str | Path, out_dir: str | Path,
                           captions_per_video: int = 10, seed: int = 0,
                           progress: Callable[[str], None] = print,
                           **options) -> RetrievalCorpus:
    """Build and write the corpus; ``options`` are further :class:`CorpusConfig` fields."""
    cfg = load(CorpusConfig, {"captions_per_video": captions_per_video, "seed": seed, **options})
    cfg.validate()
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    frames, attributes = read_world(world_dir)
    videos = list(frames)
    seconds["read"] = time.perf_counter() - start

    captions = make_captions(attributes, cfg.caption_config())
    splits = split_videos(videos, cfg.split, cfg.seed)
    start = time.perf_counter()
    experts = extract_experts(frames, cfg.experts)
    seconds["experts"] = time.perf_counter() - start
    progress(f"retrieval corpus: {len(videos)} videos, experts in {seconds['experts']:.1f} s")

    flat = [c for v in videos for c in captions.captions[v]]
    owner = [v for v in videos for _ in captions.captions[v]]
    train = [c for v in splits["train"] for c in captions.captions[v]]
    text: dict[str, dict[str, list[np.ndarray]]] = {}
    for name in cfg.encoders:
        start = time.perf_counter()
        encoder = create_text_encoder(name, cache_dir=cfg.text_cache).fit(train)
        feats = encoder.encode(flat)
        tokens, sentences = {v: [] for v in videos}, {v: [] for v in videos}
        for v, rows, sent in zip(owner, feats.token_rows(), feats.sentence):
            tokens[v].append(rows)
            sentences[v].append(sent[None])
        text[name], text[name + SENTENCE_SUFFIX] = tokens, sentences
        seconds[f"text.{name}"] = time.perf_counter() - start
        progress(f"retrieval corpus: {name} encoded {len(flat)} captions in "
                 f"{seconds[f'text.{name}']:.1f} s")

    data = CEFeatures(videos=videos, experts=experts.features, available=experts.available,
                      captions=captions.tokens(), text=text, splits=splits)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    (out_dir / "caption_meta.json").write_text(
        json.dumps({"captions": captions.captions, "meta": captions.meta}))
    summary = {"config": to_dict(cfg), "world": str(world_dir), "videos": len(videos),
               "captions": captions.counts(), "splits": {k: len(v) for k, v in splits.items()},
               "experts": {k: {"dim": int(v.shape[1]), "available": int(experts.available[k].sum())}
                           for k, v in experts.features.items()},
               "seconds": {**seconds, **{f"experts.{k}": v for k, v in experts.seconds.items()}}}
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=1))
    save_safe(data, out_dir, source=str(world_dir))
    return RetrievalCorpus(out_dir, data, captions, summary["seconds"])
