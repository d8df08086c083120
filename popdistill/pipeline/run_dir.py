"""A finished ``popdistill run`` directory, read back: what analyses of runs build on.

    RunDir(path).rows(k)            generation k's held-out rows (students, then Multi-Net)
    RunDir(path).students(k)        its students' names
    RunDir(path).per_video(k, m)    method m's held-out metrics per video (gen-k/evaluation.json)
    RunDir(path).eval_store(k, m)   student m's mask store of the held-out videos
    RunDir(path).heldout(stores)    the held-out frames with ground truth, each with its masks
    RunDir(path).config             the resolved run config (report.json)

Everything comes from the files the pipeline writes (``report.json``, ``gen-<k>/evaluation.json``,
``gen-<k>/eval/<student>/store``); errors name the file that is missing.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from popdistill.errors import UserError
from popdistill.storage import RunPath

__all__ = ["RunDir", "CENTRE", "VIDEOPCA", "MULTINET"]

CENTRE, VIDEOPCA, MULTINET = "centre prior", "VideoPCA", "Multi-Net"


class RunDir:
    """One run directory (a local path or a bucket URI)."""

    def __init__(self, path: str):
        self.root = RunPath.of(str(path))
        self.name = str(path)

    def _json(self, rel: str) -> Any:
        f = self.root / rel
        if not f.exists():
            raise UserError(f"{f.uri}: missing; is {self.name} a finished `popdistill run` directory?")
        return f.read_json()

    @cached_property
    def report(self) -> dict[str, Any]:
        return self._json("report.json")

    @property
    def config(self) -> dict[str, Any]:
        return self.report["config"]

    @property
    def table(self) -> list[dict[str, Any]]:
        return self.report["table"]

    @property
    def generations(self) -> list[int]:
        return sorted({r["generation"] for r in self.table if r["generation"] != "-"})

    def baseline(self, method: str = VIDEOPCA) -> dict[str, Any]:
        return next(r for r in self.table if r["method"] == method)

    def rows(self, k: int) -> dict[str, dict[str, Any]]:
        """Generation ``k``'s rows by method (its students, then the Multi-Net)."""
        rows = {r["method"]: r for r in self.table if r["generation"] == k}
        if not rows:
            raise UserError(f"{self.name}: no generation {k} (it has {self.generations})")
        return rows

    def students(self, k: int = 1) -> list[str]:
        return [m for m in self.rows(k) if m != MULTINET]

    def per_video(self, k: int | None, method: str) -> dict[str, dict[str, Any]]:
        """``method``'s metrics per held-out video in generation ``k`` (None: the baselines')."""
        results = self._json("eval/evaluation.json" if k is None else f"gen-{k}/evaluation.json")
        if method not in results:
            raise UserError(f"{self.name}: generation {k} has no method {method!r} "
                            f"(it has {', '.join(results)})")
        return results[method]["videos"]

    def eval_store(self, k: int, student: str) -> str:
        store = self.root / f"gen-{k}" / "eval" / student / "store"
        if not store.exists():
            raise UserError(f"{store.uri}: missing; student {student!r} of generation {k} has "
                            "no held-out masks")
        return store.uri

    def videopca_store(self) -> str:
        """VideoPCA's mask store of the held-out videos."""
        store = self.root / "eval" / "teacher" / "store"
        if not store.exists():
            raise UserError(f"{store.uri}: missing; the run has no held-out VideoPCA masks")
        return store.uri

    def heldout(self, stores: dict[str, str]):
        """Every held-out frame with ground truth, in the reader's order, as ``(record, masks)``:
        ``masks`` maps each name of ``stores`` (name -> mask store) to its soft mask of the
        frame. A frame missing from a store is an error naming it."""
        from popdistill.data.readers import create_reader
        from popdistill.evaluate.masks_io import ParquetMaskStore

        data = self.eval_data()
        opened = {name: ParquetMaskStore(path) for name, path in stores.items()}
        reader = create_reader(data.format, data.path, **data.reader_options)
        for ref in reader.videos():
            for rec in reader.read_video(ref):
                if rec.gt_mask is None:
                    continue
                masks = {name: s.get(rec.video, rec.frame) for name, s in opened.items()}
                if missing := [n for n, m in masks.items() if m is None]:
                    raise UserError(f"{stores[missing[0]]}: no mask for held-out frame "
                                    f"{rec.video}/{rec.frame}")
                yield rec, masks

    def eval_data(self):
        """The held-out data set's DataConfig."""
        from popdistill.config import load
        from popdistill.pipeline.config import DataConfig

        return load(DataConfig, self.config["eval"], "eval")

    def eval_config(self):
        """The run's evaluation settings (EvalConfig), as its own table was scored with."""
        from popdistill.config import load
        from popdistill.evaluate.metrics import EvalConfig

        return load(EvalConfig, self.config.get("evaluation") or {}, "evaluation")
