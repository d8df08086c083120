"""Chaos run: `popdistill run` with one process killed at a random moment, N times; is anything
lost?

The benchmark holds one local Ray (as a cluster's head would) and runs a small two-generation
config (the quickstart by default) once without faults, as the reference, then N trials, each
a fresh run directory and one fault, its kind chosen at random (every kind before any repeats):

    videopca_actor   a VideoPCA Ray Data actor, in the middle of its stream
    read_task        a Ray Data task reading a store (selection's scan or copy, training reads)
    inference_actor  a students' inference actor (held-out or training predictions)
    train_worker     a Ray Train worker of a student
    evalseg          the EvalSeg-Net trainer (it trains in the driver: the driver, in that step)
    driver           the driver, in any step

A killed driver (driver, evalseg) is a killed job: its command is run again on the same run
directory, as a person (or `ray job submit` with retries) would. Any other process is Ray's
to recover: the attempt must finish by itself. Then the finished run is checked against the
reference:

- it finished (exit 0);
- every store that holds every frame (the teachers' and students' stores, the rescored
  frames, and generation 1's selected VideoPCA frames) has the reference's rows, by (video,
  frame) id;
- every student of every generation and every EvalSeg-Net has its final checkpoint, whole
  (the manifest's files pass ``popdistill.pipeline.integrity``);
- the report's table has every row of the reference's, each with its numbers.

    python benchmarks/chaos.py --trials 12                     # ~30 min on 2 cores
    python benchmarks/chaos.py --trials 6 --kinds videopca_actor,driver --out runs/chaos

Writes OUT/chaos.json (every trial: kind, what was killed and when, the checks) and prints a
Markdown table (survived / trials, per kind) for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# process titles Ray gives its workers ("ray::<actor class or task>"), by fault kind
TITLES = {
    "videopca_actor": ("VideoPCAActor",),
    "read_task": ("MapBatches(_scan)", "MapBatches(_copy_kept)", "MapBatches(_read_files)",
                  "MapBatches(_file_metrics)", "ReadFiles", "ReadParquet", "ListFiles"),
    "inference_actor": ("PopulationPredictor", "StudentPredictor"),
    "train_worker": ("RayTrainWorker",),
}
# a Ray process is killed a random moment up to this many seconds after the first of its kind
# starts (about the life of one: a short task is caught young, an actor anywhere in its stream);
# if none is alive then, the next one to start
WINDOWS = {"videopca_actor": 4.0, "read_task": 0.3, "inference_actor": 5.0, "train_worker": 20.0}
DRIVER_KINDS = ("evalseg", "driver")
KINDS = (*TITLES, *DRIVER_KINDS)


def _steps(out: Path) -> dict:
    manifest = out / "manifest.json"
    try:
        return json.loads(manifest.read_text()).get("steps", {}) if manifest.exists() else {}
    except json.JSONDecodeError:  # caught mid-write
        return {}


def _ray_processes(names: tuple[str, ...]) -> list:
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if title.startswith("ray::") and any(n in title for n in names):
            found.append((p, title))
    return found


class Fault(threading.Thread):
    """Kills one process of ``kind`` at a random moment of the attempt running as ``proc``.

    For a Ray process: once the first one of its kind is seen, wait a random delay (up to its
    kind's :data:`WINDOWS`) and kill one that is alive then (the next one to start, if none
    is). For the
    EvalSeg-Net trainer: kill the driver a random moment into its step. For the driver: kill
    it a random moment into the run."""

    def __init__(self, kind: str, proc: subprocess.Popen, log: Path, rng: random.Random, run_seconds: float):
        super().__init__(daemon=True)
        self.kind, self.proc, self.log, self.rng = kind, proc, log, rng
        self.run_seconds = run_seconds
        self.killed: dict | None = None
        self.t0 = time.time()

    def _kill_driver(self, what: str) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.killed = {"process": what, "after": round(time.time() - self.t0, 1)}

    def _wait(self, cond, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.time() + timeout
        while self.proc.poll() is None and (end is None or time.time() < end):
            if cond():
                return True
            time.sleep(0.1)
        return False

    def run(self) -> None:
        if self.kind == "driver":
            if not self._wait(lambda: False, self.rng.uniform(5.0, 0.9 * self.run_seconds)):
                if self.proc.poll() is None:
                    self._kill_driver("driver")
            return
        if self.kind == "evalseg":
            started = lambda: "[gen-1/evalseg]" in self.log.read_text(errors="replace")  # noqa: E731
            if self._wait(started):
                time.sleep(self.rng.uniform(0.5, 5.0))
                if self.proc.poll() is None:
                    self._kill_driver("driver, training EvalSeg-Net")
            return
        names = TITLES[self.kind]
        if not self._wait(lambda: bool(_ray_processes(names))):
            return
        delay = self.rng.uniform(0.0, WINDOWS[self.kind])
        deadline = time.time() + delay
        self._wait(lambda: time.time() >= deadline)
        if not self._wait(lambda: bool(_ray_processes(names))):
            return
        p, title = self.rng.choice(_ray_processes(names))
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - gone in between: the next one
            return self.run()
        self.killed = {"process": title[:80], "pid": p.pid, "after": round(time.time() - self.t0, 1),
                       "steps_done": len(_steps(Path(self.proc.args[self.proc.args.index("--out") + 1])))}


def _attempt(cmd: list[str], log: Path, fault_args: dict | None) -> tuple[int, float, dict | None]:
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
        fault = Fault(proc=proc, log=log, **fault_args) if fault_args else None
        if fault:
            fault.start()
        code = proc.wait()
        if fault:
            fault.join(5)
    try:  # nothing of a killed driver may linger (its Ray workers die with its job)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return code, time.time() - t0, fault.killed if fault else None


# -- what a finished run must hold -----------------------------------------------------------


def _store_ids(store: Path) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    ids = []
    for f in sorted(store.rglob("*.parquet")):
        t = pq.read_table(f, columns=["video", "frame"])
        ids += zip(t["video"].to_pylist(), t["frame"].to_pylist())
    return sorted(ids)


def _full_stores(run: Path) -> list[Path]:
    """The stores that hold every frame of their data set (and gen-1's selected VideoPCA
    frames, which VideoPCA's determinism fixes), relative to ``run``."""
    names = {"store", "scored"}
    found = [p.relative_to(run) for p in run.rglob("*") if p.is_dir() and p.name in names]
    found += [Path(p) for p in ("eval/teacher/selected", "gen-1/teacher/selected") if (run / p).is_dir()]
    return sorted(found)


def _check(run: Path, reference: Path, code: int) -> dict:
    from popdistill.pipeline.integrity import damaged_outputs
    from popdistill.storage import RunPath

    out: dict = {"finished": code == 0}
    if code != 0:
        return out
    lost = []
    for rel in _full_stores(reference):
        want, have = _store_ids(reference / rel), _store_ids(run / rel) if (run / rel).is_dir() else []
        if have != want:
            lost.append(f"{rel}: {len(have)} rows, {len(set(want) - set(have))} ids missing "
                        f"(reference: {len(want)})")
    out["stores"] = not lost
    out["store_problems"] = lost
    steps = _steps(run)
    ref_steps = _steps(reference)
    missing = []
    for name, step in ref_steps.items():
        if name.startswith("gen-") and name.endswith("/train"):
            for student, ref in step["result"].items():
                got = steps.get(name, {}).get("result", {}).get(student)
                if not got or got["metrics"]["epoch"] != ref["metrics"]["epoch"] \
                        or not Path(got["checkpoint"]).is_file():
                    missing.append(f"{name}/{student}")
        if name.startswith("gen-") and name.endswith("/evalseg"):
            got = steps.get(name, {}).get("result")
            if not got or not Path(got["checkpoint"]).is_file():
                missing.append(name)
    root = RunPath.of(str(run.resolve()))
    missing += [f"damaged: {f} ({why})" for step in steps.values()
                for f, why in damaged_outputs(step.get("result"), root)]
    out["checkpoints"] = not missing
    out["checkpoint_problems"] = missing
    table = json.loads((run / "report.json").read_text())["table"]
    ref_table = json.loads((reference / "report.json").read_text())["table"]
    rows = lambda t: [(r["method"], r["generation"]) for r in t]  # noqa: E731
    out["table"] = rows(table) == rows(ref_table) and all(r["J"] is not None for r in table)
    # not a condition of survival, but worth knowing: did the fault change any number?
    out["cells_differing"] = sum(a[k] != b[k] for a, b in zip(table, ref_table)
                                 for k in ("P", "J", "CorLoc")) if out["table"] else None
    out["survived"] = out["stores"] and out["checkpoints"] and out["table"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--out", default="runs/chaos", help="folder of the reference and the trials (replaced)")
    p.add_argument("--trials", type=int, default=12, help="runs with one fault each (default 12: each kind twice)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"fault kinds to draw from ({', '.join(KINDS)})")
    p.add_argument("--reference", help="a finished uninterrupted run of the same config, outside OUT "
                                       "(default: run one first, at OUT/reference)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep every trial's run directory")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if bad := [k for k in kinds if k not in KINDS]:
        p.error(f"unknown kind(s) {bad}; valid: {', '.join(KINDS)}")

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from popdistill.ray_env import init_ray

    ray = init_ray()
    address = ray.get_runtime_context().gcs_address
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = [sys.executable, "-m", "popdistill.cli", "run", args.config, "--address", address]
    if args.reference:
        reference = Path(args.reference).resolve()
        steps = _steps(reference).values()
        t_ref = sum(s.get("seconds", 0.0) for s in steps)
    else:
        reference = out / "reference"
        code, t_ref, _ = _attempt([*base, "--out", str(reference)], out / "reference.log", None)
        if code != 0:
            print(f"the reference run failed ({code}); see {out / 'reference.log'}", file=sys.stderr)
            return 1
    print(f"reference: {reference} ({t_ref:.0f} s)", flush=True)

    rng = random.Random(args.seed)
    order: list[str] = []
    trials = []
    for i in range(args.trials):
        if not order:
            order = rng.sample(kinds, len(kinds))
        kind = order.pop()
        run, log = out / f"trial-{i:02d}-{kind}", out / f"trial-{i:02d}-{kind}.log"
        cmd = [*base, "--out", str(run)]
        fault = {"kind": kind, "rng": rng, "run_seconds": t_ref}
        code, seconds, killed = _attempt(cmd, log, fault)
        attempts = 1
        if kind in DRIVER_KINDS and killed:  # a killed job is submitted again
            code, more, _ = _attempt(cmd, log, None)
            seconds, attempts = seconds + more, 2
        trial = {"trial": i, "kind": kind, "killed": killed, "exit": code, "attempts": attempts,
                 "seconds": round(seconds, 1), **_check(run, reference, code)}
        trial["survived"] = bool(killed) and trial.get("survived", False)
        trials.append(trial)
        what = killed["process"] if killed else "nothing (no such process lived long enough)"
        print(f"trial {i} [{kind}]: killed {what}"
              + (f" after {killed['after']} s" if killed else "")
              + f"; exit {code}; {'survived' if trial['survived'] else 'LOST: ' + json.dumps({k: trial.get(k) for k in ('finished', 'store_problems', 'checkpoint_problems', 'table')})}",
              flush=True)
        (out / "chaos.json").write_text(json.dumps({"config": args.config, "reference_seconds": round(t_ref, 1),
                                                    "trials": trials}, indent=1))
        if not args.keep and trial["survived"]:
            shutil.rmtree(run, ignore_errors=True)

    print("\n| fault | trials | killed | survived | table cells differing from the reference | seconds (mean) |"
          "\n|---|---|---|---|---|---|")
    for kind in kinds:
        ts = [t for t in trials if t["kind"] == kind]
        if ts:
            cells = ", ".join(str(t.get("cells_differing")) for t in ts)
            print(f"| {kind} | {len(ts)} | {sum(bool(t['killed']) for t in ts)} | "
                  f"{sum(t['survived'] for t in ts)} | {cells} | {sum(t['seconds'] for t in ts) / len(ts):.0f} |")
    injected = [t for t in trials if t["killed"]]
    print(f"\nsurvived {sum(t['survived'] for t in injected)} of {len(injected)} trials with a fault "
          f"(reference run: {t_ref:.0f} s)")
    return 0 if all(t["survived"] for t in injected) else 1


if __name__ == "__main__":
    sys.exit(main())
