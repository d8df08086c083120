"""Captions from world attributes: content, variety, noise kinds at exact rates, bookkeeping."""

from __future__ import annotations

import json

import pytest

from popdistill.cli import main as cli_main
from popdistill.errors import UserError
from popdistill.retrieval.captions import (
    COLOUR_WORDS,
    DIRECTION_WORDS,
    SHAPE_WORDS,
    CaptionConfig,
    make_captions,
    tokenize,
)


def _video(colour: str, shape: str, direction: str, *, pan: str | None = None,
           background: str = "tabby cat") -> dict:
    camera = {"motion": "pan", "pan": {"direction": pan}} if pan else {"motion": "static"}
    return {
        "objects": [{"id": 1, "shape": shape, "colour": colour, "texture": "plain",
                     "size": "large", "direction": direction, "speed": "fast",
                     "area_fraction": 0.05}],
        "background": {"kind": "photo", "name": "chelsea", "colour": "brown",
                       "description": background},
        "camera": camera,
    }


ATTRS = {
    "v0": _video("red", "triangle", "left", pan="up"),
    "v1": _video("blue", "star", "down", background="cup of coffee on a table"),
    "v2": _video("green", "hexagon", "up-right", pan="right"),
    "v3": _video("yellow", "pentagon", "right"),
}


def _has(text: str, words: tuple[str, ...]) -> bool:
    padded = f" {' '.join(tokenize(text))} "
    if not any("-" in w for w in words):  # a cardinal direction inside a diagonal one is not one
        for diagonal in ("up-right", "up-left", "down-right", "down-left"):
            for phrase in DIRECTION_WORDS[diagonal]:
                padded = padded.replace(f" {' '.join(tokenize(phrase))} ", " ")
    return any(f" {' '.join(tokenize(w))} " in padded for w in words)


def test_full_captions_name_every_attribute_and_vary_their_wording():
    cfg = CaptionConfig(per_video=10, vague_rate=0, partly_wrong_rate=0, wrong_rate=0)
    cs = make_captions(ATTRS, cfg)
    assert sorted(cs.captions) == sorted(ATTRS)
    for video, caps in cs.captions.items():
        obj = ATTRS[video]["objects"][0]
        assert len(caps) == 10
        assert len(set(caps)) >= 8  # varied wording
        for cap in caps:
            assert _has(cap, COLOUR_WORDS[obj["colour"]]), cap
            assert _has(cap, SHAPE_WORDS[obj["shape"]]), cap
            assert _has(cap, DIRECTION_WORDS[obj["direction"]]), cap
            assert _has(cap, (ATTRS[video]["background"]["description"],)), cap
            assert "camera" in cap
    assert all(m["kind"] == "full" and m["source"] == v
               for v, metas in cs.meta.items() for m in metas)
    # Word order differs: some captions start with the object, others with the camera or scene.
    starts = {c.split()[0] for caps in cs.captions.values() for c in caps}
    assert len(starts) >= 4


def test_noise_kinds_have_exact_counts_and_bookkeeping():
    attrs = {f"w{i:02d}": _video(c, s, d) for i, (c, s, d) in enumerate(
        [(c, s, d) for c in ("red", "blue", "green", "white", "black")
         for s, d in (("star", "left"), ("ring", "down"), ("cross", "up"), ("square", "right"))])}
    cfg = CaptionConfig(per_video=10, vague_rate=0.15, partly_wrong_rate=0.05, wrong_rate=0.1,
                        seed=3)
    cs = make_captions(attrs, cfg)
    assert cs.counts() == {"full": 140, "vague": 30, "partly_wrong": 10, "wrong": 20}
    wrong = cs.wrong()
    assert sum(sum(w) for w in wrong.values()) == 20
    for video, metas in cs.meta.items():
        for cap, meta, is_wrong in zip(cs.captions[video], metas, wrong[video]):
            assert is_wrong == (meta["kind"] == "wrong")
            if meta["kind"] == "wrong":
                assert meta["source"] != video
                src = attrs[meta["source"]]["objects"][0]
                assert _has(cap, COLOUR_WORDS[src["colour"]]) and _has(cap, SHAPE_WORDS[src["shape"]])
            else:
                assert meta["source"] == video


