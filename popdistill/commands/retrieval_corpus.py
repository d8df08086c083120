"""`popdistill retrieval-corpus --world DIR --out DIR`: the embedded retrieval corpus."""

from __future__ import annotations

import argparse

HELP = "build a text-video retrieval corpus (experts, captions, text features) from a world"
DESCRIPTION = """\
Build the embedded retrieval corpus from a world folder (`popdistill world`): per video,
pixel experts (colour, motion, shape, cnn) and captions written from its attributes (some
vague, partly wrong, or wrong at the given rates); per text encoder, token and sentence
features. Written pickle-free (npz + JSON), read by popdistill.retrieval.ce_layout.load_safe.

examples:
  popdistill world --out data/w80 --videos 80 --frames 24 --size 64
  popdistill retrieval-corpus --world data/w80 --out data/corpus80 --encoders word2vec,tfidf,minilm
  popdistill retrieval-corpus --world data/w80 --out data/noisy80 --wrong-rate 0.15
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", required=True, help="world folder (with attributes.json)")
    p.add_argument("--out", required=True, help="output folder of the corpus")
    p.add_argument("--captions", type=int, default=10, help="captions per video (default 10)")
    p.add_argument("--seed", type=int, default=0, help="caption and split seed (default 0)")
    p.add_argument("--encoders", help="comma-separated text encoders (default: word2vec,"
                   "fasttext,tfidf,minilm)")
    p.add_argument("--wrong-rate", type=float, help="fraction of captions of another video")
    p.add_argument("--vague-rate", type=float, help="fraction of vague captions")
    p.add_argument("--partly-wrong-rate", type=float, help="fraction with one wrong attribute")
    p.add_argument("--text-cache", help="folder caching encoded captions")


def main(args: argparse.Namespace) -> int:
    from popdistill.retrieval.corpus import build_retrieval_corpus

    options = {}
    if args.encoders:
        options["encoders"] = tuple(e.strip() for e in args.encoders.split(",") if e.strip())
    for name in ("wrong_rate", "vague_rate", "partly_wrong_rate", "text_cache"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    built = build_retrieval_corpus(args.world, args.out, args.captions, args.seed, **options)
    print(f"corpus: {len(built.features.videos)} videos, captions {built.captions.counts()}, "
          f"splits { {k: len(v) for k, v in built.features.splits.items()} } -> {built.path}")
    return 0
