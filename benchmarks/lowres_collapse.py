"""Why does full-size LowRes-Net collapse to an all-zero mask? A CPU surrogate experiment.

Full-size LowRes-Net (``create_student("lowres")``) trained with Adam lr 1e-3 and MSE to the
teacher's soft masks outputs 0 everywhere. Full-size training is far too slow on a CPU, so this
trains a *surrogate*: ``create_student("lowres", width=16)`` -- the same 128 px input, the same
``head_channels`` 64 and the identical 65,536 -> 1,024 fully connected head, only the
convolutions are narrower -- for ``--steps`` steps per variant, on frames of a teacher store
(the teacher's soft masks as labels; ground truth only for evaluation).

Augmentation, losses and sizes are the project's own (``resolve_sizes``, ``augment_pairs``,
``LOSSES``). Every ``--log-every`` steps it logs the training loss, the all-zero prediction's
loss on that batch (MSE for every variant, plus the variant's own loss), mean / min / max of
the output logits, the fraction of output pixels > 0.5 and the gradient norm of the FC layer.
At the end: J (IoU of mask > 0.5 vs ground truth, per frame, mean) on ``--heldout`` frames of
videos not used for training.

A variant name is ``LOSS_lrLR[_priorbias][_headlrLR][_wWIDTH]``:

- ``mse`` / ``bce``: the loss; ``lr1e-3``: Adam's learning rate;
- ``priorbias``: FC bias initialised to logit(mean foreground of the training labels); without
  it the FC layer gets PyTorch's default init (``head_prior=None``);
- ``headlr1e-4``: a separate Adam learning rate for the FC head (the rest uses ``lr``);
- ``w32``: conv width of the surrogate (default ``--width``).

    python benchmarks/lowres_collapse.py --variants mse_lr1e-3,bce_lr1e-3 --steps 300 \\
        --out /work/notes/lowres/collapse.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_VARIANTS = "mse_lr1e-3,mse_lr1e-4,bce_lr1e-3,mse_lr1e-3_priorbias,mse_lr1e-3_headlr1e-4"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default="runs/pq250/teacher_train/teacher/selected",
                   help="folder of frame-record Parquet files with teacher masks and gt_mask")
    p.add_argument("--frames", type=int, default=1200, help="training frames loaded (1200)")
    p.add_argument("--heldout", type=int, default=200,
                   help="held-back evaluation frames, from videos not used for training (200)")
    p.add_argument("--steps", type=int, default=300, help="training steps per variant (300)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (32, the thesis's)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list ({DEFAULT_VARIANTS})")
    p.add_argument("--width", type=int, default=16, help="surrogate conv width (16; the paper's 256)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0, help="seed of the train / held-back split (0)")
    p.add_argument("--train-seed", type=int, default=None,
                   help="seed of the model init, batch order and augmentation (default: --seed)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--out", default="", help="JSON file for the logs and results")
    return p.parse_args(argv)


def parse_variant(name: str, default_width: int) -> dict:
    parts = name.split("_")
    if parts[0] not in ("mse", "bce"):
        raise SystemExit(f"variant {name!r}: must start with mse or bce")
    v = {"name": name, "loss": parts[0], "lr": 1e-3, "head_lr": None, "prior_bias": False,
         "width": default_width}
    for tok in parts[1:]:
        if m := re.fullmatch(r"lr([0-9.e+-]+)", tok):
            v["lr"] = float(m.group(1))
        elif m := re.fullmatch(r"headlr([0-9.e+-]+)", tok):
            v["head_lr"] = float(m.group(1))
        elif tok == "priorbias":
            v["prior_bias"] = True
        elif m := re.fullmatch(r"w(\d+)", tok):
            v["width"] = int(m.group(1))
        else:
            raise SystemExit(f"variant {name!r}: unknown part {tok!r}")
    return v


# -- data ------------------------------------------------------------------------------------------


def load_store(store: Path, frames: int, heldout: int, seed: int) -> dict:
    """Training frames (image + teacher mask) and held-back frames (image + gt) of other videos."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from popdistill.data.schema import table_to_records

    files = sorted(store.rglob("*.parquet"))
    if not files:
        raise SystemExit(f"no Parquet files under {store}")
    records = table_to_records(pa.concat_tables(pq.read_table(f) for f in files))
    by_video: dict[str, list] = {}
    for r in records:
        by_video.setdefault(r.video, []).append(r)
    videos = sorted(by_video)
    rng = np.random.default_rng(seed)
    rng.shuffle(videos)
    held, train_videos = [], []
    for v in videos:  # whole videos to the held-back set until it has enough frames
        if len(held) < heldout:
            held.extend(by_video[v])
        else:
            train_videos.append(v)
    held = held[:heldout]
    pool = [r for v in train_videos for r in by_video[v]]
    pick = rng.permutation(len(pool))[:frames]
    train = [pool[i] for i in sorted(pick)]
    return {"train": train, "held": held, "records": len(records), "videos": len(videos),
            "train_videos": len(train_videos), "held_videos": len(videos) - len(train_videos)}


