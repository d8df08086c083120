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
5. With ``--generations K`` (K >= 2): every student of generation k - 1 predicts every training
   frame; each frame keeps its best mask by the pipeline's ``agreement`` score (cosine to the
   students' Multi-Net product, ``popdistill.pipeline.rescore.agreement_scores``; with
   ``--ensemble geomean`` to its n-th root), the top ``--gen2-top`` (default ``--select-top``)
   frames by that score train a fresh population k (for ``--gen2-epochs``, default
   ``--epochs``), evaluated the same way (empty masks are never chosen, as in the pipeline),
   for k = 2 .. K.

Each finished student is cached under ``OUT/gen-K/<student>/`` (held-out masks, masks of every
training frame when a later generation needs them, its weights ``model.pt``, ``info.json``); a
rerun with the same arguments reuses it, so a run stopped by a time limit (the device's
per-command limit) continues where it stopped (``--fresh`` retrains); a larger ``--gen2-videos``
pool, or a generation that was the last and now teaches another, is predicted with the saved
weights instead of training again. ``--parallel N`` trains N students at once, each in its own process on
the same device (small models leave an H100 mostly idle one at a time; a process whose run's
main process is gone exits); on a CPU the cores are
divided among the students still training, re-divided at each epoch (``--threads K`` fixes each
student's threads instead, so a rerun gives the same numbers). ``--eval-epochs 4,8``
also scores each student on the held-out frames after those epochs: a learning curve from one
run (rows ``<student> @ 4 epochs``; the same student a 4-epoch run ends with, with a constant
learning rate; ``--lr-schedule cosine`` anneals the rate towards zero over ``--epochs``).
``--ema 0.995`` keeps an exponential moving average of each student's weights
(``popdistill.train.ema``) and makes it the student (its rows, the next generation's masks);
rows ``<student> (raw weights)`` score the last step's weights of the same run beside it.

    python benchmarks/population_gpu.py --out runs/population_gpu
    python benchmarks/population_gpu.py --videos 400 --heldout-videos 40 --seconds 60 \\
        --students fconv,unet,denseunet,dilateunet --generations 2
    timeout 540 python benchmarks/population_gpu.py --generations 2 --epochs 20 --parallel 5
        # and the same command again if it was cut off: finished students are reused
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _epoch_list(text: str) -> tuple[int, ...]:
    return tuple(sorted({_positive(t) for t in text.split(",") if t.strip()}))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from popdistill.pipeline.rescore import LABELS
    from popdistill.students.multinet import ENSEMBLES
    from popdistill.train.config import LR_SCHEDULES
    from popdistill.train.ema import validate_decay

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
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help="constant (the papers) or cosine: annealed towards zero over --epochs, "
                        "one rate per epoch (popdistill.train.loop.lr_factor; needs --epochs)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="decay of an exponential moving average of each student's weights, used as "
                        "the student (0: off; e.g. 0.995, about the last 200 steps)")
    p.add_argument("--seed", type=int, default=0, help="students' initialisation and batch order")
    p.add_argument("--loss", choices=["mse", "bce"], default="mse")
    p.add_argument("--generations", type=_positive, default=1,
                   help="populations in turn; each after the first is trained on the previous "
                        "one's best masks (agreement) (1)")
    p.add_argument("--gen2-top", type=float, default=None,
                   help="fraction of training frames generations >= 2 keep (default: --select-top)")
    p.add_argument("--gen2-videos", type=int, default=None,
                   help="unlabeled videos generations >= 2 select from: the training world's first N "
                        "(N >= --videos; generation 1's students predict the videos the teacher's "
                        "selection never saw too; default: --videos)")
    p.add_argument("--gen2-epochs", type=int, default=None,
                   help="epochs of generations >= 2 (default: --epochs)")
    p.add_argument("--ensemble", choices=list(ENSEMBLES), default="product",
                   help="agreement of generations >= 2: cosine of each mask to the students' Multi-Net "
                        "product (the thesis) or to its n-th root, the geometric mean")
    p.add_argument("--gen2-labels", choices=LABELS, default="best",
                   help="labels of generations >= 2 on the selected frames: 'best', the best "
                        "student's soft mask by agreement (the thesis); 'multinet', the students' "
                        "ensemble mask (--ensemble); 'multinet-binary', the ensemble binarised "
                        "(geometric mean >= 0.5, i.e. product >= 0.5^n), a mask without the "
                        "students' faint halo; 'multinet-product', the students' plain product "
                        "whatever --ensemble is (soft, only what every student marks)")
    p.add_argument("--label-support", action="store_true",
                   help="generations >= 2: zero each label mask outside its hysteresis support "
                        "(>= 0.5 of its range, connected to >= 0.8 of it: the teacher's last step) before training")
    p.add_argument("--strata", type=_positive, default=1,
                   help="keep the top fraction within each of K equal-count bins of the frames' edge "
                        "density (the pipeline's selection.strata), in every generation's selection "
                        "(1: corpus-wide)")
    p.add_argument("--keep-teacher", action="store_true",
                   help="generations >= 2 also train on generation 1's selected frames that the "
                        "agreement did not select, with their VideoPCA masks")
    p.add_argument("--eval-epochs", type=_epoch_list, default=(),
                   help="also score each student on the held-out frames after these epochs "
                        "(comma-separated, e.g. 4,8: a learning curve; rows '<student> @ E epochs')")
    p.add_argument("--parallel", type=int, default=1,
                   help="students trained at once, each in its own process sharing the device (1)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="CPU threads per student, fixed for the whole run: results are then the "
                        "same on every rerun (default: with --parallel, the cores divided among the "
                        "students training at each epoch, which is faster but makes the floating-point "
                        "results depend on timing)")
    p.add_argument("--fresh", dest="resume", action="store_false",
                   help="retrain every student; by default a student whose cached result in OUT "
                        "matches these arguments is reused, so a run cut off by a time limit "
                        "continues where it stopped")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    if a.gen2_videos is not None and a.gen2_videos < a.videos:
        p.error(f"--gen2-videos {a.gen2_videos} must be >= --videos {a.videos} (it extends the same world)")
    if a.lr_schedule != "constant" and not a.epochs:
        p.error(f"--lr-schedule {a.lr_schedule} needs --epochs (the schedule's length)")
    try:
        validate_decay(a.ema, "--ema")
    except ValueError as exc:
        p.error(str(exc))
    return a


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
    from popdistill.teacher.selection import edge_density, scores_for_batch
    from popdistill.teacher.videopca import VideoPCA

    cfg = make_config(preset, videos=videos, seed=seed)
    v = render_video(cfg, index)
    frames = np.stack([_jpeg(f, cfg.jpeg_quality) for f in v.frames])
    masks = VideoPCA()(frames)
    return {"video": f"world_{index:04d}", "frames": frames, "labels": v.labels,
            "masks": masks.astype(np.float32), "scores": scores_for_batch(masks),
            "densities": np.array([edge_density(f) for f in frames])}


def make_split(preset: str, videos: int, seed: int, workers: int) -> list[dict]:
    jobs = [(preset, videos, seed, i) for i in range(videos)]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(video_with_teacher, jobs, chunksize=2))