def test_partly_wrong_captions_swap_exactly_one_attribute():
    cfg = CaptionConfig(per_video=20, vague_rate=0, partly_wrong_rate=1.0, wrong_rate=0)
    attrs = {v: {**a, "camera": {"motion": "static"}} for v, a in ATTRS.items()}
    cs = make_captions(attrs, cfg)
    seen = set()
    for video, metas in cs.meta.items():
        obj = attrs[video]["objects"][0]
        for cap, meta in zip(cs.captions[video], metas):
            ((what, (true, written)),) = meta["changed"].items()
            seen.add(what)
            table = COLOUR_WORDS if what == "colour" else DIRECTION_WORDS
            assert true == obj[what] and written != true
            assert _has(cap, table[written]) and not _has(cap, table[true]), cap
            other = "direction" if what == "colour" else "colour"
            other_table = DIRECTION_WORDS if what == "colour" else COLOUR_WORDS
            assert _has(cap, other_table[obj[other]]), cap
    assert seen == {"colour", "direction"}


def test_vague_captions_mention_only_one_attribute():
    cfg = CaptionConfig(per_video=30, vague_rate=1.0, partly_wrong_rate=0, wrong_rate=0)
    cs = make_captions(ATTRS, cfg)
    mentioned = set()
    for video, metas in cs.meta.items():
        obj = ATTRS[video]["objects"][0]
        words = {"colour": COLOUR_WORDS[obj["colour"]], "shape": SHAPE_WORDS[obj["shape"]],
                 "direction": DIRECTION_WORDS[obj["direction"]],
                 "background": (ATTRS[video]["background"]["description"],),
                 "camera": ("camera",)}
        for cap, meta in zip(cs.captions[video], metas):
            hits = {k for k, w in words.items() if _has(cap, w)}
            assert hits == {meta["mentions"]}, cap
            mentioned.add(meta["mentions"])
    assert mentioned == {"colour", "shape", "direction", "background", "camera"}


def test_captions_are_seeded_and_validated():
    a = make_captions(ATTRS, CaptionConfig(seed=1, wrong_rate=0.25))
    b = make_captions(ATTRS, CaptionConfig(seed=1, wrong_rate=0.25))
    c = make_captions(ATTRS, CaptionConfig(seed=2, wrong_rate=0.25))
    assert a.captions == b.captions and a.meta == b.meta
    assert a.captions != c.captions
    with pytest.raises(UserError, match="at most 1"):
        make_captions(ATTRS, CaptionConfig(vague_rate=0.6, partly_wrong_rate=0.3, wrong_rate=0.2))
    with pytest.raises(UserError, match="per_video"):
        make_captions(ATTRS, CaptionConfig(per_video=0))
    with pytest.raises(UserError, match="two videos"):
        make_captions({"v0": ATTRS["v0"]}, CaptionConfig(wrong_rate=0.5))


def test_captions_of_a_generated_world_describe_its_objects(tmp_path):
    assert cli_main(["world", "--out", str(tmp_path), "--videos", "4", "--frames", "4",
                     "--size", "32"]) == 0
    attrs = json.loads((tmp_path / "attributes.json").read_text())
    cs = make_captions(attrs, CaptionConfig(per_video=5, vague_rate=0, partly_wrong_rate=0))
    for video, caps in cs.captions.items():
        for obj in attrs[video]["objects"]:
            assert all(_has(c, COLOUR_WORDS[obj["colour"]]) for c in caps)
            assert all(_has(c, SHAPE_WORDS[obj["shape"]]) for c in caps)
    tokens = cs.tokens()
    assert tokens[sorted(tokens)[0]][0] == tokenize(cs.captions[sorted(tokens)[0]][0])
