"""Generation 2 of the student population on the embedded world, from a finished
``population_quality.py`` run (its worlds, teacher stores and generation-1 students).

1. Every generation-1 student predicts every training frame (the whole training world, not
   only the teacher's selection); the masks go to one prediction store per student.
2. The pipeline's own generation-2 selection (``popdistill.pipeline.rescore``): each frame's
   best mask by ``--scorer`` (``agreement``: cosine to the students' Multi-Net product, i.e.
   EvalSeg-Net's training target computed exactly; ``evalseg``: the previous run's trained
   EvalSeg-Net), then the top ``--top`` fraction of frames. The selected labels' J against
   ground truth is printed beside the teacher's (the students never see ground truth).
3. ``population_quality.py`` in ``--out`` with ``--train-store`` the selection: a fresh
   population trained from scratch with the same settings, evaluated on the same held-out
   videos — generation 2's table, to compare with generation 1's.

    .venv/bin/python benchmarks/population_gen2.py --previous runs/pq250 --out runs/pq250-gen2 \\
        --scorer agreement -- --trainer local --jobs 2 --epochs 16 --videos 250 --heldout-videos 40

Arguments after ``--`` go to ``population_quality.py`` (use the generation-1 run's).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REUSED = ("world_train", "world_heldout", "teacher_train", "teacher_heldout", "heldout_val")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:] if argv is None else argv
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--previous", required=True, help="finished population_quality.py run directory")
    p.add_argument("--out", required=True, help="generation-2 run directory")
    p.add_argument("--scorer", choices=["agreement", "evalseg"], default="agreement")
    p.add_argument("--top", type=float, default=0.2, help="fraction of frames kept")
    p.add_argument("--evalseg", default="evalseg_tiny", help="EvalSeg-Net checkpoint name")
    p.add_argument("--with-teacher", action="store_true",
                   help="also keep generation 1's teacher-selected frames (the union; a frame in "
                   "both keeps the teacher's mask)")
    return p.parse_args(argv), rest


def predict_stores(previous: Path, out: Path) -> dict[str, str]:
    """Each generation-1 student's masks of every training frame, one store per student."""
    import pyarrow.parquet as pq

    from popdistill.data.schema import records_to_table, table_to_records
    from popdistill.students import load_checkpoint
    from popdistill.students.predict import predict_records

    summary = json.loads((previous / "population_quality.json").read_text())
    names = list(summary["models"])
    models = {n: load_checkpoint(previous / "train" / n / "local" / "model.pt")[0].eval()
              for n in names}
    store = previous / "teacher_train" / "teacher" / "store"
    videos = sorted(p for p in store.iterdir() if p.is_dir())
    t0 = time.perf_counter()
    for i, video in enumerate(videos):
        if all((out / n / video.name / "part-0.parquet").exists() for n in names):
            continue
        recs = [r for f in sorted(video.glob("*.parquet")) for r in table_to_records(pq.read_table(f))]
        for name, model in models.items():
            preds = predict_records(model, recs, batch_size=64)
            rows = []
            for r, m in zip(recs, preds):
                r2 = copy.copy(r)
                r2.mask, r2.score, r2.teacher = m, 0.0, f"student:{name}"
                rows.append(r2)
            target = out / name / video.name
            target.mkdir(parents=True, exist_ok=True)
            pq.write_table(records_to_table(rows), target / "part-0.parquet")
        if i % 25 == 0:
            print(f"predict: {i + 1}/{len(videos)} videos, {time.perf_counter() - t0:.0f} s", flush=True)
    return {n: str(out / n) for n in names}


def _union(teacher: Path, students: Path, out: Path) -> Path:
    """The teacher's selected frames plus the students' selected frames not among them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    t = pa.concat_tables([pq.read_table(f) for f in sorted(teacher.rglob("*.parquet"))])
    s = pa.concat_tables([pq.read_table(f) for f in sorted(students.rglob("*.parquet"))])
    key = lambda tab: pc.binary_join_element_wise(tab["video"], pc.cast(tab["frame"], pa.string()), "/")  # noqa: E731
    s = s.filter(pc.invert(pc.is_in(key(s), value_set=key(t))))
    pq.write_table(t, out / "teacher.parquet")
    pq.write_table(s.cast(t.schema), out / "students.parquet")
    print(f"union: {t.num_rows} teacher frames + {s.num_rows} more from the students", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    a, rest = parse_args(argv)
    import torch

    from popdistill.pipeline.rescore import rescore_predictions, select_scored
    from popdistill.storage import RunPath

    torch.set_num_threads(1)
    previous, out = Path(a.previous).resolve(), Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in REUSED:
        if not (out / name).exists() and (previous / name).exists():
            (out / name).symlink_to(previous / name)
    gen2 = out / "gen2"
    stores = predict_stores(previous, gen2 / "predict")
    scored = rescore_predictions(stores, str(previous / "evalseg" / f"{a.evalseg}.pt"),
                                 RunPath.of(str(gen2 / f"scored-{a.scorer}")), 2, scorer=a.scorer)
    selected = gen2 / f"selected-{a.scorer}-{a.top:g}"
    threshold = select_scored(RunPath.of(str(gen2 / f"scored-{a.scorer}")), RunPath.of(str(selected)),
                              scored["scores"], a.top, None)
    if a.with_teacher:
        selected = _union(previous / "teacher_train" / "teacher" / "selected", selected,
                          gen2 / f"union-{a.scorer}-{a.top:g}")
    scores, j = np.asarray(scored["scores"]), np.asarray(scored["j"])
    kept = scores >= threshold
    teacher = json.loads((previous / "population_quality.json").read_text())["teacher_train"]
    report = {"scorer": a.scorer, "top": a.top, "threshold": threshold, "kept": int(kept.sum()),
              "total": len(scores), "label_J_kept": float(j[kept].mean()),
              "label_J_all": float(j.mean()), "chosen": scored["chosen"],
              "teacher_selected_J": teacher["selected"]["J"], "teacher_all_J": teacher["all"]["J"]}
    (gen2 / f"selection-{a.scorer}.json").write_text(json.dumps(report, indent=2))
    print(f"generation-2 selection ({a.scorer}): kept {report['kept']} of {report['total']} frames, "
          f"label J {report['label_J_kept']:.3f} (generation 1's teacher selection: "
          f"{report['teacher_selected_J']:.3f}); best masks from {scored['chosen']}", flush=True)
    script = Path(__file__).with_name("population_quality.py")
    cmd = [sys.executable, str(script), "--out", str(out), "--train-store", str(selected), *rest]
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