# -- training on the device ------------------------------------------------------------------------


def train_student(name: str, kwargs: dict, images: torch.Tensor, masks: torch.Tensor,
                  a: argparse.Namespace, device: torch.device,
                  after_epoch=None) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """``images`` (N x 3 x H x W uint8) and ``masks`` (N x 1 x H x W float) on ``device``;
    ``after_epoch(epoch, student)``, if given, is called after each epoch (1-based). Returns the
    student (the weights' average with ``--ema``), the last step's weights (the same model
    without ``--ema``) and the run's info."""
    from popdistill.students import create_student
    from popdistill.students.base import resize_images
    from popdistill.train.config import AugmentConfig, resolve_batch_size, resolve_sizes
    from popdistill.train.data import augment_pairs
    from popdistill.train.ema import averaged_module, make_ema
    from popdistill.train.loop import LOSSES, lr_factor, set_lr

    torch.manual_seed(a.seed)
    model = create_student(name, **kwargs).to(device)
    sizes = resolve_sizes(AugmentConfig(), model.input_size, model.output_size)
    opt = torch.optim.Adam(model.param_groups(a.lr))
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema = make_ema(model, a.ema)
    loss_fn, gen = LOSSES[a.loss], torch.Generator().manual_seed(a.seed)
    bs = resolve_batch_size(a.batch_size or None, model.input_size, model.output_size)
    n, cuda = len(images), device.type == "cuda"
    t0, epoch, steps, losses = time.perf_counter(), 0, 0, []
    model.train()
    while (a.epochs and epoch < a.epochs) or (not a.epochs and time.perf_counter() - t0 < a.seconds):
        _share_cores(a.threads)
        if a.epochs:
            set_lr(opt, base_lrs, lr_factor(a.lr_schedule, epoch, a.epochs))
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
            if ema is not None:
                ema.update_parameters(model)
            total += float(loss.detach()) * bs
            steps += 1
            if not a.epochs and time.perf_counter() - t0 >= a.seconds:
                break
        epoch += 1
        losses.append(total / n)
        if after_epoch is not None:
            after_epoch(epoch, averaged_module(model, ema))
            model.train()
    seconds = time.perf_counter() - t0
    print(f"  {name}: {epoch} epochs, {steps} steps in {seconds:.0f} s, last loss {losses[-1]:.4f}",
          flush=True)
    return averaged_module(model, ema).eval(), model.eval(), {"epochs": epoch, "steps": steps, "batch_size": bs, "seconds": seconds, "losses": losses,
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


_RUNNING = None  # in --parallel pool processes: a shared count of the students training now


def _init_pool(running, parent: int | None = None) -> None:
    """A --parallel pool process: the shared count, and a watch that ends this process when
    the run's main process is gone (killed by a time limit, say) instead of training on."""
    global _RUNNING
    _RUNNING = running
    if parent is not None:
        import threading

        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int, every: float = 2.0, exit=os._exit) -> None:
    """Poll until this process's parent is no longer ``parent``, then ``exit(1)``."""
    while os.getppid() == parent:
        time.sleep(every)
    exit(1)


