"""Generation >= 2 scoring: EvalSeg-Net's target computed exactly (the students' agreement)."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from popdistill.data.schema import records_to_table, table_to_records
from popdistill.selection.labels import label_support
from popdistill.selection.rescore import agreement_scores, empty_masks, rescore_predictions
from popdistill.selection.select import kept_by_rule, select_scored, selection_rule
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


def _two_full_one_conservative() -> list[torch.Tensor]:
    """Two students 0.9 on a 20 x 20 object; a third 0.9 only on its 12 x 12 core, 0.3 on the rest."""
    full = torch.zeros(1, 1, 32, 32)
    full[..., 6:26, 6:26] = 0.9
    core = torch.zeros(1, 1, 32, 32)
    core[..., 6:26, 6:26] = 0.3
    core[..., 10:22, 10:22] = 0.9
    return [full, full.clone(), core]


def test_product_agreement_prefers_the_conservative_student_geomean_the_majority():
    product = agreement_scores(_two_full_one_conservative())[0]
    geomean = agreement_scores(_two_full_one_conservative(), "geomean")[0]
    # the product (0.73 on the core, 0.24 on the ring) is nearest the student that hedges
    assert int(product.argmax()) == 2 and float(product[2]) == pytest.approx(1.0)
    # its n-th root (0.9 / 0.62) keeps the scale: the two students that agree win
    assert int(geomean.argmax()) == 0 and float(geomean[0]) == pytest.approx(float(geomean[1]))
    assert float(geomean[0]) > float(geomean[2]) + 0.02
    with pytest.raises(ValueError, match="unknown Multi-Net ensemble 'mean'; valid names: geomean, product"):
        agreement_scores(_two_full_one_conservative(), "mean")


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
    chosen = select_scored(out, RunPath.of(str(tmp_path / "sel")), scored["scores"], 0.5, None)
    kept = table_to_records(pq.read_table(tmp_path / "sel" / "v.parquet"))
    assert len(kept) == 3 and min(r.score for r in kept) >= chosen.threshold
    assert int(chosen.kept.sum()) == 3 and len(chosen.kept) == len(scored["scores"])


def test_an_unknown_scorer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown mask scorer 'votes'; valid names: agreement, evalseg"):
        rescore_predictions({"a": str(tmp_path)}, "x", RunPath.of(str(tmp_path / "o")), 2,
                            scorer="votes")


def test_a_mask_empty_at_the_threshold_is_never_chosen_or_selected(tmp_path):
    frames = square_records(4, size=32, seed=5, video="v")
    stores = {}
    for name, level in (("faint", 0.3), ("also_faint", 0.3), ("sure", 0.9)):
        recs = copy.deepcopy(frames)
        for r in recs:  # all three have the object's shape: they agree perfectly
            r.mask = np.where(r.gt_mask, level, 0.01).astype(np.float32)
        stores[name] = str(write_store(tmp_path / name / "v", recs, files=1).parent)
    masks = [torch.full((2, 1, 4, 4), 0.3), torch.full((2, 1, 4, 4), 0.6)]
    assert empty_masks(masks).tolist() == [[True, False], [True, False]]
    out = RunPath.of(str(tmp_path / "scored"))
    scored = rescore_predictions(stores, "-", out, 2, scorer="agreement", log=lambda _: None)
    assert scored["chosen"] == {"faint": 0, "also_faint": 0, "sure": 4}  # ties went to "faint"
    # where every student is empty, the frame scores 0 and is not selected even at top = 1
    for f in (tmp_path / "sure" / "v").glob("*.parquet"):
        recs = table_to_records(pq.read_table(f))
        for r in recs:
            r.mask = np.full_like(r.mask, 0.2)
        pq.write_table(records_to_table(recs), f)
    again = RunPath.of(str(tmp_path / "scored2"))
    scored = rescore_predictions(stores, "-", again, 2, scorer="agreement", log=lambda _: None)
    assert scored["scores"] == [0.0] * 4
    select_scored(again, RunPath.of(str(tmp_path / "sel")), scored["scores"], 1.0, None)
    assert not (tmp_path / "sel").exists() or not list((tmp_path / "sel").glob("*.parquet"))


def test_the_teachers_mask_competes_when_selection_includes_it(tmp_path):
    """selection.with_teacher: generation 1's VideoPCA store is one more candidate; where the
    students' masks are wrong or faint, the teacher's right mask is the one kept."""
    from popdistill.pipeline.loop import TEACHER

    frames = square_records(4, size=32, seed=7, video="v")
    stores = {}
    for name, make in (("off", lambda r: _soft(np.roll(r.gt_mask, 16, axis=1) & ~r.gt_mask)),
                       ("faint", lambda r: np.where(r.gt_mask, 0.3, 0.01).astype(np.float32)),
                       (TEACHER, lambda r: _soft(r.gt_mask))):
        recs = copy.deepcopy(frames)
        for r in recs:
            r.mask = make(r)
        stores[name] = str(write_store(tmp_path / name / "v", recs, files=1).parent)
    out = RunPath.of(str(tmp_path / "scored"))
    students_only = rescore_predictions({k: stores[k] for k in ("off", "faint")}, "-", out, 2,
                                        scorer="agreement", log=lambda _: None)
    assert students_only["chosen"] == {"off": 4, "faint": 0} and students_only["j"] == [0.0] * 4
    out = RunPath.of(str(tmp_path / "scored-with-teacher"))
    scored = rescore_predictions(stores, "-", out, 2, scorer="agreement", log=lambda _: None)
    # two of the three candidates put the object on the square, so their product peaks there:
    # the teacher's mask agrees best ("faint" is empty at 0.5, never chosen)
    assert scored["chosen"][TEACHER] == 4 and scored["j"] == pytest.approx([1.0] * 4)
    rows = table_to_records(pq.read_table(tmp_path / "scored-with-teacher" / "v.parquet"))
    assert {r.teacher for r in rows} == {f"agreement:{TEACHER}"}


def test_label_support_keeps_confident_components_and_drops_the_halo():
    m = np.full((2, 16, 16), 0.2, np.float32)  # a faint halo everywhere
    m[0, 2:8, 2:8] = 0.6
    m[0, 4, 4] = 0.9  # a component that reaches 0.8: kept whole, at its own values
    m[0, 10:14, 10:14] = 0.7  # >= 0.5 but never >= 0.8: dropped
    m[1, 8:10, 0:16] = 0.85  # a stripe on the second frame; the first frame's seed is not its
    out = label_support(m)
    assert out.dtype == np.float32 and out.shape == m.shape
    keep0 = np.zeros((16, 16), bool)
    keep0[2:8, 2:8] = True
    np.testing.assert_array_equal(out[0], np.where(keep0, m[0], 0.0))
    np.testing.assert_array_equal(out[1] > 0, m[1] >= 0.8)
    assert label_support(m[0]).shape == (16, 16)  # one frame
    np.testing.assert_array_equal(label_support(m[0]), out[0])


def test_rescore_with_support_writes_labels_without_the_halo(tmp_path):
    frames = square_records(4, size=32, seed=9, video="v")
    stores = {}
    for name in ("a", "b"):
        recs = copy.deepcopy(frames)
        for r in recs:
            r.mask = _soft(r.gt_mask)  # 0.9 on the object, 0.05 everywhere else
        stores[name] = str(write_store(tmp_path / name / "v", recs, files=1).parent)
    for support, folder in ((False, "plain"), (True, "support")):
        scored = rescore_predictions(stores, "-", RunPath.of(str(tmp_path / folder)), 2,
                                     scorer="agreement", log=lambda _: None, support=support)
        rows = table_to_records(pq.read_table(tmp_path / folder / "v.parquet"))
        halo = [float(r.mask[~r.gt_mask].max()) for r in rows]
        assert halo == pytest.approx([0.0 if support else 0.05] * 4, abs=0.005)  # stored as uint8 / 255
        assert all(float(r.mask[r.gt_mask].min()) == pytest.approx(0.9, abs=0.005) for r in rows)
        assert scored["j"] == pytest.approx([1.0] * 4)


def test_add_missing_frames_adds_the_teachers_frames_the_selection_lacks_once(tmp_path):
    from popdistill.selection.select import add_missing_frames

    frames = square_records(6, size=32, seed=11, video="v")
    teacher = copy.deepcopy(frames)
    for r in teacher:
        r.mask, r.teacher, r.generation = _soft(r.gt_mask), "videopca", 1
    write_store(tmp_path / "teacher" / "v", teacher[:4], files=2)  # generation 1 kept frames 0-3
    students = copy.deepcopy(frames)
    for r in students:
        r.mask, r.teacher, r.generation = np.full((32, 32), 0.7, np.float32), "agreement:a", 2
    selected = RunPath.of(str(tmp_path / "selected"))
    selected.mkdir()
    (selected / "v.parquet").write_table(records_to_table(students[2:5]))  # generation 2 kept 2-4
    for _ in range(2):  # idempotent once the selected store is rewritten, as select_scored does
        added = add_missing_frames(selected, RunPath.of(str(tmp_path / "teacher")))
        assert added == 2
        rows = [r for f in sorted((tmp_path / "selected").glob("*.parquet"))
                for r in table_to_records(pq.read_table(f))]
        by_frame = {r.frame: r for r in rows}
        assert sorted(by_frame) == [0, 1, 2, 3, 4] and len(rows) == 5
        assert {f: by_frame[f].teacher for f in by_frame} == {0: "videopca", 1: "videopca", 2: "agreement:a",
                                                              3: "agreement:a", 4: "agreement:a"}
        np.testing.assert_allclose(by_frame[0].mask, _soft(frames[0].gt_mask), atol=0.005)
        for f in (tmp_path / "selected").glob("keep-teacher-*.parquet"):
            f.unlink()
    empty = RunPath.of(str(tmp_path / "none"))
    assert add_missing_frames(empty, RunPath.of(str(tmp_path / "teacher"))) == 4  # an empty selection


def test_strata_keep_the_best_frames_of_plain_and_cluttered_backgrounds(tmp_path):
    """selection.strata: the students agree best on plain backgrounds; ranked corpus-wide the
    top half is all plain, ranked per edge-density stratum half of the cluttered frames stay."""
    rng = np.random.default_rng(7)
    stores, recs = {}, []
    for video, cluttered in (("plain", False), ("busy", True)):
        for r in square_records(4, size=32, seed=int(cluttered), video=video):
            if cluttered:
                noise = (rng.random(r.image.shape) * 255).astype(np.uint8)
                r.image = np.where(r.gt_mask[..., None], r.image, noise)
            else:
                r.image = np.where(r.gt_mask[..., None], r.image, 100).astype(np.uint8)
            recs.append(r)
    for name, shift in (("a", 0), ("b", 1)):
        own = copy.deepcopy(recs)
        for r in own:  # on cluttered frames the two students disagree by a few pixels more
            r.mask = _soft(np.roll(r.gt_mask, shift * (3 if r.video == "busy" else 1) + r.frame % 2, axis=1))
        for video in ("plain", "busy"):
            write_store(tmp_path / name / video, [r for r in own if r.video == video], files=1)
        stores[name] = str(tmp_path / name)
    out = RunPath.of(str(tmp_path / "scored"))
    scored = rescore_predictions(stores, "-", out, 2, scorer="agreement", log=lambda _: None)
    assert len(scored["densities"]) == 8
    busy = np.array(scored["densities"]) > np.median(scored["densities"])
    assert busy.sum() == 4 and max(np.array(scored["scores"])[busy]) < min(np.array(scored["scores"])[~busy])

    def kept_videos(strata: int) -> list[str]:
        sel = RunPath.of(str(tmp_path / f"sel{strata}"))
        select_scored(out, sel, scored["scores"], 0.5, None, scored["densities"], strata)
        return sorted(r.video for f in sel.files(".parquet") for r in table_to_records(pq.read_table(f)))

    assert kept_videos(1) == ["plain"] * 4
    assert kept_videos(2) == ["busy"] * 2 + ["plain"] * 2
    rule = selection_rule(scored["scores"], 0.5, None, scored["densities"], 2)
    assert kept_by_rule(scored["scores"], scored["densities"], rule).sum() == 4
    # a fixed threshold ignores strata
    assert selection_rule(scored["scores"], 0.5, 0.7, scored["densities"], 2)[1].tolist() == [0.7]


def _halo(mask: np.ndarray, level: float) -> np.ndarray:
    """A student's soft mask with a faint halo: 0.9 on ``mask``, ``level`` on a 3-pixel ring
    around it, 0.02 elsewhere."""
    from skimage.morphology import dilation, disk

    ring = dilation(mask, disk(3)) & ~mask
    return np.where(mask, 0.9, np.where(ring, level, 0.02)).astype(np.float32)


@pytest.mark.parametrize("labels", ["best", "multinet", "multinet-binary", "multinet-product"])
def test_ensemble_labels_drop_the_students_halo_and_keep_the_selection(tmp_path, labels):
    """selection.labels: the written label is the best mask (halo and all), the students'
    ensemble, or the ensemble binarised; the score, hence what is selected, does not change."""
    frames = square_records(4, size=32, seed=11, video="v")
    stores = {}
    for name, level in (("a", 0.3), ("b", 0.4), ("c", 0.2)):
        recs = copy.deepcopy(frames)
        for r in recs:
            r.mask = _halo(r.gt_mask, level)
        stores[name] = str(write_store(tmp_path / name / "v", recs, files=1).parent)
    by_best = rescore_predictions(stores, "-", RunPath.of(str(tmp_path / "best")), 2,
                                  scorer="agreement", ensemble="geomean", log=lambda _: None)
    scored = rescore_predictions(stores, "-", RunPath.of(str(tmp_path / labels)), 2, scorer="agreement",
                                 ensemble="geomean", labels=labels, log=lambda _: None)
    assert scored["scores"] == by_best["scores"] and scored["chosen"] == by_best["chosen"]
    rows = table_to_records(pq.read_table(tmp_path / labels / "v.parquet"))
    for r in rows:
        ring = _halo(r.gt_mask, 0.5) == 0.5
        on, halo, off = r.mask[r.gt_mask], r.mask[ring], r.mask[~r.gt_mask & ~ring]
        if labels == "best":  # "a" agrees best with the geometric mean (halo 0.29): its halo is 0.3
            assert r.teacher == "agreement:a" and np.allclose(halo, 0.3, atol=0.01)
        elif labels == "multinet":  # the geometric mean: 0.9 on the object, (0.3 0.4 0.2)^(1/3)
            assert r.teacher == "agreement:multinet" and np.allclose(on, 0.9, atol=0.01)
            assert np.allclose(halo, (0.3 * 0.4 * 0.2) ** (1 / 3), atol=0.01)
            assert np.allclose(off, 0.02, atol=0.01)
        elif labels == "multinet-product":  # the plain product, though the selection uses geomean
            assert r.teacher == "agreement:multinet-product" and np.allclose(on, 0.9**3, atol=0.01)
            assert np.allclose(halo, 0.3 * 0.4 * 0.2, atol=0.005) and np.all(off < 1e-3)
        else:  # binary: exactly the object
            assert r.teacher == "agreement:multinet-binary"
            assert set(np.unique(r.mask)) == {0.0, 1.0}
            assert np.array_equal(r.mask > 0.5, r.gt_mask)
    assert scored["j"] == pytest.approx([1.0] * 4)  # the halo is below 0.5 in every case


def test_an_unknown_label_rule_is_refused(tmp_path):
    with pytest.raises(ValueError, match="labels: 'mean' is not one of best, multinet, multinet-binary, multinet-product"):
        rescore_predictions({"a": str(tmp_path)}, "x", RunPath.of(str(tmp_path / "o")), 2,
                            scorer="agreement", labels="mean")
