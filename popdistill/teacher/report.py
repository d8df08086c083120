"""The teacher run's human-readable outputs: a printed summary and a contact sheet PNG."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["print_teacher_report", "teacher_contact_sheet"]


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
    the ``selected`` store and ``per_group`` other frames of ``store``, from different videos.
    ``method`` names the masks' column. Returns the path, or None when the store is empty."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from popdistill.data.schema import FrameRecord
    from popdistill.evaluate.report import GridRow, save_mask_grid

    files = store.files(".parquet")
    if not files:
        return None
    ds = pads.dataset(files, filesystem=store.fs, format="parquet")
    keys = ds.to_table(columns=["video", "frame", "score"]).to_pandas()
    chosen = selected.files(".parquet")
    chosen = (pads.dataset(chosen, filesystem=selected.fs, format="parquet")
              .to_table(columns=["video", "frame"]).to_pandas() if chosen else keys.iloc[:0][["video", "frame"]])
    is_kept = keys.merge(chosen.assign(kept=True), on=["video", "frame"], how="left")["kept"].eq(True).to_numpy()
    rng = np.random.default_rng(seed)
    rows = []
    for name, group in (("selected", keys[is_kept]), ("rejected", keys[~is_kept])):
        # One frame per video where possible, so the sheet shows variety.
        picks = group.groupby("video", sort=False).sample(n=1, random_state=seed) if len(group) else group
        picks = picks.iloc[rng.permutation(len(picks))[:per_group]]
        for video, frame in zip(picks.video, picks.frame):
            flt = (pc.field("video") == video) & (pc.field("frame") == int(frame))
            rec = FrameRecord.from_row(ds.to_table(filter=flt).to_pylist()[0])
            rows.append(GridRow(f"{name} {video}#{frame} score {rec.score:.2f}", rec.image, rec.gt_mask, {method: rec.mask}))
    return save_mask_grid(out_png, rows, [method])
