"""Epoch helpers and checkpoint restore of the training loop, without a Ray cluster."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from popdistill.data.schema import records_to_table
from popdistill.students import create_student, save_checkpoint
from popdistill.students.checkpoint import load_checkpoint
from popdistill.train.config import AugmentConfig, resolve_sizes
from popdistill.train.ema import make_ema
from popdistill.train.loop import (
    CHECKPOINT_FILE,
    create_loss,
    lr_factor,
    restore_checkpoint,
    set_lr,
    train_epoch,
    validate_epoch,
    validation_metrics,
)
from tests.train.toy import square_records


def _batches(rows: dict, size: int, order: list[int] | None = None):
    order = order or list(range(len(rows["image"])))
    for i in range(0, len(order), size):
        yield {k: [v[j] for j in order[i : i + size]] for k, v in rows.items()}


class _Constant(nn.Module):
    """A 'student' whose mask is 0.5 everywhere."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, images):
        return torch.full((len(images), 1, self.size, self.size), 0.5)


def test_validate_epoch_matches_hand_computed_metrics():
    records = square_records(10, size=32, mask_size=8, seed=4)  # teacher masks at output size
    records[3].gt_mask = None  # a frame without ground truth counts for the loss only
    rows = records_to_table(records).to_pydict()
    sums = validate_epoch(
        _Constant(8), _batches(rows, 4), 32, 8, create_loss("mse"), torch.device("cpu")
    )
    m = validation_metrics(sums)
    # 0.5 binarises to all-foreground: J = P = foreground fraction of each frame.
    fractions = [r.gt_mask.mean() for r in records if r.gt_mask is not None]
    assert m["val_frames"] == 9
    assert np.isclose(m["val_j"], np.mean(fractions)) and np.isclose(m["val_p"], np.mean(fractions))
    assert np.isclose(m["val_loss"], 0.25)  # (0.5 - {0, 1})^2


def _unet_on_squares(frames: int, lr: float):
    """Rows of ``frames`` toy frames, a seeded tiny U-Net, its augmentation sizes and Adam."""
    torch.manual_seed(0)
    rows = records_to_table(square_records(frames, size=64, mask_size=32)).to_pydict()
    model = create_student("unet_tiny")
    sizes = resolve_sizes(AugmentConfig(), model.input_size, model.output_size)
    return rows, model, sizes, torch.optim.Adam(model.parameters(), lr=lr)


