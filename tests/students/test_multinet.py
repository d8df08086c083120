"""Multi-Net: the students' ensemble mask (product, geometric mean), checked by hand, on
tensors and on numpy frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdistill.errors import UserError
from popdistill.students import MultiNet, create_student, resize_to
from popdistill.students.multinet import list_ensembles, multinet_mask


def test_product_by_hand():
    a = torch.tensor([[1.0, 0.5], [0.0, 1.0]]).view(1, 1, 2, 2)
    b = torch.tensor([[0.5, 0.5], [1.0, 1.0]]).view(1, 1, 2, 2)
    c = torch.tensor([[0.8, 1.0], [1.0, 0.25]]).view(1, 1, 2, 2)
    expected = torch.tensor([[0.4, 0.25], [0.0, 0.25]]).view(1, 1, 2, 2)
    torch.testing.assert_close(multinet_mask([a, b, c]), expected)


def test_geomean_is_the_nth_root_of_the_product_and_keeps_the_masks_scale():
    a = torch.tensor([[0.8, 0.5], [0.0, 1.0]]).view(1, 1, 2, 2)
    b = torch.tensor([[0.8, 0.5], [1.0, 1.0]]).view(1, 1, 2, 2)
    c = torch.tensor([[0.8, 0.5], [1.0, 0.125]]).view(1, 1, 2, 2)
    expected = torch.tensor([[0.8, 0.5], [0.0, 0.5]]).view(1, 1, 2, 2)  # cbrt(0.125) = 0.5
    torch.testing.assert_close(multinet_mask([a, b, c], ensemble="geomean"), expected)
    torch.testing.assert_close(multinet_mask([a, b, c]), multinet_mask([a, b, c], ensemble="product"))
    with pytest.raises(UserError, match="unknown Multi-Net ensemble 'max'; valid names: geomean, product"):
        multinet_mask([a, b], ensemble="max")
    assert list_ensembles() == ["geomean", "product"]


def test_masks_of_different_sizes_are_resized_to_the_largest():
    small = torch.full((2, 1, 4, 4), 0.5)  # constant: resizing keeps the value
    big = torch.zeros(2, 1, 8, 8)
    big[..., :4, :] = 0.8
    out = multinet_mask([small, big])
    assert out.shape == (2, 1, 8, 8)
    torch.testing.assert_close(out[..., :4, :], torch.full((2, 1, 4, 8), 0.4))
    torch.testing.assert_close(out[..., 4:, :], torch.zeros(2, 1, 4, 8))
    # B x H x W masks and an explicit size work too.
    assert multinet_mask([small[:, 0], big[:, 0]], size=(6, 10)).shape == (2, 6, 10)


def test_numpy_frames_give_a_numpy_frame_resized_to_the_largest():
    a = np.full((2, 2), 0.5, np.float32)
    b = np.array([[1.0, 0.0], [0.5, 1.0]], np.float32)
    assert np.allclose(multinet_mask([a, b]), [[0.5, 0.0], [0.25, 0.5]])
    out = multinet_mask([np.full((4, 4), 0.5, np.float32)] * 2, (8, 8))
    assert isinstance(out, np.ndarray) and out.shape == (8, 8) and np.allclose(out, 0.25)


def test_resize_to_keeps_range_and_accepts_3d():
    m = torch.rand(3, 5, 7)
    out = resize_to(m, (20, 11))
    assert out.shape == (3, 20, 11) and out.min() >= 0 and out.max() <= 1


def test_multinet_module_multiplies_its_students_masks():
    torch.manual_seed(0)
    students = [create_student("lowres_tiny"), create_student("unet_tiny")]
    ensemble = MultiNet(students)
    images = torch.randint(0, 256, (2, 3, 48, 80), dtype=torch.uint8)
    product, masks = ensemble.predict_all(images)
    assert product.shape == (2, 1, 48, 80)
    assert [m.shape for m in masks] == [(2, 1, 48, 80)] * 2
    torch.testing.assert_close(product, masks[0] * masks[1])
    torch.testing.assert_close(
        masks[0], students[0].predict_resized(images)
    )  # LowRes-Net's 16x16 mask, resized to the image
    assert (product <= torch.minimum(masks[0], masks[1]) + 1e-7).all()
    torch.testing.assert_close(ensemble(images), product)


def test_empty_inputs_fail():
    with pytest.raises(ValueError):
        multinet_mask([])
    with pytest.raises(ValueError):
        MultiNet([])