def _share_cores(threads: int | None = None) -> None:
    """This student's CPU threads: ``threads`` (``--threads``) when given; otherwise, in a
    --parallel pool process, the CPU cores divided among the students training now (the last
    one left gets them all)."""
    if threads:
        torch.set_num_threads(threads)
    elif _RUNNING is not None:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, _RUNNING.value)))


def _student_job(job: dict) -> str:
    """Train one student and cache what the parent needs under ``job["dir"]``: held-out masks
    (``heldout.npy``), masks of every training frame for the next generation (``train.npy``,
    when asked) and ``info.json`` last, which marks the student finished (``--resume``).
    Runs in the parent (``--parallel 1``) or in a spawned process; arrays come as .npy files."""
    if _RUNNING is None:
        return _train_and_save(job)
    with _RUNNING.get_lock():
        _RUNNING.value += 1
    try:
        return _train_and_save(job)
    finally:
        with _RUNNING.get_lock():
            _RUNNING.value -= 1


def _train_and_save(job: dict) -> str:
    a, d = job["args"], Path(job["dir"])
    device = torch.device(a.device)
    data = Path(job["data"])
    images = torch.from_numpy(np.load(data / "images.npy")).to(device)
    targets = torch.from_numpy(np.load(data / "targets.npy")).to(device)
    d.mkdir(parents=True, exist_ok=True)
    h_images = np.load(Path(job["heldout"]), mmap_mode="r")

    def learning_curve(epoch: int, model: torch.nn.Module) -> None:
        if epoch in _curve_epochs(a):
            np.save(d / f"heldout-e{epoch}.npy", _predict_chunks(model.eval(), h_images, device))

    model, raw, info = train_student(job["name"], job["kwargs"], images, targets, a, device, learning_curve)
    del images, targets
    np.save(d / "heldout.npy", _predict_chunks(model, h_images, device))
    if raw is not model:  # --ema: the last step's weights of the same run, for comparison
        np.save(d / "heldout-raw.npy", _predict_chunks(raw, h_images, device))
    if job["all_images"]:
        np.save(d / "train.npy", _predict_chunks(model, np.load(job["all_images"], mmap_mode="r"), device))
    torch.save(model.state_dict(), d / "model.pt")
    (d / "info.json").write_text(json.dumps({**info, "model": job["kwargs"], "key": job["key"]}))
    return job["name"]


