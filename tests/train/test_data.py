"""Store decoding, joint augmentation and size derivation (pure torch, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdistill.config import load
from popdistill.data.schema import records_to_table
from popdistill.errors import UserError
from popdistill.students import create_student
from popdistill.train.config import (
    AugmentConfig,
    AugmentSizes,
    PopulationConfig,
    TrainConfig,
    resolve_batch_size,
    resolve_sizes,
)
from popdistill.train.data import (
    augment_pairs,
    decode_gt_masks,
    decode_images,
    decode_soft_masks,
    stack_resized,
    training_batch,
)
from tests.train.toy import square_records


@pytest.mark.parametrize(
    "input_size, output_size, expected",
    [
        (128, 32, (160, 128, 32)),  # LowRes-Net: 160 resize, 128 crop, 32x32 label
        (256, 256, (310, 256, 256)),  # U-Nets: 310 resize, 256 crop
        (64, 16, (80, 64, 16)),  # lowres_tiny: same ratio 1.25
        (64, 64, (78, 64, 64)),  # unet_tiny: round(64 * 310 / 256) = round(77.5) = 78
    ],
)
def test_sizes_follow_the_thesis_ratios(input_size, output_size, expected):
    s = resolve_sizes(AugmentConfig(), input_size, output_size)
    assert (s.resize, s.crop, s.label) == expected


def test_sizes_and_batch_from_the_built_models():
    lowres, unet = create_student("lowres_tiny"), create_student("unet_tiny")
    assert resolve_sizes(AugmentConfig(), lowres.input_size, lowres.output_size).label == 16
    assert resolve_batch_size(None, lowres.input_size, lowres.output_size) == 32
    assert resolve_batch_size(None, unet.input_size, unet.output_size) == 16
    assert resolve_batch_size(5, unet.input_size, unet.output_size) == 5
    explicit = resolve_sizes(AugmentConfig(resize=100, crop=90, label=10, flip=False), 64, 64)
    assert explicit == AugmentSizes(100, 90, 10, False)
    with pytest.raises(UserError, match="smaller than the crop"):
        resolve_sizes(AugmentConfig(resize=50), 64, 64)


def test_config_errors_name_the_field():
    with pytest.raises(UserError, match="loss"):
        load(TrainConfig, {"store": "s", "out": "o", "loss": "l1"})
    with pytest.raises(UserError, match="lr_schedule.*cosine"):
        load(TrainConfig, {"store": "s", "out": "o", "lr_schedule": "linear"})
    with pytest.raises(UserError, match="ema_decay"):
        load(TrainConfig, {"store": "s", "out": "o", "ema_decay": 1.0})
    with pytest.raises(UserError, match="store"):
        load(TrainConfig, {"out": "o"})
    with pytest.raises(UserError, match="augment.crop"):
        load(TrainConfig, {"store": "s", "out": "o", "augment": {"crop": -1}})


def test_population_configs_one_per_student():
    pop = load(
        PopulationConfig,
        {
            "train": {"store": "s", "out": "o", "model": {"input_size": 64}},
            "students": ["unet_tiny", "lowres_tiny"],
            "models": {"lowres_tiny": {"width": 8}},
        },
    )
    cfgs = pop.configs()
    assert [c.run_name for c in cfgs] == ["unet_tiny", "lowres_tiny"]
    assert cfgs[0].model == {"input_size": 64}
    assert cfgs[1].model == {"input_size": 64, "width": 8}
    with pytest.raises(UserError, match="models"):
        load(
            PopulationConfig,
            {"train": {"store": "s", "out": "o"}, "students": ["a"], "models": {"b": {}}},
        )


def test_decode_round_trips_the_store_rows():
    records = square_records(3, size=20, mask_size=10)
    records[1].gt_mask = None
    rows = records_to_table(records).to_pydict()
    images, masks, gts = decode_images(rows), decode_soft_masks(rows), decode_gt_masks(rows)
    for r, im, m, gt in zip(records, images, masks, gts):
        assert torch.equal(im, torch.from_numpy(r.image).permute(2, 0, 1))
        np.testing.assert_allclose(m[0].numpy(), r.mask, atol=1 / 255)
        assert (gt is None) == (r.gt_mask is None)
        if gt is not None:
            assert np.array_equal(gt, r.gt_mask)


@pytest.mark.parametrize("codec", [None, "jpeg"])
def test_decoded_images_own_their_memory(codec):
    """Raw bytes and Pillow's decoded arrays are read-only: the tensors must not share them (torch
    warns, and an in-place augmentation would write into an immutable buffer)."""
    import warnings

    from popdistill.data.schema import encode_jpeg

    records = square_records(2, size=16, mask_size=8)
    if codec:
        for r in records:
            r.encoded, r.image_codec = encode_jpeg(r.image), codec
    rows = records_to_table(records).to_pydict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = decode_images(rows)
    for im in images:
        im.add_(1)  # writable, and writing leaves the rows alone
    assert decode_images(rows)[0].sum() != images[0].sum()


def test_stack_resized_groups_shapes_and_scales_uint8():
    a = torch.full((3, 10, 10), 255, dtype=torch.uint8)
    b = torch.zeros((3, 6, 8), dtype=torch.uint8)
    out = stack_resized([a, b, a], 4)
    assert out.shape == (3, 3, 4, 4) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.ones(3, 4, 4)) and torch.allclose(
        out[1], torch.zeros(3, 4, 4)
    )


def _find_window(source: torch.Tensor, crop: torch.Tensor) -> list[tuple[int, int, bool]]:
    """Every (y, x, flipped) where ``crop`` equals a window of ``source`` (C x R x R)."""
    c, r = crop.shape[-1], source.shape[-1]
    hits = []
    for y in range(r - c + 1):
        for x in range(r - c + 1):
            window = source[:, y : y + c, x : x + c]
            for flipped in (False, True):
                if torch.equal(window.flip(-1) if flipped else window, crop):
                    hits.append((y, x, flipped))
    return hits


def test_augmentation_is_joint():
    # The mask is a pixel-exact function of the image (channel 0 = mask), so a crop/flip that
    # moved the image but not the mask (or the other way round) would break it.
    g = torch.Generator().manual_seed(0)
    b, r = 12, 20
    masks = (torch.rand(b, 1, r, r, generator=g) > 0.5).float()
    images = torch.cat([masks, torch.rand(b, 2, r, r, generator=g)], dim=1)
    sizes = AugmentSizes(resize=r, crop=14, label=14, flip=True)
    img_out, mask_out = augment_pairs(images, masks, sizes, torch.Generator().manual_seed(1))
    assert img_out.shape == (b, 3, 14, 14) and mask_out.shape == (b, 1, 14, 14)
    assert torch.equal(img_out[:, :1], mask_out)
    windows = [_find_window(images[i], img_out[i]) for i in range(b)]
    assert all(len(w) == 1 for w in windows)  # random noise: each crop has exactly one origin
    (ys, xs, flips) = zip(*(w[0] for w in windows))
    assert len(set(zip(ys, xs))) > 3 and 0 < sum(flips) < b  # offsets and flips vary
    for i, (y, x, flipped) in enumerate(w[0] for w in windows):
        window = masks[i, :, y : y + 14, x : x + 14]
        assert torch.equal(window.flip(-1) if flipped else window, mask_out[i])


def test_label_is_the_cropped_mask_resized():
    g = torch.Generator().manual_seed(2)
    masks = (torch.rand(4, 1, 24, 24, generator=g) > 0.5).float()
    images = torch.cat([masks, masks, masks], dim=1)
    img_out, mask_out = augment_pairs(images, masks, AugmentSizes(24, 16, 4, True), g)
    assert mask_out.shape == (4, 1, 4, 4)
    expected = torch.nn.functional.interpolate(
        img_out[:, :1], size=4, mode="bilinear", align_corners=False, antialias=True
    )
    assert torch.allclose(mask_out, expected.clamp(0, 1), atol=1e-6)


def test_training_batch_keeps_the_square_under_its_mask():
    # 64-px images with a 32-px teacher mask: after resize, crop, flip and label resize the
    # target still marks the bright pixels of the augmented image.
    records = square_records(8, size=64, mask_size=32, seed=3)
    rows = records_to_table(records).to_pydict()
    sizes = AugmentSizes(resize=80, crop=64, label=16, flip=True)
    images, targets = training_batch(rows, sizes, torch.Generator().manual_seed(0))
    assert images.shape == (8, 3, 64, 64) and targets.shape == (8, 1, 16, 16)
    bright = torch.nn.functional.interpolate(
        (images.mean(1, keepdim=True) > 0.6).float(), size=16, mode="area"
    )
    pred, ref = targets[:, 0] >= 0.5, bright[:, 0] >= 0.5
    iou = (pred & ref).sum((1, 2)) / (pred | ref).sum((1, 2)).clamp_min(1)
    # Aligned: >= 0.75 (edge quantisation at 16 px); a 2-label-pixel misalignment gives 0.4-0.67.
    assert iou.min() >= 0.7 and iou.mean() > 0.9
