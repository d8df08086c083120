"""One held-out table from students of several ``population_gpu.py`` runs, with their Multi-Net.

Students trained in separate runs (another architecture, more videos, another seed) can only be
compared, and combined into one Multi-Net, over the same held-out frames. Given student folders
``RUN/gen-K/<student>`` whose runs share one held-out world (preset, ``--heldout-videos``,
``--heldout-seed``; mixed worlds are refused), this re-renders that world once and prints issue
4's table: the VideoPCA teacher, the centre prior, each student (with its run's training videos,
selected frames and epochs) and the Multi-Net of all of them (the pixel-wise product, and the
product >= 0.5^n, as ``population_gpu.py`` scores it). ``--json FILE`` also writes the rows.

    .venv/bin/python benchmarks/population_table.py runs/s0_five/gen-1/{dilateunet,fconv,unet,denseunet}_tiny \\
        runs/s0_lr600/gen-1/lowres_tiny
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _run_of(student: Path) -> tuple[Path, dict]:
    """The run folder of ``RUN/gen-K/<student>`` and its report (``population_gpu.json``)."""
    run = student.parent.parent
    report = run / "population_gpu.json"
    if not (student / "heldout.npy").is_file():
        raise FileNotFoundError(f"{student / 'heldout.npy'}: missing; not a finished student of a "
                                "population_gpu.py run (RUN/gen-K/<student>)")
    if not report.is_file():
        raise FileNotFoundError(f"{report}: missing; {student} is not inside a population_gpu.py run")
    return run, json.loads(report.read_text())


def table(students: list[Path], workers: int = 1) -> dict[str, dict]:
    """The rows: teacher, centre prior, each student, the Multi-Net product and >= 0.5^n."""
    import population_gpu as pg

    from popdistill.evaluate.baselines import centre_prior

    runs = [_run_of(s) for s in students]
    worlds = {(r["args"]["preset"], r["args"]["heldout_videos"], r["args"]["heldout_seed"]) for _, r in runs}
    if len(worlds) > 1:
        raise ValueError(f"the students' runs have different held-out worlds (preset, videos, seed): "
                         f"{sorted(worlds)}")
    held = pg.make_split(*worlds.pop(), workers)
    videos = [v["video"] for v in held for _ in range(len(v["frames"]))]
    gt = np.concatenate([v["labels"] for v in held])
    rows = {"teacher (VideoPCA, held-out)": pg.evaluate(videos, np.concatenate([v["masks"] for v in held]), gt),
            "centre prior": pg.evaluate(videos, [centre_prior(*g.shape) for g in gt], gt)}
    masks = []
    for student, (run, report) in zip(students, runs):
        m = np.load(student / "heldout.npy").astype(np.float32)
        if len(m) != len(gt):
            raise ValueError(f"{student / 'heldout.npy'}: {len(m)} masks for {len(gt)} held-out frames")
        info = json.loads((student / "info.json").read_text()) if (student / "info.json").is_file() else {}
        name = f"{student.name} ({run.name}, {student.parent.name})"
        rows[name] = {**pg.evaluate(videos, m, gt), "videos": report["args"]["videos"],
                      "selected": report.get("selected"), "epochs": info.get("epochs")}
        masks.append(m)
    if len(masks) > 1:
        rows.update(pg.multinet_rows(masks, videos, gt))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("students", nargs="+", type=Path, help="RUN/gen-K/<student> folders of population_gpu.py runs")
    p.add_argument("--workers", type=int, default=1, help="processes re-rendering the held-out world (1)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    try:
        rows = table(a.students, a.workers)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    teacher_j = rows["teacher (VideoPCA, held-out)"]["J"]
    frames = rows["centre prior"]["frames"]
    print(f"held-out: {frames} frames; students trained on their run's selected VideoPCA masks\n")
    print("| method | P | J | CorLoc | training videos | selected frames | epochs | beats teacher J |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        beat = "" if name in ("teacher (VideoPCA, held-out)", "centre prior") else \
            ("yes" if r["J"] > teacher_j else "NO")
        extra = " | ".join("" if r.get(k) is None else str(r[k]) for k in ("videos", "selected", "epochs"))
        print(f"| {name} | {r['P']:.3f} | {r['J']:.3f} | {r['CorLoc']:.3f} | {extra} | {beat} |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
