import numpy as np
import pytest

from popdistill.retrieval import metrics
from popdistill.retrieval.metrics import (
    geometric_mean,
    mean_std,
    ranks_to_metrics,
    retrieval_metrics,
    t2v_ranks,
    v2t_ranks,
)

# 5 captions x 3 videos; captions 0,1 describe video 0, caption 2 video 1, captions 3,4 video 2.
SIMS = np.array(
    [
        [0.9, 0.8, 0.2],
        [0.3, 0.5, 0.6],
        [0.7, 0.7, 0.1],
        [0.2, 0.6, 0.6],
        [0.8, 0.1, 0.0],
    ]
)
CAP_VID = np.array([0, 0, 1, 2, 2])


def test_t2v_ranks_hand_computed_with_ties():
    # c0: 0.9 is top -> 1; c1: 0.3 below 0.5 and 0.6 -> 3; c2: 0.7 tied with v0 -> (1+2)/2;
    # c3: 0.6 tied with v1 -> 1.5; c4: 0.0 below both -> 3.
    np.testing.assert_array_equal(t2v_ranks(SIMS, CAP_VID), [1, 3, 1.5, 1.5, 3])


def test_v2t_ranks_best_caption_with_ties():
    # v0 column: best own caption c0 = 0.9 is top -> 1. v1: c2 = 0.7 is below c0's 0.8 -> 2.
    # v2 column [0.2, 0.6, 0.1, 0.6, 0.0]: best own caption c3 = 0.6 ties with c1 -> 1.5.
    np.testing.assert_array_equal(v2t_ranks(SIMS, CAP_VID), [1, 2, 1.5])


def test_retrieval_metrics_both_directions():
    out = retrieval_metrics(SIMS, CAP_VID)
    t2v, v2t = out["t2v"], out["v2t"]
    assert t2v["R1"] == pytest.approx(20.0)  # only c0 has rank <= 1
    assert t2v["R5"] == t2v["R10"] == pytest.approx(100.0)
    assert t2v["MdR"] == 1.5 and t2v["MnR"] == pytest.approx(2.0)
    assert t2v["GeoMean"] == pytest.approx((20 * 100 * 100) ** (1 / 3))
    assert t2v["num_queries"] == 5
    assert v2t["R1"] == pytest.approx(100 / 3)
    assert v2t["MdR"] == 1.5 and v2t["MnR"] == pytest.approx(1.5)
    assert v2t["num_queries"] == 3


def test_ranks_to_metrics_thresholds_and_fractional_ranks():
    m = ranks_to_metrics(np.array([1, 4, 5, 6, 10, 11, 10.5]))
    assert m["R1"] == pytest.approx(100 / 7)
    assert m["R5"] == pytest.approx(300 / 7)  # 1, 4, 5
    assert m["R10"] == pytest.approx(500 / 7)  # 10.5 is not within the top 10
    assert m["MdR"] == 6.0
    assert m["MnR"] == pytest.approx(47.5 / 7)
    assert geometric_mean(8.0, 27.0, 1.0) == pytest.approx(6.0)


def test_video_without_caption_is_not_a_v2t_query():
    sims = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]])
    cap_vid = np.array([0, 0])  # videos 1 and 2 have no caption
    ranks = v2t_ranks(sims, cap_vid)
    assert ranks[0] == 1 and np.isnan(ranks[1:]).all()
    assert ranks_to_metrics(ranks)["num_queries"] == 1
    # text->video still ranks against all three videos: caption 1 is third.
    np.testing.assert_array_equal(t2v_ranks(sims, cap_vid), [1, 3])


def _brute_force(sims, cap_vid):
    t2v = []
    for c, v in enumerate(cap_vid):
        order = list(np.argsort(-sims[c]))
        t2v.append(order.index(v) + 1)
    v2t = []
    for v in range(sims.shape[1]):
        order = list(np.argsort(-sims[:, v]))
        v2t.append(min(order.index(c) + 1 for c in np.flatnonzero(cap_vid == v)))
    return np.array(t2v), np.array(v2t)


def test_matches_brute_force_and_chunking(monkeypatch):
    rng = np.random.default_rng(0)
    cap_vid = np.repeat(np.arange(40), 3)
    sims = rng.normal(size=(120, 40)) + 2.0 * (np.arange(40)[None, :] == cap_vid[:, None])
    want_t2v, want_v2t = _brute_force(sims, cap_vid)
    np.testing.assert_array_equal(t2v_ranks(sims, cap_vid), want_t2v)
    np.testing.assert_array_equal(v2t_ranks(sims, cap_vid), want_v2t)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 7)  # forces many small chunks
    np.testing.assert_array_equal(t2v_ranks(sims, cap_vid), want_t2v)
    np.testing.assert_array_equal(v2t_ranks(sims, cap_vid), want_v2t)


def test_all_tied_gives_middle_rank():
    sims = np.zeros((4, 4))
    np.testing.assert_array_equal(t2v_ranks(sims, np.arange(4)), [2.5] * 4)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one entry per caption"):
        t2v_ranks(SIMS, np.array([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        t2v_ranks(SIMS, np.array([0, 0, 1, 2, 3]))
    bad = SIMS.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        v2t_ranks(bad, CAP_VID)


def test_mean_std_over_seeds_nested():
    runs = [{"a": 1.0, "b": {"c": 2.0}}, {"a": 3.0, "b": {"c": 6.0}}]
    out = mean_std(runs)
    assert out["a"] == pytest.approx((2.0, 1.0))
    assert out["b"]["c"] == pytest.approx((4.0, 2.0))
    assert mean_std(runs, ddof=1)["a"] == pytest.approx((2.0, np.sqrt(2.0)))
    with pytest.raises(ValueError, match="run 1"):
        mean_std([{"a": 1.0}, {"b": 1.0}])
