"""Student population quality at GPU scale: do full-size students beat their VideoPCA teacher?

The experiment of ``population_quality.py`` (issue 4's claim) with more data and full-size
models, for one GPU node that has PyTorch but no Ray: everything in one process plus a pool of
CPU processes, through the project's own pure functions.

1. Training world (``--videos``, seed ``--train-seed``) and held-out world (``--heldout-videos``,
   seed ``--heldout-seed``) rendered in parallel processes (``render_video``), each frame through
   the same JPEG round trip as ``popdistill world`` writes it; VideoPCA (default config) runs in
   the same processes on each whole video. No ground truth reaches training.
2. Selection: the top ``--select-top`` training frames by the teacher's score (mean of non-zero
   mask values), with the exact top-fraction threshold of ``popdistill.teacher.selection``.
3. Each student trained from scratch on the GPU for ``--seconds`` (or ``--epochs``): the project's
   joint augmentation (``augment_pairs``, the thesis's resize / crop / flip sizes), its losses
   and Adam; images kept on the GPU; bf16 autocast on CUDA.
4. Held-out P / J / CorLoc of the teacher, the centre prior, each student and the Multi-Net
   product (``Evaluator``), printed as a table and written to ``OUT/population_gpu.json``.
5. With ``--generations 2``: every generation-1 student predicts every training frame; each
   frame keeps its best mask by the pipeline's ``agreement`` score (cosine to the students'
   Multi-Net product, ``popdistill.pipeline.rescore.agreement_scores``), the top
   ``--select-top`` frames by that score train a fresh population, evaluated the same way.

    python benchmarks/population_gpu.py --out runs/population_gpu
    python benchmarks/population_gpu.py --videos 400 --heldout-videos 40 --seconds 60 \\
        --students fconv,unet,denseunet,dilateunet --generations 2
    python benchmarks/population_gpu.py --videos 8 --heldout-videos 4 --students unet_tiny \\
        --seconds 5 --device cpu     # a smoke run on a CPU
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

FULL = "lowres,fconv,unet,denseunet,dilateunet"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/population_gpu", help="folder for population_gpu.json")
    p.add_argument("--preset", default="medium")
    p.add_argument("--videos", type=int, default=400, help="training-world videos (400)")
    p.add_argument("--heldout-videos", type=int, default=40, help="held-out world videos (40)")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--heldout-seed", type=int, default=1)
    p.add_argument("--select-top", type=float, default=0.2)
    p.add_argument("--students", default=FULL, help=f"comma-separated names ({FULL})")
    p.add_argument("--input-size", type=int, default=128,
                   help="input side of the full-resolution students (128: the frames' own size)")
    p.add_argument("--models", default="{}", help="JSON: student -> create_student keywords")
    p.add_argument("--seconds", type=float, default=50.0, help="training time per student (50)")
    p.add_argument("--epochs", type=int, default=0, help="train this many epochs instead (0: --seconds)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per step (0: the thesis's, 32 for LowRes-Net, 16 for the others)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=["mse", "bce"], default="mse")
    p.add_argument("--generations", type=int, choices=[1, 2], default=1,
                   help="2: a second population trained on the first one's best masks (agreement)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


# -- data: worlds and the teacher, in worker processes --------------------------------------------


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def video_with_teacher(job: tuple) -> dict:
    """One rendered video (JPEG round trip), its ground truth and VideoPCA's masks and scores."""
    preset, videos, seed, index = job
    torch.set_num_threads(1)
    from popdistill.data.world import make_config, render_video
    from popdistill.teacher.selection import scores_for_batch
    from popdistill.teacher.videopca import VideoPCA

    cfg = make_config(preset, videos=videos, seed=seed)
    v = render_video(cfg, index)
    frames = np.stack([_jpeg(f, cfg.jpeg_quality) for f in v.frames])
    masks = VideoPCA()(frames)
    return {"video": f"world_{index:04d}", "frames": frames, "labels": v.labels,
            "masks": masks.astype(np.float32), "scores": scores_for_batch(masks)}


def make_split(preset: str, videos: int, seed: int, workers: int) -> list[dict]:
    jobs = [(preset, videos, seed, i) for i in range(videos)]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(video_with_teacher, jobs, chunksize=2))


# -- training on the device ------------------------------------------------------------------------