def _predict_pool(name: str, kwargs: dict, d: Path, out: Path, a: argparse.Namespace) -> None:
    """A cached student's masks of every frame of the pool (``train.npy``), from its saved
    weights (``model.pt``, loaded weights-only): for a pool grown since (``--gen2-videos``), or
    for a generation that was the last one when it was trained (``--generations`` raised)."""
    from popdistill.students import create_student

    device = torch.device(a.device)
    model = create_student(name, **kwargs)
    model.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
    model = model.to(device).eval()
    images = np.load(out / "data" / "all_images.npy", mmap_mode="r")
    np.save(d / "train.npy", _predict_chunks(model, images, device))


def pool_videos(args: dict) -> int:
    """The training-world videos a run rendered (``args``: its report's ``args``): the pool of
    generations >= 2 (``--gen2-videos``), whose first ``--videos`` are generation 1's."""
    if args.get("generations", 1) > 1:
        return max(args["videos"], args.get("gen2_videos") or 0)
    return args["videos"]


def _covers(train_masks: Path, out: Path) -> bool:
    """A cached student's masks of the training frames exist and cover every frame of the pool
    later generations select from (``--gen2-videos`` may have grown it since)."""
    if not train_masks.exists():
        return False
    pool = np.load(out / "data" / "all_images.npy", mmap_mode="r")
    return len(np.load(train_masks, mmap_mode="r")) == len(pool)


def _curve_epochs(a: argparse.Namespace) -> tuple[int, ...]:
    """The --eval-epochs before the last epoch (the last one is the student's own row)."""
    return tuple(e for e in a.eval_epochs if not a.epochs or e < a.epochs)