def test_train_epoch_counts_and_lowers_the_loss():
    rows, model, sizes, opt = _unet_on_squares(32, 1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(3):
        total, items, steps = train_epoch(
            model, opt, _batches(rows, 8), sizes, create_loss("mse"), g, torch.device("cpu")
        )
        assert (items, steps) == (32, 4)
        losses.append(total / items)
    assert losses[-1] < 0.85 * losses[0]


def test_restore_from_a_ray_checkpoint(tmp_path):
    import ray.train

    torch.manual_seed(1)
    model = create_student("lowres_tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 3, 64, 64)
    model(x).mean().backward()
    opt.step()
    state = {
        "train": {"student": "lowres_tiny"},
        "epoch": 4,
        "history": [{"epoch": 4}],
        "attempt": 0,
    }
    save_checkpoint(tmp_path / CHECKPOINT_FILE, model, opt, step=40, config=state)

    fresh = create_student("lowres_tiny")
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    restored = restore_checkpoint(
        ray.train.Checkpoint.from_directory(str(tmp_path)), fresh, fresh_opt
    )
    assert (
        restored["epoch"] == 4 and restored["step"] == 40 and restored["history"] == [{"epoch": 4}]
    )
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]



def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_train_epoch_averages_the_weights_after_every_step():
    rows, model, sizes, opt = _unet_on_squares(16, 1e-2)
    ema = make_ema(model, 0.5)
    _, _, steps = train_epoch(
        model, opt, _batches(rows, 4), sizes, create_loss("mse"), torch.Generator().manual_seed(0),
        torch.device("cpu"), ema,
    )
    assert steps == 4 and int(ema.n_averaged) == 4
    # the average lags the trained weights: neither the initial nor the last step's weights
    assert not torch.equal(_params(ema.module)[0], _params(model)[0])


def test_restore_with_a_weight_average_resumes_both(tmp_path):
    """A checkpoint of a run with an average: loading it gives the average (what predict uses);
    restoring it gives the trainer the trained weights and the average with its step count."""
    import ray.train

    torch.manual_seed(2)
    model = create_student("unet_tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = make_ema(model, 0.9)
    x = torch.rand(2, 3, 64, 64)
    for _ in range(3):
        opt.zero_grad()
        model(x).mean().backward()
        opt.step()
        ema.update_parameters(model)
    state = {"train": {}, "epoch": 0, "history": [], "attempt": 0, "ema_updates": 3}
    save_checkpoint(tmp_path / CHECKPOINT_FILE, ema.module, opt, 3, state, training_model=model)

    loaded, _ = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert all(torch.equal(a, b) for a, b in zip(_params(loaded), _params(ema.module)))
    fresh = create_student("unet_tiny")
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    fresh_ema = make_ema(fresh, 0.9)
    restore_checkpoint(ray.train.Checkpoint.from_directory(str(tmp_path)), fresh, fresh_opt, fresh_ema)
    assert all(torch.equal(a, b) for a, b in zip(_params(fresh), _params(model)))
    assert all(torch.equal(a, b) for a, b in zip(_params(fresh_ema.module), _params(ema.module)))
    assert int(fresh_ema.n_averaged) == 3
    assert not torch.equal(_params(fresh)[0], _params(fresh_ema.module)[0])

    # without an average on resume the trainer still continues from the trained weights
    plain = create_student("unet_tiny")
    restore_checkpoint(
        ray.train.Checkpoint.from_directory(str(tmp_path)), plain, torch.optim.Adam(plain.parameters())
    )
    assert all(torch.equal(a, b) for a, b in zip(_params(plain), _params(model)))

def test_lr_factor_constant_and_cosine():
    assert [lr_factor("constant", e, 4) for e in range(4)] == [1.0] * 4
    cosine = [lr_factor("cosine", e, 8) for e in range(8)]
    assert cosine[0] == 1.0 and cosine[4] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(cosine, cosine[1:]))  # strictly decreasing
    assert cosine[-1] == pytest.approx((1 - math.cos(math.pi / 8)) / 2) and cosine[-1] < 0.04
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor("linear", 0, 4)


def test_set_lr_scales_every_group_from_its_base_rate():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = torch.optim.Adam([{"params": a.parameters(), "lr": 1e-3}, {"params": b.parameters(), "lr": 1e-4}])
    base = [g["lr"] for g in opt.param_groups]
    assert set_lr(opt, base, 0.5) == pytest.approx(5e-4)
    assert set_lr(opt, base, 0.25) == pytest.approx(2.5e-4)  # from the base, not compounded
    assert opt.param_groups[1]["lr"] == pytest.approx(2.5e-5)


def test_train_epoch_stops_when_its_budget_says_so():
    rows, model, sizes, opt = _unet_on_squares(32, 1e-3)
    g = torch.Generator().manual_seed(0)
    asked = []

    def stop(steps: int) -> bool:
        asked.append(steps)
        return steps >= 3

    total, items, steps = train_epoch(
        model, opt, _batches(rows, 8), sizes, create_loss("mse"), g, torch.device("cpu"), stop=stop
    )
    assert (items, steps) == (24, 3) and asked == [1, 2, 3]


def test_budget_spent_by_steps_or_seconds_whichever_first():
    from popdistill.train.config import TrainConfig
    from popdistill.train.loop import budget_spent

    none = TrainConfig(store="s", out="o")
    assert not budget_spent(none, 10**9, 1e9)
    by_steps = TrainConfig(store="s", out="o", max_steps=100)
    assert not budget_spent(by_steps, 99, 1e9) and budget_spent(by_steps, 100, 0.0)
    by_time = TrainConfig(store="s", out="o", max_seconds=5.0, max_steps=100)
    assert budget_spent(by_time, 1, 5.0) and not budget_spent(by_time, 1, 4.9)


def test_bf16_training_on_the_cpu_tracks_fp32():
    """bf16 autocast (asked for explicitly on a CPU) trains the same model to a loss near fp32's."""
    losses = {}
    for precision in ("fp32", "bf16"):
        rows, model, sizes, opt = _unet_on_squares(32, 1e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(2):
            total, items, _ = train_epoch(model, opt, _batches(rows, 8), sizes, create_loss("mse"), g,
                                          torch.device("cpu"), precision=precision)
        losses[precision] = total / items
    assert abs(losses["bf16"] - losses["fp32"]) < 0.1 * losses["fp32"], losses
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran
