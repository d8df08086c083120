"""Generation 2 against generation 1 over several runs (seeds) of ``benchmarks/population_gpu.py``.

One run's gain is within the noise of training (issue 5: "generation 2's students beat
generation 1's on mean J"); this puts runs side by side and summarises the paired differences.
For each run folder (``--generations 2`` or more): the students' held-out J per generation,
the students' mean P, J and CorLoc, generation k's gain over generation k-1, and whether every
student beats the teacher. Then, over the runs: the mean gain, its standard deviation and
standard error, and in how many runs it is positive. Runs whose arguments differ in more than
``--seed``/``--out`` (and the resume, worker and parallelism settings, which do not change what
is trained) are named, so one does not average unlike runs by mistake.

``--bootstrap B`` adds the other source of noise, the choice of held-out videos: it re-renders
the held-out world, scores each student's cached held-out masks per video, and resamples the
videos B times (the same draw for every run) for a 95 % interval of each run's gain in the
students' mean J and of the gain averaged over the runs.

    .venv/bin/python benchmarks/generation_gain.py runs/s0_strat runs/s1_strat runs/s2_det runs/s3_det
    .venv/bin/python benchmarks/generation_gain.py --bootstrap 2000 runs/s1_strat runs/s2_det

``--against BASE...`` compares two ways of training the later generations instead: run i with
``BASE`` i (the same generation 1, e.g. its ``gen-1`` folder copied, and another option for
generation 2), the last generation's students of each pair side by side and the paired
differences over the pairs (with ``--bootstrap``, of the students' mean J per held-out video).

    .venv/bin/python benchmarks/generation_gain.py runs/s2_mnbin runs/s3_mnbin \
        --against runs/s2_det runs/s3_det
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
    g = np.asarray(gains, np.float64)
    sd = float(g.std(ddof=1)) if g.size > 1 else float("nan")
    return {"n": g.size, "mean": float(g.mean()), "sd": sd, "se": sd / np.sqrt(g.size),
            "positive": int((g > 0).sum())}


def differing_args(reports: dict[str, dict], ignored: set[str] = _IGNORED) -> dict[str, list]:
    """Arguments (other than ``ignored``) whose values differ between the runs."""
    keys = set().union(*(r["args"] for r in reports.values())) - ignored
    return {k: [r["args"].get(k) for r in reports.values()] for k in sorted(keys)
            if len({json.dumps(r["args"].get(k), sort_keys=True) for r in reports.values()}) > 1}


def per_video_j(folder: Path, report: dict, k: int, gt: np.ndarray, videos: list[str]) -> np.ndarray:
    """Students x videos: each student's held-out J per video in generation ``k``, from its
    cached masks (``gen-k/<student>/heldout.npy``); ``gt``: the held-out object-id images."""
    from popdistill.evaluate.metrics import Evaluator

    out = []
    for name in students(report):
        path = folder / f"gen-{k}" / name / "heldout.npy"
        if not path.is_file():
            raise SystemExit(f"{path}: missing; --bootstrap needs the run's cached held-out masks")
        masks = np.load(path)
        if len(masks) != len(gt):
            raise SystemExit(f"{path}: {len(masks)} masks for {len(gt)} held-out frames")
        ev = Evaluator()
        for v, m, lab in zip(videos, masks, gt):
            ev.add(v, m.astype(np.float32), lab > 0)
        out.append([m["J"] for m in ev.per_video().values()])
    return np.asarray(out)


def video_gains(folders: list[Path], reports: list[dict], workers: int,
                against: list[tuple[Path, dict]] | None = None) -> np.ndarray:
    """Runs x videos: generation 2's gain over generation 1 in the students' mean J per held-out
    video, or with ``against`` (one (folder, report) per run) the last generation's over the
    paired run's (the runs must share the held-out world)."""
    import population_gpu as pg

    every = reports + [r for _, r in against or []]
    worlds = {(r["args"]["preset"], r["args"]["heldout_videos"], r["args"]["heldout_seed"]) for r in every}
    if len(worlds) > 1:
        raise SystemExit(f"--bootstrap needs one held-out world; these runs have {sorted(worlds)}")
    held = pg.make_split(*worlds.pop(), workers)
    videos = [v["video"] for v in held for _ in range(len(v["frames"]))]
    gt = np.concatenate([v["labels"] for v in held])
    if against:
        return np.asarray([per_video_j(f, r, last_generation(r, rb), gt, videos).mean(0)
                           - per_video_j(fb, rb, last_generation(r, rb), gt, videos).mean(0)
                           for f, r, (fb, rb) in zip(folders, reports, against)])
    gains = [per_video_j(f, r, 2, gt, videos).mean(0) - per_video_j(f, r, 1, gt, videos).mean(0)
             for f, r in zip(folders, reports)]
    return np.asarray(gains)


def last_generation(report: dict, base: dict) -> int:
    """The last generation both runs trained."""
    return max(int(g.split()[-1]) for g in set(report["student_means"]) & set(base["student_means"]))


