"""Student training on Ray Train: one run, the killed-worker resume, the population (CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from popdistill.config import load, to_dict
from popdistill.students import load_checkpoint
from popdistill.train import TrainConfig, train_student
from popdistill.train.loop import (
    CHECKPOINT_FILE,
    centre_prior_j,
    create_loss,
    lr_factor,
    validate_epoch,
    validation_metrics,
)
from tests.train.toy import square_records, write_store

pytestmark = pytest.mark.ray

# 64 training frames at batch 8: 8 optimiser steps per epoch on one worker.
STEPS_PER_EPOCH = 8


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stores")
    return {
        "train": write_store(
            root / "selected", square_records(64, size=64, mask_size=32, seed=0), files=2
        ),
        "val": write_store(
            root / "val", square_records(32, size=64, mask_size=32, seed=1), files=1
        ),
    }


def _config(stores, out: Path, **kw) -> TrainConfig:
    base = dict(
        store=str(stores["train"]),
        val_store=str(stores["val"]),
        out=str(out),
        student="unet_tiny",
        epochs=4,
        batch_size=8,
    )
    return load(TrainConfig, {**base, **kw})


def _val_rows(stores) -> dict:
    return pq.read_table(next(stores["val"].glob("*.parquet"))).to_pydict()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cache_mb", [0.0, 1024.0])
def test_read_store_streams_or_caches_every_row(ray_session, stores, cache_mb):
    from popdistill.train.launcher import read_store

    ds = read_store(
        str(stores["train"]),
        ["frame", "image"],
        0.05,
        shuffle=True,
        cache_mb=cache_mb,
        rows_per_block=10,
    )
    frames = sorted(
        int(f) for b in ds.iter_batches(batch_size=None, batch_format="numpy") for f in b["frame"]
    )
    assert frames == list(range(64))  # both files, each row once
    assert ds.columns() == ["frame", "image"]


@pytest.mark.timeout(420)
def test_one_student_learns_and_checkpoints(ray_session, stores, tmp_path):
    cfg = _config(stores, tmp_path / "run", keep_checkpoints=2)
    summary = train_student(cfg)

    history = summary["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert [h["step"] for h in history] == [STEPS_PER_EPOCH * (e + 1) for e in range(4)]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    rows = _val_rows(stores)
    gts = [np.frombuffer(g, np.uint8).reshape(64, 64) > 0 for g in rows["gt_mask"]]
    centre = centre_prior_j(gts)
    metrics = summary["metrics"]
    assert metrics["epoch"] == 3 and metrics["val_frames"] == 32
    assert metrics["val_j"] > max(0.6, centre + 0.3), (metrics["val_j"], centre)

    # Checkpoint round trip: the stored model reproduces the reported validation numbers.
    ckpt = Path(summary["checkpoint"])
    assert ckpt.name == "epoch-0003"
    assert sorted(p.name for p in ckpt.parent.glob("epoch-*")) == ["epoch-0002", "epoch-0003"]
    model, payload = load_checkpoint(ckpt / CHECKPOINT_FILE)
    assert payload["step"] == 4 * STEPS_PER_EPOCH and payload["config"]["epoch"] == 3
    assert payload["config"]["train"] == to_dict(cfg) and payload["optimizer"] is not None
    sums = validate_epoch(
        model, [rows], model.input_size, model.output_size, create_loss("mse"), torch.device("cpu")
    )
    again = validation_metrics(sums)
    assert np.isclose(again["val_j"], metrics["val_j"]) and np.isclose(
        again["val_loss"], metrics["val_loss"]
    )

    written = json.loads((tmp_path / "run" / "train" / "unet_tiny.json").read_text())
    assert written["checkpoint"] == summary["checkpoint"] and written["sizes"] == {
        "resize": 78,
        "crop": 64,
        "label": 64,
    }


@pytest.mark.timeout(420)
def test_a_rerun_gives_the_same_numbers_and_a_step_budget_ends_the_run(ray_session, stores, tmp_path):
    """One torch thread per worker and a seeded block order: the same config trained twice
    gives the same losses and weights. ``max_steps`` ends training inside epoch 2 of 3, which
    is checkpointed and validated as the last (``val_every`` 2 skips epoch 1's validation)."""
    runs = [train_student(_config(stores, tmp_path / f"run{i}", epochs=3, max_steps=11,
                                  torch_threads=1, val_every=2)) for i in range(2)]
    a, b = runs
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert [(h["epoch"], h["step"]) for h in a["history"]] == [(0, 8), (1, 11)]
    assert "val_j" not in a["history"][0] and a["history"][1]["val_frames"] == 32
    wa = load_checkpoint(Path(a["checkpoint"]) / CHECKPOINT_FILE)[0].state_dict()
    wb = load_checkpoint(Path(b["checkpoint"]) / CHECKPOINT_FILE)[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    _, payload = load_checkpoint(Path(a["checkpoint"]) / CHECKPOINT_FILE)
    assert payload["step"] == 11 and payload["config"]["budget_spent"]


@pytest.mark.timeout(60)
def test_the_workers_shards_keep_the_stores_row_order(ray_session, stores, tmp_path):
    """Train gives each dataset the execution options of its DataConfig, not the dataset's own:
    those must keep the order (else the batches follow whichever read task ends first)."""
    from popdistill.train.launcher import build_trainer

    trainer = build_trainer(_config(stores, tmp_path / "order"))
    for name in ("train", "val"):
        assert trainer.data_config._resolve_execution_options(name).preserve_order, name


@pytest.mark.timeout(420)
def test_a_student_killed_and_resumed_ends_with_the_weights_of_one_never_killed(ray_session, stores, tmp_path):
    """The resumed epochs see the batches they would have seen: the block order is the same
    every epoch and each epoch's shuffle is seeded by the epoch, not by how many times this
    process has iterated the data (a resumed process starts that count again)."""
    kw = dict(val_store=None, torch_threads=1, epochs=3, cache_mb=0.0)
    clean = train_student(_config(stores, tmp_path / "clean", **kw))
    killed = train_student(_config(stores, tmp_path / "killed", fault_epoch=1,
                                   fault_marker=str(tmp_path / "died"), max_failures=1, **kw))
    assert killed["attempt"] == 1 and killed["start_epoch"] == 1
    assert [h["train_loss"] for h in killed["history"]] == [h["train_loss"] for h in clean["history"]]
    wa = load_checkpoint(Path(clean["checkpoint"]) / CHECKPOINT_FILE)[0].state_dict()
    wb = load_checkpoint(Path(killed["checkpoint"]) / CHECKPOINT_FILE)[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.timeout(420)
def test_killed_worker_resumes_from_its_last_checkpoint(ray_session, stores, tmp_path):
    marker = tmp_path / "died"
    cfg = _config(
        stores,
        tmp_path / "run",
        val_store=None,
        fault_epoch=2,
        fault_marker=str(marker),
        max_failures=1,
        lr_schedule="cosine",
        ema_decay=0.9,
    )
    summary = train_student(cfg)

    assert marker.exists()  # the worker process did exit at epoch 2
    assert summary["start_epoch"] == 2 and summary["attempt"] == 1
    history = summary["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]  # epochs 0, 1 from before the crash
    assert [h["attempt"] for h in history] == [0, 0, 1, 1]
    assert [h["step"] for h in history] == [STEPS_PER_EPOCH * (e + 1) for e in range(4)]
    # the resumed epochs continue the cosine schedule (not from the full rate again)
    assert [h["lr"] for h in history] == pytest.approx([1e-3 * lr_factor("cosine", e, 4) for e in range(4)])
    assert summary["metrics"]["epoch"] == 3
    _, payload = load_checkpoint(Path(summary["checkpoint"]) / CHECKPOINT_FILE)
    assert payload["step"] == 4 * STEPS_PER_EPOCH
    # the weights' average continued across the crash: one update per step of all four epochs
    assert payload["config"]["ema_updates"] == 4 * STEPS_PER_EPOCH and "training_model" in payload

    # Re-running the same command with one more epoch resumes after epoch 3, not from 0.
    again = train_student(load(TrainConfig, {**to_dict(cfg), "epochs": 5}))
    assert again["start_epoch"] == 4 and [h["epoch"] for h in again["history"]] == [0, 1, 2, 3, 4]
    assert again["metrics"]["step"] == 5 * STEPS_PER_EPOCH
    _, payload = load_checkpoint(Path(again["checkpoint"]) / CHECKPOINT_FILE)
    assert payload["config"]["ema_updates"] == 5 * STEPS_PER_EPOCH
    assert again["history"][-1]["lr"] == pytest.approx(1e-3 * lr_factor("cosine", 4, 5))  # 5 epochs' schedule


@pytest.mark.timeout(480)
def test_population_trains_two_students_concurrently(ray_session, stores, tmp_path):
    from popdistill.cli import main

    out = tmp_path / "run"
    config = tmp_path / "population.yaml"
    # cache_mb 0: both runs stream their stores through Ray Data read tasks every epoch, which
    # must find CPU beside the two 0.9-CPU workers (data_cpus 0.05).
    config.write_text(
        yaml.safe_dump(
            {
                "train": {"batch_size": 8, "epochs": 5, "cache_mb": 0},
                "models": {"lowres_tiny": {"width": 8}},
            }
        )
    )
    rc = main(
        [
            "train",
            "--config",
            str(config),
            "--store",
            str(stores["train"]),
            "--val-store",
            str(stores["val"]),
            "--students",
            "lowres_tiny,unet_tiny",
            "--out",
            str(out),
            "--epochs",
            "3",
        ]
    )
    assert rc == 0

    summaries = {
        n: json.loads((out / "train" / f"{n}.json").read_text())
        for n in ("lowres_tiny", "unet_tiny")
    }
    for name, s in summaries.items():
        assert s["metrics"]["epoch"] == 2 and "val_j" in s["metrics"], (
            name
        )  # --epochs beat the file
        model, payload = load_checkpoint(Path(s["checkpoint"]) / CHECKPOINT_FILE)
        assert payload["name"] == name and payload["config"]["train"]["student"] == name
    assert summaries["lowres_tiny"]["config"]["model"] == {"width": 8}
    assert (
        load_checkpoint(Path(summaries["lowres_tiny"]["checkpoint"]) / CHECKPOINT_FILE)[
            0
        ].config.width
        == 8
    )
    starts = [s["started"] for s in summaries.values()]
    ends = [s["finished"] for s in summaries.values()]
    assert max(starts) < min(ends)  # the two training loops ran at the same time


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_workers_share_the_epoch(ray_session, stores, tmp_path):
    summary = train_student(_config(stores, tmp_path / "run", epochs=2, num_workers=2))
    first = summary["history"][0]
    assert first["train_frames"] == 64  # summed over both workers' equal halves
    assert first["step"] == STEPS_PER_EPOCH // 2  # each worker steps through 32 rows at batch 8
    assert summary["metrics"]["val_frames"] == 32  # rank 0 validates on the whole store


@pytest.mark.gpu
@pytest.mark.timeout(420)
def test_workers_get_a_gpu_when_the_cluster_has_one(ray_session, stores, tmp_path):
    if not torch.cuda.is_available() or ray_session.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("needs a CUDA device visible to Ray")
    summary = train_student(_config(stores, tmp_path / "run", epochs=2))  # use_gpu: auto
    assert summary["device"].startswith("cuda")
    assert summary["metrics"]["epoch"] == 1