def train_student(name: str, kwargs: dict, images: torch.Tensor, masks: torch.Tensor,
                  a: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """``images`` (N x 3 x H x W uint8) and ``masks`` (N x 1 x H x W float) on ``device``."""
    from popdistill.students import create_student
    from popdistill.students.base import resize_images
    from popdistill.train.config import AugmentConfig, resolve_batch_size, resolve_sizes
    from popdistill.train.data import augment_pairs
    from popdistill.train.loop import LOSSES

    torch.manual_seed(0)
    model = create_student(name, **kwargs).to(device)
    sizes = resolve_sizes(AugmentConfig(), model.input_size, model.output_size)
    opt = torch.optim.Adam(model.param_groups(a.lr))
    loss_fn, gen = LOSSES[a.loss], torch.Generator().manual_seed(0)
    bs = resolve_batch_size(a.batch_size or None, model.input_size, model.output_size)
    n, cuda = len(images), device.type == "cuda"
    t0, epoch, steps, losses = time.perf_counter(), 0, 0, []
    model.train()
    while (a.epochs and epoch < a.epochs) or (not a.epochs and time.perf_counter() - t0 < a.seconds):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n - bs + 1, bs):
            idx = order[s : s + bs].to(device)
            x = resize_images(images[idx].float().div_(255.0), sizes.resize)
            y = resize_images(masks[idx], sizes.resize).clamp_(0.0, 1.0)
            x, y = augment_pairs(x, y, sizes, gen)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                pred = model(x)
            loss = loss_fn(pred.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * bs
            steps += 1
            if not a.epochs and time.perf_counter() - t0 >= a.seconds:
                break
        epoch += 1
        losses.append(total / n)
    seconds = time.perf_counter() - t0
    print(f"  {name}: {epoch} epochs, {steps} steps in {seconds:.0f} s, last loss {losses[-1]:.4f}",
          flush=True)
    return model.eval(), {"epochs": epoch, "steps": steps, "batch_size": bs, "seconds": seconds, "losses": losses,
                          "input_size": model.input_size, "output_size": model.output_size}


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    out = []
    for s in range(0, len(images), batch):
        out.append(model.predict(images[s : s + batch]).float().cpu().numpy()[:, 0])
    return np.concatenate(out)


def evaluate(videos: list[str], masks, labels) -> dict:
    """P, J, CorLoc over frames; ``labels``: per-frame object-id images (0 = background)."""
    from popdistill.evaluate.boxes import boxes_from_labels
    from popdistill.evaluate.metrics import Evaluator

    ev = Evaluator()
    for v, m, lab in zip(videos, masks, labels):
        ev.add(v, m, lab > 0, boxes_from_labels(lab))
    o = ev.overall()
    return {k: o[k] for k in ("P", "J", "CorLoc", "frames")}


def train_population(names, overrides, images, targets, h_images, h_videos, h_gt, a, device,
                     rows: dict, label_j: float, all_images) -> tuple[dict, dict]:
    """Train ``names`` one after another on (images, targets); their held-out rows (and the
    Multi-Net's) go into ``rows``; returns (training info, masks of ``all_images`` per student
    as float16 arrays, when given)."""
    from popdistill.students.multinet import multinet_product

    trained, student_masks, train_masks = {}, {}, {}
    for name in names:
        kw = dict(overrides.get(name, {}))
        if not name.startswith("lowres") and not name.endswith("_tiny"):
            kw.setdefault("input_size", a.input_size)
        model, info = train_student(name, kw, images, targets, a, device)
        student_masks[name] = predict(model, h_images)
        rows[name] = evaluate(h_videos, student_masks[name], h_gt)
        trained[name] = {**info, "model": kw}
        print(f"    held-out J {rows[name]['J']:.3f}", flush=True)
        if all_images is not None:
            train_masks[name] = np.concatenate([
                predict(model, all_images[s : s + 4096].to(device)).astype(np.float16)
                for s in range(0, len(all_images), 4096)])
        del model
        _write(a, {"partial": True, "table": rows, "students": trained, "label_j": label_j})
    if len(names) > 1:
        prod = [multinet_product([torch.from_numpy(student_masks[n][i])[None, None] for n in names],
                                 h_gt[i].shape)[0, 0].numpy() for i in range(len(h_gt))]
        rows["Multi-Net (product)"] = evaluate(h_videos, prod, h_gt)
        rows["Multi-Net (product >= 0.5^n)"] = evaluate(h_videos, [p ** (1 / len(names)) for p in prod], h_gt)
    return trained, train_masks


def _write(a: argparse.Namespace, report: dict) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "population_gpu.json").write_text(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    device = torch.device(a.device)
    names = [s.strip() for s in a.students.split(",") if s.strip()]
    overrides = json.loads(a.models)
    t_start = time.perf_counter()
    train = make_split(a.preset, a.videos, a.train_seed, a.workers)
    held = make_split(a.preset, a.heldout_videos, a.heldout_seed, a.workers)
    t_data = time.perf_counter() - t_start
    from popdistill.teacher.selection import top_fraction_threshold

    scores = np.concatenate([v["scores"] for v in train])
    thr = top_fraction_threshold(scores, a.select_top)
    keep = scores >= thr
    frames = np.concatenate([v["frames"] for v in train])[keep]
    labels = np.concatenate([v["masks"] for v in train])[keep]
    kept_videos = len({v["video"] for v in train for s in v["scores"] if s >= thr})
    print(f"data + teacher: {t_data:.0f} s; selected {keep.sum()} of {keep.size} training frames "
          f"from {kept_videos} of {len(train)} videos (threshold {thr:.3f})", flush=True)

    images = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous().to(device)
    targets = torch.from_numpy(labels)[:, None].to(device)
    h_videos = [v["video"] for v in held for _ in range(len(v["frames"]))]
    h_images = torch.from_numpy(np.concatenate([v["frames"] for v in held])).permute(0, 3, 1, 2).to(device)
    h_gt = np.concatenate([v["labels"] for v in held])
    h_teacher = np.concatenate([v["masks"] for v in held])
    t_gt = np.concatenate([v["labels"] for v in train])[keep]
    from popdistill.evaluate.baselines import centre_prior

    rows = {"teacher (VideoPCA, held-out)": evaluate(h_videos, h_teacher, h_gt),
            "centre prior": evaluate(h_videos, [centre_prior(*g.shape) for g in h_gt], h_gt)}
    label_j = evaluate(["train"] * len(labels), labels, t_gt)["J"]
    all_images = None
    if a.generations > 1:
        all_images = torch.from_numpy(np.concatenate([v["frames"] for v in train])).permute(0, 3, 1, 2)
    trained, train_masks = train_population(names, overrides, images, targets, h_images, h_videos,
                                            h_gt, a, device, rows, label_j, all_images)
    if a.generations > 1:
        from popdistill.pipeline.rescore import agreement_scores
        from popdistill.students.base import resize_to
        from popdistill.teacher.selection import top_fraction_threshold as top_thr

        n_all = len(all_images)
        best, best_score = np.zeros(n_all, int), np.zeros(n_all)
        for s in range(0, n_all, 1024):
            sc = agreement_scores([torch.from_numpy(train_masks[n][s : s + 1024]).float()[:, None]
                                   for n in names]).numpy()
            best[s : s + 1024], best_score[s : s + 1024] = sc.argmax(1), sc.max(1)
        thr2 = top_thr(best_score, a.select_top)
        keep2 = np.flatnonzero(best_score >= thr2)
        size = tuple(all_images.shape[-2:])
        labels2 = np.stack([resize_to(torch.from_numpy(train_masks[names[best[i]]][i]).float()[None, None],
                                      size)[0, 0].numpy() for i in keep2])
        all_gt = np.concatenate([v["labels"] for v in train])
        label_j2 = evaluate(["train"] * len(keep2), labels2, all_gt[keep2])["J"]
        print(f"generation 2: selected {len(keep2)} of {n_all} frames by agreement, label J "
              f"{label_j2:.3f} (generation 1's: {label_j:.3f}); best masks from "
              f"{ {n: int((best[keep2] == k).sum()) for k, n in enumerate(names)} }", flush=True)
        del train_masks
        rows2: dict = {}
        trained2, _ = train_population(
            names, overrides, all_images[keep2].contiguous().to(device),
            torch.from_numpy(labels2)[:, None].to(device), h_images, h_videos, h_gt, a, device,
            rows2, label_j2, None)
        rows.update({f"{k} (gen 2)": v for k, v in rows2.items()})
        trained.update({f"{k} (gen 2)": v for k, v in trained2.items()})
        trained["generation 2 selection"] = {"frames": int(len(keep2)), "label_j": label_j2,
                                             "threshold": float(thr2), "epochs": "", "seconds": 0.0}

    teacher_j = rows["teacher (VideoPCA, held-out)"]["J"]
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"\n{a.preset}: training {keep.sum()} selected frames (label J {label_j:.3f}) of {a.videos} "
          f"videos; held-out {len(h_gt)} frames of {a.heldout_videos} videos; device {dev}")
    print("| method | P | J | CorLoc | epochs | train s | beats teacher J |\n|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        t = trained.get(name)
        beat = ("yes" if m["J"] > teacher_j else "NO") if name in trained or "Multi" in name else ""
        print(f"| {name} | {m['P']:.3f} | {m['J']:.3f} | {m['CorLoc']:.3f} | "
              f"{t['epochs'] if t else ''} | {t['seconds']:.0f} | {beat} |" if t else
              f"| {name} | {m['P']:.3f} | {m['J']:.3f} | {m['CorLoc']:.3f} |  |  | {beat} |")
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s (data + teacher {t_data:.0f} s)")
    _write(a, {
        "args": vars(a), "device": dev, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "selected": int(keep.sum()), "selected_videos": kept_videos, "threshold": thr,
        "label_j": label_j, "table": rows, "students": trained, "seconds": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
