"""In-model image transforms and shared blocks, checked against hand values and skimage."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2hsv

from popdistill.students._blocks import (
    DenseStage,
    UNetDecoder,
    conv_stage,
    image_gradients,
    rgb_to_grey,
    rgb_to_hsv,
)


def test_rgb_to_hsv_matches_skimage_including_ties_and_black():
    rng = np.random.default_rng(0)
    # Values on a coarse grid produce many ties between channels, grey pixels and black.
    rgb = rng.integers(0, 4, size=(2, 3, 16, 16)).astype(np.float32) / 3.0
    rgb[0, :, 0, 0] = 0.0
    ours = rgb_to_hsv(torch.from_numpy(rgb)).numpy()
    ref = np.stack([rgb2hsv(img.transpose(1, 2, 0)).transpose(2, 0, 1) for img in rgb])
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    smooth = rng.random((1, 3, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(
        rgb_to_hsv(torch.from_numpy(smooth)).numpy()[0],
        rgb2hsv(smooth[0].transpose(1, 2, 0)).transpose(2, 0, 1),
        atol=1e-6,
    )


def test_pure_colours_have_hand_known_hue():
    img = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]]).T.reshape(1, 3, 1, 4)
    hsv = rgb_to_hsv(img)[0, :, 0]
    torch.testing.assert_close(hsv[0], torch.tensor([0.0, 1 / 3, 2 / 3, 1 / 6]))
    torch.testing.assert_close(hsv[1], torch.ones(4))
    torch.testing.assert_close(hsv[2], torch.ones(4))


def test_grey_and_sobel_gradients_of_a_ramp():
    w = 6
    ramp = torch.arange(w, dtype=torch.float32).repeat(5, 1) * 0.1  # rises 0.1 per column
    img = ramp.expand(1, 3, 5, w)
    grey = rgb_to_grey(img)
    torch.testing.assert_close(grey[0, 0], ramp)  # luma weights sum to 1
    g = image_gradients(grey)[0]
    expected_ix = torch.full((5, w), 0.1)
    expected_ix[:, 0] = expected_ix[:, -1] = 0.05  # replicated border: half a central difference
    torch.testing.assert_close(g[0], expected_ix)
    torch.testing.assert_close(g[1], torch.zeros(5, w))
    # Transposed ramp: the derivative moves to Iy.
    gt = image_gradients(grey.transpose(2, 3))[0]
    torch.testing.assert_close(gt[1], expected_ix.T)


def test_dense_stage_concatenates_growth_channels():
    stage = DenseStage(3, 32, growth=12, num_convs=4)
    assert [c[0].in_channels for c in stage.convs] == [3, 15, 27, 39]
    assert stage.transition[0].in_channels == 51 and stage.transition[0].kernel_size == (1, 1)
    assert stage(torch.rand(2, 3, 8, 8)).shape == (2, 32, 8, 8)


def test_decoder_widths_with_and_without_skips():
    def stage(cin, cout, _level):
        return conv_stage(cin, cout)

    enc = (8, 16, 32)
    feats = [torch.rand(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate(enc)]
    with_skips = UNetDecoder(enc, (16, 8), stage)
    assert [b.stage[0][0].in_channels for b in with_skips.blocks] == [32 + 16, 16 + 8]
    no_skips = UNetDecoder(enc, (16, 8), stage, use_skips=False)
    assert [b.stage[0][0].in_channels for b in no_skips.blocks] == [32, 16]
    assert with_skips(feats).shape == no_skips(feats).shape == (1, 8, 16, 16)
    # Without skips the shallow features only set the size: their values do not matter.
    other = [torch.rand_like(f) for f in feats[:-1]] + [feats[-1]]
    no_skips.eval()
    torch.testing.assert_close(no_skips(feats), no_skips(other))