def to_tensors(train: list, resize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N x 3 x R x R float in [0, 1]) and teacher masks (N x 1 x R x R) at ``resize``."""
    from popdistill.train.data import stack_resized

    imgs, masks = [], []
    for s in range(0, len(train), 100):  # chunks keep the float copies small
        chunk = train[s : s + 100]
        imgs.append(stack_resized([torch.from_numpy(r.image.copy()).permute(2, 0, 1) for r in chunk], resize))
        masks.append(stack_resized([torch.from_numpy(r.mask)[None] for r in chunk], resize).clamp_(0, 1))
    return torch.cat(imgs), torch.cat(masks)


# -- one variant -----------------------------------------------------------------------------------


def fc_layer(model: torch.nn.Module) -> torch.nn.Linear:
    return next(m for m in model.head.modules() if isinstance(m, torch.nn.Linear))


def run_variant(v: dict, images: torch.Tensor, masks: torch.Tensor, prior: float,
                held: list, a: argparse.Namespace) -> dict:
    from popdistill.evaluate.metrics import jaccard, resize_mask
    from popdistill.students import create_student
    from popdistill.train.config import AugmentConfig, resolve_sizes
    from popdistill.train.data import augment_pairs
    from popdistill.train.loop import create_loss

    seed = a.seed if a.train_seed is None else a.train_seed
    torch.manual_seed(seed)
    # head_prior=None: PyTorch's default FC init (the failing default before the prior-bias fix);
    # "priorbias" sets the bias from this store's labels below
    model = create_student("lowres", width=v["width"], head_prior=None)
    fc = fc_layer(model)
    if v["prior_bias"]:
        with torch.no_grad():
            fc.bias.fill_(math.log(prior / (1.0 - prior)))
    head_ids = {id(p) for p in model.head.parameters()}
    if v["head_lr"] is None:
        groups = [{"params": list(model.parameters()), "lr": v["lr"]}]
    else:
        groups = [{"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": v["lr"]},
                  {"params": list(model.head.parameters()), "lr": v["head_lr"]}]
    opt = torch.optim.Adam(groups)
    sizes = resolve_sizes(AugmentConfig(), model.input_size, model.output_size)
    loss_fn, mse = create_loss(v["loss"]), create_loss("mse")
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(images), a.batch_size
    log, order, pos = [], torch.randperm(n, generator=gen), 0
    t0 = time.perf_counter()
    model.train()
    print(f"== {v['name']}: width {v['width']}, loss {v['loss']}, lr {v['lr']}, head lr "
          f"{v['head_lr'] or v['lr']}, FC bias init {fc.bias.mean().item():+.3f}", flush=True)
    for step in range(1, a.steps + 1):
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + bs]
        pos += bs
        x, y = augment_pairs(images[idx], masks[idx], sizes, gen)
        logits = model.logits(x)
        pred = torch.sigmoid(logits)
        loss = loss_fn(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 1 or step % a.log_every == 0 or step == a.steps:
            with torch.no_grad():
                zeros = torch.zeros_like(y)
                g = torch.sqrt(sum(p.grad.pow(2).sum() for p in fc.parameters())).item()
                row = {"step": step, "loss": loss.item(), "zero_loss": loss_fn(zeros, y).item(),
                       "mse": mse(pred, y).item(), "zero_mse": mse(zeros, y).item(),
                       "logit_mean": logits.mean().item(), "logit_min": logits.min().item(),
                       "logit_max": logits.max().item(), "frac_gt_05": (pred > 0.5).float().mean().item(),
                       "label_frac_gt_05": (y > 0.5).float().mean().item(),
                       "fc_grad_norm": g, "seconds": time.perf_counter() - t0}
            log.append(row)
            print(f"  step {step:4d}  loss {row['loss']:.4f} (zero {row['zero_loss']:.4f})  "
                  f"mse {row['mse']:.4f} (zero {row['zero_mse']:.4f})  logits {row['logit_mean']:+8.2f} "
                  f"[{row['logit_min']:+8.2f}, {row['logit_max']:+8.2f}]  >0.5 {row['frac_gt_05']:.3f} "
                  f"(labels {row['label_frac_gt_05']:.3f})  |g_fc| {g:.2e}  {row['seconds']:.0f} s",
                  flush=True)
        opt.step()
    train_s = time.perf_counter() - t0

    # held-back evaluation: whole frames resized to the input, prediction resized to the gt
    model.eval()
    js, fg, eval_logits = [], [], []
    with torch.no_grad():
        for s in range(0, len(held), 50):
            chunk = held[s : s + 50]
            x = torch.from_numpy(np.stack([r.image for r in chunk])).permute(0, 3, 1, 2)
            from popdistill.students.base import resize_images, to_float_images
            lg = model.logits(resize_images(to_float_images(x), model.input_size))
            eval_logits.append(lg)
            for r, m in zip(chunk, torch.sigmoid(lg)[:, 0].numpy()):
                soft = resize_mask(m, r.gt_mask.shape)
                js.append(jaccard(soft > 0.5, r.gt_mask))
                fg.append(float((m > 0.5).mean()))
    lg = torch.cat(eval_logits)
    final = log[-1]
    tail = log[-3:]  # mean of the last three logged batches: less noisy than one batch
    result = {**v, "train_seconds": train_s, "steps": a.steps, "log": log,
              "final_loss": final["loss"], "final_zero_loss": final["zero_loss"],
              "tail_mse": float(np.mean([r["mse"] for r in tail])),
              "tail_zero_mse": float(np.mean([r["zero_mse"] for r in tail])),
              "heldout_J": float(np.mean(js)), "heldout_frac_gt_05": float(np.mean(fg)),
              "heldout_logit_mean": lg.mean().item(), "heldout_logit_min": lg.min().item(),
              "heldout_logit_max": lg.max().item()}
    print(f"  -> {train_s:.0f} s; tail MSE {result['tail_mse']:.4f} vs all-zero {result['tail_zero_mse']:.4f}; "
          f"held-out J {result['heldout_J']:.3f}, >0.5 {result['heldout_frac_gt_05']:.3f}, logits "
          f"{result['heldout_logit_mean']:+.2f} [{result['heldout_logit_min']:+.2f}, "
          f"{result['heldout_logit_max']:+.2f}]", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    from popdistill.evaluate.metrics import jaccard, resize_mask
    from popdistill.train.config import AugmentConfig, resolve_sizes

    variants = [parse_variant(s.strip(), a.width) for s in a.variants.split(",") if s.strip()]
    t_start = time.perf_counter()
    data = load_store(Path(a.store), a.frames, a.heldout, a.seed)
    sizes = resolve_sizes(AugmentConfig(), 128, 32)
    images, masks = to_tensors(data["train"], sizes.resize)
    # foreground prior: mean of the training labels at the label size (what the loss sees)
    from popdistill.students.base import resize_to
    prior = float(resize_to(masks, sizes.label).mean())
    held = data["held"]
    label_j = float(np.mean([jaccard(resize_mask(r.mask, r.gt_mask.shape) > 0.5, r.gt_mask) for r in held]))
    zero_j = float(np.mean([jaccard(np.zeros_like(r.gt_mask), r.gt_mask) for r in held]))
    print(f"{data['records']} records of {data['videos']} videos; training {len(images)} frames of "
          f"{data['train_videos']} videos, held-back {len(held)} frames of {data['held_videos']} videos; "
          f"sizes {sizes}; label foreground mean {prior:.4f} (logit {math.log(prior / (1 - prior)):+.3f}); "
          f"held-back J of the teacher's masks {label_j:.3f}, of an empty mask {zero_j:.3f}; "
          f"loaded in {time.perf_counter() - t_start:.0f} s", flush=True)
    results = []
    report = {"args": vars(a), "cpu": platform.processor() or platform.machine(),
              "torch": torch.__version__, "prior": prior, "teacher_heldout_J": label_j,
              "empty_heldout_J": zero_j, "data": {k: v for k, v in data.items() if k not in ("train", "held")},
              "results": results}
    for v in variants:
        results.append(run_variant(v, images, masks, prior, held, a))
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps({**report, "partial": True}, indent=2))
    print("\n| variant | width | steps | final loss (all-zero) | tail MSE (all-zero) | train >0.5 | "
          "held-out >0.5 | held-out logits mean [min, max] | held-out J | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        f = r["log"][-1]
        print(f"| {r['name']} | {r['width']} | {r['steps']} | {r['final_loss']:.4f} ({r['final_zero_loss']:.4f}) | "
              f"{r['tail_mse']:.4f} ({r['tail_zero_mse']:.4f}) | {f['frac_gt_05']:.3f} | "
              f"{r['heldout_frac_gt_05']:.3f} | {r['heldout_logit_mean']:+.1f} [{r['heldout_logit_min']:+.1f}, "
              f"{r['heldout_logit_max']:+.1f}] | {r['heldout_J']:.3f} | {r['train_seconds']:.0f} |")
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s")
    report["seconds"] = total
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
