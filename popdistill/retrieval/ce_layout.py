"""The Collaborative-Experts (CE) feature layout on disk, and a pickle-free copy of it.

Layout of one data set folder (e.g. ``MSRVTT/structured-symlinks``), as read by the public CE
code (albanie/collaborative-experts, ``base/base_dataset.py`` and ``data_loader/*``):

- experts: ``aggregated_<feat>_<fps>fps_<px>px_stride<s>[...]/<model>-avg.pickle`` (video id ->
  vector; a missing feature is the float ``nan``), plus per-data-set files such as
  ``aggregated_audio_feats/Audio_MSRVTT_new.pickle`` or ``aggregated_face_feats/facefeats-avg.pickle``;
- ``raw-captions.pkl``: video id -> list of token lists;
- text features: ``aggregated_text_feats/<encoder>.pkl`` (or ``.pickle``): video id -> list of
  per-caption (tokens x D) arrays;
- split lists: ``train_list.txt``, ``val_list.txt``, ``test_list.txt`` (MSVD, LSMDC, ...) or
  ``train_list_full.txt``, ``val_list_full.txt``, ``test_list_full.txt``, ``*_list_jsfusion.txt``,
  ``*_list_miech.txt`` (MSR-VTT); one video id per line.

Discovery picks up every ``*-avg.pickle`` (named by its model, e.g. ``senet154``), every file in
``aggregated_text_feats/`` (named by its stem) and every ``*_list*.txt`` (``train_list_full.txt``
-> split ``train_full``). Other files (audio, OCR, speech token sets, MSVD's per-split text
pickles keyed through ``dict_youtube_mapping.pkl``) need an explicit ``experts=`` /
``text_features=`` / ``splits=`` mapping of name -> path relative to the root; a 2-D expert value
(frames x D) is mean-pooled over time. Vectors with any NaN, empty arrays and absent video ids
are unavailable (zero vector, ``available`` False).

Pickles run code when loaded, so ``read_ce_layout`` refuses them unless ``allow_pickle=True``.
``convert_ce_layout(src, dst, allow_pickle=True)`` converts once to ``.npz`` arrays + JSON that
``load_safe(dst)`` reads with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from popdistill.errors import UserError

__all__ = [
    "CEFeatures",
    "CELayoutPaths",
    "discover_ce_layout",
    "read_ce_layout",
    "convert_ce_layout",
    "save_safe",
    "load_safe",
]

SAFE_FORMAT = "popdistill-ce-safe"
SAFE_VERSION = 1
TEXT_DIR = "aggregated_text_feats"
CAPTIONS = "raw-captions.pkl"


@dataclass
class CEFeatures:
    """A data set's features in memory. Expert arrays are V x D in ``videos`` order."""

    videos: list[str]
    experts: dict[str, np.ndarray] = field(default_factory=dict)
    available: dict[str, np.ndarray] = field(default_factory=dict)
    captions: dict[str, list[list[str]]] = field(default_factory=dict)
    text: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)

    @property
    def expert_dims(self) -> dict[str, int]:
        return {name: int(arr.shape[1]) for name, arr in self.experts.items()}

    def availability(self, names: list[str] | None = None) -> np.ndarray:
        """V x E boolean mask in the order of ``names`` (default: all experts)."""
        names = list(self.experts) if names is None else names
        return np.stack([self.available[n] for n in names], axis=1)

    def video_indices(self, ids: list[str]) -> np.ndarray:
        index = {v: i for i, v in enumerate(self.videos)}
        unknown = [v for v in ids if v not in index]
        if unknown:
            raise UserError(
                f"{len(unknown)} video ids are not in the data set, e.g. {unknown[0]!r}"
            )
        return np.array([index[v] for v in ids], dtype=np.int64)


@dataclass
class CELayoutPaths:
    """Paths (relative to the root) of each part of a CE folder."""

    experts: dict[str, str]
    text: dict[str, str]
    splits: dict[str, str]
    captions: str = CAPTIONS


