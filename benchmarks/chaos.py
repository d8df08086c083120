"""Chaos run: `popdistill run` killed N times at random moments, then left to finish; is
anything lost or changed?

The benchmark holds one local Ray (as a cluster's head would) and starts each attempt of
`popdistill run CONFIG --out OUT --address <it>` as its own process group; after a random
delay it SIGKILLs the whole group (the driver and everything it started), records which steps
had finished, and starts the next attempt on the same run directory. After N kills one last
attempt runs to the end. The finished run's table is compared with an uninterrupted run of the
same config (``--reference``, or one it runs first).

    python benchmarks/chaos.py --kills 10                       # the quickstart, ~10 min on 2 cores
    python benchmarks/chaos.py --config configs/quickstart.yaml --kills 10 --out runs/chaos \
        --reference runs/quickstart

Writes OUT-chaos.json (every attempt: its delay, steps finished when killed) and prints a
Markdown summary for docs/benchmarks.md.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _steps(out: Path) -> dict:
    manifest = out / "manifest.json"
    try:
        return json.loads(manifest.read_text()).get("steps", {}) if manifest.exists() else {}
    except json.JSONDecodeError:  # caught mid-write: the attempt's record says so
        return {"<manifest being written>": {}}


def _attempt(cmd: list[str], log: Path, kill_after: float | None) -> tuple[int | None, float]:
    """Run ``cmd`` as its own process group; SIGKILL the group after ``kill_after`` seconds
    (None: let it finish). Returns (exit code or None when killed, seconds)."""
    t0 = time.time()
    with open(log, "a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
        try:
            code = proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
            code = None
    return code, time.time() - t0


def _table(out: Path) -> list[dict]:
    return json.loads((out / "report.json").read_text())["table"]


def _compare(a: list[dict], b: list[dict]) -> dict:
    """Cells that differ between two results tables (P / J / CorLoc), and the largest J gap."""
    diff, worst = 0, 0.0
    for ra, rb in zip(a, b, strict=True):
        for key in ("P", "J", "CorLoc"):
            if ra[key] != rb[key]:
                diff += 1
                if key == "J" and ra[key] is not None and rb[key] is not None:
                    worst = max(worst, abs(ra[key] - rb[key]))
    return {"cells_differing": diff, "largest_J_gap": worst, "rows": len(a)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--out", default="runs/chaos", help="the chaos run's directory (replaced)")
    p.add_argument("--reference", help="a finished uninterrupted run of the same config "
                                       "(default: run one first, at OUT-reference)")
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--min-delay", type=float, default=5.0, help="seconds before a kill, at least")
    p.add_argument("--max-delay", type=float, default=45.0, help="seconds before a kill, at most")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from popdistill.ray_env import init_ray

    ray = init_ray()
    address = ray.get_runtime_context().gcs_address
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_name(out.name + "-chaos.log")
    log.unlink(missing_ok=True)
    base = [sys.executable, "-m", "popdistill.cli", "run", args.config, "--address", address]

    reference = Path(args.reference) if args.reference else out.with_name(out.name + "-reference")
    t_ref = None
    if not (reference / "report.json").exists():
        shutil.rmtree(reference, ignore_errors=True)
        code, t_ref = _attempt([*base, "--out", str(reference)], log, None)
        if code != 0:
            print(f"the reference run failed ({code}); see {log}", file=sys.stderr)
            return 1

    rng = random.Random(args.seed)
    attempts = []
    while len([a for a in attempts if a["killed"]]) < args.kills:
        delay = rng.uniform(args.min_delay, args.max_delay)
        code, seconds = _attempt([*base, "--out", str(out)], log, delay)
        attempts.append({"delay": round(delay, 1), "seconds": round(seconds, 1),
                         "killed": code is None, "exit": code, "steps_done": sorted(_steps(out))})
        print(f"attempt {len(attempts)}: {'killed' if code is None else f'exit {code}'} after "
              f"{seconds:.0f} s, {len(_steps(out))} steps finished", flush=True)
        if code is not None:
            break  # it finished (or failed) before the kill
    code, seconds = _attempt([*base, "--out", str(out)], log, None)
    attempts.append({"delay": None, "seconds": round(seconds, 1), "killed": False, "exit": code,
                     "steps_done": sorted(_steps(out))})
    result = {
        "config": args.config, "kills": sum(a["killed"] for a in attempts),
        "attempts": attempts, "finished": code == 0,
        "chaos_seconds": round(sum(a["seconds"] for a in attempts), 1),
        "reference_seconds": round(t_ref, 1) if t_ref is not None else None,
        "reference": str(reference),
    }
    if code == 0:
        result["compare"] = _compare(_table(reference), _table(out))
    Path(str(out) + "-chaos.json").write_text(json.dumps(result, indent=1))

    kills = [a for a in attempts if a["killed"]]
    print("\n| kill | after (s) | steps finished when killed |\n|---|---|---|")
    for i, a in enumerate(kills, 1):
        last = a["steps_done"][-1] if a["steps_done"] else "-"
        print(f"| {i} | {a['delay']} | {len(a['steps_done'])} (last: {last}) |")
    print(f"\nfinished: {result['finished']}; attempts: {len(attempts)}; time with kills: "
          f"{result['chaos_seconds']} s" + (f" (uninterrupted: {result['reference_seconds']} s)"
                                             if t_ref is not None else ""))
    if "compare" in result:
        c = result["compare"]
        print(f"table against the uninterrupted run: {c['cells_differing']} of {3 * c['rows']} "
              f"P/J/CorLoc cells differ; largest J gap {c['largest_J_gap']:.4f}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
