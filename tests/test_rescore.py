"""Generation >= 2 scoring: EvalSeg-Net's target computed exactly (the students' agreement)."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from popdistill.data.schema import table_to_records
from popdistill.pipeline.rescore import agreement_scores, rescore_predictions, select_scored
from popdistill.storage import RunPath
from tests.train.toy import square_records, write_store


def _soft(mask: np.ndarray) -> np.ndarray:
    """A student's soft mask: 0.9 on ``mask``, 0.05 elsewhere (never exactly zero)."""
    return np.where(mask, 0.9, 0.05).astype(np.float32)


def test_agreement_scores_rank_the_odd_student_last_at_any_mask_size():
    left = torch.zeros(1, 1, 32, 32)
    left[..., 8:24, 2:14] = 1
    right = left.flip(-1)
    a = torch.from_numpy(_soft(left.numpy() > 0))
    b = torch.nn.functional.avg_pool2d(a, 4)  # the same mask at 8 x 8 (a LowRes-like output)
    c = torch.from_numpy(_soft(right.numpy() > 0))
    scores = agreement_scores([a, b, c])
    assert scores.shape == (1, 3)
    assert scores[0, 0] > 0.9 and scores[0, 1] > 0.9 and scores[0, 2] < 0.5


def test_rescore_by_agreement_keeps_the_majority_mask_without_an_evalseg_net(tmp_path):
    frames = square_records(6, size=32, seed=3, video="v")
    stores = {}
    for k, name in enumerate(("a", "b", "c")):
        recs = copy.deepcopy(frames)
        for i, r in enumerate(recs):
            wrong = k == i % 3  # on frame i, student i % 3 segments the wrong region
            r.mask = _soft(np.roll(r.gt_mask, 16, axis=1) & ~r.gt_mask if wrong else r.gt_mask)
        stores[name] = str(write_store(tmp_path / name / "v", recs, files=2).parent)
    out = RunPath.of(str(tmp_path / "scored"))
    scored = rescore_predictions(stores, "not-read", out, generation=2, scorer="agreement",
                                 log=lambda _: None)
    # the wrong student is never chosen, so every kept mask is the true square: J 1
    assert scored["j"] == pytest.approx([1.0] * 6)
    rows = table_to_records(pq.read_table(tmp_path / "scored" / "v.parquet"))
    assert [r.teacher for r in rows] == [f"agreement:{'b' if i % 3 == 0 else 'a'}" for i in range(6)]
    assert all(r.generation == 2 for r in rows)
    threshold = select_scored(out, RunPath.of(str(tmp_path / "sel")), scored["scores"], 0.5, None)
    kept = table_to_records(pq.read_table(tmp_path / "sel" / "v.parquet"))
    assert len(kept) == 3 and min(r.score for r in kept) >= threshold


def test_an_unknown_scorer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="scorer: 'votes' is not one of evalseg, agreement"):
        rescore_predictions({"a": str(tmp_path)}, "x", RunPath.of(str(tmp_path / "o")), 2,
                            scorer="votes")