def _predict_chunks(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """float16 masks at the model's output size for N x 3 x H x W uint8 images (memory-mapped)."""
    return np.concatenate([predict(model, torch.from_numpy(np.array(images[s : s + 4096])).to(device))
                           .astype(np.float16) for s in range(0, len(images), 4096)])


def train_population(names, overrides, data_dir: Path, gen: int, h_videos, h_gt, a, rows: dict,
                     label_j: float, keep_train_masks: bool) -> tuple[dict, dict]:
    """Train ``names`` on the arrays in ``data_dir`` (``--parallel`` at a time); their held-out rows
    (and the Multi-Net's) go into ``rows``; returns (training info, float16 masks of every
    training frame per student, when ``keep_train_masks``). A student whose cache matches these
    arguments is not trained again (``--resume``)."""
    import hashlib
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    out = Path(a.out) / f"gen-{gen}"
    jobs, trained = [], {}
    labels_digest = hashlib.sha1((data_dir / "targets.npy").read_bytes()).hexdigest()
    for name in names:
        kw = dict(overrides.get(name, {}))
        if not name.startswith("lowres") and not name.endswith("_tiny"):
            kw.setdefault("input_size", a.input_size)
        key = _cache_key(a, name, kw, gen, labels_digest)
        info_path = out / name / "info.json"
        cached = a.resume and info_path.exists() and json.loads(info_path.read_text()).get("key") == key \
            and all((out / name / f"heldout-e{e}.npy").exists() for e in _curve_epochs(a))
        covered = not keep_train_masks or _covers(out / name / "train.npy", Path(a.out))
        if cached and covered:
            print(f"  {name}: generation {gen} cached in {out / name}", flush=True)
            continue
        if cached and (out / name / "model.pt").exists():  # its masks of the pool are missing
            print(f"  {name}: generation {gen} reused from {out / name}: its saved weights "
                  f"predict every frame of the pool", flush=True)
            _predict_pool(name, kw, out / name, Path(a.out), a)
            continue
        jobs.append({"args": a, "name": name, "kwargs": kw, "key": key, "dir": str(out / name),
                     "data": str(data_dir), "heldout": str(Path(a.out) / "data" / "heldout.npy"),
                     "all_images": str(Path(a.out) / "data" / "all_images.npy") if keep_train_masks else ""})
    if a.parallel > 1 and len(jobs) > 1:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(min(a.parallel, len(jobs)), mp_context=ctx, initializer=_init_pool,
                                 initargs=(ctx.Value("i", 0), os.getpid())) as pool:
            for name in pool.map(_student_job, jobs):
                print(f"  {name}: done", flush=True)
    else:
        for job in jobs:
            _student_job(job)
    student_masks, train_masks = {}, {}
    for name in names:
        d = out / name
        info = json.loads((d / "info.json").read_text())
        info.pop("key", None)
        trained[name] = info
        student_masks[name] = np.load(d / "heldout.npy").astype(np.float32)
        rows[name] = evaluate(h_videos, student_masks[name], h_gt)
        print(f"    {name} (gen {gen}) held-out J {rows[name]['J']:.3f}", flush=True)
        if a.ema and (d / "heldout-raw.npy").exists():
            rows[f"{name} (raw weights)"] = evaluate(h_videos, np.load(d / "heldout-raw.npy")
                                                     .astype(np.float32), h_gt)
        for e in _curve_epochs(a):
            if (d / f"heldout-e{e}.npy").exists():
                rows[f"{name} @ {e} epochs"] = evaluate(h_videos, np.load(d / f"heldout-e{e}.npy")
                                                        .astype(np.float32), h_gt)
        if keep_train_masks:
            train_masks[name] = np.load(d / "train.npy", mmap_mode="r")
    _write(a, {"partial": True, "table": rows, "students": trained, "label_j": label_j})
    if len(names) > 1:
        rows.update(multinet_rows([student_masks[n] for n in names], h_videos, h_gt))
    return trained, train_masks


def multinet_rows(masks: list[np.ndarray], h_videos, h_gt) -> dict[str, dict]:
    """The students' Multi-Net on the held-out frames: the product, and the product >= 0.5^n."""
    from popdistill.students.multinet import multinet_product

    prod = [multinet_product([torch.from_numpy(m[i])[None, None] for m in masks], h_gt[i].shape)[0, 0].numpy()
            for i in range(len(h_gt))]
    return {"Multi-Net (product)": evaluate(h_videos, prod, h_gt),
            "Multi-Net (product >= 0.5^n)": evaluate(h_videos, [p ** (1 / len(masks)) for p in prod], h_gt)}


def gen2_labels(masks: list[np.ndarray], keep: np.ndarray, best: np.ndarray, size: tuple[int, int],
                rule: str = "best", ensemble: str = "product") -> np.ndarray:
    """Labels (len(keep) x H x W, float32 at ``size``) of the frames ``keep`` from the previous
    generation's ``masks`` (one N x h x w array per student): ``best``, each frame's best student
    (``best``: its index per frame); otherwise the pipeline's ``ensemble_labels`` of all of them
    (``multinet``: the ensemble mask; ``multinet-binary``: its geometric mean >= 0.5;
    ``multinet-product``: the plain product)."""
    from popdistill.pipeline.rescore import LABELS, ensemble_labels
    from popdistill.students.base import resize_to

    if rule not in LABELS:
        raise ValueError(f"gen2 labels: {rule!r} is not one of {', '.join(LABELS)}")
    out = np.empty((len(keep),) + tuple(size), np.float32)
    for s in range(0, len(keep), 512):
        idx = keep[s : s + 512]
        if rule == "best":
            part = torch.from_numpy(np.stack([np.asarray(masks[best[i]][i], np.float32) for i in idx]))[:, None]
            out[s : s + len(idx)] = resize_to(part, size)[:, 0].numpy()
        else:  # each student's masks at the frames' size first: a binary label stays binary
            each = [resize_to(torch.from_numpy(np.asarray(m[idx], np.float32))[:, None], size) for m in masks]
            out[s : s + len(idx)] = ensemble_labels(each, rule, ensemble).numpy()
    return out


def best_by_agreement(masks: list[np.ndarray], ensemble: str) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's best student and its score by the pipeline's ``agreement`` (``masks``: one
    N x h x w array per student, memory-mapped is fine); an empty mask scores 0, as in the
    pipeline: it is never a label."""
    from popdistill.pipeline.rescore import agreement_scores, best_per_frame, empty_masks

    n = len(masks[0])
    best, best_score = np.zeros(n, int), np.zeros(n)
    for s in range(0, n, 1024):
        part = [torch.from_numpy(np.array(m[s : s + 1024], np.float32))[:, None] for m in masks]
        sc = agreement_scores(part, ensemble).numpy()
        sc[empty_masks(part)] = 0.0
        best[s : s + 1024], best_score[s : s + 1024] = best_per_frame(sc)
    return best, best_score


def kept_by_agreement(best_score: np.ndarray, top: float, densities: np.ndarray | None = None,
                      strata: int = 1) -> tuple[np.ndarray, float]:
    """The frames the pipeline's rule (``kept_scores``) keeps at the threshold that keeps the
    ``top`` fraction of ``best_score`` (of each edge-density stratum with ``strata`` > 1), and
    that threshold (the lowest stratum's threshold with strata)."""
    from popdistill.pipeline.rescore import kept_scores
    from popdistill.teacher.selection import (
        stratified_keep,
        stratified_thresholds,
        top_fraction_threshold,
    )

    if strata > 1:
        cuts, thrs = stratified_thresholds(best_score, densities, top, strata)
        kept = stratified_keep(best_score, densities, cuts, thrs) & kept_scores(best_score, 0.0)
        return np.flatnonzero(kept), float(np.min(thrs))
    thr = top_fraction_threshold(best_score, top)
    return np.flatnonzero(kept_scores(best_score, thr)), thr


def _cache_key(a: argparse.Namespace, name: str, kwargs: dict, gen: int, labels_digest: str) -> str:
    """What a cached student depends on: its training labels and arguments, the held-out data."""
    fields = ("preset", "videos", "heldout_videos", "train_seed", "heldout_seed", "select_top",
              "input_size", "seed", "seconds", "epochs", "batch_size", "lr", "loss")
    if a.lr_schedule != "constant":  # keys of constant-rate caches are as before the option
        fields += ("lr_schedule",)
    if a.ema:  # likewise
        fields += ("ema",)
    return json.dumps({"name": name, "kwargs": kwargs, "gen": gen, "labels": labels_digest,
                       **{f: getattr(a, f) for f in fields}}, sort_keys=True)


def _suffixes(generations: int) -> list[tuple[int, str]]:
    """(generation, its rows' suffix): generation 1's rows have none."""
    return [(k, "" if k == 1 else f" (gen {k})") for k in range(1, generations + 1)]


def _chw(frames: np.ndarray) -> np.ndarray:
    """N x H x W x 3 -> N x 3 x H x W, contiguous (what the students take)."""
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))


