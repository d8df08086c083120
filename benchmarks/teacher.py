"""Teacher throughput and memory, measured in one run (results go in docs/benchmarks.md).

    .venv/bin/python benchmarks/teacher.py                          # x1, x10, x100, x1000 (~1M frames)
    .venv/bin/python benchmarks/teacher.py --scales 1,10 --h264-scales 10   # minutes

Measures, on the embedded medium corpus (20 videos x 48 frames at 128 px, generated under
--work if missing; the `repeat` reader option lists it N times, so x1000 is 960,000 frames):
1. decode alone: JPEG frames through the DAVIS reader (with their annotations), and the same
   videos as H.264 files through the video_folder reader, one process;
2. VideoPCA alone, frames/s per core (torch with one thread, frames already in memory);
3. the ceiling of the pipeline on this machine: cores / (decode + VideoPCA time a frame), from
   1 and 2, for JPEG and for H.264 input (1 and 2 are measured before and after the pipeline
   runs, and the ceiling takes the mean times: this VM's speed drifts over a long run); and,
   for each run, the ceiling from decode and VideoPCA measured just before and just after it;
4. the whole pipeline (``popdistill teacher``'s ``run_teacher``, 4 edge-density strata as the
   run configs use: video references -> VideoPCA actors that decode, mask, score, measure the
   edge density and store), frames/s of the streaming pass (start-up of Ray itself excluded,
   actor start-up included), against the ceiling (and against the ceiling that counts the
   edge density too), and the share of the cores' time the actors spent decoding and masking
   (their own accounting, no measure alone in it, so no drift: it exceeds the true ratio by the
   actors' own slow-down of those two steps); where each actor's time went, step by step;
5. 1 vs 2 actors on the corpus x10 (and x100 when it is among the scales);
6. peak memory (PSS summed over the driver and every Ray process, the object store included)
   while the pipeline runs, at every scale above x1;
7. the selection pass (top 20 %, 4 edge-density strata: reads the score and density columns,
   then copies the kept rows) at x10 and at the largest scale, against the teacher's rate.
Targets: pipeline >= 0.8 x ceiling at x100 and ~1M; 2 actors >= 1.6 x 1 actor at x10;
selection >= 20 x the teacher's rate; peak memory at ~1M <= 1.2 x that at x10.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
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

    reader = create_reader("davis", world, repeat=3)  # 2,880 frames, as many as VideoPCA's
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
    for ref in reader.videos():
        frames = np.stack([r.image for r in reader.read_video(ref)])
        path = tmp / f"{ref.video}.mp4"
        if path.exists():
            paths.append(path)
            continue
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
    for _ in range(3):
        for path in paths:
            for batch in decode_video(path):
                n += len(batch)
    folder = create_reader("video_folder", tmp)
    t1, m = time.perf_counter(), 0
    for _ in range(3):
        for _ in folder:
            m += 1
    return {"frames": n, "frames_per_s": n / (t1 - t0), "reader_frames_per_s": m / (time.perf_counter() - t1)}


def bench_videopca(world: Path, keep_freed_memory: bool = False) -> dict:
    """VideoPCA per core on the corpus's videos in memory; ``keep_freed_memory``: with the
    allocator setting the mask actors use (:func:`popdistill.ray_env.keep_freed_memory`)."""
    import torch

    if keep_freed_memory:
        from popdistill.ray_env import keep_freed_memory as keep

        keep()

    from popdistill.teacher.config import VideoPCAConfig
    from popdistill.teacher.videopca import VideoPCA

    torch.set_num_threads(1)
    return _rate_per_core(world, VideoPCA(VideoPCAConfig()))  # warm-up builds the colour look-up table


def bench_edge_density(world: Path) -> dict:
    """The edge density per core, frames in memory, a chunk (a video) at a time as the actors
    compute it."""
    from popdistill.selection.scores import edge_densities

    return _rate_per_core(world, edge_densities)


def _rate_per_core(world: Path, work_on) -> dict:
    """Frames/s of ``work_on(video frames)`` over the corpus's videos in memory, three passes
    after one warm-up call, in this process."""
    from popdistill.data.readers import create_reader

    reader = create_reader("davis", world)
    videos = [np.stack([r.image for r in reader.read_video(ref)]) for ref in reader.videos()]
    work_on(videos[0])
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    for _ in range(3):
        for v in videos:
            work_on(v)
            n += len(v)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "frames_per_s_per_core": n / wall, "frames_per_cpu_s": n / cpu}


def bench_selection(store: Path, work: Path) -> list[dict]:
    """The teacher's selection pass (top 20 %) over ``store``: corpus-wide, then by 4 edge-density
    strata (the density read from the store, where the VideoPCA actor wrote it)."""
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
    """Samples the PSS of this process and all its descendants (Ray's processes) until stopped.

    A sample reads every process's ``smaps_rollup``: ~30 ms of CPU with Ray's dozen processes
    up, so one every 0.5 s took 6 % of a core from the pipeline it measures. The pause after a
    sample is at least ``overhead`` ^ -1 times the sample's own time (2 %: a pause of ~1.5 s)."""

    def __init__(self, interval: float = 0.5, overhead: float = 0.02):
        self.interval, self.overhead, self.peak, self.samples = interval, overhead, 0, 0
        self._stop = threading.Event()
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
            t0 = time.perf_counter()
            self.peak = max(self.peak, self._sample())
            self.samples += 1
            self._stop.wait(max(self.interval, (time.perf_counter() - t0) / self.overhead))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench_pipeline(world: Path, work: Path, actors: int, repeat: int, memory: bool,
                   selection: bool = False, fmt: str = "davis", **teacher) -> dict:
    from popdistill.config import load
    from popdistill.teacher.config import TeacherConfig
    from popdistill.teacher.pipeline import run_teacher

    out = work / f"run-{fmt}-a{actors}-x{repeat}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = load(TeacherConfig, {
        "data": str(world), "format": fmt, "out": str(out), "actors": actors,
        "actor_cpus": 0.9 if actors == 1 else 0.5, "evaluate": False, "select_strata": 4,
        "reader_options": {"repeat": repeat}, **teacher,
    })
    mem = PeakMemory() if memory else None
    if mem:
        mem.__enter__()
    try:
        report = run_teacher(cfg, log=lambda *_: None)
    finally:
        if mem:
            mem.__exit__()
    result = {"format": fmt, "actors": actors, "repeat": repeat, "frames": report["frames_this_run"],
              "seconds": report["seconds"], "frames_per_s": report["frames_per_second"],
              "store_mb": sum(f.stat().st_size for f in Path(report["store"]).rglob("*.parquet")) / 1e6,
              "actor_seconds": report["actor_seconds"], "actor_step_seconds": report["actor_step_seconds"],
              **teacher}
    if selection:
        result["selection"] = bench_selection(Path(report["store"]), work)
    shutil.rmtree(out, ignore_errors=True)
    if mem:
        result["peak_pss_mib"], result["pss_samples"] = mem.peak / 2**20, mem.samples
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/bench-teacher", help="work folder (corpus, stores, results)")
    p.add_argument("--scales", default="1,10,100,1000", help="corpus multiples for the JPEG pipeline runs")
    p.add_argument("--h264-scales", default="100", help="corpus multiples for the H.264 (video_folder) runs")
    p.add_argument("--h264-codec", default="source",
                   help="image_codec of the H.264 runs' store (source: raw frames; jpeg: a tenth of the disk)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    world = ensure_world(work / "world")
    scales = [int(s) for s in args.scales.split(",")]
    h264_scales = [int(s) for s in args.h264_scales.split(",") if s]
    cores = os.cpu_count() or 1
    results = {"machine": f"{platform.node()} {cores} cpus", "cores": cores, "date": time.strftime("%Y-%m-%d")}

    print("decode, VideoPCA and the edge density alone ...", flush=True)
    (work / "mp4").mkdir(exist_ok=True)
    results["alone_before"] = measure_alone(world, work)
    from popdistill.ray_env import init_ray

    init_ray(num_cpus=cores)
    # one unrecorded run first: Ray's first actors start cold processes, and the run that paid
    # for it (whichever came first) would not be comparable with the others
    bench_pipeline(world, work, actors=2, repeat=1, memory=False)
    mid = 10 if 10 in scales else scales[-1]
    specs = [dict(fmt="davis", actors=2, repeat=scale, memory=scale > 1, selection=scale in (mid, max(scales)))
             for scale in scales]
    specs += [dict(fmt="video_folder", actors=2, repeat=scale, memory=True, image_codec=args.h264_codec)
              for scale in h264_scales]
    specs += [dict(fmt="davis", actors=1, repeat=scale, memory=False)  # x100: the rate once start-up is paid
              for scale in sorted({mid} | ({100} & set(scales)))]
    # decode and VideoPCA alone again between the runs: each run's ceiling from the measures just
    # before and just after it, as this VM's speed drifts by up to 20 % over the benchmark
    print("decode and VideoPCA alone, between the runs ...", flush=True)
    around = [quick_alone(world, work)]
    runs = []
    for spec in specs:
        print(f"pipeline, {_input_name(spec['fmt'])}, {spec['actors']} actor(s), corpus x{spec['repeat']} ...", flush=True)
        fmt_world = world if spec["fmt"] == "davis" else work / "mp4"
        runs.append(bench_pipeline(fmt_world, work, **spec))
        around.append(quick_alone(world, work))
        runs[-1]["ceiling_around"] = ceilings(around[-2], around[-1], cores)["ceiling"][spec["fmt"]]
    results["around"] = around
    results["pipeline"] = runs
    import ray

    ray.shutdown()  # its processes idle on the same cores
    time.sleep(3)
    print("decode, VideoPCA and the edge density alone, again ...", flush=True)
    results["alone_after"] = measure_alone(world, work)
    results.update(ceilings(results["alone_before"], results["alone_after"], cores))
    (work / "teacher.json").write_text(json.dumps(results, indent=2))
    print_tables(results, mid)


def quick_alone(world: Path, work: Path) -> dict:
    """Decode (JPEG and H.264) and VideoPCA alone, the measures a ceiling needs (~6 s)."""
    return {"decode_jpeg": bench_decode_jpeg(world), "decode_h264": bench_decode_h264(world, work / "mp4"),
            "videopca": bench_videopca(world)}


def measure_alone(world: Path, work: Path) -> dict:
    """Decode, VideoPCA (plain, and with the actors' allocator setting, in a fresh process)
    and the edge density, each alone in one process."""
    out = {"decode_jpeg": bench_decode_jpeg(world), "decode_h264": bench_decode_h264(world, work / "mp4"),
           "videopca": bench_videopca(world)}
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        out["videopca_kept_memory"] = pool.submit(bench_videopca, world, True).result()
    out["edge_density"] = bench_edge_density(world)
    return out


def ceilings(before: dict, after: dict, cores: int) -> dict:
    """cores / (decode + VideoPCA), per frame, from the mean of the times measured before and
    after the pipeline runs (this VM's speed drifts by up to 20 % over a long benchmark)."""
    def seconds_a_frame(key: str, field: str) -> float:
        return (1 / before[key][field] + 1 / after[key][field]) / 2

    vpca = seconds_a_frame("videopca", "frames_per_s_per_core")
    ceiling = {"davis": cores / (seconds_a_frame("decode_jpeg", "frames_per_s") + vpca),
               "video_folder": cores / (seconds_a_frame("decode_h264", "reader_frames_per_s") + vpca)}
    if "edge_density" not in before:  # a quick measure between runs
        return {"ceiling": ceiling}
    density = seconds_a_frame("edge_density", "frames_per_s_per_core")
    return {"ceiling": ceiling, "ceiling_with_density": {k: cores / (cores / v + density) for k, v in ceiling.items()}}


def _input_name(fmt: str) -> str:
    return "JPEG" if fmt == "davis" else "H.264"


def print_tables(results: dict, mid: int) -> None:
    ceiling, runs = results["ceiling"], results["pipeline"]
    before, after = results["alone_before"], results["alone_after"]

    def pair(key: str, field: str) -> str:
        return f"{before[key][field]:.0f} / {after[key][field]:.0f}"

    print(f"\n## Teacher ({results['machine']}, {results['date']})\n")
    print("| measure, before / after the pipeline runs | frames/s |\n| --- | --- |")
    print(f"| decode alone, JPEG + annotations (DAVIS reader, 1 process) | {pair('decode_jpeg', 'frames_per_s')} |")
    print(f"| decode alone, H.264 128 px (video_folder reader, 1 process) | {pair('decode_h264', 'reader_frames_per_s')} |")
    print(f"| VideoPCA alone, per core (128 px) | {pair('videopca', 'frames_per_s_per_core')} |")
    print(f"| VideoPCA alone, per core, with the actors' allocator setting | "
          f"{pair('videopca_kept_memory', 'frames_per_s_per_core')} |")
    print(f"| edge density alone, per core | {pair('edge_density', 'frames_per_s_per_core')} |")
    print(f"| decode + VideoPCA alone, JPEG, ms a frame (mean times) | {results['cores'] * 1e3 / ceiling['davis']:.3f} |")
    print(f"| ceiling, JPEG: cores / (decode + VideoPCA), mean times | {ceiling['davis']:.0f} |")
    print(f"| ceiling, H.264: cores / (decode + VideoPCA), mean times | {ceiling['video_folder']:.0f} |")
    dens = results["ceiling_with_density"]
    print(f"| ceiling with the edge density (strata > 1), JPEG / H.264 | {dens['davis']:.0f} / {dens['video_folder']:.0f} |")
    print("\n/ ceiling: against the ceiling above (start and end of the benchmark); / around: against the"
          " ceiling measured just before and just after the run; decode + VideoPCA share: the actors' seconds"
          " in those two steps over cores x seconds of the run (no measure alone in it: drift-free, and above"
          " the true ratio by the actors' own slow-down of those steps)\n")
    print("| pipeline run | frames | seconds | frames/s | / ceiling | / around | decode + VideoPCA share "
          "| store (MB) | peak PSS, MiB (samples) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        mem = f"{r['peak_pss_mib']:.0f} ({r['pss_samples']})" if "peak_pss_mib" in r else "-"
        name = _input_name(r["format"]) + ("" if r["format"] == "davis" else f" (image_codec {r.get('image_codec', 'source')})")
        steps = r["actor_step_seconds"]
        share = (steps["decode"] + steps["masks"]) / (min(r["actors"], results["cores"]) * r["seconds"])
        print(f"| {name}, {r['actors']} actor(s), corpus x{r['repeat']} | {r['frames']} | {r['seconds']:.1f} | "
              f"{r['frames_per_s']:.0f} | {r['frames_per_s'] / ceiling[r['format']]:.2f} | "
              f"{r['frames_per_s'] / r['ceiling_around']:.2f} | {share:.2f} | {r['store_mb']:.0f} | {mem} |")
    print("\nWhere the actors' time went (the teacher's own accounting, ms a frame; busy: the actors' chunk "
          "time over actors x seconds of the run, the rest is their start-up and waiting):\n")
    print("| pipeline run | decode | VideoPCA | edge density | store | other | busy |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        steps, n = r["actor_step_seconds"], max(r["frames"], 1)
        other = r["actor_seconds"] - sum(steps.values())
        print(f"| {_input_name(r['format'])}, {r['actors']} actor(s), x{r['repeat']} | "
              + " | ".join(f"{steps[k] / n * 1e3:.3f}" for k in ("decode", "masks", "density", "store"))
              + f" | {other / n * 1e3:.3f} | {r['actor_seconds'] / (r['actors'] * r['seconds']):.2f} |")
    print("\n| selection pass, top 20 % | frames | kept | seconds | frames/s | / the teacher's |")
    print("| --- | --- | --- | --- | --- | --- |")
    for run in (r for r in runs if "selection" in r):
        for s in run["selection"]:
            rate = s["frames"] / s["seconds"]
            print(f"| corpus x{run['repeat']}, {s['strata']} strat{'um' if s['strata'] == 1 else 'a'} | "
                  f"{s['frames']} | {s['kept']} | {s['seconds']:.1f} | {rate:.0f} | {rate / run['frames_per_s']:.0f}x |")
    jpeg = [r for r in runs if r["format"] == "davis"]
    print()
    for one in (r for r in jpeg if r["actors"] == 1):
        two = next(r for r in jpeg if r["actors"] == 2 and r["repeat"] == one["repeat"])
        print(f"2 actors / 1 actor at x{one['repeat']}: {two['frames_per_s'] / one['frames_per_s']:.2f}x "
              f"(each against the ceiling around it: "
              f"{two['frames_per_s'] / two['ceiling_around'] / (one['frames_per_s'] / one['ceiling_around']):.2f}x)")
    mems = {r["repeat"]: r["peak_pss_mib"] for r in jpeg if "peak_pss_mib" in r}
    if len(mems) > 1:
        lo, hi = min(mems), max(mems)
        print(f"peak PSS at x{hi} / at x{lo}: {mems[hi] / mems[lo]:.2f}")


if __name__ == "__main__":
    main()
