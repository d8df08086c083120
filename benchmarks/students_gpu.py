"""Student inference throughput on a CUDA GPU: bf16 autocast, channels_last.

    .venv/bin/python benchmarks/students_gpu.py
    .venv/bin/python benchmarks/students_gpu.py --archs unet,lowres --batch 128 --iters 50

For each architecture (full size by default, randomly initialised: speed does not depend on
the weights) a batch of ``--batch`` images at the architecture's input size is run
``--warmup`` times, then ``--iters`` timed times between ``torch.cuda.synchronize()`` calls;
images/s, ms per batch and the peak GPU memory are printed as a markdown table. ``--fp32``
adds an fp32 (no autocast) column for comparison; ``--train`` adds training images/s (forward,
MSE to a random soft mask, backward, Adam step; bf16 autocast, batch ``--train-batch``).
Without a CUDA device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

DEFAULT_ARCHS = "lowres,unet,dilateunet,denseunet,fconv,timm_unet_resnet18"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=DEFAULT_ARCHS, help=f"comma-separated student names ({DEFAULT_ARCHS})")
    p.add_argument("--batch", type=int, default=64, help="images per batch (64)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (5; cuDNN autotuning)")
    p.add_argument("--iters", type=int, default=20, help="timed batches (20)")
    p.add_argument("--fp32", action="store_true", help="also time fp32 without autocast")
    p.add_argument("--train", action="store_true", help="also time training steps (bf16 autocast, Adam)")
    p.add_argument("--train-batch", type=int, default=16, help="images per training step (16, the thesis's)")
    return p.parse_args(argv)


def images_per_second(model: torch.nn.Module, batch: torch.Tensor, warmup: int, iters: int, bf16: bool) -> float:
    """Inference throughput of ``model`` on ``batch`` (already on the GPU)."""
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(warmup):
            model(batch)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            model(batch)
        torch.cuda.synchronize()
    return iters * len(batch) / (time.perf_counter() - t0)


def train_images_per_second(model: torch.nn.Module, batch_size: int, warmup: int, iters: int) -> float:
    """Training throughput: forward, MSE to a soft target, backward, Adam step (bf16 autocast)."""
    device = next(model.parameters()).device
    s, o = model.input_size, model.output_size
    x = torch.rand(batch_size, 3, s, s, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch_size, 1, o, o, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    model.eval()
    return iters * batch_size / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("students_gpu: no CUDA device on this machine; nothing to measure (run it on a GPU node).")
        return 0
    from popdistill.students import create_student, parameter_count

    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(device)}; batch {args.batch}, warm-up {args.warmup}, "
          f"timed {args.iters} batches; bf16 autocast + channels_last")
    header = "| architecture | params (M) | input | output | bf16 images/s | ms / batch | peak GiB |"
    if args.fp32:
        header += " fp32 images/s |"
    if args.train:
        header += f" train images/s (batch {args.train_batch}) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in [a.strip() for a in args.archs.split(",") if a.strip()]:
        model = create_student(name).to(device, memory_format=torch.channels_last).eval()
        s = model.input_size
        batch = torch.rand(args.batch, 3, s, s, device=device).contiguous(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(device)
        rate = images_per_second(model, batch, args.warmup, args.iters, bf16=True)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        row = (f"| {name} | {parameter_count(model) / 1e6:.1f} | {s} | {model.output_size} | {rate:,.0f} "
               f"| {1000 * args.batch / rate:.1f} | {peak:.2f} |")
        if args.fp32:
            row += f" {images_per_second(model, batch, args.warmup, args.iters, bf16=False):,.0f} |"
        if args.train:
            row += f" {train_images_per_second(model, args.train_batch, args.warmup, args.iters):,.0f} |"
        print(row, flush=True)
        del model, batch
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
