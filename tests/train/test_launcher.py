"""Launcher configs and the `popdistill train` argument handling (no Ray cluster needed)."""

from __future__ import annotations

import argparse

import pytest
import yaml

from popdistill.cli import build_parser
from popdistill.commands.train import build_config
from popdistill.config import load
from popdistill.errors import UserError
from popdistill.train.config import DEFAULT_STUDENTS, TrainConfig
from popdistill.train.launcher import concurrent_runs, read_store, run_config, scaling_config


def _cfg(**kw) -> TrainConfig:
    return load(TrainConfig, {"store": "s", "out": "/tmp/popdistill-run", **kw})


@pytest.mark.parametrize(
    "use_gpu, has_gpus, expected",
    [
        (None, True, {"CPU": 0.9, "GPU": 1}),  # auto: a GPU per worker on a GPU cluster
        (None, False, {"CPU": 0.9}),
        (False, True, {"CPU": 0.9}),
        (True, False, {"CPU": 0.9, "GPU": 1}),
    ],
)
def test_scaling_config_gpu_per_worker(use_gpu, has_gpus, expected):
    sc = scaling_config(_cfg(use_gpu=use_gpu, num_workers=2), has_gpus)
    assert sc.num_workers == 2 and sc.use_gpu == ("GPU" in expected)
    assert sc._resources_per_worker_not_none == expected


def test_run_config_is_named_after_the_student_under_the_run_dir():
    rc = run_config(_cfg(student="unet", max_failures=3, keep_checkpoints=4))
    assert rc.name == "unet"
    assert rc.storage_path == "/tmp/popdistill-run/train"
    assert rc.failure_config.max_failures == 3 and rc.checkpoint_config.num_to_keep == 4
    assert run_config(_cfg(student="unet", name="unet-b")).name == "unet-b"


def test_read_store_names_an_empty_store(tmp_path):
    with pytest.raises(UserError, match="no Parquet files"):
        read_store(str(tmp_path), ["image"], 0.05, shuffle=False)


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", *argv])


def test_cli_flags_override_the_config_file(tmp_path):
    path = tmp_path / "pop.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "train": {"epochs": 7, "lr": 0.01, "store": "a"},
                "students": ["unet"],
                "models": {"unet": {"input_size": 128}},
            }
        )
    )
    cfg = build_config(
        _args(
            "--config",
            str(path),
            "--store",
            "b",
            "--out",
            "o",
            "--epochs",
            "2",
            "--gpu",
            "no",
            "--fresh",
            "--max-concurrent",
            "3",
            "--lr-schedule",
            "cosine",
            "--ema-decay",
            "0.99",
        )
    )
    assert cfg.train.store == "b" and cfg.train.epochs == 2 and cfg.train.lr == 0.01
    assert cfg.train.lr_schedule == "cosine" and cfg.train.ema_decay == 0.99
    assert cfg.train.use_gpu is False and cfg.train.resume is False and cfg.max_concurrent == 3
    assert [c.model for c in cfg.configs()] == [{"input_size": 128}]
    cfg = build_config(_args("--store", "b", "--out", "o", "--students", "lowres, unet_tiny"))
    assert cfg.students == ["lowres", "unet_tiny"] and cfg.train.use_gpu is None
    assert cfg.train.lr_schedule == "constant" and cfg.train.ema_decay == 0.0
    assert build_config(_args("--store", "b", "--out", "o")).students == DEFAULT_STUDENTS


def test_cli_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"train": {"epoch": 3}}))
    with pytest.raises(UserError, match=r"bad.yaml.*train.epoch"):
        build_config(_args("--config", str(path), "--store", "b", "--out", "o"))
    with pytest.raises(UserError, match="store"):
        build_config(_args("--out", "o"))


def test_cli_rejects_an_unknown_student_before_starting_ray(capsys):
    from popdistill.cli import main

    assert main(["train", "--store", "b", "--out", "o", "--students", "unet_tiny,nope"]) == 2
    assert "unknown student 'nope'" in capsys.readouterr().err


def test_concurrent_runs_fit_the_cluster():
    five = [_cfg(student=f"s{i}") for i in range(5)]
    # 0.9 CPU per worker + 0.01 per driver: two runs on a 2-CPU machine, eight on 8 CPUs.
    assert concurrent_runs(five, {"CPU": 2.0}, has_gpus=False) == 2
    assert concurrent_runs(five, {"CPU": 8.0}, has_gpus=False) == 5
    assert concurrent_runs(five, {"CPU": 0.5}, has_gpus=False) == 1  # never zero
    # One GPU per worker: GPUs bound it; two-worker runs need two GPUs each.
    assert concurrent_runs(five, {"CPU": 64.0, "GPU": 3.0}, has_gpus=True) == 3
    two = [_cfg(student=f"s{i}", num_workers=2) for i in range(5)]
    assert concurrent_runs(two, {"CPU": 64.0, "GPU": 4.0}, has_gpus=True) == 2
    assert concurrent_runs(five, {"CPU": 64.0, "GPU": 3.0}, has_gpus=False) == 5
    shared = [_cfg(student=f"s{i}", gpus_per_worker=0.2) for i in range(5)]
    assert concurrent_runs(shared, {"CPU": 16.0, "GPU": 1.0}, has_gpus=True) == 5
    assert scaling_config(shared[0], True)._resources_per_worker_not_none == {
        "CPU": 0.9,
        "GPU": 0.2,
    }


def test_set_reaches_any_field_and_a_repeated_key_is_refused(tmp_path):
    cfg = build_config(_args("--store", "b", "--out", "o", "--set", "train.max_seconds=60",
                             "--set", "train.augment.flip=false"))
    assert cfg.train.max_seconds == 60.0 and cfg.train.augment.flip is False
    with pytest.raises(UserError, match="train.max_second"):
        build_config(_args("--store", "b", "--out", "o", "--set", "train.max_second=60"))
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  epochs: 2\ntrain:\n  epochs: 3\n")
    with pytest.raises(UserError, match=r"twice.yaml: duplicate key 'train' \(lines 1 and 3\)"):
        build_config(_args("--config", str(path), "--store", "b", "--out", "o"))
