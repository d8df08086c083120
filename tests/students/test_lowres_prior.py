"""LowRes-Net's FC head starts at the foreground prior, so Adam lr 1e-3 + MSE does not collapse it.

With PyTorch's default init the first Adam step moves all 67 M weights of the full-size FC head
(65,536 non-negative inputs -> 1,024) by ~lr in one direction: every logit drops by ~20, the
sigmoid saturates and the MSE gradient vanishes for good (benchmarks/lowres_collapse.py). The
checks use a narrow surrogate (``width=4``) that keeps the full-size 128 px input and the
identical 65,536 -> 1,024 FC head.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from popdistill.errors import UserError
from popdistill.students import create_student


def _surrogate(**kw):
    torch.manual_seed(0)
    return create_student("lowres", width=4, **kw)


def _blobs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with one bright disk each (~5 % of the frame) and its 32 x 32 mask."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    images, masks = [], []
    for _ in range(n):
        cy, cx = (torch.rand(2, generator=g) * 64 + 32).tolist()
        r = float(torch.rand(1, generator=g) * 8 + 12)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()
        colour = torch.rand(3, 1, 1, generator=g)
        img = 0.3 * torch.rand(3, 128, 128, generator=g) * (1 - disk) + colour * disk
        images.append(img)
        masks.append(F.interpolate(disk[None, None], size=32, mode="area")[0])
    return torch.stack(images), torch.stack(masks)


def test_fc_bias_starts_at_the_prior_logit():
    model = _surrogate()
    fc = model.head[1]
    assert fc.in_features == 64 * 32 * 32 and fc.out_features == 32 * 32  # the full-size head
    torch.testing.assert_close(fc.bias, torch.full_like(fc.bias, math.log(0.05 / 0.95)))
    x, _ = _blobs(4)
    with torch.no_grad():
        assert abs(float(model(x).mean()) - 0.05) < 0.02
        assert abs(float(_surrogate(head_prior=None)(x).mean()) - 0.5) < 0.1


def _fc_grad_norm_after_steps(model, steps: int = 3) -> float:
    """FC gradient norm after ``steps`` Adam (lr 1e-3) steps of MSE on blob batches of 16."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    fc = model.head[1]
    for step in range(steps + 1):
        x, y = _blobs(16, seed=step)
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        if step < steps:
            opt.step()
    return float(torch.sqrt(fc.weight.grad.pow(2).sum() + fc.bias.grad.pow(2).sum()))


def test_full_size_head_does_not_collapse_under_adam_lr_1e3():
    # default init: every logit is pushed to < -15 within three steps, the gradient is gone
    assert _fc_grad_norm_after_steps(_surrogate(head_prior=None)) < 1e-6
    # prior init: the head still learns
    assert _fc_grad_norm_after_steps(_surrogate()) > 1e-3


def test_head_prior_is_validated():
    with pytest.raises(UserError, match="head_prior"):
        create_student("lowres_tiny", head_prior=1.0)
    assert create_student("lowres_tiny", head_prior=None).config.head_prior is None


def test_head_learns_at_a_tenth_of_the_rate_so_a_step_moves_logits_a_tenth():
    x, y = _blobs(8)
    moved = {}
    for scale in (1.0, 0.1):
        model = _surrogate(head_prior=None, head_lr_scale=scale)
        groups = model.param_groups(1e-3)
        assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-3 * scale])
        assert list(groups[1]["params"]) == list(model.head.parameters())
        assert sum(p.numel() for g in groups for p in g["params"]) == sum(
            p.numel() for p in model.parameters())
        opt = torch.optim.Adam(groups)
        model.train()
        before = model.logits(x).detach()
        F.mse_loss(model(x), y).backward()
        opt.step()
        moved[scale] = float((model.logits(x).detach() - before).abs().mean())
    # Adam's first step moves each logit by ~lr * sum(|inputs|): ~tens at full rate
    assert moved[1.0] > 5.0 and moved[0.1] < moved[1.0] / 5


def test_the_tiny_variant_keeps_the_papers_head():
    tiny = create_student("lowres_tiny")
    assert tiny.config.head_lr_scale == 1.0 and tiny.config.head_prior is None
    assert [g["lr"] for g in tiny.param_groups(1e-3)] == [1e-3, 1e-3]
    with pytest.raises(UserError, match="head_lr_scale"):
        create_student("lowres_tiny", head_lr_scale=0)