def versus(rows: list[dict], bases: list[dict], reports: list[dict], base_reports: list[dict]) -> str:
    """Run i against base i: the last common generation's students, the paired differences over
    the pairs, the arguments that differ within the pairs, and whether generation 1 is the same."""
    names = list(rows[0]["generations"][1]["students"])
    out = ["| run - base | generation | J: " + " / ".join(names) + " | P: mean | J: mean | CorLoc: mean |",
           "|---|---|---|---|---|---|"]
    diffs: dict[str, list[float]] = {}
    notes = []
    for r, b, rep, brep in zip(rows, bases, reports, base_reports):
        k = last_generation(rep, brep)
        g, h = r["generations"][k], b["generations"][k]
        d = {**{n: g["students"][n] - h["students"][n] for n in names},
             **{m: g[m] - h[m] for m in ("P", "J", "CorLoc")}}
        for key, v in d.items():
            diffs.setdefault(key, []).append(v)
        out.append(f"| {r['run']} - {b['run']} | {k} | " + " / ".join(f"{d[n]:+.4f}" for n in names)
                   + f" | {d['P']:+.4f} | {d['J']:+.4f} | {d['CorLoc']:+.4f} |")
        if r["generations"][1] != b["generations"][1]:
            notes.append(f"{r['run']} and {b['run']} differ in generation 1 already")
        differ = differing_args({"run": rep, "base": brep}, _IGNORED - {"seed"})
        shown = {key: [a["args"][key] if key in a["args"] else "(absent: its default)" for a in (rep, brep)]
                 for key in differ}
        notes.append(f"{r['run']} vs {b['run']}: " + ("; ".join(f"{key} {v[0]} vs {v[1]}" for key, v in shown.items())
                                                    or "the same arguments"))
    out += ["", "| run - base, over the pairs | n | mean | sd | se | pairs > 0 |", "|---|---|---|---|---|---|"]
    for key, label in [("J", "J: students' mean"), ("CorLoc", "CorLoc: students' mean"),
                       ("P", "P: students' mean")] + [(n, f"J: {n}") for n in names]:
        s = summary(diffs[key])
        out.append(f"| {label} | {s['n']} | {s['mean']:+.4f} | {s['sd']:.4f} | {s['se']:.4f} "
                   f"| {s['positive']} of {s['n']} |")
    return "\n".join(out + [""] + notes)


def bootstrap(gains: np.ndarray, draws: int, seed: int = 0) -> dict:
    """95 % intervals of each run's mean gain over videos and of the runs' average, resampling
    the videos (the same draws for every run: they share the held-out videos)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, gains.shape[1], size=(draws, gains.shape[1]))
    per_run = gains[:, idx].mean(axis=2)  # runs x draws
    pooled = per_run.mean(axis=0)
    return {"runs": [{"mean": float(g.mean()), "low": float(np.quantile(d, 0.025)),
                      "high": float(np.quantile(d, 0.975))} for g, d in zip(gains, per_run)],
            "pooled": {"mean": float(gains.mean()), "low": float(np.quantile(pooled, 0.025)),
                       "high": float(np.quantile(pooled, 0.975)), "share_positive": float((pooled > 0).mean())},
            "draws": draws, "videos": int(gains.shape[1])}


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
    p.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="also resample the held-out videos B times for 95 %% intervals of the gain "
                        "in the students' mean J (re-renders the held-out world; 0: off)")
    p.add_argument("--workers", type=int, default=1, help="processes re-rendering the held-out world (1)")
    p.add_argument("--against", nargs="+", type=Path, metavar="BASE",
                   help="one run folder per run: compare run i's last generation with BASE i's "
                        "(same generation 1, another way of training generation 2)")
    p.add_argument("--json", type=Path, help="also write the rows and the summaries here")
    a = p.parse_args(argv)
    if a.against and len(a.against) != len(a.runs):
        p.error(f"--against: {len(a.against)} base runs for {len(a.runs)} runs; give one per run")
    reports = {str(run): load_run(run) for run in a.runs}
    names = {tuple(students(r)) for r in reports.values()}
    if len(names) > 1:
        p.error(f"the runs trained different students: {sorted(names)}")
    rows = [run_row(name, r) for name, r in reports.items()]
    differing = differing_args(reports)
    print(render(rows, differing))
    saved = {"rows": rows, "differing_args": differing}
    against = None
    if a.against:
        base_reports = [load_run(run) for run in a.against]
        if {tuple(students(r)) for r in base_reports} != names:
            p.error("--against: the base runs trained other students")
        bases = [run_row(str(run), r) for run, r in zip(a.against, base_reports)]
        print("\n" + versus(rows, bases, list(reports.values()), base_reports))
        saved["against"] = bases
        against = list(zip(a.against, base_reports))
    if a.bootstrap:
        gains = video_gains(list(a.runs), list(reports.values()), a.workers, against)
        saved["bootstrap"] = b = bootstrap(gains, a.bootstrap)
        what = "run - base, last generation" if against else "generation 2 - 1"
        print(f"\n| {what}, students' mean J, {b['videos']} held-out videos resampled {a.bootstrap} "
              "times | gain | 95 % interval |\n|---|---|---|")
        for name, r in zip(reports, b["runs"]):
            print(f"| {name} | {r['mean']:+.4f} | {r['low']:+.4f} .. {r['high']:+.4f} |")
        q = b["pooled"]
        print(f"| mean of the {len(gains)} runs | {q['mean']:+.4f} | {q['low']:+.4f} .. {q['high']:+.4f} "
              f"(> 0 in {100 * q['share_positive']:.1f} % of draws) |")
    if a.json:
        a.json.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
