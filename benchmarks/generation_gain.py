"""Generation 2 against generation 1 over several `popdistill run` directories (seeds).

One run's gain is within the noise of training; this puts runs side by side and summarises the
paired differences. For each run directory (``generations: 2`` or more): the students' held-out
J per generation, their mean P, J and CorLoc, generation k's gain over generation k-1, and
whether every student beats the teacher. Then, over the runs: the mean gain, its standard
deviation and standard error, and in how many runs it is positive. Config fields that differ
between the runs, other than the seed and the run's name and directory, are named, so one does
not average unlike runs by mistake.

``--bootstrap B`` adds the other source of noise, the choice of held-out videos: it reads each
student's held-out J per video (``gen-<k>/evaluation.json``) and resamples the videos B times
(the same draw for every run) for a 95 % interval of each run's gain in the students' mean J and
of the gain averaged over the runs.

``--against BASE...`` compares two ways of training the later generations instead: run i with
``BASE`` i (the same generation 1 and another option for generation 2), the last generation's
students of each pair side by side and the paired differences over the pairs.

    .venv/bin/python benchmarks/generation_gain.py runs/two_generations-s0 runs/two_generations-s1
    .venv/bin/python benchmarks/generation_gain.py --bootstrap 2000 runs/a-s0 runs/a-s1 \\
        --against runs/b-s0 runs/b-s1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from popdistill.errors import UserError
from popdistill.pipeline.run_dir import VIDEOPCA, RunDir

# config fields that do not change what a run trains or measures (or are its seed)
IGNORED = {"out", "name", "training.seed", "tracking", "resources", "data.path", "eval.path",
           "later_data.path"}
METRICS = ("P", "J", "CorLoc")


def flat(config: dict, prefix: str = "") -> dict[str, object]:
    """A nested config as dotted keys -> leaf values."""
    out: dict[str, object] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def differing_fields(runs: list[RunDir], ignored: set[str] = IGNORED) -> dict[str, list]:
    """Config fields (other than ``ignored`` and what lies below them) whose values differ."""
    flats = [flat(r.config) for r in runs]
    keys = sorted(set().union(*flats))
    keep = [k for k in keys if not any(k == i or k.startswith(i + ".") for i in ignored)]
    return {k: [f.get(k) for f in flats] for k in keep
            if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1}


def run_row(run: RunDir) -> dict:
    """Per generation: each student's J and the students' mean P / J / CorLoc; the teacher's J."""
    row = {"run": run.name, "seed": run.config["training"].get("seed", 0),
           "teacher_j": run.baseline(VIDEOPCA)["J"], "generations": {}}
    for k in run.generations:
        rows = run.rows(k)
        names = run.students(k)
        row["generations"][k] = {"students": {s: rows[s]["J"] for s in names},
                                 **{m: float(np.mean([rows[s][m] for s in names])) for m in METRICS}}
    return row


def summary(gains: list[float]) -> dict:
    """Mean, sample standard deviation, standard error and number of positive gains."""
    g = np.asarray(gains, np.float64)
    sd = float(g.std(ddof=1)) if g.size > 1 else float("nan")
    return {"n": g.size, "mean": float(g.mean()), "sd": sd, "se": sd / np.sqrt(g.size),
            "positive": int((g > 0).sum())}


def per_video_j(run: RunDir, k: int) -> tuple[list[str], np.ndarray]:
    """(videos, students x videos): each student's held-out J per video in generation ``k``."""
    per = [run.per_video(k, s) for s in run.students(k)]
    videos = sorted(per[0])
    return videos, np.asarray([[p[v]["J"] for v in videos] for p in per], np.float64)


def students_mean_by_video(run: RunDir, k: int, videos: list[str] | None = None) -> np.ndarray:
    got, js = per_video_j(run, k)
    if videos is not None and got != videos:
        raise SystemExit(f"--bootstrap needs one held-out world; {run.name} has other videos")
    return js.mean(axis=0)


def last_generation(run: RunDir, base: RunDir) -> int:
    """The last generation both runs trained."""
    return max(set(run.generations) & set(base.generations))


def video_gains(runs: list[RunDir], against: list[RunDir] | None = None) -> np.ndarray:
    """Runs x videos: generation 2's gain over generation 1 in the students' mean J per held-out
    video, or with ``against`` the last generation's over the paired run's."""
    videos, _ = per_video_j(runs[0], 1)
    if against:
        return np.asarray([students_mean_by_video(r, last_generation(r, b), videos)
                           - students_mean_by_video(b, last_generation(r, b), videos)
                           for r, b in zip(runs, against)])
    return np.asarray([students_mean_by_video(r, 2, videos) - students_mean_by_video(r, 1, videos)
                       for r in runs])


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
                       "high": float(np.quantile(pooled, 0.975)),
                       "share_positive": float((pooled > 0).mean())},
            "draws": draws, "videos": int(gains.shape[1])}


def _summary_rows(label_diffs: list[tuple[str, list[float]]], unit: str) -> list[str]:
    out = []
    for label, diffs in label_diffs:
        s = summary(diffs)
        out.append(f"| {label} | {s['n']} | {s['mean']:+.4f} | {s['sd']:.4f} | {s['se']:.4f} "
                   f"| {s['positive']} of {s['n']} {unit} |")
    return out


