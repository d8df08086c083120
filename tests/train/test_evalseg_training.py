"""EvalSeg-Net training on Multi-Net targets (pure torch, one process)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation
from scipy.stats import spearmanr

from popdistill.students import create_evalseg, create_student, load_checkpoint, save_checkpoint
from popdistill.students.evalseg_net import quality_target
from popdistill.train.evalseg import (
    EvalSegTrainConfig,
    PairSet,
    build_pairs,
    evalseg_targets,
    fit_evalseg,
    score_masks,
    spread_rows,
    train_evalseg,
)
from tests.train.toy import square_frame, square_records, write_store


def test_targets_are_cosine_to_the_product():
    a = torch.zeros(1, 1, 4, 4)
    a[..., :2, :] = 1  # top half
    b = torch.ones(1, 1, 4, 4)  # everything
    multinet, targets = evalseg_targets([a, b])
    assert torch.equal(multinet, a)
    # cos(a, a) = 1; cos(b, a) = |a| / sqrt(|a| |b|) = sqrt(8 / 16)
    assert torch.allclose(targets, torch.tensor([[1.0, 0.5**0.5]]))


def _toy_pairs(n: int, seed: int, size: int = 32, students: int = 5) -> PairSet:
    """Frames with a bright square; each 'student' mask is the square dilated by a random
    amount and shifted by up to one pixel, so a mask's quality shows in (image, mask)."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        image, mask = square_frame(rng, size)
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        per_student = []
        for _ in range(students):
            r = int(rng.integers(0, size // 4 + 1))
            grown = binary_dilation(mask, iterations=r) if r else mask
            shifted = np.roll(grown, tuple(rng.integers(-1, 2, 2)), (0, 1))
            per_student.append(torch.from_numpy(shifted.astype(np.float32)))
        masks.append(torch.stack(per_student))
    masks = torch.stack(masks)  # N x S x s x s
    _, targets = evalseg_targets([masks[:, k : k + 1] for k in range(students)])
    return PairSet(torch.stack(images), (masks * 255).to(torch.uint8), targets)


def test_evalseg_scores_correlate_with_held_out_targets():
    torch.manual_seed(0)
    train, held_out = _toy_pairs(96, seed=0), _toy_pairs(40, seed=1)
    assert float(held_out.targets.std()) > 0.1  # the targets do vary
    model = create_evalseg("evalseg_tiny")
    losses = fit_evalseg(model, train, epochs=5)  # the paper's MSE, Adam 1e-4, batch 16
    assert losses[-1] < 0.5 * losses[0]
    images, masks, targets = held_out.batch(torch.arange(len(held_out)))
    scores = score_masks(model, images, masks)
    assert scores.shape == targets.shape and 0 <= float(scores.min()) <= float(scores.max()) <= 1
    assert spearmanr(scores.numpy(), targets.numpy()).statistic > 0.5


def test_build_pairs_from_students():
    torch.manual_seed(0)
    students = [create_student("unet_tiny").eval(), create_student("lowres_tiny").eval()]
    images = torch.from_numpy(np.stack([r.image for r in square_records(3, size=48)])).permute(
        0, 3, 1, 2
    )
    pairs = build_pairs(students, images, 32)
    assert pairs.images.shape == (3, 3, 32, 32) and pairs.masks.shape == (3, 2, 32, 32)
    assert len(pairs) == 6
    _, masks, targets = pairs.batch(torch.arange(6))
    # pair 2k + j is frame k with student j's mask; its target is cos(mask_j, product of both)
    product = masks[0::2] * masks[1::2]
    for k in range(3):
        for j in range(2):
            expected = quality_target(masks[2 * k + j, 0], product[k, 0])
            assert torch.isclose(targets[2 * k + j], expected, atol=1e-5)
    # the geometric-mean ensemble: cos(mask_j, sqrt(product)); the same images and masks
    geo = build_pairs(students, images, 32, "geomean")
    assert torch.equal(geo.masks, pairs.masks)
    _, _, geo_targets = geo.batch(torch.arange(6))
    for k in range(3):
        for j in range(2):
            expected = quality_target(masks[2 * k + j, 0], product[k, 0].sqrt())
            assert torch.isclose(geo_targets[2 * k + j], expected, atol=1e-5)
    assert not torch.allclose(geo_targets, targets)


@pytest.mark.timeout(120)
def test_train_evalseg_driver(tmp_path):
    torch.manual_seed(0)
    paths = []
    for name in ("unet_tiny", "fconv_tiny"):
        paths.append(str(save_checkpoint(tmp_path / f"{name}.pt", create_student(name))))
    store = write_store(tmp_path / "store", square_records(10, size=40), files=2)
    cfg = EvalSegTrainConfig(
        store=str(store),
        students=paths,
        out=str(tmp_path / "run"),
        model="evalseg_tiny",
        epochs=2,
        max_frames=7,
        read_batch=4,
    )
    summary = train_evalseg(cfg, log=lambda *_: None)
    assert summary["frames"] == 7 and summary["pairs"] == 14 and len(summary["losses"]) == 2
    model, payload = load_checkpoint(summary["checkpoint"])
    assert payload["kind"] == "evalseg" and payload["config"]["evalseg"]["students"] == paths
    images = torch.from_numpy(square_records(2, size=40)[0].image).permute(2, 0, 1)[None]
    assert 0 <= float(score_masks(model, images, torch.rand(1, 1, 40, 40))) <= 1


def test_spread_rows_covers_every_file_evenly():
    # 5 videos of 48 frames, 20 frames wanted: 4 from each video, evenly spaced (every 12th);
    # taking the first 20 rows in file order would use one video only.
    rows = spread_rows([48] * 5, 20)
    assert [len(r) for r in rows] == [4] * 5
    assert rows[0] == [0, 12, 24, 36] and rows[4] == [0, 12, 24, 36]
    assert spread_rows([3, 0, 2], 10) == [[0, 1, 2], [], [0, 1]]  # fewer rows than asked: all
    assert sum(map(len, spread_rows([7, 11, 5], 9))) == 9
    assert spread_rows([], 4) == []
