"""Captions for the procedural video world, written from each video's ``attributes.json`` entry.

Every video gets ``per_video`` captions with varied wording: sentence templates x synonyms
(shape nouns, colour words, motion verbs, direction and speed phrases, background and camera
phrases) x word order (object first, background first, camera first). As in real caption sets,
some captions are noisy, in exact seeded proportions:

- *vague*: mentions one attribute only (the colour, the shape, the direction, the background
  or the camera motion);
- *partly wrong*: a full caption with one attribute of one object replaced by a wrong value
  (its colour or its direction);
- *wrong*: a caption of another video, used to measure caption denoising.

:class:`CaptionSet` keeps, for every caption, its kind, the video it actually describes
(``source``) and the attribute changes, so noise can be scored later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from popdistill.errors import UserError

__all__ = [
    "CaptionConfig",
    "CaptionSet",
    "COLOUR_WORDS",
    "SHAPE_WORDS",
    "DIRECTION_WORDS",
    "KINDS",
    "make_captions",
    "describe_video",
    "tokenize",
]

KINDS = ("full", "vague", "partly_wrong", "wrong")

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",), "orange": ("orange",), "yellow": ("yellow",), "green": ("green",),
    "cyan": ("cyan", "turquoise"), "blue": ("blue",), "purple": ("purple", "violet"),
    "pink": ("pink",), "brown": ("brown",), "white": ("white",), "grey": ("grey", "gray"),
    "black": ("black",),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round shape"), "ellipse": ("ellipse", "oval"),
    "blob": ("blob", "irregular blob"), "triangle": ("triangle",), "square": ("square", "box"),
    "pentagon": ("pentagon",), "hexagon": ("hexagon",), "rectangle": ("rectangle", "bar"),
    "star": ("star",), "cross": ("cross", "plus sign"), "ring": ("ring", "hoop"),
    "crescent": ("crescent", "moon shape"), "dumbbell": ("dumbbell",),
    "bug": ("bug", "beetle", "insect"),
}
DIRECTION_WORDS: dict[str, tuple[str, ...]] = {
    "right": ("right", "to the right", "rightwards"),
    "left": ("left", "to the left", "leftwards"),
    "up": ("up", "upwards", "towards the top"),
    "down": ("down", "downwards", "towards the bottom"),
    "up-right": ("up and to the right", "towards the top right", "diagonally up-right"),
    "up-left": ("up and to the left", "towards the top left", "diagonally up-left"),
    "down-right": ("down and to the right", "towards the bottom right", "diagonally down-right"),
    "down-left": ("down and to the left", "towards the bottom left", "diagonally down-left"),
}
_SPEED = {"slow": ("slowly", "gently", "at a slow pace"), "medium": ("steadily", "", ""),
          "fast": ("quickly", "fast", "rapidly"), "still": ("",)}
_VERBS = (("moves", "moving"), ("travels", "travelling"), ("glides", "gliding"),
          ("slides", "sliding"), ("goes", "going"), ("drifts", "drifting"))
_STILL = (("stays in place", "staying in place"), ("hovers in one spot", "hovering in one spot"))
_TEXTURE = {"plain": "", "stripes": "striped", "checker": "checkered", "spots": "spotted",
            "gradient": "shaded", "speckled": "speckled"}
_BG_TEXTURE = {"noise": "noisy texture", "stripes": "striped pattern", "checker": "checkerboard",
               "blobs": "blobby pattern"}
_BG_PREP = ("over", "in front of", "against", "on")
_SCENE = ("a video of", "a clip showing", "footage of", "we see")


@dataclass
class CaptionConfig:
    """How many captions per video and the rates of noisy ones (fractions of all captions)."""

    per_video: int = 10
    seed: int = 0
    vague_rate: float = 0.1
    partly_wrong_rate: float = 0.1
    wrong_rate: float = 0.0

    def validate(self) -> None:
        if self.per_video < 1:
            raise UserError(f"per_video: need at least one caption per video, got {self.per_video}")
        rates = ("vague_rate", "partly_wrong_rate", "wrong_rate")
        for name in rates:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if sum(getattr(self, n) for n in rates) > 1.0 + 1e-9:
            raise UserError("vague_rate + partly_wrong_rate + wrong_rate: must be at most 1")


@dataclass
class CaptionSet:
    """Captions per video; ``meta`` has one dict per caption: ``kind`` (one of :data:`KINDS`),
    ``source`` (the video it describes) and ``changed`` (attribute -> [true, written])."""

    captions: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, list[dict]] = field(default_factory=dict)

    def tokens(self) -> dict[str, list[list[str]]]:
        """Token lists per caption, the form the CE layout stores."""
        return {v: [tokenize(c) for c in caps] for v, caps in self.captions.items()}

    def wrong(self) -> dict[str, list[bool]]:
        """True where a caption describes another video."""
        return {v: [m["kind"] == "wrong" for m in metas] for v, metas in self.meta.items()}

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        for metas in self.meta.values():
            for m in metas:
                out[m["kind"]] += 1
        return out


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, hyphens and apostrophes)."""
    return re.findall(r"[a-z0-9'-]+", text.lower())


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _an(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _object_phrase(o: dict, rng: np.random.Generator) -> str:
    colour = _pick(rng, COLOUR_WORDS.get(o["colour"], (o["colour"],)))
    shape = _pick(rng, SHAPE_WORDS.get(o["shape"], (o["shape"],)))
    texture = _TEXTURE.get(o.get("texture", "plain"), "")
    size = o.get("size", "")
    forms = (
        f"{size} {colour} {shape}",
        f"{colour} {shape}",
        f"{colour} {texture} {shape}",
        f"{size} {colour} {texture} {shape}",
    )
    words = " ".join(_pick(rng, forms).split())
    if rng.random() < 0.15:
        return f"{_an(' '.join(f'{size} {shape}'.split()))} coloured {colour}"
    return _an(words)


def _motion(o: dict, rng: np.random.Generator) -> tuple[str, str]:
    """(finite, -ing) verb phrases of an object's motion."""
    if o["direction"] == "in place":
        return _pick(rng, _STILL)
    verb, ing = _pick(rng, _VERBS)
    where = _pick(rng, DIRECTION_WORDS[o["direction"]])
    speed = _pick(rng, _SPEED.get(o.get("speed", "medium"), ("",)))
    tail = f"{where} {speed}" if rng.random() < 0.5 else f"{speed} {where}"
    return " ".join(f"{verb} {tail}".split()), " ".join(f"{ing} {tail}".split())


def _background(bg: dict) -> str:
    if bg["kind"] == "photo":
        return _an(bg["description"])
    words = _BG_TEXTURE.get(bg["name"], bg["description"].split(" (")[0])
    return _an(f"{bg['colour']} {words}")


def _camera(cam: dict, rng: np.random.Generator) -> str:
    bits = []
    if "pan" in cam:
        where = _pick(rng, DIRECTION_WORDS[cam["pan"]["direction"]])
        bits.append(_pick(rng, (f"the camera pans {where}", f"the camera moves {where}")))
    if "zoom" in cam:
        bits.append(f"the camera zooms {cam['zoom']['direction']}")
    if "shake" in cam:
        bits.append(_pick(rng, ("the camera shakes", "the camera is shaky")))
    if not bits:
        return _pick(rng, ("the camera is still", "the camera does not move", "a static camera"))
    return " and ".join(bits)


def describe_video(attrs: dict, rng: np.random.Generator) -> str:
    """One full caption of a video (all objects, background and camera), randomly worded."""
    objs = sorted(attrs["objects"], key=lambda o: -o.get("area_fraction", 0.0))
    parts = []
    for o in objs:
        finite, ing = _motion(o, rng)
        parts.append((_object_phrase(o, rng), finite, ing))
    bg = _background(attrs["background"])
    prep = _pick(rng, _BG_PREP)
    cam = _camera(attrs["camera"], rng)
    order = int(rng.integers(4))
    clauses = [f"{p} {f}" for p, f, _ in parts]
    joined = _pick(rng, (" while ", " and ", "; ")).join(clauses)
    if order == 0:
        text = f"{joined} {prep} {bg}, {_pick(rng, ('while', 'as', 'and'))} {cam}"
    elif order == 1:
        text = f"{prep} {bg}, {joined}; {cam}"
    elif order == 2:
        text = f"{cam}: {joined} {prep} {bg}"
    else:
        things = " and ".join(f"{p} {i}" for p, _, i in parts)
        text = f"{_pick(rng, _SCENE)} {things} {prep} {bg}; {cam}"
    return " ".join(text.split()) + "."


def _vague(attrs: dict, rng: np.random.Generator) -> tuple[str, str]:
    """(caption, attribute) mentioning a single attribute of the video."""
    o = max(attrs["objects"], key=lambda o: o.get("area_fraction", 0.0))
    choices = ["colour", "shape", "background", "camera"]
    if o["direction"] != "in place":
        choices.append("direction")
    what = _pick(rng, choices)
    if what == "colour":
        colour = _pick(rng, COLOUR_WORDS[o["colour"]])
        text = _pick(rng, (f"something {colour}", f"{_an(colour)} thing in a video",
                           f"there is something {colour}"))
    elif what == "shape":
        text = _pick(rng, (f"{_an(_pick(rng, SHAPE_WORDS[o['shape']]))}",
                           f"a clip with {_an(_pick(rng, SHAPE_WORDS[o['shape']]))}"))
    elif what == "direction":
        text = f"something {_pick(rng, _VERBS)[0]} {_pick(rng, DIRECTION_WORDS[o['direction']])}"
    elif what == "background":
        text = f"{_pick(rng, _SCENE)} {_background(attrs['background'])}"
    else:
        text = _camera(attrs["camera"], rng)
    return " ".join(text.split()) + ".", what


def _partly_wrong(attrs: dict, rng: np.random.Generator) -> tuple[str, dict]:
    """A full caption with the colour or direction of one object replaced by a wrong one."""
    objs = [dict(o) for o in attrs["objects"]]
    j = int(rng.integers(len(objs)))
    what = "direction" if objs[j]["direction"] != "in place" and rng.random() < 0.5 else "colour"
    table = DIRECTION_WORDS if what == "direction" else COLOUR_WORDS
    true = objs[j][what]
    taken = {o[what] for o in objs}  # a value another object has would not make it wrong
    wrong = _pick(rng, [w for w in table if w not in taken])
    objs[j][what] = wrong
    return describe_video({**attrs, "objects": objs}, rng), {what: [true, wrong]}


def _exact_kinds(n: int, cfg: CaptionConfig, rng: np.random.Generator) -> list[str]:
    """``n`` caption kinds with exactly round(rate * n) of each noisy kind, in random order."""
    counts = {"wrong": round(cfg.wrong_rate * n), "partly_wrong": round(cfg.partly_wrong_rate * n),
              "vague": round(cfg.vague_rate * n)}
    kinds = [k for k, c in counts.items() for _ in range(c)][:n]
    kinds += ["full"] * (n - len(kinds))
    return [kinds[i] for i in rng.permutation(n)]


def make_captions(attributes: dict[str, dict], cfg: CaptionConfig | None = None) -> CaptionSet:
    """Captions for every video in ``attributes`` (video id -> world attributes); seeded."""
    cfg = cfg or CaptionConfig()
    cfg.validate()
    videos = sorted(attributes)
    if cfg.wrong_rate > 0 and len(videos) < 2:
        raise UserError("wrong_rate: wrong captions need at least two videos")
    rng = np.random.default_rng(cfg.seed)
    kinds = _exact_kinds(len(videos) * cfg.per_video, cfg, rng)
    out = CaptionSet()
    for vi, video in enumerate(videos):
        caps, metas = [], []
        for kind in kinds[vi * cfg.per_video : (vi + 1) * cfg.per_video]:
            source, changed, mentions = video, {}, None
            if kind == "wrong":
                other = int(rng.integers(len(videos) - 1))
                source = videos[other + (other >= vi)]
                text = describe_video(attributes[source], rng)
            elif kind == "vague":
                text, mentions = _vague(attributes[video], rng)
            elif kind == "partly_wrong":
                text, changed = _partly_wrong(attributes[video], rng)
            else:
                text = describe_video(attributes[video], rng)
            meta = {"kind": kind, "source": source, "changed": changed}
            if mentions:
                meta["mentions"] = mentions
            caps.append(text)
            metas.append(meta)
        out.captions[video], out.meta[video] = caps, metas
    return out