def render(rows: list[dict], differing: dict) -> str:
    names = list(rows[0]["generations"][1]["students"])
    gens = sorted(set.intersection(*(set(r["generations"]) for r in rows)))
    out = ["| run | seed | generation | J: " + " / ".join(names) + " | P: mean | J: mean | "
           "CorLoc: mean | every student > teacher (J) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for k in gens:
            g = r["generations"][k]
            js = [g["students"][s] for s in names]
            out.append(f"| {r['run']} | {r['seed']} | {k} | " + " / ".join(f"{j:.3f}" for j in js)
                       + f" | {g['P']:.3f} | {g['J']:.3f} | {g['CorLoc']:.3f} | "
                       + ("yes" if min(js) > r["teacher_j"] else "no")
                       + f" (teacher {r['teacher_j']:.3f}) |")
    out += ["", "| gain, generation k - (k-1), over the runs | n | mean | sd | se | positive |",
            "|---|---|---|---|---|---|"]
    for k in gens[1:]:
        diffs = [(f"{k} - {k - 1}, {m}: students' mean",
                  [r["generations"][k][m] - r["generations"][k - 1][m] for r in rows])
                 for m in ("J", "CorLoc", "P")]
        diffs += [(f"{k} - {k - 1}, J: {n}", [r["generations"][k]["students"][n]
                                              - r["generations"][k - 1]["students"][n] for r in rows])
                  for n in names]
        out += _summary_rows(diffs, "runs")
    if differing:
        out += ["", "Config fields that differ between these runs (not only the seed): "
                + "; ".join(f"{k} = {v}" for k, v in differing.items())]
    return "\n".join(out)


def versus(rows: list[dict], bases: list[dict], runs: list[RunDir], base_runs: list[RunDir]) -> str:
    """Run i against base i: the last common generation's students, the paired differences over
    the pairs, the config fields that differ within each pair."""
    names = list(rows[0]["generations"][1]["students"])
    out = ["| run - base | generation | J: " + " / ".join(names) + " | P: mean | J: mean | "
           "CorLoc: mean |", "|---|---|---|---|---|---|"]
    diffs: dict[str, list[float]] = {}
    notes = []
    for r, b, run, base in zip(rows, bases, runs, base_runs):
        k = last_generation(run, base)
        g, h = r["generations"][k], b["generations"][k]
        d = {**{n: g["students"][n] - h["students"][n] for n in names},
             **{m: g[m] - h[m] for m in METRICS}}
        for key, v in d.items():
            diffs.setdefault(key, []).append(v)
        out.append(f"| {r['run']} - {b['run']} | {k} | " + " / ".join(f"{d[n]:+.4f}" for n in names)
                   + f" | {d['P']:+.4f} | {d['J']:+.4f} | {d['CorLoc']:+.4f} |")
        if r["generations"][1] != b["generations"][1]:
            notes.append(f"{r['run']} and {b['run']} differ in generation 1 already")
        differ = differing_fields([run, base], IGNORED - {"training.seed"})
        notes.append(f"{r['run']} vs {b['run']}: " + ("; ".join(
            f"{key} {v[0]} vs {v[1]}" for key, v in differ.items()) or "the same config"))
    out += ["", "| run - base, over the pairs | n | mean | sd | se | positive |",
            "|---|---|---|---|---|---|"]
    out += _summary_rows([(f"{m}: students' mean", diffs[m]) for m in ("J", "CorLoc", "P")]
                         + [(f"J: {n}", diffs[n]) for n in names], "pairs")
    return "\n".join(out + [""] + notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="`popdistill run` directories with generations >= 2")
    p.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="also resample the held-out videos B times for 95 %% intervals of the gain "
                        "in the students' mean J (0: off)")
    p.add_argument("--against", nargs="+", metavar="BASE",
                   help="one run directory per run: compare run i's last generation with BASE i's")
    p.add_argument("--json", type=Path, help="also write the rows and the summaries here")
    a = p.parse_args(argv)
    try:
        return _main(p, a)
    except UserError as e:
        p.error(str(e))


def _main(p: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    if a.against and len(a.against) != len(a.runs):
        p.error(f"--against: {len(a.against)} base runs for {len(a.runs)} runs; give one per run")
    runs = [RunDir(r) for r in a.runs]
    if not a.against and any(len(r.generations) < 2 for r in runs):
        p.error("every run needs generations >= 2 (or give --against)")
    names = {tuple(r.students(1)) for r in runs}
    if len(names) > 1:
        p.error(f"the runs trained different students: {sorted(names)}")
    rows = [run_row(r) for r in runs]
    differing = differing_fields(runs)
    print(render(rows, differing))
    saved: dict = {"rows": rows, "differing": differing}
    base_runs = None
    if a.against:
        base_runs = [RunDir(r) for r in a.against]
        if {tuple(r.students(1)) for r in base_runs} != names:
            p.error("--against: the base runs trained other students")
        bases = [run_row(r) for r in base_runs]
        print("\n" + versus(rows, bases, runs, base_runs))
        saved["against"] = bases
    if a.bootstrap:
        saved["bootstrap"] = b = bootstrap(video_gains(runs, base_runs), a.bootstrap)
        what = "run - base, last generation" if base_runs else "generation 2 - 1"
        print(f"\n| {what}, students' mean J, {b['videos']} held-out videos resampled "
              f"{a.bootstrap} times | gain | 95 % interval |\n|---|---|---|")
        for run, r in zip(runs, b["runs"]):
            print(f"| {run.name} | {r['mean']:+.4f} | {r['low']:+.4f} .. {r['high']:+.4f} |")
        q = b["pooled"]
        print(f"| mean of the {len(runs)} runs | {q['mean']:+.4f} | {q['low']:+.4f} .. "
              f"{q['high']:+.4f} (> 0 in {100 * q['share_positive']:.1f} % of draws) |")
    if a.json:
        a.json.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