def _save(folder: Path, **arrays: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr)


def _write(a: argparse.Namespace, report: dict) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "population_gpu.json").write_text(json.dumps(report, indent=2))


def next_generation(names, overrides, gen: int, prev_masks: dict, all_gt: np.ndarray, h_videos,
                    h_gt, a: argparse.Namespace, rows: dict, trained: dict,
                    prev_label_j: float) -> tuple[float, dict]:
    """Generation ``gen`` >= 2: each training frame keeps generation ``gen - 1``'s best mask by
    agreement, the top ``--gen2-top`` frames train a fresh population; its rows and training
    info go into ``rows`` / ``trained`` with the suffix `` (gen K)``. Returns its label J and,
    when a later generation follows, its students' masks of every training frame."""
    from popdistill.pipeline.rescore import label_support

    all_images = np.load(Path(a.out) / "data" / "all_images.npy", mmap_mode="r")
    best, best_score = best_by_agreement([prev_masks[n] for n in names], a.ensemble)
    densities = np.load(Path(a.out) / "data" / "densities.npy") if a.strata > 1 else None
    keep, thr = kept_by_agreement(best_score, a.select_top if a.gen2_top is None else a.gen2_top,
                                  densities, a.strata)
    chosen, n_agree = {n: int((best[keep] == k).sum()) for k, n in enumerate(names)}, len(keep)
    size = tuple(all_images.shape[-2:])
    labels = gen2_labels([prev_masks[n] for n in names], keep, best, size, a.gen2_labels, a.ensemble)
    if a.label_support:
        labels = label_support(labels)
    if a.keep_teacher:  # generation 1's selected frames the agreement left out, VideoPCA's masks
        gen1 = Path(a.out) / "gen-1" / "data"
        t_index = np.load(gen1 / "index.npy")
        extra = np.flatnonzero(~np.isin(t_index, keep))
        labels = np.concatenate([labels, np.load(gen1 / "targets.npy", mmap_mode="r")[extra, 0]])
        keep = np.concatenate([keep, t_index[extra]])
        print(f"generation {gen}: + {len(extra)} of generation 1's selected frames (--keep-teacher)",
              flush=True)
    label_m = evaluate(["train"] * len(keep), labels, all_gt[keep])
    label_j = label_m["J"]
    print(f"generation {gen}: selected {n_agree} of {len(all_images)} frames by agreement "
          f"({a.ensemble}), labels {a.gen2_labels}: J {label_j:.3f} (generation {gen - 1}'s: "
          f"{prev_label_j:.3f}), P {label_m['P']:.3f}; best masks from {chosen}", flush=True)
    data_dir = Path(a.out) / f"gen-{gen}" / "data"
    _save(data_dir, images=np.ascontiguousarray(all_images[keep]), targets=labels[:, None])
    del labels
    rows_k: dict = {}
    a_k = a if a.gen2_epochs is None else argparse.Namespace(**{**vars(a), "epochs": a.gen2_epochs})
    trained_k, train_masks = train_population(names, overrides, data_dir, gen, h_videos, h_gt, a_k,
                                              rows_k, label_j, gen < a.generations)
    rows.update({f"{k} (gen {gen})": v for k, v in rows_k.items()})
    trained.update({f"{k} (gen {gen})": v for k, v in trained_k.items()})
    trained[f"generation {gen} selection"] = {"frames": int(len(keep)), "pool": int(len(all_images)),
                                              "label_j": label_j,
                                              "threshold": float(thr), "epochs": "", "seconds": 0.0}
    return label_j, train_masks


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    device = torch.device(a.device)
    names = [s.strip() for s in a.students.split(",") if s.strip()]
    overrides = json.loads(a.models)
    t_start = time.perf_counter()
    n_pool = pool_videos(vars(a))
    pool = make_split(a.preset, n_pool, a.train_seed, a.workers)
    train = pool[: a.videos]  # generation 1's videos: the teacher's selection sees only these
    held = make_split(a.preset, a.heldout_videos, a.heldout_seed, a.workers)
    t_data = time.perf_counter() - t_start
    from popdistill.teacher.selection import stratified_keep, stratified_thresholds, stratum_of

    scores = np.concatenate([v["scores"] for v in train])
    densities = np.concatenate([v["densities"] for v in train])
    cuts, thrs = stratified_thresholds(scores, densities, a.select_top, a.strata)
    keep = stratified_keep(scores, densities, cuts, thrs)
    thr = float(np.min(thrs))
    frames = np.concatenate([v["frames"] for v in train])[keep]
    labels = np.concatenate([v["masks"] for v in train])[keep]
    if n_pool > a.videos:
        print(f"generations >= 2 select from {n_pool} videos ({n_pool - a.videos} that "
              f"generation 1's selection never saw)", flush=True)
    starts = np.cumsum([0] + [len(v["scores"]) for v in train])
    kept_videos = sum(bool(keep[s:e].any()) for s, e in zip(starts[:-1], starts[1:]))
    if a.strata > 1:
        which = stratum_of(densities, cuts)
        print(f"selection by {a.strata} edge-density strata: {np.bincount(which[keep], minlength=a.strata)} "
              f"frames, thresholds {np.round(thrs, 3)}", flush=True)
    print(f"data + teacher: {t_data:.0f} s; selected {keep.sum()} of {keep.size} training frames "
          f"from {kept_videos} of {len(train)} videos (threshold {thr:.3f})", flush=True)

    h_videos = [v["video"] for v in held for _ in range(len(v["frames"]))]
    h_gt = np.concatenate([v["labels"] for v in held])
    h_teacher = np.concatenate([v["masks"] for v in held])
    t_gt = np.concatenate([v["labels"] for v in train])[keep]
    from popdistill.evaluate.baselines import centre_prior

    rows = {"teacher (VideoPCA, held-out)": evaluate(h_videos, h_teacher, h_gt),
            "centre prior": evaluate(h_videos, [centre_prior(*g.shape) for g in h_gt], h_gt)}
    label_j = evaluate(["train"] * len(labels), labels, t_gt)["J"]
    data = Path(a.out) / "data"
    _save(data, heldout=_chw(np.concatenate([v["frames"] for v in held])))
    _save(Path(a.out) / "gen-1" / "data", images=_chw(frames), targets=labels[:, None],
          index=np.flatnonzero(keep))
    if a.generations > 1:
        _save(data, all_images=_chw(np.concatenate([v["frames"] for v in pool])),
              densities=np.concatenate([v["densities"] for v in pool]))
    del frames, labels, held
    trained, train_masks = train_population(names, overrides, Path(a.out) / "gen-1" / "data", 1, h_videos,
                                            h_gt, a, rows, label_j, a.generations > 1)
    all_gt = np.concatenate([v["labels"] for v in pool]) if a.generations > 1 else None
    del pool, train
    gen_label_j = label_j
    for gen in range(2, a.generations + 1):
        gen_label_j, train_masks = next_generation(names, overrides, gen, train_masks, all_gt, h_videos,
                                                   h_gt, a, rows, trained, gen_label_j)
    teacher_j = rows["teacher (VideoPCA, held-out)"]["J"]
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"\n{a.preset}: training {keep.sum()} selected frames (label J {label_j:.3f}) of {a.videos} "
          f"videos; held-out {len(h_gt)} frames of {a.heldout_videos} videos; device {dev}")
    print("| method | P | J | CorLoc | epochs | train s | beats teacher J |\n|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        t = trained.get(name)
        beat = "" if name in ("teacher (VideoPCA, held-out)", "centre prior") else \
            ("yes" if m["J"] > teacher_j else "NO")
        print(f"| {name} | {m['P']:.3f} | {m['J']:.3f} | {m['CorLoc']:.3f} | "
              f"{t['epochs'] if t else ''} | {t['seconds']:.0f} | {beat} |" if t else
              f"| {name} | {m['P']:.3f} | {m['J']:.3f} | {m['CorLoc']:.3f} |  |  | {beat} |")
    means = {f"generation {k}": {m: float(np.mean([rows[n + suffix][m] for n in names]))
                                 for m in ("P", "J", "CorLoc")}
             for k, suffix in _suffixes(a.generations) if all(n + suffix in rows for n in names)}
    for gen, m in means.items():
        print(f"{gen}: the students' mean P {m['P']:.3f}, J {m['J']:.3f}, CorLoc {m['CorLoc']:.3f}")
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s (data + teacher {t_data:.0f} s)")
    _write(a, {
        "args": vars(a), "device": dev, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "selected": int(keep.sum()), "selected_videos": kept_videos, "threshold": thr,
        "label_j": label_j, "table": rows, "student_means": means, "students": trained,
        "seconds": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
