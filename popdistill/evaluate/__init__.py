"""Evaluation: metrics (P, J, CorLoc, F-beta, MAE), boxes, baselines, mask stores, reports."""

from popdistill.evaluate.baselines import centre_prior, create_baseline, full_mask, list_baselines
from popdistill.evaluate.boxes import box_iou, mask_to_box, max_box_iou
from popdistill.evaluate.masks_io import MaskReadError, open_mask_store
from popdistill.evaluate.metrics import EvalConfig, Evaluator, resize_mask

__all__ = [
    "EvalConfig",
    "Evaluator",
    "MaskReadError",
    "box_iou",
    "centre_prior",
    "full_mask",
    "create_baseline",
    "list_baselines",
    "mask_to_box",
    "max_box_iou",
    "open_mask_store",
    "resize_mask",
]
