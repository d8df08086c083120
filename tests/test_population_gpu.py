"""benchmarks/population_gpu.py on the CPU: two generations, the per-student cache that lets a
run cut off by the device's time limit continue, and parallel training processes."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(monkeypatch):
    """The script as an importable module: its worker processes (fork and spawn) pickle its
    functions by module name."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("population_gpu")


@pytest.mark.timeout(600)
def test_two_generations_then_a_rerun_reuses_every_student(tmp_path, capsys, monkeypatch):
    bench = _benchmark(monkeypatch)
    out = tmp_path / "pg"
    args = ["--out", str(out), "--videos", "3", "--heldout-videos", "1", "--students",
            "unet_tiny,fconv_tiny", "--epochs", "1", "--device", "cpu", "--generations", "2",
            "--workers", "2", "--select-top", "0.3"]
    assert bench.main([*args, "--parallel", "2"]) == 0
    first = json.loads((out / "population_gpu.json").read_text())
    log = capsys.readouterr().out
    assert "cached" not in log and "generation 2: selected" in log
    rows = first["table"]
    for name in ("unet_tiny", "fconv_tiny", "unet_tiny (gen 2)", "fconv_tiny (gen 2)",
                 "Multi-Net (product >= 0.5^n) (gen 2)", "teacher (VideoPCA, held-out)"):
        assert 0.0 <= rows[name]["J"] <= 1.0 and rows[name]["frames"] == 48
    assert first["students"]["unet_tiny"]["epochs"] == 1
    for k, suffix in ((1, ""), (2, " (gen 2)")):  # the students' mean of each generation
        mean_j = (rows["unet_tiny" + suffix]["J"] + rows["fconv_tiny" + suffix]["J"]) / 2
        assert first["student_means"][f"generation {k}"]["J"] == pytest.approx(mean_j)
    for k in (1, 2):
        for s in ("unet_tiny", "fconv_tiny"):
            assert (out / f"gen-{k}" / s / "info.json").is_file()
    # the same command again (in one process): nothing is trained, the table is the same
    assert bench.main([*args, "--parallel", "1"]) == 0
    log = capsys.readouterr().out
    assert log.count("cached in") == 4 and "steps in" not in log
    assert json.loads((out / "population_gpu.json").read_text())["table"] == rows
    # benchmarks/gen2_labels.py re-renders the training world and scores the same selections
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    labels = importlib.import_module("gen2_labels")
    assert labels.main([str(out), "--tops", "0.3", "--workers", "1", "--labels", "best,multinet-binary",
                        "--by-clutter"]) == 0
    table = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in
             capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert float(table["generation 1: VideoPCA, top 0.3"][3]) == pytest.approx(first["label_j"], abs=1e-3)
    gen2 = first["students"]["generation 2 selection"]
    product = table["agreement (product), top 0.3"]
    assert (int(product[1]), float(product[3])) == (gen2["frames"], pytest.approx(gen2["label_j"], abs=1e-3))
    assert "agreement (geomean), top 0.3" in table
    binary = table["agreement (geomean), top 0.3: multinet-binary"]
    assert binary[1] == table["agreement (geomean), top 0.3"][1] and 0.0 <= float(binary[3]) <= 1.0
    assert len(binary) == 12 and all(float(x) >= 0.0 for x in binary[7:11])  # area / true by clutter quarter
    # benchmarks/generation_gain.py --bootstrap scores the cached held-out masks per video: with
    # equal frames per video their mean gain is the report's gain in the students' mean J
    gain = importlib.import_module("generation_gain")
    assert gain.main([str(out), "--bootstrap", "50", "--json", str(tmp_path / "gain.json")]) == 0
    boot = json.loads((tmp_path / "gain.json").read_text())["bootstrap"]
    means = first["student_means"]
    assert boot["runs"][0]["mean"] == pytest.approx(means["generation 2"]["J"] - means["generation 1"]["J"], abs=1e-6)
    assert boot["videos"] == 1 and boot["runs"][0]["low"] == pytest.approx(boot["runs"][0]["high"])
    # generation 2 selected by the geometric mean: generation 1 is reused, generation 2 retrained
    assert bench.main([*args, "--ensemble", "geomean", "--gen2-top", "0.5", "--gen2-epochs", "2"]) == 0
    log = capsys.readouterr().out
    assert log.count("cached in") == 2 and "by agreement (geomean)" in log
    report = json.loads((out / "population_gpu.json").read_text())
    assert report["args"]["gen2_top"] == 0.5
    assert report["students"]["unet_tiny"]["epochs"] == 1 and report["students"]["unet_tiny (gen 2)"]["epochs"] == 2
    # a third generation, trained on generation 2's best masks: generation 1 is reused, generation
    # 2 too (its masks of the training frames were not kept: its saved weights predict them),
    # then generation 3 is trained
    three = ["3" if i and args[i - 1] == "--generations" else x for i, x in enumerate(args)]
    assert bench.main([*three, "--ensemble", "geomean", "--gen2-top", "0.5", "--gen2-epochs", "2"]) == 0
    log = capsys.readouterr().out
    assert log.count("cached in") == 2 and "generation 3: selected" in log
    assert log.count("its saved weights predict every frame") == 2
    assert log.split("generation 3: selected")[0].count("steps in") == 0
    assert "(generation 2's: " in log.split("generation 3: selected")[1].splitlines()[0]
    third = json.loads((out / "population_gpu.json").read_text())
    for s in ("unet_tiny", "fconv_tiny"):
        assert (out / "gen-2" / s / "train.npy").is_file() and not (out / "gen-3" / s / "train.npy").exists()
        assert third["students"][f"{s} (gen 3)"]["epochs"] == 2
    mean_j = (third["table"]["unet_tiny (gen 3)"]["J"] + third["table"]["fconv_tiny (gen 3)"]["J"]) / 2
    assert third["student_means"]["generation 3"]["J"] == pytest.approx(mean_j)
    assert third["students"]["generation 3 selection"]["frames"] > 0
    # generation 1's selected frames that the agreement left out join generation 2 with their
    # VideoPCA masks (--keep-teacher); the students' masks lose their halo (--label-support)
    assert bench.main([*args, "--ensemble", "geomean", "--gen2-top", "0.5", "--gen2-epochs", "2",
                       "--keep-teacher", "--label-support"]) == 0
    log = capsys.readouterr().out
    added = int(log.split("generation 2: + ")[1].split()[0])
    assert log.count("cached in") == 2 and added > 0
    frames = json.loads((out / "population_gpu.json").read_text())["students"]["generation 2 selection"]["frames"]
    assert frames == third["students"]["generation 2 selection"]["frames"] + added
    targets = np.load(out / "gen-2" / "data" / "targets.npy")[:, 0]
    teacher = np.load(out / "gen-1" / "data" / "targets.npy")[:, 0]
    assert len(targets) == frames
    for t in targets[-added:]:  # generation 1's labels, as they were
        assert any(np.array_equal(t, g) for g in teacher)
    own = targets[:-added]  # zero outside the support: >= half of each mask's maximum
    assert (own.reshape(len(own), -1).max(1) > 0).all() and np.count_nonzero(own) < own.size
    for t in own:
        assert t[t > 0].min() >= 0.5 * t.max() - 0.01
    # benchmarks/selection_coverage.py: the same selections, counted by background clutter
    coverage = importlib.import_module("selection_coverage")
    assert coverage.main([str(out), "--workers", "1"]) == 0
    table = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[1:] for line in
             capsys.readouterr().out.splitlines()[3:] if line.startswith("| ")}  # below the header
    count = {k.split(" (")[0]: int(v[0]) for k, v in table.items()}
    assert count["all training frames"] == 3 * 48 and count["held-out frames"] == 48
    assert count["generation 2 selection"] + added == count["generation 2 with --keep-teacher"] == frames
    assert count["generation 1 selection"] == len(teacher)
    assert float(table["all training frames"][1]) == pytest.approx(0.25, abs=0.01)  # the quartile
    assert all(0.0 <= float(v[1]) <= 1.0 and float(v[2]) > 0 for v in table.values())
    # benchmarks/clutter_j.py: the same held-out masks by clutter quarter; "all" is the report's J
    assert importlib.import_module("clutter_j").main([str(out)]) == 0
    table = {line.split(" | ")[0].lstrip("| "): [float(x) for x in line.rstrip(" |").split(" | ")[1:]]
             for line in capsys.readouterr().out.splitlines()[3:] if line.startswith("| ")}
    report = json.loads((out / "population_gpu.json").read_text())["table"]
    assert table["VideoPCA (the teacher)"][4] == pytest.approx(report["teacher (VideoPCA, held-out)"]["J"], abs=6e-4)
    for gen, suffix in ((1, ""), (2, " (gen 2)")):
        for s in ("unet_tiny", "fconv_tiny"):
            assert table[f"pg gen {gen} {s}"][4] == pytest.approx(report[s + suffix]["J"], abs=6e-4)
            assert all(0.0 <= j <= 1.0 for j in table[f"pg gen {gen} {s}"])
    # the same masks' area over the true area: by clutter quarter, and per video (video_area.py)
    assert importlib.import_module("clutter_j").main(["--metric", "area", str(out)]) == 0
    by_quarter = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[1:]
                  for line in capsys.readouterr().out.splitlines()[3:] if line.startswith("| ")}
    png = tmp_path / "area.png"
    assert importlib.import_module("video_area").main([str(out), "--png", str(png), "--videos", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    header = next(line for line in printed if line.startswith("| video"))
    overall = next(line for line in printed if line.startswith("| all"))
    columns = dict(zip(header.strip("| ").split(" | "), overall.strip("| ").split(" | ")))
    for gen, s in ((1, "unet_tiny"), (2, "fconv_tiny")):
        assert float(columns[f"gen {gen} {s}"]) == pytest.approx(float(by_quarter[f"pg gen {gen} {s}"][4]), abs=0.006)
    from skimage.io import imread

    assert imread(png).shape == (128, 128 * (2 + 4), 3)  # frame, truth, 2 students x 2 generations
    # benchmarks/population_table.py: students of runs sharing the held-out world, in one table
    # with their Multi-Net; here the run's own two, so every row is the run's
    population_table = importlib.import_module("population_table")
    students = [str(out / "gen-1" / "unet_tiny"), str(out / "gen-1" / "fconv_tiny")]
    assert population_table.main([*students, "--json", str(tmp_path / "table.json")]) == 0
    rows = json.loads((tmp_path / "table.json").read_text())
    for name in ("teacher (VideoPCA, held-out)", "centre prior", "Multi-Net (product)",
                 "Multi-Net (product >= 0.5^n)"):
        assert rows[name]["J"] == pytest.approx(report[name]["J"]) and rows[name]["frames"] == 48
    for s in ("unet_tiny", "fconv_tiny"):
        row = rows[f"{s} (pg, gen-1)"]
        assert row["J"] == pytest.approx(report[s]["J"]) and (row["videos"], row["epochs"]) == (3, 1)
    assert "| unet_tiny (pg, gen-1) |" in capsys.readouterr().out
    other = tmp_path / "other"  # a run of another held-out world is refused, by name
    (other / "gen-1").mkdir(parents=True)
    (other / "gen-1" / "unet_tiny").symlink_to(out / "gen-1" / "unet_tiny")
    moved = json.loads((out / "population_gpu.json").read_text())
    moved["args"]["heldout_seed"] += 1
    (other / "population_gpu.json").write_text(json.dumps(moved))
    with pytest.raises(SystemExit):
        population_table.main([students[1], str(other / "gen-1" / "unet_tiny")])
    assert "different held-out worlds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        population_table.main([str(out / "gen-1" / "lowres_tiny")])
    assert "lowres_tiny/heldout.npy: missing" in capsys.readouterr().err
    # generation 2 trained on the students' binarised ensemble instead (--gen2-labels)
    assert bench.main([*args, "--ensemble", "geomean", "--gen2-top", "0.5", "--gen2-epochs", "2",
                       "--keep-teacher", "--gen2-labels", "multinet-binary"]) == 0
    log = capsys.readouterr().out
    assert log.count("cached in") == 2 and "labels multinet-binary: J" in log
    targets = np.load(out / "gen-2" / "data" / "targets.npy")[:, 0]
    assert len(targets) == frames and set(np.unique(targets[:-added])) == {0.0, 1.0}
    with pytest.raises(SystemExit):
        bench.parse_args(["--generations", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--gen2-labels", "soft"])
    capsys.readouterr()
    # other training arguments: the cache does not match, the students are trained again
    assert bench.main([*args, "--epochs", "2", "--generations", "1"]) == 0
    log = capsys.readouterr().out
    assert "cached in" not in log and log.count("2 epochs") == 2


@pytest.mark.timeout(600)
def test_later_generations_select_from_a_larger_pool_of_videos(tmp_path, capsys, monkeypatch):
    """``--gen2-videos N``: generation 1 is taught by the teacher on the first ``--videos`` videos
    only; its students predict every frame of N videos and generation 2 selects from all of them
    (the pipeline's agreement rule recomputed here); a rerun reuses everything, a larger pool
    is predicted by generation 1's saved weights (its masks no longer cover the pool; no
    retraining); a smaller one is refused."""
    bench = _benchmark(monkeypatch)
    out = tmp_path / "pool"
    args = ["--out", str(out), "--videos", "2", "--gen2-videos", "3", "--heldout-videos", "1",
            "--students", "unet_tiny,fconv_tiny", "--epochs", "1", "--device", "cpu",
            "--generations", "2", "--workers", "2", "--select-top", "0.3", "--gen2-top", "0.4",
            "--ensemble", "geomean"]
    assert bench.main(args) == 0
    assert "generations >= 2 select from 3 videos (1 that" in capsys.readouterr().out
    pool = np.load(out / "data" / "all_images.npy")
    assert len(pool) == 3 * 48
    assert np.load(out / "gen-1" / "data" / "index.npy").max() < 2 * 48  # the teacher's videos
    names = ["unet_tiny", "fconv_tiny"]
    masks = [np.load(out / "gen-1" / n / "train.npy") for n in names]
    assert all(len(m) == len(pool) for m in masks)
    _, score = bench.best_by_agreement(masks, "geomean")
    keep = bench.kept_by_agreement(score, 0.4)[0]
    assert (keep >= 2 * 48).any() and (keep < 2 * 48).any()  # the unseen video is in the pool
    np.testing.assert_array_equal(np.load(out / "gen-2" / "data" / "images.npy"), pool[keep])
    report = json.loads((out / "population_gpu.json").read_text())
    assert report["students"]["generation 2 selection"]["pool"] == len(pool)
    assert report["students"]["generation 2 selection"]["frames"] == len(keep)
    # benchmarks/selection_coverage.py re-renders the whole pool
    coverage = importlib.import_module("selection_coverage")
    assert coverage.main([str(out), "--workers", "1"]) == 0
    counts = {line.split(" | ")[0].lstrip("| "): int(line.split(" | ")[1]) for line in
              capsys.readouterr().out.splitlines()[3:] if line.startswith("| ")}
    assert counts["all training frames"] == len(pool)
    assert bench.main(args) == 0
    assert capsys.readouterr().out.count("cached in") == 4
    bigger = ["4" if i and args[i - 1] == "--gen2-videos" else x for i, x in enumerate(args)]
    before = np.load(out / "gen-1" / "unet_tiny" / "train.npy")
    assert bench.main(bigger) == 0
    log = capsys.readouterr().out
    # generation 1 is not trained again: its saved weights predict the grown pool
    assert log.count("its saved weights predict every frame of the pool") == 2
    assert log.split("generation 2: selected")[0].count("steps in") == 0
    after = np.load(out / "gen-1" / "unet_tiny" / "train.npy")
    assert len(after) == 4 * 48
    np.testing.assert_allclose(after[: len(before)].astype(np.float32), before.astype(np.float32), atol=2e-3)
    with pytest.raises(SystemExit):
        bench.parse_args(["--videos", "3", "--gen2-videos", "2"])
    assert "must be >= --videos 3" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_learning_curve_rows_are_the_students_of_that_many_epochs(tmp_path, monkeypatch):
    """``--eval-epochs``: the row '<student> @ E epochs' of a longer run is the student a run of E
    epochs ends with (same seed, same batches), and a rerun asking for a new epoch retrains."""
    bench = _benchmark(monkeypatch)
    common = ["--videos", "3", "--heldout-videos", "1", "--students", "unet_tiny", "--device", "cpu",
              "--workers", "1", "--select-top", "0.3"]
    long_run, short_run = tmp_path / "e3", tmp_path / "e1"
    assert bench.main([*common, "--out", str(long_run), "--epochs", "3", "--eval-epochs", "1,3,9"]) == 0
    assert bench.main([*common, "--out", str(short_run), "--epochs", "1"]) == 0
    curve = json.loads((long_run / "population_gpu.json").read_text())["table"]
    short = json.loads((short_run / "population_gpu.json").read_text())["table"]
    # epoch 3 is the student's own row and epoch 9 is never reached: only epoch 1 gets a row
    assert sorted(k for k in curve if " @ " in k) == ["unet_tiny @ 1 epochs"]
    assert curve["unet_tiny @ 1 epochs"] == pytest.approx(short["unet_tiny"], abs=1e-6)
    at_1 = np.load(long_run / "gen-1" / "unet_tiny" / "heldout-e1.npy").astype(np.float32)
    ends_1 = np.load(short_run / "gen-1" / "unet_tiny" / "heldout.npy").astype(np.float32)
    ends_3 = np.load(long_run / "gen-1" / "unet_tiny" / "heldout.npy").astype(np.float32)
    assert at_1.shape == ends_1.shape and np.abs(at_1 - ends_1).max() < 1e-3
    assert np.abs(at_1 - ends_3).max() > 1e-2     # two more epochs changed the masks
    assert bench.main([*common, "--out", str(long_run), "--epochs", "3", "--eval-epochs", "2"]) == 0
    assert (long_run / "gen-1" / "unet_tiny" / "heldout-e2.npy").is_file()


def test_a_pool_process_ends_when_the_main_process_is_gone(monkeypatch):
    """Killing the run's main process leaves no student training: each pool process polls
    its parent and exits once the parent changes (it is re-parented when the main one dies)."""
    bench = _benchmark(monkeypatch)
    parents, exits = iter([100, 100, 1]), []
    monkeypatch.setattr(bench.os, "getppid", lambda: next(parents))
    bench._exit_when_orphaned(100, every=0.0, exit=exits.append)
    assert exits == [1]


def test_parallel_students_share_the_cores(monkeypatch):
    """In a --parallel pool, each student's threads are the cores divided among the students
    training now: the last one left gets them all."""
    import multiprocessing as mp

    import torch

    bench = _benchmark(monkeypatch)
    running, before = mp.get_context("spawn").Value("i", 2), torch.get_num_threads()
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(bench, "_RUNNING", running)
    try:
        bench._share_cores()
        assert torch.get_num_threads() == 4
        running.value = 1
        bench._share_cores()
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_fixed_threads_make_a_parallel_run_reproducible(tmp_path, monkeypatch):
    """``--threads``: each student keeps the same number of threads for the whole run, so two
    fresh runs of the same command give the same masks; the thread count itself changes the
    floating-point results (which is why the default, re-dividing the cores as students finish,
    is not reproducible)."""
    import torch

    bench = _benchmark(monkeypatch)
    before = torch.get_num_threads()
    monkeypatch.setattr(bench, "_RUNNING", None)
    bench._share_cores(3)
    assert torch.get_num_threads() == 3
    torch.set_num_threads(before)
    args = ["--videos", "2", "--heldout-videos", "1", "--students", "unet_tiny,fconv_tiny",
            "--epochs", "2", "--device", "cpu", "--workers", "2", "--select-top", "0.5", "--fresh"]
    runs = {"a": ("--parallel", "2", "--threads", "1"), "b": ("--parallel", "2", "--threads", "1"),
            "c": ("--parallel", "1", "--threads", "2")}
    try:
        for run, extra in runs.items():
            assert bench.main(["--out", str(tmp_path / run), *args, *extra]) == 0
    finally:
        torch.set_num_threads(before)
    for s in ("unet_tiny", "fconv_tiny"):
        a, b, c = (np.load(tmp_path / r / "gen-1" / s / "heldout.npy") for r in "abc")
        assert np.array_equal(a, b)
        assert np.abs(a.astype(np.float32) - c).max() > 0
    with pytest.raises(SystemExit):
        bench.parse_args(["--threads", "0"])


def test_cosine_schedule_sets_each_epochs_rate_and_its_own_cache_key(monkeypatch):
    """``--lr-schedule cosine``: each epoch's rate is the configured one x ``lr_factor``; constant-rate
    runs keep the cache keys they had before the option; a schedule needs ``--epochs``."""
    import torch

    import popdistill.train.loop as loop

    bench = _benchmark(monkeypatch)
    factors, real_set_lr = [], loop.set_lr
    monkeypatch.setattr(loop, "set_lr", lambda opt, base, f: factors.append(f) or real_set_lr(opt, base, f))
    images = torch.randint(0, 255, (16, 3, 64, 64), dtype=torch.uint8)
    masks = torch.rand(16, 1, 64, 64)
    a = bench.parse_args(["--epochs", "4", "--lr-schedule", "cosine", "--batch-size", "8", "--lr", "0.01"])
    bench.train_student("unet_tiny", {}, images, masks, a, torch.device("cpu"))
    assert factors == pytest.approx([loop.lr_factor("cosine", e, 4) for e in range(4)])
    assert factors[-1] < 0.2
    constant = bench.parse_args(["--epochs", "4"])
    assert "lr_schedule" not in json.loads(bench._cache_key(constant, "unet_tiny", {}, 1, "d"))
    assert json.loads(bench._cache_key(a, "unet_tiny", {}, 1, "d"))["lr_schedule"] == "cosine"
    with pytest.raises(SystemExit):
        bench.parse_args(["--lr-schedule", "cosine"])  # no --epochs: no schedule length


def test_ema_student_is_the_weights_average_and_keys_its_cache(monkeypatch):
    """``--ema D``: the student returned (and saved) is the moving average, a different model from
    the last step's weights returned beside it; without it both are the same model; the decay is
    part of the cache key only when on; a decay outside (0, 1) is refused."""
    import torch

    bench = _benchmark(monkeypatch)
    images = torch.randint(0, 255, (16, 3, 64, 64), dtype=torch.uint8)
    masks = torch.rand(16, 1, 64, 64)
    a = bench.parse_args(["--epochs", "2", "--batch-size", "8", "--ema", "0.9"])
    student, raw, info = bench.train_student("unet_tiny", {}, images, masks, a, torch.device("cpu"))
    assert student is not raw and type(student) is type(raw) and info["steps"] == 4
    assert not torch.equal(next(student.parameters()), next(raw.parameters()))
    plain = bench.parse_args(["--epochs", "2", "--batch-size", "8"])
    student, raw, _ = bench.train_student("unet_tiny", {}, images, masks, plain, torch.device("cpu"))
    assert student is raw
    assert "ema" not in json.loads(bench._cache_key(plain, "unet_tiny", {}, 1, "d"))
    assert json.loads(bench._cache_key(a, "unet_tiny", {}, 1, "d"))["ema"] == 0.9
    with pytest.raises(SystemExit):
        bench.parse_args(["--ema", "1.5"])


def test_strata_keep_the_top_of_each_edge_density_stratum_by_agreement(monkeypatch):
    bench = _benchmark(monkeypatch)
    densities = np.repeat([0.01, 0.05], 10) + np.tile(np.arange(10) * 1e-4, 2)
    score = np.concatenate([np.linspace(0.9, 0.99, 10), np.linspace(0.5, 0.59, 10)])
    score[0] = 0.0  # an empty mask is never kept
    keep, thr = bench.kept_by_agreement(score, 0.3)
    assert keep.tolist() == [4, 5, 6, 7, 8, 9]  # all plain
    keep, thr = bench.kept_by_agreement(score, 0.3, densities, 2)
    assert keep.tolist() == [7, 8, 9, 17, 18, 19] and thr == pytest.approx(0.57)
    assert bench.parse_args(["--strata", "4"]).strata == 4
    with pytest.raises(SystemExit):
        bench.parse_args(["--strata", "0"])


def test_gen2_labels_are_the_best_mask_or_the_students_ensemble(monkeypatch):
    """--gen2-labels: each kept frame's label from the previous generation's cached masks (two
    at 16 px, one at 8 px, as a LowRes-like student), resized to the frames' size."""
    bench = _benchmark(monkeypatch)
    a = np.full((3, 16, 16), 0.9, np.float32)
    b = np.full((3, 16, 16), 0.4, np.float32)
    c = np.full((3, 8, 8), 0.2, np.float32)
    keep, best = np.array([2, 0]), np.array([1, 0, 0])
    labels = {rule: bench.gen2_labels([a, b, c], keep, best, (32, 32), rule, "product")
              for rule in ("best", "multinet", "multinet-binary", "multinet-product")}
    assert all(v.shape == (2, 32, 32) and v.dtype == np.float32 for v in labels.values())
    assert np.allclose(labels["best"][0], 0.9) and np.allclose(labels["best"][1], 0.4)  # frames 2, 0
    assert np.allclose(labels["multinet"], 0.9 * 0.4 * 0.2)  # the product
    assert np.array_equal(labels["multinet-binary"], np.zeros((2, 32, 32)))  # geomean 0.42 < 0.5
    geomean = bench.gen2_labels([a, b, c], keep, best, (32, 32), "multinet", "geomean")
    assert np.allclose(geomean, (0.9 * 0.4 * 0.2) ** (1 / 3))
    assert np.allclose(bench.gen2_labels([a, b, c], keep, best, (32, 32), "multinet-product", "geomean"),
                       0.9 * 0.4 * 0.2)  # the product, whatever ensemble scored the selection
    b[:] = 0.7  # geomean (0.9 * 0.7 * 0.2) ** (1/3) = 0.501: just above 0.5
    assert np.array_equal(bench.gen2_labels([a, b, c], keep, best, (32, 32), "multinet-binary"),
                          np.ones((2, 32, 32)))
    with pytest.raises(ValueError, match="'vote' is not one of best, multinet, multinet-binary"):
        bench.gen2_labels([a, b, c], keep, best, (32, 32), "vote")


def test_area_ratios_sum_each_videos_pixels(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    video_area = importlib.import_module("video_area")
    gt = np.zeros((3, 4, 4), bool)
    gt[:, :2, :2] = True  # 4 object pixels per frame
    masks = np.zeros((3, 4, 4), np.float32)
    masks[0, :2, :] = 0.7  # 8 pixels >= 0.5
    masks[1, 0, 0] = 0.49  # none
    masks[2] = 0.5  # 16
    assert video_area.area_ratios(masks, gt, np.array([0, 0, 1])).tolist() == [8 / 8, 16 / 4]
    small = np.zeros((1, 2, 2), np.float32)
    small[0, 0, 0] = 1.0  # at 4 x 4 (bilinear): 1, 0.75, 0.75, 0.5625 on the top-left block
    assert video_area.area_ratios(small, gt[:1], np.array([0])).tolist() == [1.0]


def test_the_cpu_students_file_builds_all_five_architectures_at_128_px():
    """benchmarks/cpu_students.json: the population_gpu.py --models of the five architectures that
    beat their teacher on the CPU (docs/results.md, nineteenth session)."""
    import torch

    from popdistill.students import create_student

    models = json.loads((ROOT / "benchmarks" / "cpu_students.json").read_text())
    assert {n.removesuffix("_tiny") for n in models} == {"lowres", "fconv", "unet", "denseunet", "dilateunet"}
    images = torch.randint(0, 256, (2, 3, 96, 160), dtype=torch.uint8)
    for name, kwargs in models.items():
        masks = create_student(name, **kwargs).predict(images)
        side = 32 if name == "lowres_tiny" else 128  # LowRes-Net: a quarter of its 128-px input
        assert masks.shape == (2, 1, side, side) and 0.0 <= masks.min() and masks.max() <= 1.0
