"""The five full-size students on one GPU, timed: ``popdistill run configs/experiments/gpu_population.yaml``.

Runs the product (a subprocess, so start-up is in the wall time) and prints its table, the
wall time, the seconds of each step and the training throughput of each generation (images
through the students per second of the train step, all five together). ``--sequential``
also runs the same config with ``resources.gpus_per_worker=1`` (one student at a time on the
GPU) into ``RUN_DIR-sequential`` and prints the ratio of the two throughputs.

Without CUDA it is a smoke run of the same config at tiny sizes (``SMOKE``: tiny students,
a few 64-px videos, a 5-second budget), which the test suite runs.

    python benchmarks/gpu_population.py                    # on a one-GPU node
    python benchmarks/gpu_population.py --sequential       # and against one student at a time
    python benchmarks/gpu_population.py --out /tmp/smoke   # without CUDA: the smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "experiments" / "gpu_population.yaml"

# The same pipeline at test sizes, for a machine without CUDA.
SMOKE = [
    "students.names=[lowres_tiny, fconv_tiny, unet_tiny, denseunet_tiny, dilateunet_tiny]",
    "students.models={}",
    "data.world={preset: medium, videos: 4, frames: 12, size: 64, seed: 0}",
    "eval.world={preset: medium, videos: 2, frames: 12, size: 64, seed: 1}",
    "teacher={chunk_frames: 12, videopca: {size: 64, window: 12, min_window: 4}}",
    "selection.top=0.5",
    "selection.with_teacher=true",
    "selection.keep_teacher=false",
    "training.epochs=2",
    "training.max_seconds=5",
    "training.batch_size=8",
    "training.torch_threads=1",
    "evalseg={model: evalseg_tiny, epochs: 1, max_frames: 48}",
    "grid_frames=2",
    "resources={actors: 1, actor_cpus: 0.5, cpus_per_worker: 0.9, gpus_per_worker: 0.2}",
]


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(out: Path, overrides: list[str]) -> float:
    """``popdistill run`` of the config into ``out``; returns its wall seconds."""
    if any(o.startswith("data.world=") for o in overrides):  # the smoke worlds live in the run
        overrides = overrides + [f"data.path={out / 'world'}", f"eval.path={out / 'world-eval'}"]
    cmd = [sys.executable, "-m", "popdistill", "run", str(CONFIG), "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def train_throughput(out: Path) -> dict[int, float]:
    """Generation -> images through the students per second of its train step."""
    steps = json.loads((out / "manifest.json").read_text())["steps"]
    rates = {}
    for gen in sorted({int(s.split("/")[0][4:]) for s in steps if s.startswith("gen-")}):
        summaries = (out / f"gen-{gen}" / "train").glob("*.json")
        frames = sum(h["train_frames"] for f in summaries for h in json.loads(f.read_text())["history"])
        rates[gen] = frames / steps[f"gen-{gen}/train"]["seconds"]
    return rates


def summary(out: Path, wall: float) -> dict:
    from popdistill.pipeline.report import format_results

    report = json.loads((out / "report.json").read_text())
    print(format_results(report["table"]))
    rates = train_throughput(out)
    print(f"\nwall {wall:.0f} s; steps: " + ", ".join(
        f"{k} {v:.0f} s" for k, v in report["step_seconds"].items()))
    print("training images/s: " + ", ".join(f"generation {g} {r:.1f}" for g, r in rates.items()))
    return {"wall_seconds": wall, "train_images_per_s": rates, "table": report["table"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_population", help="run directory")
    p.add_argument("--sequential", action="store_true",
                   help="also train one student at a time on the GPU and compare throughputs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="more config overrides (popdistill run --set)")
    a = p.parse_args(argv)
    overrides = ([] if has_cuda() else SMOKE) + a.overrides
    if not has_cuda():
        print("no CUDA device: a smoke run of the same config at tiny sizes", flush=True)
    results = {"together": summary(a.out, run(a.out, overrides))}
    if a.sequential:
        seq = a.out.with_name(a.out.name + "-sequential")
        results["sequential"] = summary(seq, run(seq, overrides + ["resources.gpus_per_worker=1"]))
        for gen, rate in results["together"]["train_images_per_s"].items():
            print(f"generation {gen}: five at once / one at a time = "
                  f"{rate / results['sequential']['train_images_per_s'][gen]:.2f}x")
    (a.out / "gpu_population.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
