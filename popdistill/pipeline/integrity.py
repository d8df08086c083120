"""Outputs of finished steps, checked when a run resumes.

Writes go through temporary names and a move (:class:`~popdistill.storage.RunPath`), so a
killed writer leaves no half file under its final name; a full disk, a copy cut short or a
damaged bucket object still can. Before a resumed run trusts a finished step, the files its
result names are read back enough to know they are whole:

- Parquet (store chunks, selections): the footer, with its row groups' metadata;
- checkpoints (``.pt``, zip archives): every member's CRC.

A damaged file is removed with what depends on it, so that the step's own resume logic redoes
just that part (:func:`repair`): a store chunk takes its video's folder and done marker with it
(the video is decoded and masked again); a student's checkpoint takes the student's Ray Train
run and summary (the student is trained again); anything else goes alone.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from popdistill.storage import RunPath

__all__ = ["damaged_outputs", "repair"]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _parquet_problem(fs, path: str) -> str | None:
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as f:
            pq.ParquetFile(f).metadata  # noqa: B018 - reads and checks the footer
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        return f"unreadable Parquet ({str(exc).splitlines()[0][:120]})"
    return None


def _checkpoint_problem(fs, path: str) -> str | None:
    try:
        with fs.open_input_stream(path) as f:
            bad = zipfile.ZipFile(io.BytesIO(f.read())).testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"truncated or not a checkpoint ({exc})"
    return None if bad is None else f"damaged checkpoint (member {bad} fails its CRC)"


def damaged_outputs(result: Any, root: RunPath) -> list[tuple[str, str]]:
    """``(file, what is wrong)`` for every damaged output that ``result`` (a step's result)
    names under the run directory ``root``: Parquet files below a named folder or named
    themselves, and named ``.pt`` checkpoints. Paths outside the run directory (input data)
    and paths that do not exist are not checked."""
    from pyarrow import fs as pafs

    out = []
    seen: set[str] = set()
    prefix = root.uri.rstrip("/") + "/"
    for uri in _strings(result):
        if not uri.startswith(prefix) or uri in seen:
            continue
        seen.add(uri)
        path = RunPath.of(uri)
        info = path.fs.get_file_info(path.path)
        if info.type == pafs.FileType.Directory:
            files = path.files(".parquet")
        elif info.type == pafs.FileType.File:
            files = [path.path]
        else:
            continue
        for f in files:
            problem = (_checkpoint_problem(path.fs, f) if f.endswith(".pt")
                       else _parquet_problem(path.fs, f) if f.endswith(".parquet") else None)
            if problem:
                out.append((f"{prefix}{f[len(root.path) + 1:]}" if f.startswith(root.path) else f,
                            problem))
    return out


def repair(uri: str) -> list[str]:
    """Remove the damaged file ``uri`` and what depends on it (see the module docstring);
    returns what was removed."""
    parts = uri.split("/")
    removed: list[str] = []

    def rm(target: str) -> None:
        p = RunPath.of(target)
        if p.exists():
            p.delete()
            removed.append(target)

    if len(parts) >= 3 and parts[-3] == "store" and parts[-1].endswith(".parquet"):
        store, video = "/".join(parts[:-2]), parts[-2]  # <store>/<video>/chunk-N.parquet
        rm(f"{store}/{video}")
        rm(f"{store.rsplit('/', 1)[0]}/done/{video}.json")
    elif "train" in parts[:-1] and uri.endswith(".pt"):
        i = max(j for j, p in enumerate(parts[:-1]) if p == "train")  # the last "train" folder
        if i + 1 < len(parts) - 1:  # <run>/train/<student>/.../model.pt
            train, name = "/".join(parts[: i + 1]), parts[i + 1]
            rm(f"{train}/{name}")
            rm(f"{train}/{name}.json")
        else:
            rm(uri)
    else:
        rm(uri)
    return removed
