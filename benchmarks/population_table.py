"""One held-out table from students of several ``popdistill run`` directories, with their Multi-Net.

Students trained in separate runs (another architecture, more videos, another seed) can only be
compared, and combined into one Multi-Net, over the same held-out frames. Given students as
``RUN_DIR/gen-K/STUDENT`` whose runs share one held-out data set (the same ``eval`` section but
for its path; mixed ones are refused), this scores their held-out masks
(``RUN_DIR/gen-K/eval/STUDENT/store``) with the pipeline's own evaluation: VideoPCA, the centre
prior, each student (with its run's training videos and selected frames) and the Multi-Net of
all of them (the product of their masks, binarised where it is >= 0.5^n, as the pipeline
scores it). ``--json FILE`` also writes the rows.

    .venv/bin/python benchmarks/population_table.py runs/cpu_population/gen-1/{dilateunet,fconv,unet}_tiny \\
        runs/cpu_population-lowres600/gen-1/lowres_tiny
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from popdistill.errors import UserError
from popdistill.pipeline.run_dir import CENTRE, MULTINET, VIDEOPCA, RunDir


def parse_student(text: str) -> tuple[RunDir, int, str]:
    """``RUN_DIR/gen-K/STUDENT`` -> (its run, K, STUDENT)."""
    path = Path(text.rstrip("/"))
    gen = path.parent.name
    if not gen.startswith("gen-") or not gen[4:].isdigit():
        raise UserError(f"{text}: expected RUN_DIR/gen-K/STUDENT")
    return RunDir(str(path.parent.parent)), int(gen[4:]), path.name


def _world(run: RunDir) -> str:
    return json.dumps({k: v for k, v in run.config["eval"].items() if k != "path"}, sort_keys=True)


def table(students: list[str]) -> dict[str, dict]:
    """The rows: VideoPCA, centre prior, each student and the Multi-Net of all of them."""
    from popdistill.pipeline.heldout import evaluate_heldout

    parsed = [parse_student(s) for s in students]
    worlds = {_world(run) for run, _, _ in parsed}
    if len(worlds) > 1:
        raise UserError(f"the students' runs have different held-out data sets: {sorted(worlds)}")
    first = parsed[0][0]
    stores, info = {VIDEOPCA: first.videopca_store()}, {}
    for run, k, student in parsed:
        name = f"{student} ({Path(run.name).name}, gen-{k})"
        stores[name] = run.eval_store(k, student)
        selected = next((g["selection"].get("selected") for g in run.report["generations"]
                         if g["generation"] == k), None)
        info[name] = {"videos": (run.config["data"].get("world") or {}).get("videos"),
                      "selected": selected}
    members = [n for n in stores if n != VIDEOPCA]
    results, _ = evaluate_heldout(first.eval_data(), stores, baselines=["centre"],
                                  products={MULTINET: members} if len(members) > 1 else None,
                                  eval_config=first.eval_config(), log=lambda _: None)
    rows = {VIDEOPCA: results[VIDEOPCA]["overall"], CENTRE: results["centre"]["overall"]}
    rows.update({n: {**results[n]["overall"], **info[n]} for n in members})
    if len(members) > 1:
        rows[MULTINET] = results[MULTINET]["overall"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("students", nargs="+", help="RUN_DIR/gen-K/STUDENT of finished popdistill runs")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    try:
        rows = table(a.students)
    except UserError as e:
        p.error(str(e))
    teacher_j = rows[VIDEOPCA]["J"]
    print(f"held-out: {rows[CENTRE]['frames']} frames\n")
    print("| method | P | J | CorLoc | training videos | selected frames | beats teacher J |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        beat = "" if name in (VIDEOPCA, CENTRE) else ("yes" if r["J"] > teacher_j else "NO")
        extra = " | ".join("" if r.get(k) is None else str(r[k]) for k in ("videos", "selected"))
        print(f"| {name} | {r['P']:.3f} | {r['J']:.3f} | {r['CorLoc']:.3f} | {extra} | {beat} |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
