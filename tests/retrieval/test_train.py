"""CE training and TeachText distillation on a tiny synthetic corpus (pure torch, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdistill.errors import UserError
from popdistill.retrieval.aggregation import create_phi, list_phis
from popdistill.retrieval.ce_layout import CEFeatures
from popdistill.retrieval.checkpoint import (
    load_model,
    load_teacher_cache,
    save_model,
    save_teacher_cache,
)
from popdistill.retrieval.losses import create_distance, list_distances
from popdistill.retrieval.train import (
    CETrainConfig,
    _batches,
    caption_agreement_margins,
    caption_agreement_ranks,
    denoise_keep,
    evaluate,
    split_data,
    teacher_cache,
    train_ce,
)


def tiny_features(videos: int = 40, captions: int = 3, seed: int = 0,
                  text_noise: float = 0.5) -> CEFeatures:
    """Videos with a random latent; experts and caption features are noisy projections of it.

    Text ``good`` (tokens, 3 rows) sees the whole latent, ``weak.sentence`` a quarter of it.
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(videos, 8)).astype(np.float32)
    ids = [f"v{i:03d}" for i in range(videos)]
    experts = {"a": latent @ rng.normal(size=(8, 10)), "b": latent[:, :4] @ rng.normal(size=(4, 6))}
    experts = {k: (v + 0.1 * rng.normal(size=v.shape)).astype(np.float32) for k, v in experts.items()}
    proj = rng.normal(size=(8, 12)).astype(np.float32)
    weak = rng.normal(size=(2, 6)).astype(np.float32)
    good, weak_text = {}, {}
    for i, v in enumerate(ids):
        good[v], weak_text[v] = [], []
        for _ in range(captions):
            z = latent[i] + text_noise * rng.normal(size=8)
            tokens = np.stack([z @ proj + 0.3 * rng.normal(size=12) for _ in range(3)])
            good[v].append(tokens.astype(np.float32))
            weak_text[v].append((z[None, :2] @ weak).astype(np.float32))
    n_train, n_val = int(videos * 0.6), int(videos * 0.2)
    return CEFeatures(
        videos=ids, experts=experts,
        available={k: np.ones(videos, bool) for k in experts},
        captions={v: [["w"]] * captions for v in ids},
        text={"good": good, "weak.sentence": weak_text},
        splits={"train": ids[:n_train], "val": ids[n_train:n_train + n_val],
                "test": ids[n_train + n_val:]},
    )


def test_model_and_cache_files_round_trip_weights_only(features, tmp_path):
    res = train_ce(features, "good", CETrainConfig(**{**TINY, "epochs": 1}))
    cache = teacher_cache(res.model, features, "good", "t", 0.7)
    save_teacher_cache(cache, tmp_path / "t.cache.pt")
    save_model(res.model, tmp_path / "t.model.pt")
    back = load_teacher_cache(tmp_path / "t.cache.pt")
    cap = torch.tensor([0, 3])
    torch.testing.assert_close(back.sims(cap, cap), cache.sims(cap, cap))
    assert (back.name, back.val_score) == ("t", 0.7)
    model = load_model(tmp_path / "t.model.pt")
    assert model.cfg == res.model.cfg
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  res.model.state_dict().values()))


