"""Boxes from soft masks and box IoU, checked on hand-drawn masks."""

from __future__ import annotations

import numpy as np
import pytest

from popdistill.errors import UserError
from popdistill.evaluate.boxes import box_iou, mask_to_box, max_box_iou


def test_single_pixel_box_is_exclusive():
    m = np.zeros((5, 6), np.float32)
    m[2, 3] = 1.0
    np.testing.assert_array_equal(mask_to_box(m), [3, 2, 4, 3])
    np.testing.assert_array_equal(mask_to_box(m, mode="all"), [3, 2, 4, 3])


def test_largest_component_vs_all_foreground():
    m = np.zeros((8, 8), np.float32)
    m[0:3, 0:3] = 0.9  # 9 pixels
    m[7, 7] = 0.6  # 1 pixel
    np.testing.assert_array_equal(mask_to_box(m, mode="largest"), [0, 0, 3, 3])
    np.testing.assert_array_equal(mask_to_box(m, mode="all"), [0, 0, 8, 8])


def test_components_are_eight_connected():
    m = np.zeros((8, 8), np.float32)
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0  # a diagonal: one component with 8-connectivity
    m[5, 5] = m[5, 6] = 1.0  # two 4-connected pixels
    np.testing.assert_array_equal(mask_to_box(m), [0, 0, 3, 3])


def test_threshold_applies_before_the_box():
    m = np.zeros((4, 4), np.float32)
    m[0, 0], m[3, 3] = 0.4, 0.8
    np.testing.assert_array_equal(mask_to_box(m, threshold=0.5, mode="all"), [3, 3, 4, 4])
    np.testing.assert_array_equal(mask_to_box(m, threshold=0.3, mode="all"), [0, 0, 4, 4])
    assert mask_to_box(m, threshold=0.9) is None


def test_no_foreground_gives_no_box():
    assert mask_to_box(np.zeros((4, 4))) is None
    assert mask_to_box(np.full((4, 4), 0.49)) is None


def test_unknown_mode_names_choices():
    with pytest.raises(UserError, match="largest, all"):
        mask_to_box(np.ones((2, 2)), mode="biggest")


def test_box_iou_hand_values():
    a = np.array([0, 0, 2, 2], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 4, 1]], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (1, 4)
    np.testing.assert_allclose(iou[0], [1 / 7, 1.0, 0.0, 2 / 6])
    # N x M and symmetric
    np.testing.assert_allclose(box_iou(b, b).diagonal(), 1.0)
    np.testing.assert_allclose(box_iou(b, a)[:, 0], iou[0])


def test_degenerate_boxes_have_zero_iou():
    z = np.array([1, 1, 1, 1], np.float32)
    assert box_iou(z, z)[0, 0] == 0.0


def test_max_box_iou_missing_sides():
    box = np.array([0, 0, 2, 1], np.float32)
    assert max_box_iou(None, np.array([[0, 0, 2, 1]])) == 0.0
    assert max_box_iou(box, None) == 0.0
    assert max_box_iou(box, np.zeros((0, 4))) == 0.0
    assert max_box_iou(box, np.array([[0, 0, 4, 1], [9, 9, 10, 10]])) == pytest.approx(0.5)
