"""Teacher throughput and memory, measured in one run (results go in docs/benchmarks.md).

    .venv/bin/python benchmarks/teacher.py                # full: corpus x1, x10, x100
    .venv/bin/python benchmarks/teacher.py --scales 1,10  # shorter

Measures, on the embedded medium corpus (20 videos x 48 frames at 128 px, generated under
--work if missing):
1. decode alone: JPEG frames through the DAVIS reader, and H.264 through PyAV, one process;
2. VideoPCA alone, frames/s per core (torch with one thread, frames already in memory);
3. the whole Ray Data pipeline (read -> chunks -> VideoPCA actors -> Parquet store), frames/s
   of the streaming pass (start-up of Ray itself excluded, actor start-up included);
4. 1 vs 2 actors on the corpus x10;
5. peak memory (PSS summed over the driver and every Ray process) while the pipeline runs on
   the corpus x10 and x100 (the `repeat` reader option lists the corpus N times);
6. the cost of selection by edge-density strata (``selection.strata``): the edge density alone,
   frames/s per core, and the selection pass (top 20 %) over the x10 store with 1 and 4 strata.
Targets: VideoPCA >= 2,000 frames/s per core; pipeline >= 0.8 x decode alone;
2 actors >= 1.8 x 1 actor; memory flat from x10 to x100.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import threading
import time
from pathlib import Path

import numpy as np


def ensure_world(path: Path) -> Path:
    from popdistill.cli import main

    if not (path / "world.json").exists():
        main(["world", "--preset", "medium", "--out", str(path), "--skip-existing"])
    return path


def bench_decode_jpeg(world: Path) -> dict:
    from popdistill.data.readers import create_reader

    reader = create_reader("davis", world)
    t0, n = time.perf_counter(), 0
    for _ in reader:
        n += 1
    return {"frames": n, "frames_per_s": n / (time.perf_counter() - t0)}


def bench_decode_h264(world: Path, tmp: Path) -> dict:
    import av

    from popdistill.data.readers import create_reader
    from popdistill.data.video_decode import decode_video

    reader = create_reader("davis", world)
    paths = []
    for ref in reader.videos()[:10]:
        frames = np.stack([r.image for r in reader.read_video(ref)])
        path = tmp / f"{ref.video}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        paths.append(path)
    t0, n = time.perf_counter(), 0
    for _ in range(5):
        for path in paths:
            for batch in decode_video(path):
                n += len(batch)
    return {"frames": n, "frames_per_s": n / (time.perf_counter() - t0)}


def bench_videopca(world: Path) -> dict:
    import torch

    from popdistill.data.readers import create_reader
    from popdistill.teacher.config import VideoPCAConfig
    from popdistill.teacher.videopca import VideoPCA

    torch.set_num_threads(1)
    reader = create_reader("davis", world)
    videos = [np.stack([r.image for r in reader.read_video(ref)]) for ref in reader.videos()]
    vp = VideoPCA(VideoPCAConfig())
    vp(videos[0])  # warm-up (builds the colour look-up table)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for _ in range(3):
        for v in videos:
            vp(v)
            n += len(v)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "frames_per_s_per_core": n / wall, "frames_per_cpu_s": n / cpu}


def bench_edge_density(world: Path) -> dict:
    """``edge_density`` (one Sobel filter of the grey frame) per core, frames in memory."""
    from popdistill.data.readers import create_reader
    from popdistill.selection.scores import edge_density

    frames = [r.image for r in create_reader("davis", world)]
    edge_density(frames[0])  # warm-up (imports)
    t0 = time.perf_counter()
    for f in frames:
        edge_density(f)
    return {"frames": len(frames), "frames_per_s_per_core": len(frames) / (time.perf_counter() - t0)}


def bench_selection(store: Path, work: Path) -> list[dict]:
    """The teacher's selection pass (top 20 %) over ``store``: corpus-wide, then by 4 edge-density
    strata (the density computed in the Ray Data pass, and again in the filter for the frames
    whose score lies between the strata's thresholds)."""
    from popdistill.selection.store import select_top
    from popdistill.storage import RunPath

    rows = []
    for strata in (1, 4):
        out = RunPath.of(str(work / f"selected-{strata}"))
        t0 = time.perf_counter()
        report = select_top(RunPath.of(str(store)), out, 0.2, strata)
        rows.append({"strata": strata, "frames": report["total"], "kept": report["kept"],
                     "seconds": time.perf_counter() - t0})
        out.delete()
    return rows


class PeakMemory:
    """Samples the PSS of this process and all its descendants (Ray's processes) until stopped."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench_pipeline(world: Path, work: Path, actors: int, repeat: int, memory: bool,
                   selection: bool = False) -> dict:
    from popdistill.config import load
    from popdistill.teacher.config import TeacherConfig
    from popdistill.teacher.pipeline import run_teacher

    out = work / f"run-a{actors}-x{repeat}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = load(TeacherConfig, {
        "data": str(world), "format": "davis", "out": str(out), "actors": actors,
        "actor_cpus": 0.9 if actors == 1 else 0.5, "evaluate": False,
        "reader_options": {"repeat": repeat},
    })
    mem = PeakMemory() if memory else None
    if mem:
        mem.__enter__()
    try:
        report = run_teacher(cfg, log=lambda *_: None)
    finally:
        if mem:
            mem.__exit__()
    result = {"actors": actors, "repeat": repeat, "frames": report["frames_this_run"],
              "seconds": report["seconds"], "frames_per_s": report["frames_per_second"]}
    if selection:
        result["selection"] = bench_selection(Path(report["store"]), work)
    shutil.rmtree(out, ignore_errors=True)
    if mem:
        result["peak_pss_mib"] = mem.peak / 2**20
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/bench-teacher", help="work folder (corpus, stores, results)")
    p.add_argument("--scales", default="1,10,100", help="corpus multiples for the pipeline and memory runs")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    world = ensure_world(work / "world")
    scales = [int(s) for s in args.scales.split(",")]
    results = {"machine": f"{platform.node()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d")}

    print("decode alone ...", flush=True)
    results["decode_jpeg"] = bench_decode_jpeg(world)
    (work / "mp4").mkdir(exist_ok=True)
    results["decode_h264"] = bench_decode_h264(world, work / "mp4")
    print("VideoPCA alone ...", flush=True)
    results["videopca"] = bench_videopca(world)
    results["edge_density"] = bench_edge_density(world)

    from popdistill.ray_env import init_ray

    init_ray(num_cpus=os.cpu_count())
    runs = []
    mid = 10 if 10 in scales else scales[-1]
    for scale in scales:
        print(f"pipeline, 2 actors, corpus x{scale} ...", flush=True)
        runs.append(bench_pipeline(world, work, 2, scale, memory=scale > 1, selection=scale == mid))
    print(f"pipeline, 1 actor, corpus x{mid} ...", flush=True)
    runs.append(bench_pipeline(world, work, 1, mid, memory=False))
    results["pipeline"] = runs
    (work / "teacher.json").write_text(json.dumps(results, indent=2))

    d, v = results["decode_jpeg"], results["videopca"]
    print(f"\n## Teacher ({results['machine']}, {results['date']})\n")
    print("| measure | frames/s |\n| --- | --- |")
    print(f"| decode alone, JPEG (DAVIS reader, 1 process) | {d['frames_per_s']:.0f} |")
    print(f"| decode alone, H.264 128 px (PyAV, 1 process) | {results['decode_h264']['frames_per_s']:.0f} |")
    print(f"| VideoPCA alone, per core (128 px) | {v['frames_per_s_per_core']:.0f} |")
    print(f"| edge density alone (selection.strata), per core | {results['edge_density']['frames_per_s_per_core']:.0f} |")
    print("\n| pipeline run | frames | seconds | frames/s | peak PSS (MiB) |\n| --- | --- | --- | --- | --- |")
    for r in runs:
        mem = f"{r['peak_pss_mib']:.0f}" if "peak_pss_mib" in r else "-"
        print(f"| {r['actors']} actor(s), corpus x{r['repeat']} | {r['frames']} | {r['seconds']:.1f} | {r['frames_per_s']:.0f} | {mem} |")
    sel = next(r["selection"] for r in runs if "selection" in r)
    print(f"\n| selection pass, corpus x{mid}, top 20 % | frames | kept | seconds | frames/s |\n| --- | --- | --- | --- | --- |")
    for r in sel:
        print(f"| {r['strata']} strat{'um' if r['strata'] == 1 else 'a'} | {r['frames']} | {r['kept']} | "
              f"{r['seconds']:.1f} | {r['frames'] / r['seconds']:.0f} |")
    two = next(r for r in runs if r["actors"] == 2 and r["repeat"] == mid)
    one = runs[-1]
    print(f"\n2 actors / 1 actor at x{mid}: {two['frames_per_s'] / one['frames_per_s']:.2f}x; "
          f"pipeline / JPEG decode alone: {two['frames_per_s'] / d['frames_per_s']:.2f}")


if __name__ == "__main__":
    main()