class _Payload:
    """Unpickling this object would create the file ``target``."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("loader", [load_model, load_teacher_cache])
def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path, loader):
    target = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"config": _Payload(str(target))}, bad)  # what someone could leave in a bucket
    with pytest.raises(UserError, match="evil.pt: not a .* file that loads weights-only"):
        loader(bad)
    assert not target.exists()


@pytest.fixture(scope="module")
def features():
    return tiny_features()


TINY = dict(epochs=10, batch_size=8, shared_dim=16, netvlad_clusters=4, lr=3e-3)


def test_batches_cover_every_kept_caption_once_with_distinct_videos():
    caption_video = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    keep = np.array([True, True, False, True, True, True, True, True])
    batches = _batches(caption_video, keep, 3, np.random.default_rng(0))
    flat = np.concatenate(batches)
    assert sorted(flat) == [0, 1, 3, 4, 5, 6, 7]  # caption 2 dropped, the rest once each
    for b in batches:
        assert len(set(caption_video[b])) == len(b) >= 2


def test_split_data_shapes(features):
    train = split_data(features, "good", "train")
    assert train.text.shape == (24 * 3, 3, 12) and train.mask.all()
    assert train.caption_video.tolist()[:6] == [0, 0, 0, 1, 1, 1]
    assert train.caption_ids[4] == ("v001", 1)
    sent = split_data(features, "weak.sentence", "test", ["b"])
    assert sent.text.shape == (8 * 3, 6) and sent.mask is None and list(sent.experts) == ["b"]
    with pytest.raises(UserError, match="unknown"):
        split_data(features, "good", "train", ["nope"])


def test_tiny_training_beats_chance_and_the_untrained_model(features):
    res = train_ce(features, "good", CETrainConfig(**TINY))
    torch.manual_seed(0)
    untrained = train_ce(features, "good", CETrainConfig(**{**TINY, "epochs": 1, "lr": 1e-9}))
    r1 = res.metrics["test"]["t2v"]["R1"]
    chance = 100.0 / 8  # 8 test videos
    assert r1 >= 3 * chance, res.metrics["test"]
    assert r1 > untrained.metrics["test"]["t2v"]["R1"] + 10
    assert res.metrics["test"]["t2v"]["MdR"] <= 2.0
    assert 1 <= res.best_epoch <= TINY["epochs"] and len(res.history) == TINY["epochs"]


def test_teacher_cache_reproduces_the_teacher_similarities(features):
    res = train_ce(features, "good", CETrainConfig(**{**TINY, "epochs": 2}))
    cache = teacher_cache(res.model, features, "good", "t", 1.0)
    train = split_data(features, "good", "train")
    cap = torch.tensor([5, 0, 40])
    vid = train.caption_video[cap]
    res.model.eval()
    with torch.no_grad():
        direct = res.model(train.text[cap], {e: x[vid] for e, x in train.experts.items()},
                           train.mask[cap], train.available[vid])
    torch.testing.assert_close(cache.sims(cap, vid), direct)


@pytest.fixture(scope="module")
def teachers(features):
    res = train_ce(features, "good", CETrainConfig(**{**TINY, "epochs": 5}))
    other = train_ce(features, "good", CETrainConfig(**{**TINY, "epochs": 5, "seed": 1}))
    return [teacher_cache(res.model, features, "good", "t0", 2.0),
            teacher_cache(other.model, features, "good", "t1", 1.0)]


def _distance_to_teachers(model, features, teachers, phi, d) -> float:
    """d(S_model, Phi(S_teachers)) on the whole training split (one big batch)."""
    train = split_data(features, "weak.sentence", "train")
    cap = torch.arange(0, train.text.shape[0], 3)  # one caption per video
    vid = train.caption_video[cap]
    model.eval()
    with torch.no_grad():
        sims = model(train.text[cap], {e: x[vid] for e, x in train.experts.items()}, None,
                     train.available[vid])
    target = phi(torch.stack([t.sims(cap, vid) for t in teachers]))
    return float(d(sims, target))


@pytest.fixture(scope="module")
def base_weak(features):
    return train_ce(features, "weak.sentence", CETrainConfig(**{**TINY, "epochs": 2}))


@pytest.mark.parametrize("distance", list_distances())
@pytest.mark.parametrize("phi", list_phis())
def test_every_phi_and_distance_pulls_the_student_towards_the_teachers(features, teachers,
                                                                       base_weak, phi, distance):
    """Two epochs with a large lambda bring S_student closer to Phi(S_teachers) than the base
    model (same seed and batches, no teachers) gets."""
    cfg = dict(TINY, epochs=2, phi=phi, distance=distance, lam=20.0, kl_temperature=0.1)
    student = train_ce(features, "weak.sentence", CETrainConfig(**cfg), teachers)
    phi_fn = create_phi(phi, weights=[2.0, 1.0]) if phi == "weighted" else create_phi(phi)
    d_fn = create_distance(distance, **({"temperature": 0.1} if distance == "kl" else {}))
    d_student = _distance_to_teachers(student.model, features, teachers, phi_fn, d_fn)
    d_base = _distance_to_teachers(base_weak.model, features, teachers, phi_fn, d_fn)
    assert d_student < 0.9 * d_base, (d_student, d_base)


def test_distillation_from_strong_teachers_helps_a_weak_student(features, teachers):
    cfg = dict(TINY, epochs=10, lam=5.0, distance="l2")
    base = train_ce(features, "weak.sentence", CETrainConfig(**{**cfg, "lam": 0.0}))
    student = train_ce(features, "weak.sentence", CETrainConfig(**cfg), teachers)
    assert evaluate(student.model, split_data(features, "weak.sentence", "val"))["t2v"]["R1"] > 0
    # the weak encoder sees 2 of 8 latent dims; teachers encode all 8
    assert (student.metrics["val"]["t2v"]["GeoMean"] + student.metrics["test"]["t2v"]["GeoMean"]
            > base.metrics["val"]["t2v"]["GeoMean"] + base.metrics["test"]["t2v"]["GeoMean"])


def test_agreement_ranks_and_margins_flag_a_wrong_caption_and_keep_masks_drop_it(features, teachers):
    train = split_data(features, "good", "train")
    ranks = caption_agreement_ranks(teachers, train.caption_video)
    assert ranks.shape == (2, 72) and ranks.min() >= 1 and ranks.max() <= 24
    # a caption moved to another video: both teachers rank that video far from the top
    moved = train.caption_video.clone()
    moved[0] = 12
    ranks_moved = caption_agreement_ranks(teachers, moved)
    assert (ranks_moved[:, 0] > 3).all() and (ranks[:, 0] <= 3).all()
    margins = caption_agreement_margins(teachers, moved)
    assert margins.shape == (2, 72) and (margins[:, 0] < 0).all()  # another video wins
    assert (caption_agreement_margins(teachers, train.caption_video)[:, 0] > 0).all()
    keep = denoise_keep(margins, 0.05)  # round(0.05 * 72) = 4 dropped, caption 0 among them
    assert (~keep).sum() == 4 and not keep[0]
    keep = np.ones(72, bool)
    keep[:36] = False  # only videos 12..23 remain
    res = train_ce(features, "good", CETrainConfig(**{**TINY, "epochs": 1}), keep=keep)
    assert res.history[0]["loss"] > 0


def test_config_validation_names_the_field():
    with pytest.raises(UserError, match="phi"):
        CETrainConfig(phi="avg").validate()
    with pytest.raises(UserError, match="batch_size"):
        CETrainConfig(batch_size=1).validate()
