"""The teacher run's human-readable outputs: a printed summary and a contact sheet PNG."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["print_teacher_report", "teacher_contact_sheet", "contact_sheet_frames"]


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_teacher_report(report: dict, out: Callable[[str], None] = print) -> None:
    sel = report["selection"]
    out("")
    out(f"VideoPCA teacher: {report['videos']['done']}/{report['videos']['total']} videos done, "
        f"{report['frames_this_run']} frames this run at {report['frames_per_second']:.0f} frames/s")
    if sel.get("strata", 1) > 1:
        thresholds = ", ".join(f"{t:.4f}" for t in sel["strata_thresholds"])
        out(f"selection: top {sel['fraction']:.0%} of each of {sel['strata']} edge-density strata -> "
            f"{sel['kept']} of {sel['total']} frames ({' / '.join(map(str, sel['strata_kept']))} from plain "
            f"to cluttered), thresholds {thresholds}; store {sel['store']}")
    else:
        out(f"selection: top {sel['fraction']:.0%} -> {sel['kept']} of {sel['total']} frames, "
            f"threshold {sel['threshold']:.4f}; store {sel['store']}")
    metrics = report.get("metrics")
    if metrics:
        out("")
        out(f"{'frames':<22}{'n':>8}{'P':>8}{'J':>8}")
        for name in ("all", "selected", "rejected"):
            m = metrics[name]
            out(f"{'teacher, ' + name:<22}{m['frames']:>8}{_fmt(m['P']):>8}{_fmt(m['J']):>8}")
        c = metrics["centre_prior"]
        out(f"{'centre prior, all':<22}{c['frames']:>8}{'-':>8}{_fmt(c['J']):>8}")
        out(f"Spearman rho (score vs J): {metrics['spearman_score_vs_j']:.3f}")
    skipped = report.get("skipped") or []
    out(f"skipped inputs: {len(skipped)}" + (" (listed in report.json)" if skipped else ""))
    for s in skipped[:10]:
        out(f"  {s['path']}: {s['reason']}")
    if len(skipped) > 10:
        out(f"  ... and {len(skipped) - 10} more")


def teacher_contact_sheet(store, selected, out_png, per_group: int = 4, seed: int = 0,
                          method: str = "VideoPCA"):
    """A PNG of frames with the teacher's mask beside the ground truth: ``per_group`` frames of
    the ``selected`` store and ``per_group`` other frames of ``store``, from different videos
    (:func:`contact_sheet_frames`). ``method`` names the masks' column. Returns the path, or
    None when the store is empty."""
    from popdistill.evaluate.report import GridRow, save_mask_grid

    groups = contact_sheet_frames(store, selected, per_group, seed)
    if groups is None:
        return None
    rows = [GridRow(f"{name} {rec.video}#{rec.frame} score {rec.score:.2f}", rec.image, rec.gt_mask, {method: rec.mask})
            for name, recs in groups for rec in recs]
    return save_mask_grid(out_png, rows, [method])


def contact_sheet_frames(store, selected, per_group: int = 4, seed: int = 0):
    """``[("selected", records), ("rejected", records)]``: up to ``per_group`` frames of the
    ``selected`` store and as many of ``store`` that are not in it, one a video; None when
    ``store`` is empty.

    Reads a few files, not the store: frames are drawn from files picked at random (a file is
    a chunk of one video); only the selection's ``video``/``frame`` columns are read whole, to
    tell a rejected frame from a kept one."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from popdistill.data.schema import FrameRecord

    def keys(table: pa.Table) -> pa.Array:
        return pc.binary_join_element_wise(table["video"], pc.cast(table["frame"], pa.string()), "\x00")

    def picks(fs, files: list[str], known: pa.Array | None) -> list[FrameRecord]:
        """A frame each from up to ``per_group`` of ``files`` (random order, one per video,
        at most ``8 * per_group`` files read); with ``known``, only frames whose keys it lacks."""
        out, videos = [], set()
        for i in rng.permutation(len(files))[: 8 * per_group]:
            table = pq.read_table(files[i], filesystem=fs)
            rows = np.arange(table.num_rows)
            if known is not None:
                rows = rows[~pc.is_in(keys(table), value_set=known).to_numpy(zero_copy_only=False)]
            rows = [r for r in rows if table["video"][int(r)].as_py() not in videos]
            if not rows:
                continue
            record = FrameRecord.from_row(table.slice(int(rng.choice(rows)), 1).to_pylist()[0])
            videos.add(record.video)
            out.append(record)
            if len(out) == per_group:
                break
        return out

    files = store.files(".parquet")
    if not files:
        return None
    rng = np.random.default_rng(seed)
    chosen = selected.files(".parquet")
    known = (pa.concat_tables([pq.read_table(f, columns=["video", "frame"], filesystem=selected.fs) for f in chosen])
             if chosen else None)
    return [("selected", picks(selected.fs, chosen, None)),
            ("rejected", picks(store.fs, files, keys(known).combine_chunks() if known is not None else None))]
