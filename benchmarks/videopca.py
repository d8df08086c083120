"""VideoPCA throughput per core, with the time per step.

    .venv/bin/python benchmarks/videopca.py --size 128 --frames 512 --threads 1

A synthetic video (a panning textured background with a moving disc, or ``--source world``
for the procedural world of ``popdistill.data.world``) is made at ``--input-size`` (default:
the working size, so resizing is a no-op) and run through ``videopca_video`` ``--repeats``
times after one warm-up run (which also builds the colour look-up table). The best and
median runs are reported, and frames per CPU-second of this process (less sensitive to other
processes taking the core away, not to them sharing caches); the per-step breakdown (wall
time) is from the best run. Other processes make the figures noisy: compare runs side by side.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import numpy as np
import torch
from scipy import ndimage

from popdistill.teacher.config import VideoPCAConfig
from popdistill.teacher.videopca import videopca_video


def synthetic_video(frames: int, size: int, seed: int = 0) -> np.ndarray:
    """Panning smooth colour texture with a moving, textured disc; (T, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    canvas = ndimage.gaussian_filter(rng.random((size, 2 * size, 3)), (size / 40, size / 40, 0))
    canvas = (canvas - canvas.min()) / np.ptp(canvas)
    canvas = 30 + 180 * canvas
    t = np.arange(frames)
    pan = (np.sin(2 * np.pi * t / 200) + 1) * size / 2  # columns, smooth back and forth
    cols = (np.arange(size)[None, :] + pan[:, None]).astype(int) % (2 * size)
    video = canvas[:, cols].transpose(1, 0, 2, 3)  # T x H x W x 3
    cy = size / 2 + size / 5 * np.sin(2 * np.pi * t / 90)
    cx = size / 2 + size / 4 * np.cos(2 * np.pi * t / 130)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 < (
        size / 8
    ) ** 2
    shade = 200 + 40 * rng.random((frames, size, size))
    video[disc] = np.stack([shade[disc], 0.3 * shade[disc], 0.2 * shade[disc]], -1)
    return np.ascontiguousarray(np.clip(video, 0, 255).astype(np.uint8))


def world_video(frames: int, size: int, seed: int = 0) -> np.ndarray:
    from popdistill.data.world import make_config, render_video

    return render_video(make_config("medium", frames=frames, size=size, seed=seed), 0).frames


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=128, help="VideoPCA working size (px)")
    p.add_argument("--input-size", type=int, help="frame size before resizing (default: --size)")
    p.add_argument("--frames", type=int, default=512, help="video length")
    p.add_argument("--window", type=int, default=64, help="frames per window")
    p.add_argument("--stride", type=int, default=0, help="window stride (0: no overlap)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: per-core figure)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--source", choices=["synthetic", "world"], default="synthetic")
    p.add_argument("--no-lut", action="store_true", help="colour bins by arithmetic, not the table")
    p.add_argument("--profile", action="store_true", help="also print the top cProfile entries")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    size_in = args.input_size or args.size
    make = world_video if args.source == "world" else synthetic_video
    frames = make(args.frames, size_in)
    cfg = VideoPCAConfig(
        size=args.size, window=args.window, stride=args.stride, colour_lut=not args.no_lut
    )
    videopca_video(frames, cfg)  # warm-up: look-up table, blur matrices, allocator

    runs = []
    for _ in range(args.repeats):
        timings: dict[str, float] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        videopca_video(frames, cfg, timings)
        runs.append((time.perf_counter() - t0, timings, time.process_time() - c0))
    best, timings, cpu = min(runs, key=lambda r: r[0])
    median = statistics.median(r[0] for r in runs)
    best_cpu = min(r[2] for r in runs)
    n = len(frames)
    print(
        f"VideoPCA {args.source} video: {n} frames {size_in}px -> {args.size}px, window {args.window}, "
        f"torch threads {args.threads}"
    )
    print(f"frames/s (wall): best {n / best:,.0f}, median {n / median:,.0f} ({args.repeats} runs)")
    print(f"frames/s per CPU-second of this process: best {n / best_cpu:,.0f}")
    timings["other"] = best - sum(timings.values())
    print(f"{'step':14s} {'us/frame':>9s} {'share':>6s}")
    for name, sec in timings.items():
        print(f"{name:14s} {sec / n * 1e6:9.1f} {sec / best:6.1%}")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(videopca_video, frames, cfg)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
