"""The VideoPCA teacher at scale: a streaming Ray Data pipeline (thin edges over pure cores).

VideoPCA actors stream over the data set (``stream.py``: read tasks cut videos into chunks,
an actor pool turns chunks into masks and writes them to the store); then selection (Ray
Data over the store's scores) and, with ground truth, evaluation. Only per-chunk summaries
and per-frame scalars reach the driver, so memory is flat whatever the corpus size.
"""

from __future__ import annotations

import numpy as np

from popdistill.data.schema import FrameRecord
from popdistill.inference.stream import MaskActor, stream_masks
from popdistill.storage import RunPath
from popdistill.teacher.config import TeacherConfig, VideoPCAConfig

__all__ = ["VideoPCAActor", "run_teacher", "teacher_paths"]


def teacher_paths(out: str) -> dict[str, RunPath]:
    root = RunPath.of(out) / "teacher"
    return {
        "root": root,
        "store": root / "store",
        "done": root / "done",
        "selected": root / "selected",
        "report": root / "report.json",
    }


class VideoPCAActor(MaskActor):
    """The VideoPCA teacher as a Ray Data actor (one colour look-up table per actor)."""

    teacher = "videopca"

    def __init__(self, store: str, export_png: str | None, generation: int, cfg: dict, threads: int,
                 source: dict | None = None, image_codec: str = "source", density: bool = True):
        import torch

        from popdistill.config import load
        from popdistill.teacher.videopca import VideoPCA

        super().__init__(store, export_png, generation, source, image_codec, density)
        torch.set_num_threads(max(1, threads))
        self.videopca = VideoPCA(load(VideoPCAConfig, cfg))

    def masks(self, records: list[FrameRecord]) -> np.ndarray:
        return self.videopca(_stack_frames([r.image for r in records], self.videopca.cfg.size))


def _stack_frames(images: list[np.ndarray], size: int) -> np.ndarray:
    """Frames of one chunk as T x H x W x 3; frames of differing size are first resized."""
    if len({im.shape for im in images}) == 1:
        return np.stack(images)
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in images])


def run_teacher(cfg: TeacherConfig, log=print) -> dict:
    """Run (or resume) the teacher over a data set; returns the report (also written to JSON)."""
    from popdistill.config import to_dict
    from popdistill.selection.store import evaluate_store, select_top
    from popdistill.teacher.report import teacher_contact_sheet

    paths = teacher_paths(cfg.out)
    result = stream_masks(
        fmt=cfg.format, data=cfg.data, reader_options=cfg.reader_options,
        store=paths["store"], done=paths["done"], actor=VideoPCAActor,
        actor_kwargs=dict(export_png=cfg.export_png, generation=cfg.generation,
                          cfg=to_dict(cfg.videopca), threads=cfg.torch_threads,
                          image_codec=cfg.image_codec,
                          # the edge density (~0.1 ms a frame) only where selection has strata
                          density=cfg.select_strata > 1),
        chunk_frames=cfg.chunk_frames, min_frames=cfg.videopca.k + 1, actors=cfg.actors,
        actor_cpus=cfg.actor_cpus, read_cpus=cfg.read_cpus, decode=cfg.decode, label="teacher", log=log,
    )

    selection = select_top(paths["store"], paths["selected"], cfg.select_top, cfg.select_strata)
    log(f"selection: kept {selection['kept']} of {selection['total']} frames (score >= {selection['threshold']:.4f}"
        + (f", the lowest of {cfg.select_strata} edge-density strata's thresholds)" if cfg.select_strata > 1 else ")"))
    report = {
        "config": to_dict(cfg),
        "videos": {"total": result.videos_total, "done": result.videos_done,
                   "processed_this_run": result.processed_this_run},
        "frames_this_run": result.frames,
        "seconds": result.seconds,
        "frames_per_second": result.frames_per_second,
        "actor_seconds": result.actor_seconds,
        "actor_step_seconds": result.step_seconds,
        "selection": selection,
        "skipped": [s.to_dict() for s in result.skipped],
        "store": paths["store"].uri,
        "selected_store": paths["selected"].uri,
    }
    if cfg.evaluate:
        report["metrics"] = evaluate_store(paths["store"], selection)
    if paths["root"].is_local and selection["total"]:
        sheet = teacher_contact_sheet(paths["store"], paths["selected"], paths["root"].path + "/contact_sheet.png")
        report["contact_sheet"] = str(sheet)
    paths["report"].write_json(report)
    return report

