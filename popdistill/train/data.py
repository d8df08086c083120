"""Store rows to training tensors, and joint image / mask augmentation (pure torch).

A batch from the pseudo-label store (a Ray Data numpy batch or a pyarrow table's columns) holds
raw HxWx3 uint8 image bytes with ``height`` / ``width`` and the teacher's soft mask as uint8
bytes at ``mask_height`` x ``mask_width``. Training pairs are made by resizing image and mask
to one square side, taking the *same* random crop of both, flipping both or neither, and
resizing the cropped mask to the model's output side (the thesis recipe, PAPERS.md section 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from popdistill.students.base import resize_images, resize_to
from popdistill.train.config import AugmentSizes

__all__ = [
    "decode_images",
    "decode_soft_masks",
    "decode_gt_masks",
    "stack_resized",
    "augment_pairs",
    "training_batch",
    "eval_images",
]


def decode_images(batch: Mapping[str, Any]) -> list[Tensor]:
    """Each row's image as a 3 x H x W uint8 tensor (raw or, with ``image_codec``, a file's
    bytes: :func:`popdistill.data.schema.decode_image`)."""
    from popdistill.data.schema import decode_image

    codecs = batch["image_codec"] if "image_codec" in batch else [None] * len(batch["image"])
    out = []
    for data, h, w, codec in zip(batch["image"], batch["height"], batch["width"], codecs):
        arr = decode_image(data, int(h), int(w), codec)
        # raw bytes and Pillow's arrays (Pillow >= 13) are read-only; torch wants its own memory
        out.append(torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1))
    return out


def decode_soft_masks(batch: Mapping[str, Any]) -> list[Tensor]:
    """Each row's teacher mask as a 1 x h x w float tensor in [0, 1]; a row without one raises."""
    out = []
    for i, (data, h, w) in enumerate(zip(batch["mask"], batch["mask_height"], batch["mask_width"])):
        if data is None:
            raise ValueError(f"row {i} of the batch has no teacher mask")
        arr = np.frombuffer(data, dtype=np.uint8).reshape(int(h), int(w))
        out.append(torch.from_numpy(arr.astype(np.float32) / 255.0)[None])
    return out


def decode_gt_masks(batch: Mapping[str, Any]) -> list[np.ndarray | None]:
    """Each row's ground-truth mask as an H x W bool array, or None where it has none."""
    if "gt_mask" not in batch:
        return [None] * len(batch["height"])
    out: list[np.ndarray | None] = []
    for data, h, w in zip(batch["gt_mask"], batch["height"], batch["width"]):
        out.append(
            None if data is None else np.frombuffer(data, np.uint8).reshape(int(h), int(w)) > 0
        )
    return out


def stack_resized(items: Sequence[Tensor], size: int) -> Tensor:
    """C x H x W tensors of any sizes as one float B x C x size x size batch.

    uint8 inputs are scaled to [0, 1]. Items of one shape are resized together in one call.
    """
    out: list[Tensor | None] = [None] * len(items)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(items):
        groups.setdefault(tuple(t.shape), []).append(i)
    for idx in groups.values():
        x = torch.stack([items[i] for i in idx])
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        x = resize_images(x, size)
        for j, i in enumerate(idx):
            out[i] = x[j]
    return torch.stack(out)  # type: ignore[arg-type]


def augment_pairs(
    images: Tensor, masks: Tensor, sizes: AugmentSizes, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Joint random crop + flip of images (B x 3 x R x R) and masks (B x 1 x R x R), both
    already at ``sizes.resize``; returns images at ``sizes.crop`` and masks at ``sizes.label``.

    Each pair gets its own crop offset and flip, shared by the image and its mask.
    """
    b, _, r, r2 = images.shape
    if masks.shape[0] != b or tuple(masks.shape[-2:]) != (r, r2):
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} differ")
    c = sizes.crop
    if c > min(r, r2):
        raise ValueError(f"crop {c} is larger than the resized pair {r}x{r2}")
    ys = torch.randint(0, r - c + 1, (b,), generator=generator).tolist()
    xs = torch.randint(0, r2 - c + 1, (b,), generator=generator).tolist()
    flips = (torch.rand(b, generator=generator) < 0.5).tolist() if sizes.flip else [False] * b
    img_out, mask_out = [], []
    for i in range(b):
        im = images[i, :, ys[i] : ys[i] + c, xs[i] : xs[i] + c]
        m = masks[i, :, ys[i] : ys[i] + c, xs[i] : xs[i] + c]
        if flips[i]:
            im, m = im.flip(-1), m.flip(-1)
        img_out.append(im)
        mask_out.append(m)
    return torch.stack(img_out), resize_to(torch.stack(mask_out), sizes.label)


def training_batch(
    batch: Mapping[str, Any], sizes: AugmentSizes, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """A store batch as augmented images (B x 3 x crop x crop) and target masks
    (B x 1 x label x label)."""
    images = stack_resized(decode_images(batch), sizes.resize)
    masks = stack_resized(decode_soft_masks(batch), sizes.resize).clamp_(0.0, 1.0)
    return augment_pairs(images, masks, sizes, generator)


def eval_images(batch: Mapping[str, Any], input_size: int) -> Tensor:
    """A store batch's images resized (whole, no crop) to the model's input side."""
    return stack_resized(decode_images(batch), input_size)
