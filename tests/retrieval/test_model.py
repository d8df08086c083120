import math

import numpy as np
import pytest
import torch

from popdistill.config import load
from popdistill.errors import UserError
from popdistill.retrieval.losses import max_margin_ranking_loss
from popdistill.retrieval.metrics import t2v_ranks
from popdistill.retrieval.model import CEConfig, CEModel, NetVLAD, TextEmbedding, VideoEmbedding

EXPERTS = {"imagenet.senet154.0": 12, "audio": 6}
STEPS = 60


def _tiny(text_input: str = "tokens", seed: int = 0) -> CEModel:
    torch.manual_seed(seed)
    cfg = CEConfig(
        expert_dims=dict(EXPERTS),
        shared_dim=8,
        text_dim=5,
        netvlad_clusters=3,
        text_input=text_input,
    )
    return CEModel(cfg)


def _videos(n: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, d, generator=g) for k, d in EXPERTS.items()}


@pytest.mark.parametrize("text_input", ["tokens", "sentence"])
def test_shapes_and_ranges(text_input):
    model = _tiny(text_input)
    text = torch.randn(7, 4, 5) if text_input == "tokens" else torch.randn(7, 5)
    t = model.encode_text(text)
    v = model.encode_video(_videos(3))
    assert t.experts.shape == (7, 2, 8) and t.weights.shape == (7, 2)
    assert v.experts.shape == (3, 2, 8) and v.available.shape == (3, 2) and v.available.all()
    torch.testing.assert_close(t.weights.sum(1), torch.ones(7))
    torch.testing.assert_close(t.experts.norm(dim=-1), torch.ones(7, 2))
    torch.testing.assert_close(v.experts.norm(dim=-1), torch.ones(3, 2))
    sims = model.similarity(t, v)
    assert sims.shape == (7, 3)
    assert sims.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(model(text, _videos(3)), sims)


def test_similarity_renormalises_over_available_experts_by_hand():
    # one caption with mixture weights (0.3, 0.7) and 2-d unit vectors per expert
    text = TextEmbedding(
        experts=torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), weights=torch.tensor([[0.3, 0.7]])
    )
    video = VideoEmbedding(
        experts=torch.tensor(
            [
                [[0.5, math.sqrt(0.75)], [math.sqrt(0.96), -0.2]],  # cosines 0.5 and -0.2
                [[0.4, math.sqrt(0.84)], [0.0, 1.0]],  # expert 1 missing: its 1.0 must not count
                [[-1.0, 0.0], [0.0, -1.0]],  # nothing available
            ]
        ),
        available=torch.tensor([[True, True], [True, False], [False, False]]),
    )
    sims = CEModel.similarity(text, video)
    want = torch.tensor([[0.3 * 0.5 + 0.7 * -0.2, 0.4, 0.0]])  # weights (0.3+0.7) sum to 1
    torch.testing.assert_close(sims, want)
    # the missing expert leaves the available one's cosine unscaled, whatever the weights
    text.weights = torch.tensor([[0.9, 0.1]])
    assert CEModel.similarity(text, video)[0, 1].item() == pytest.approx(0.4)


def test_missing_expert_does_not_change_other_contributions():
    model = _tiny("sentence").eval()
    videos = _videos(4)
    t = model.encode_text(torch.randn(5, 5))
    avail = torch.tensor([[True, True], [True, False], [True, True], [True, False]])
    v = model.encode_video(videos, avail)
    # junk (even NaN) in an unavailable expert changes nothing
    junk = {k: x.clone() for k, x in videos.items()}
    junk["audio"][1] = float("nan")
    junk["audio"][3] = 1e3
    v_junk = model.encode_video(junk, avail)
    torch.testing.assert_close(model.similarity(t, v_junk), model.similarity(t, v))
    # a video with only expert 0 scores exactly that expert's cosine
    cos0 = t.experts[:, 0] @ v.experts[:, 0].T
    torch.testing.assert_close(model.similarity(t, v)[:, [1, 3]], cos0[:, [1, 3]])
    # NaN rows are detected as unavailable without a mask
    assert model.encode_video(junk).available[1].tolist() == [True, False]


def test_netvlad_ignores_padding_and_normalises():
    torch.manual_seed(0)
    pool = NetVLAD(dim=5, clusters=3).eval()
    with torch.no_grad():
        pool.bn.running_mean.uniform_(-0.5, 0.5)
        pool.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 6, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    out = pool(x, mask)
    assert out.shape == (2, 15)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    # each cluster block is unit after intra-normalisation, so 1/sqrt(K) after the final L2
    torch.testing.assert_close(out.view(2, 3, 5).norm(dim=2), torch.full((2, 3), 3**-0.5))
    torch.testing.assert_close(pool(x[:1, :3]), out[:1])  # padding content does not matter
    x2 = x.clone()
    x2[0, 3:] = 100.0
    torch.testing.assert_close(pool(x2, mask), out)
    # hand check of the residual aggregation for one token set
    soft = torch.softmax(pool.bn(pool.assign(x[0, :3])), dim=-1)
    resid = (soft[:, :, None] * (x[0, :3, None, :] - pool.centres[None])).sum(0)
    want = torch.nn.functional.normalize(
        torch.nn.functional.normalize(resid, dim=1).flatten(), dim=0
    )
    torch.testing.assert_close(out[0], want)


def test_config_validation_and_loading():
    cfg = load(CEConfig, {"expert_dims": {"rgb": 4}, "text_input": "sentence"})
    assert cfg.expert_dims == {"rgb": 4} and cfg.netvlad_clusters == 28
    with pytest.raises(UserError, match="text_input"):
        load(CEConfig, {"expert_dims": {"rgb": 4}, "text_input": "words"})
    with pytest.raises(UserError, match="expert_dims"):
        CEModel(CEConfig())
    with pytest.raises(ValueError, match="lack experts"):
        _tiny().encode_video({"audio": torch.randn(2, 6)})


@pytest.mark.parametrize("text_input", ["sentence", "tokens"])
def test_tiny_training_learns_separable_problem(text_input):
    torch.manual_seed(0)
    n, tokens = 32, 4
    videos = {"rgb": torch.randn(n, 16), "audio": torch.randn(n, 8)}
    mix = torch.randn(16, 12) / 4.0

    def captions(noise_seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(noise_seed)
        base = videos["rgb"] @ mix  # text = noisy linear map of the rgb expert
        if text_input == "sentence":
            return base + 0.1 * torch.randn(n, 12, generator=g)
        return base[:, None, :] + 0.3 * torch.randn(n, tokens, 12, generator=g)

    cfg = CEConfig(
        expert_dims={"rgb": 16, "audio": 8},
        shared_dim=32,
        text_dim=12,
        netvlad_clusters=4,
        text_input=text_input,
    )
    model = CEModel(cfg)
    held_out = captions(123)

    def r_at_1() -> float:
        model.eval()
        with torch.no_grad():
            sims = model(held_out, videos).numpy()
        model.train()
        return float(np.mean(t2v_ranks(sims, np.arange(n)) <= 1))

    before = r_at_1()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(STEPS):
        loss = max_margin_ranking_loss(model(captions(step), videos), margin=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = r_at_1()
    assert after >= 0.6, (before, after)  # chance is 1/32
    assert after > before + 0.3
