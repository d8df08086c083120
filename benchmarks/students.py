"""Student benchmarks on this CPU: size, training and inference speed, Ray Train overhead, and
inference per image against the VideoPCA teacher per frame.

    .venv/bin/python benchmarks/students.py                    # full-size models (~5 min)
    .venv/bin/python benchmarks/students.py --tiny --steps 20  # the test-sized variants
    .venv/bin/python benchmarks/students.py --archs unet,lowres --batch 4 --steps 3 --no-ray

Per architecture (randomly initialised; speed does not depend on the weights), at its own input
size with ``--threads`` torch threads: one training step = forward, MSE to a random target at
the output size, backward, Adam; inference = ``StudentNet.predict`` (eval mode, no autograd).
Each is run ``--warmup`` times untimed, then ``--steps`` timed times; images/s use the median
step. Full-size models take seconds per image on 2 cores, so the default is few steps of a
small batch: the figures are indicative, and noisy when other processes share the CPU.

Ray Train overhead: the same model / batch / steps trained by a one-worker ``TorchTrainer``
whose loop times its own steps and returns the times, and by the same loop in plain PyTorch in
this process (run before and after the Ray run; both pooled). Start-up (Ray, the worker group,
model creation, shutdown) and the warm-up steps are excluded and printed separately. The worker
then runs ``--report-steps`` more steps with a ``ray.train.report`` after each, timed the same
way: in Ray Train V2 a report waits until the controller has taken the previous one, and the
controller polls every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default), so steps shorter
than that which report every time are slowed to about one report per poll.

VideoPCA: ``popdistill.teacher.videopca.VideoPCA`` on one synthetic ``--vp-frames``-frame
window at ``--vp-size`` px (the teacher's default working size), best of ``--vp-repeats``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from popdistill.students import create_student, list_students, parameter_count

POPULATION = "lowres,unet,dilateunet,denseunet,fconv"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=POPULATION, help=f"comma-separated architectures ({POPULATION})")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", dest="tiny", action="store_false", help="full-size models (default)")
    size.add_argument("--tiny", dest="tiny", action="store_true", help="the *_tiny variants")
    p.set_defaults(tiny=False)
    p.add_argument("--steps", type=int, default=2, help="timed training and inference steps (2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (1)")
    p.add_argument("--batch", type=int, default=2, help="images per step (2)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--no-ray", dest="ray", action="store_false", help="skip the Ray Train comparison")
    p.add_argument("--ray-arch", default="unet_tiny", help="model of the Ray Train comparison (unet_tiny)")
    p.add_argument("--ray-batch", type=int, default=8, help="its batch (8)")
    p.add_argument("--ray-steps", type=int, default=30, help="its timed steps (30)")
    p.add_argument("--worker-omp", type=int, default=0,
                   help="OMP_NUM_THREADS of the Train worker process (default: Ray's, the worker's CPUs)")
    p.add_argument("--report-steps", type=int, default=5,
                   help="further Ray steps with a ray.train.report after each one (5)")
    p.add_argument("--vp-frames", type=int, default=64)
    p.add_argument("--vp-size", type=int, default=128)
    p.add_argument("--vp-repeats", type=int, default=3)
    return p.parse_args(argv)


# -- timing helpers (shared by the plain loop and the Ray Train worker) --------------------------


def synthetic_batch(model, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, model.input_size, model.input_size, generator=g)
    return images, torch.rand(batch, 1, model.output_size, model.output_size, generator=g)


def train_step_times(model, batch: int, steps: int, warmup: int, report=None, report_every: int = 1) -> list[float]:
    """Seconds per training step (MSE + Adam); ``report(step, loss)`` is called inside the timing."""
    images, target = synthetic_batch(model, batch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = F.mse_loss(model(images), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if report is not None and i >= warmup and (i - warmup + 1) % report_every == 0:
            report(i, value)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def inference_step_times(model, batch: int, steps: int, warmup: int) -> list[float]:
    images, _ = synthetic_batch(model, batch)
    images = (images * 255).to(torch.uint8)  # as frames arrive from a reader
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        model.predict(images)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


# -- Ray Train vs plain PyTorch --------------------------------------------------------------------


def _ray_train_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    model = ray.train.torch.prepare_model(create_student(config["arch"]))

    def report(step: int, loss: float) -> None:
        ray.train.report({"step": step, "loss": loss})

    t0 = time.perf_counter()
    quiet = train_step_times(model, config["batch"], config["steps"], config["warmup"])
    reporting = train_step_times(model, config["batch"], config["report_steps"], 0, report, 1)
    metrics = {"step_seconds": quiet, "report_step_seconds": reporting, "loop_seconds": time.perf_counter() - t0}
    # Train V2 returns the metrics attached to the last checkpoint: attach the timings to one.
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "timings.json").write_text(json.dumps(metrics))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def ray_train_overhead(args: argparse.Namespace) -> dict:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from popdistill.ray_env import init_ray

    def plain() -> list[float]:
        torch.manual_seed(0)
        return train_step_times(create_student(args.ray_arch), args.ray_batch, args.ray_steps, args.warmup)

    config = {"arch": args.ray_arch, "batch": args.ray_batch, "steps": args.ray_steps,
              "warmup": args.warmup, "threads": args.threads, "report_steps": args.report_steps}
    before = plain()
    t0 = time.perf_counter()
    init_ray(num_cpus=args.threads)
    ray_init_s = time.perf_counter() - t0
    time.sleep(2.0)  # let Ray's start-up work settle
    beside_ray = plain()  # same process as ``before``, with Ray's own processes running idle
    with tempfile.TemporaryDirectory() as storage:
        trainer = TorchTrainer(
            _ray_train_loop,
            train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=1, use_gpu=False, resources_per_worker={"CPU": args.threads}),
            run_config=RunConfig(name="students-benchmark-ray-overhead", storage_path=storage,
                                 worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(args.worker_omp)}}
                                 if args.worker_omp else None),
        )
        t0 = time.perf_counter()
        result = trainer.fit()
        fit_s = time.perf_counter() - t0
    after = plain()
    return {
        "plain": before + after,
        "plain_beside_ray": beside_ray,
        "ray": result.metrics["step_seconds"],
        "ray_report": result.metrics["report_step_seconds"],
        "ray_init_s": ray_init_s,
        "startup_s": fit_s - result.metrics["loop_seconds"],
    }


# -- VideoPCA ------------------------------------------------------------------------------------


def videopca_seconds_per_frame(frames: int, size: int, repeats: int) -> float:
    from popdistill.teacher.config import VideoPCAConfig
    from popdistill.teacher.videopca import VideoPCA

    spec = importlib.util.spec_from_file_location("bench_videopca", Path(__file__).with_name("videopca.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    window = module.synthetic_video(frames, size)
    teacher = VideoPCA(VideoPCAConfig(size=size, window=frames))
    teacher(window)  # warm-up: colour look-up table, blur matrices
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        teacher(window)
        best = min(best, time.perf_counter() - t0)
    return best / frames


# -- main ------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:,.1f}"


def _ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:,.0f}x"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [a.strip() for a in args.archs.split(",") if a.strip()]
    if args.tiny:
        names = [n if n.endswith("_tiny") else f"{n}_tiny" for n in names]
    unknown = sorted(set(names) - set(list_students()))
    if unknown:
        print(f"unknown architectures {unknown}; valid: {', '.join(list_students())}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    print(f"CPU, {args.threads} torch threads; batch {args.batch}, {args.warmup} warm-up + {args.steps} timed "
          f"steps each; median step", flush=True)

    vp = videopca_seconds_per_frame(args.vp_frames, args.vp_size, args.vp_repeats)
    print(f"VideoPCA ({args.vp_frames}-frame window, {args.vp_size} px): {_ms(vp)} ms/frame "
          f"({1 / vp:,.0f} frames/s)", flush=True)

    rows = []
    for name in names:
        torch.manual_seed(0)
        model = create_student(name)
        train = statistics.median(train_step_times(model, args.batch, args.steps, args.warmup))
        infer = statistics.median(inference_step_times(model, args.batch, args.steps, args.warmup)) / args.batch
        rows.append(f"| {name} | {parameter_count(model) / 1e6:.2f} | {model.input_size} -> {model.output_size} "
                    f"| {args.batch / train:.2f} | {1 / infer:.2f} | {_ms(infer)} | {_ratio(infer / vp)} |")
        print(f"  {name}: train {args.batch / train:.2f} img/s, inference {1 / infer:.2f} img/s", flush=True)
        del model

    print()
    print("| architecture | params (M) | input -> output px | train images/s | inference images/s "
          "| inference ms/image | inference / VideoPCA per frame |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))

    if args.ray:
        r = ray_train_overhead(args)
        interval = os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2 (default)")
        print()
        print(f"Ray Train (1 worker, {args.threads} CPUs) vs the same loop in plain PyTorch: {args.ray_arch}, "
              f"batch {args.ray_batch}, {args.ray_steps} timed steps after {args.warmup} warm-up. Start-up "
              f"excluded: Ray start {r['ray_init_s']:.1f} s, trainer start-up/shutdown + warm-up "
              f"{r['startup_s']:.1f} s. RAY_TRAIN_HEALTH_CHECK_INTERVAL_S = {interval}.")
        print()
        print("| loop | steps | median ms/step | mean ms/step | min ms/step | overhead (median / mean / min) |")
        print("|---|---|---|---|---|---|")
        base = r["plain"]
        for label, times in (("plain PyTorch (before + after the Ray run)", base),
                             ("plain PyTorch in the driver while Ray runs idle", r["plain_beside_ray"]),
                             ("TorchTrainer, no report inside the steps", r["ray"]),
                             ("TorchTrainer, ray.train.report after every step", r["ray_report"])):
            if not times:
                continue
            over = " / ".join(f"{100 * (f(times) / f(base) - 1):+.0f} %" for f in (statistics.median, statistics.fmean, min))
            print(f"| {label} | {len(times)} | {_ms(statistics.median(times))} | {_ms(statistics.fmean(times))} "
                  f"| {_ms(min(times))} | {'-' if times is base else over} |")
        print("(target <= 5 %; on a shared, busy CPU the min is the least noisy figure. The second row "
              "separates the cost of Ray's own processes sharing the cores from the cost of the TorchTrainer.)")
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
