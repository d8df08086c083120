"""Generation 2 against generation 1 over several runs (seeds) of ``benchmarks/population_gpu.py``.

One run's gain is within the noise of training (issue 5: "generation 2's students beat
generation 1's on mean J"); this puts runs side by side and summarises the paired differences.
For each run folder (``--generations 2`` or more): the students' held-out J per generation,
the students' mean P, J and CorLoc, generation k's gain over generation k-1, and whether every
student beats the teacher. Then, over the runs: the mean gain, its standard deviation and
standard error, and in how many runs it is positive. Runs whose arguments differ in more than
``--seed``/``--out`` (and the resume, worker and parallelism settings, which do not change what
is trained) are named, so one does not average unlike runs by mistake.

    .venv/bin/python benchmarks/generation_gain.py runs/s0_strat runs/s1_strat runs/s2_det runs/s3_det
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# arguments that do not change what a run trains or measures
_IGNORED = {"out", "seed", "resume", "workers", "parallel", "threads"}


def load_run(folder: Path) -> dict:
    """A run's report (``population_gpu.json``); errors name the folder and what is missing."""
    path = folder / "population_gpu.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no report; run benchmarks/population_gpu.py --out {folder} first")
    report = json.loads(path.read_text())
    if len(report.get("student_means", {})) < 2:
        raise SystemExit(f"{path}: one generation only; generation_gain.py needs --generations 2 or more")
    return report


def students(report: dict) -> list[str]:
    return [s.strip() for s in report["args"]["students"].split(",") if s.strip()]


def run_row(name: str, report: dict) -> dict:
    """Per generation: each student's J and the students' mean P / J / CorLoc; the teacher's J."""
    table, means = report["table"], report["student_means"]
    gens = sorted(int(k.split()[-1]) for k in means)
    row = {"run": name, "seed": report["args"]["seed"], "teacher_j": table["teacher (VideoPCA, held-out)"]["J"],
           "generations": {}}
    for k in gens:
        suffix = "" if k == 1 else f" (gen {k})"
        row["generations"][k] = {"students": {s: table[s + suffix]["J"] for s in students(report)},
                                 **means[f"generation {k}"]}
    return row


def summary(gains: list[float]) -> dict:
    """Mean, sample standard deviation, standard error and number of positive gains."""
    n = len(gains)
    mean = sum(gains) / n
    sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "se": sd / math.sqrt(n) if n > 1 else float("nan"),
            "positive": sum(g > 0 for g in gains)}


def differing_args(reports: dict[str, dict]) -> dict[str, list]:
    """Arguments (other than ``_IGNORED``) whose values differ between the runs."""
    keys = set().union(*(r["args"] for r in reports.values())) - _IGNORED
    return {k: [r["args"].get(k) for r in reports.values()] for k in sorted(keys)
            if len({json.dumps(r["args"].get(k), sort_keys=True) for r in reports.values()}) > 1}


def render(rows: list[dict], differing: dict) -> str:
    names = list(rows[0]["generations"][1]["students"])
    gens = sorted(set.intersection(*(set(r["generations"]) for r in rows)))
    out = ["| run | seed | generation | J: " + " / ".join(names) + " | P: mean | J: mean | CorLoc: mean "
           "| every student > teacher (J) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for k in gens:
            g = r["generations"][k]
            js = [g["students"][s] for s in names]
            out.append(f"| {r['run']} | {r['seed']} | {k} | " + " / ".join(f"{j:.3f}" for j in js)
                       + f" | {g['P']:.3f} | {g['J']:.3f} | {g['CorLoc']:.3f} | "
                       + ("yes" if min(js) > r["teacher_j"] else "no") + f" (teacher {r['teacher_j']:.3f}) |")
    out += ["", "| gain, generation k - (k-1), over the runs | n | mean | sd | se | runs > 0 |",
            "|---|---|---|---|---|---|"]
    for k in gens[1:]:
        for label, key in (("J: students' mean", "J"), ("CorLoc: students' mean", "CorLoc"), ("P: students' mean", "P")):
            s = summary([r["generations"][k][key] - r["generations"][k - 1][key] for r in rows])
            out.append(f"| {k} - {k - 1}, {label} | {s['n']} | {s['mean']:+.4f} | {s['sd']:.4f} | {s['se']:.4f} "
                       f"| {s['positive']} of {s['n']} |")
        for n in names:
            s = summary([r["generations"][k]["students"][n] - r["generations"][k - 1]["students"][n] for r in rows])
            out.append(f"| {k} - {k - 1}, J: {n} | {s['n']} | {s['mean']:+.4f} | {s['sd']:.4f} | {s['se']:.4f} "
                       f"| {s['positive']} of {s['n']} |")
    if differing:
        out += ["", "Arguments that differ between these runs (not only the seed): "
                + "; ".join(f"{k} = {v}" for k, v in differing.items())]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="population_gpu.py --out folders with --generations >= 2")
    p.add_argument("--json", type=Path, help="also write the rows and the summaries here")
    a = p.parse_args(argv)
    reports = {str(run): load_run(run) for run in a.runs}
    names = {tuple(students(r)) for r in reports.values()}
    if len(names) > 1:
        p.error(f"the runs trained different students: {sorted(names)}")
    rows = [run_row(name, r) for name, r in reports.items()]
    differing = differing_args(reports)
    print(render(rows, differing))
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "differing_args": differing}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
