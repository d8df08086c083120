"""EvalSeg-Net and its training target (cosine similarity to the Multi-Net mask)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from popdistill.students import EvalSegNet, create_evalseg, quality_target


def test_identical_masks_score_one_and_disjoint_masks_zero():
    m = torch.rand(16, 16)
    assert quality_target(m, m).item() == pytest.approx(1.0)
    a = torch.zeros(4, 4)
    b = torch.zeros(4, 4)
    a[:2] = 1.0
    b[2:] = 0.7
    assert quality_target(a, b).item() == 0.0


def test_cosine_by_hand_and_scale_invariance():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert quality_target(a, b).item() == pytest.approx(0.5)  # 1 / (sqrt2 * sqrt2)
    c = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert quality_target(a, c).item() == pytest.approx(2 / (math.sqrt(2) * math.sqrt(3)))
    assert quality_target(0.3 * a, a).item() == pytest.approx(1.0)


def test_zero_masks_and_batches():
    z = torch.zeros(3, 1, 4, 4)
    m = torch.zeros(3, 1, 4, 4)
    m[0] = 1.0
    m[1, 0, 0, 0] = 0.5
    # item 0: mask vs empty -> 0; item 1: a point vs empty -> 0; item 2: both empty -> 0 (an
    # empty mask is never a good pseudo-label, even when every student's is empty)
    torch.testing.assert_close(quality_target(m, z), torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(quality_target(m, m), torch.tensor([1.0, 1.0, 0.0]))
    out = quality_target(np.ones((2, 5, 5)), np.ones((2, 5, 5)))
    torch.testing.assert_close(out, torch.ones(2))
    with pytest.raises(ValueError, match="resize first"):
        quality_target(torch.ones(4, 4), torch.ones(8, 8))


def test_tiny_evalseg_scores_and_learns():
    torch.manual_seed(0)
    model = create_evalseg("evalseg_tiny")
    assert isinstance(model, EvalSegNet) and model.registry_name == "evalseg_tiny"
    s = model.input_size
    images, masks = torch.rand(4, 3, s, s), torch.rand(4, 1, s, s)
    target = torch.tensor([0.9, 0.1, 0.5, 0.7])
    scores = model(images, masks)
    assert scores.shape == (4,) and scores.min() >= 0 and scores.max() <= 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(model(images, masks), target)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.nn.functional.mse_loss(model(images, masks), target).item() < first


def test_predict_resizes_images_and_masks_and_uses_the_mask():
    torch.manual_seed(0)
    model = create_evalseg("evalseg_tiny")
    images = torch.randint(0, 256, (2, 3, 50, 70), dtype=torch.uint8)
    masks = torch.rand(2, 20, 20)
    scores = model.predict(images, masks)
    assert scores.shape == (2,) and model.training
    torch.testing.assert_close(scores, model.predict(images.float() / 255, masks[:, None]))
    assert not torch.allclose(scores, model.predict(images, 1.0 - masks))


def _full_head_scores_after_steps(head_lr_scale: float, steps: int = 3, lr: float = 1e-4) -> torch.Tensor:
    """Training-mode scores of a narrow surrogate with the full-size 65,536 -> 512 head after
    ``steps`` Adam steps at ``lr`` (the paper's 1e-4; MSE to targets in [0.4, 0.9], blob images)."""
    import torch.nn.functional as F

    from tests.students.test_lowres_prior import _blobs

    torch.manual_seed(0)
    net = create_evalseg("evalseg", width=4, head_lr_scale=head_lr_scale)
    assert net.head[1].in_features == 64 * 32 * 32 and net.head[1].out_features == 512
    opt = torch.optim.Adam(net.param_groups(lr))
    g = torch.Generator().manual_seed(0)
    net.train()
    for step in range(steps):
        x, m = _blobs(8, seed=step)
        loss = F.mse_loss(net(x, F.interpolate(m, size=128)), torch.rand(8, generator=g) * 0.5 + 0.4)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, m = _blobs(8, seed=99)
    with torch.no_grad():  # batch statistics, as in training (running ones lag 3 steps behind)
        return net(x, F.interpolate(m, size=128))


def test_full_size_head_learns_at_a_hundredth_of_the_rate_and_collapses_at_the_full_rate():
    # one rate everywhere: Adam's first step moves each score logit by ~lr x 65,536 inputs, the
    # sigmoid saturates and every mask gets the same score
    collapsed = _full_head_scores_after_steps(1.0)
    assert float(collapsed.std()) < 1e-3 and float(collapsed.min()) > 0.99
    # a head rate of 1e-4 collapses too (0.1 x lr 1e-3); the default (head at 0.01 x lr) keeps
    # scores that differ between masks at the paper's rate and at 1e-3
    assert float(_full_head_scores_after_steps(0.1, lr=1e-3).std()) < 1e-3
    assert float(_full_head_scores_after_steps(0.01).std()) > 5e-3
    assert float(_full_head_scores_after_steps(0.01, lr=1e-3).std()) > 5e-3
    assert create_evalseg("evalseg", width=4).config.head_lr_scale == 0.01
    tiny = create_evalseg("evalseg_tiny")
    assert [g["lr"] for g in tiny.param_groups(1e-3)] == [1e-3, 1e-3]
    groups = create_evalseg("evalseg", width=4).param_groups(1e-4)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-6])
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in create_evalseg("evalseg", width=4).parameters())