def discover_ce_layout(root: str | Path) -> CELayoutPaths:
    """List the parts of a CE folder by file name only (nothing is unpickled)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CE feature folder does not exist: {root}")
    experts: dict[str, str] = {}
    for path in sorted(root.rglob("*-avg.pickle")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(TEXT_DIR + "/"):
            continue
        name = path.name[: -len("-avg.pickle")]
        if name in experts:
            raise UserError(
                f"{root}: two expert files are both named {name!r} ({experts[name]}, {rel}); "
                "pass experts={name: relative path} to choose"
            )
        experts[name] = rel
    text = {}
    text_dir = root / TEXT_DIR
    if text_dir.is_dir():
        for path in sorted(text_dir.iterdir()):
            if path.suffix in (".pkl", ".pickle"):
                text[path.stem] = path.relative_to(root).as_posix()
    splits = {
        path.stem.replace("_list", "", 1): path.name for path in sorted(root.glob("*_list*.txt"))
    }
    return CELayoutPaths(experts=experts, text=text, splits=splits)


def _unpickle(path: Path):
    if not path.is_file():
        raise UserError(f"CE feature file not found: {path}")
    with path.open("rb") as f:
        try:
            return pickle.load(f)
        except UnicodeDecodeError:  # pickles written by Python 2
            f.seek(0)
            return pickle.load(f, encoding="latin1")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _expert_vector(value, path: Path, video: str) -> np.ndarray | None:
    if _is_missing(value):
        return None
    arr = np.asarray(value)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise UserError(
            f"{path}: video {video!r} holds {type(value).__name__}, not a feature vector"
        )
    if arr.ndim == 0 and np.isnan(arr):
        return None
    if arr.ndim == 2:
        if arr.shape[0] == 0:
            return None
        arr = arr.mean(axis=0)
    if arr.ndim != 1:
        raise UserError(
            f"{path}: video {video!r} has a feature of shape {arr.shape}; expected (D,) or (T, D)"
        )
    arr = arr.astype(np.float32)
    return None if np.isnan(arr).any() else arr


def _read_expert(path: Path, videos: list[str]) -> tuple[np.ndarray, np.ndarray]:
    table = _unpickle(path)
    if not isinstance(table, dict):
        raise UserError(f"{path}: expected a dict video id -> vector, got {type(table).__name__}")
    table = {str(k): val for k, val in table.items()}
    vectors = [_expert_vector(table[v], path, v) if v in table else None for v in videos]
    dims = {vec.shape[0] for vec in vectors if vec is not None}
    if len(dims) > 1:
        raise UserError(f"{path}: feature vectors have different lengths {sorted(dims)}")
    if not dims:
        raise UserError(f"{path}: no video of the data set has a usable feature")
    dim = dims.pop()
    feats = np.zeros((len(videos), dim), dtype=np.float32)
    available = np.array([vec is not None for vec in vectors], dtype=bool)
    for i, vec in enumerate(vectors):
        if vec is not None:
            feats[i] = vec
    return feats, available


def _caption_arrays(value, path: Path, video: str) -> list[np.ndarray]:
    if isinstance(value, np.ndarray) and value.ndim == 3:
        value = list(value)
    elif isinstance(value, np.ndarray):
        value = [value]
    if not isinstance(value, list | tuple):
        raise UserError(
            f"{path}: video {video!r} holds {type(value).__name__}, expected a list of arrays"
        )
    out = []
    for arr in value:
        arr = np.asarray(arr, dtype=np.float32)
        arr = arr[None, :] if arr.ndim == 1 else arr
        if arr.ndim != 2:
            raise UserError(f"{path}: video {video!r} has a caption feature of shape {arr.shape}")
        out.append(arr)
    return out


def _read_text(path: Path) -> dict[str, list[np.ndarray]]:
    table = _unpickle(path)
    if not isinstance(table, dict):
        raise UserError(
            f"{path}: expected a dict video id -> list of arrays, got {type(table).__name__}"
        )
    text = {str(v): _caption_arrays(val, path, v) for v, val in table.items()}
    dims = {arr.shape[1] for caps in text.values() for arr in caps}
    if len(dims) > 1:
        raise UserError(f"{path}: token features have different widths {sorted(dims)}")
    return text


def _read_captions(path: Path) -> dict[str, list[list[str]]]:
    table = _unpickle(path)
    if not isinstance(table, dict):
        raise UserError(f"{path}: expected a dict video id -> list of token lists")
    return {
        str(v): [cap.split() if isinstance(cap, str) else [str(t) for t in cap] for cap in caps]
        for v, caps in table.items()
    }


def _read_split(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"split list not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_ce_layout(
    root: str | Path,
    *,
    allow_pickle: bool = False,
    experts: dict[str, str] | None = None,
    text_features: dict[str, str] | None = None,
    splits: dict[str, str] | None = None,
    captions: str = CAPTIONS,
) -> CEFeatures:
    """Read a CE folder. Mappings name -> relative path override what discovery finds.

    Videos are the sorted union of the ids in the captions, text features and split lists.
    """
    root = Path(root)
    found = discover_ce_layout(root)
    paths = CELayoutPaths(
        experts=found.experts if experts is None else dict(experts),
        text=found.text if text_features is None else dict(text_features),
        splits=found.splits if splits is None else dict(splits),
        captions=captions,
    )
    if not allow_pickle:
        raise UserError(
            f"{root}: the Collaborative-Experts layout stores pickles ({paths.captions}, expert and "
            "text features), and loading a pickle can run arbitrary code. Pass allow_pickle=True "
            "only for files from a source you trust, or convert once with convert_ce_layout(src, dst, allow_pickle=True) and read "
            "the converted copy with load_safe(dst), which never unpickles."
        )
    caption_table = _read_captions(root / paths.captions)
    text = {name: _read_text(root / rel) for name, rel in paths.text.items()}
    split_lists = {name: _read_split(root / rel) for name, rel in paths.splits.items()}
    ids = set(caption_table)
    for table in text.values():
        ids.update(table)
    for ids_in_split in split_lists.values():
        ids.update(ids_in_split)
    videos = sorted(ids)
    feats, avail = {}, {}
    for name, rel in paths.experts.items():
        feats[name], avail[name] = _read_expert(root / rel, videos)
    return CEFeatures(
        videos=videos,
        experts=feats,
        available=avail,
        captions=caption_table,
        text=text,
        splits=split_lists,
    )


def save_safe(data: CEFeatures, dst: str | Path, source: str = "") -> Path:
    """Write ``data`` as npz + JSON under ``dst``; the manifest is written last."""
    dst = Path(dst)
    (dst / "manifest.json").unlink(missing_ok=True)  # a half-rewritten copy must not load
    (dst / "experts").mkdir(parents=True, exist_ok=True)
    (dst / "text").mkdir(parents=True, exist_ok=True)
    index = {v: i for i, v in enumerate(data.videos)}
    manifest: dict = {
        "format": SAFE_FORMAT,
        "version": SAFE_VERSION,
        "source": source,
        "videos": data.videos,
        "experts": {},
        "text": {},
    }
    for i, (name, feats) in enumerate(data.experts.items()):
        rel = f"experts/expert_{i:03d}.npz"
        np.savez(dst / rel, features=feats.astype(np.float32), available=data.available[name])
        manifest["experts"][name] = {"file": rel, "dim": int(feats.shape[1])}
    for i, (name, table) in enumerate(data.text.items()):
        caps = [(index[v], arr) for v in data.videos if v in table for arr in table[v]]
        arrays = [arr for _, arr in caps]
        dim = arrays[0].shape[1] if arrays else 0
        lengths = np.array([arr.shape[0] for arr in arrays], dtype=np.int64)
        rel = f"text/text_{i:03d}.npz"
        np.savez(
            dst / rel,
            tokens=np.concatenate(arrays).astype(np.float32)
            if arrays
            else np.zeros((0, dim), np.float32),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            caption_video=np.array([v for v, _ in caps], dtype=np.int64),
            entries=np.array([index[v] for v in data.videos if v in table], dtype=np.int64),
        )
        manifest["text"][name] = {"file": rel, "dim": int(dim)}
    (dst / "captions.json").write_text(json.dumps(data.captions))
    (dst / "splits.json").write_text(json.dumps(data.splits))
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return dst


def convert_ce_layout(
    src: str | Path, dst: str | Path, *, allow_pickle: bool = False, **read_options
) -> Path:
    """One-time conversion of a CE folder to the pickle-free format that ``load_safe`` reads."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise UserError(f"convert_ce_layout: destination must differ from the source {src}")
    data = read_ce_layout(src, allow_pickle=allow_pickle, **read_options)
    return save_safe(data, dst, source=str(src))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UserError(f"converted CE data is incomplete: {path} is missing")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_safe(dst: str | Path) -> CEFeatures:
    """Read what ``convert_ce_layout`` / ``save_safe`` wrote, without unpickling anything."""
    dst = Path(dst)
    manifest_path = dst / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(
            f"{dst}: no manifest.json; convert the CE folder with convert_ce_layout first"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != SAFE_FORMAT or manifest.get("version") != SAFE_VERSION:
        raise UserError(f"{manifest_path}: not a {SAFE_FORMAT} v{SAFE_VERSION} manifest")
    videos = list(manifest["videos"])
    feats, avail = {}, {}
    for name, entry in manifest["experts"].items():
        z = _load_npz(dst / entry["file"])
        feats[name], avail[name] = z["features"], z["available"].astype(bool)
    text: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, entry in manifest["text"].items():
        z = _load_npz(dst / entry["file"])
        table: dict[str, list[np.ndarray]] = {videos[v]: [] for v in z["entries"]}
        bounds = z["offsets"]
        for c, vid in enumerate(z["caption_video"]):
            table[videos[vid]].append(z["tokens"][bounds[c] : bounds[c + 1]])
        text[name] = table
    captions = json.loads((dst / "captions.json").read_text())
    splits = json.loads((dst / "splits.json").read_text())
    return CEFeatures(
        videos=videos, experts=feats, available=avail, captions=captions, text=text, splits=splits
    )
