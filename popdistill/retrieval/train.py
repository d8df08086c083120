"""Training a CE retrieval model, alone or as a TeachText student (Croitoru et al., ICCV 2021).

``train_ce(features, text_key, cfg, teachers)`` trains a :class:`CEModel` on the training split
of a :class:`CEFeatures` corpus with the bidirectional max-margin ranking loss. Each epoch
passes every training caption once, in batches of ``batch_size`` (caption, video) pairs whose
videos all differ. With ``teachers`` (frozen models' cached embeddings, :class:`TeacherCache`),
the loss is ``ranking + lam * d(S_student, Phi(S_1..S_N))``: each teacher's B x B similarity
matrix is computed on the fly from its cached embeddings of the batch's captions and videos,
so a teacher is never run during student training. The model with the best validation
geometric mean (both directions summed) is kept and evaluated on val and test.

``text_key`` names the text features: ``"<encoder>"`` (token rows, NetVLAD pooling) or
``"<encoder>.sentence"`` (one vector per caption). ``cfg.experts`` restricts the video
experts the model sees (modality distillation: teachers see all, the student fewer).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from popdistill.errors import UserError
from popdistill.retrieval.aggregation import create_phi, list_phis
from popdistill.retrieval.ce_layout import CEFeatures
from popdistill.retrieval.losses import (
    create_distance,
    list_distances,
    max_margin_ranking_loss,
    teachtext_loss_parts,
)
from popdistill.retrieval.metrics import retrieval_metrics
from popdistill.retrieval.model import CEConfig, CEModel, TextEmbedding, VideoEmbedding

__all__ = [
    "CETrainConfig",
    "SplitData",
    "TeacherCache",
    "TrainResult",
    "split_data",
    "train_ce",
    "evaluate",
    "teacher_cache",
    "caption_agreement_ranks",
    "caption_agreement_margins",
    "denoise_keep",
    "inference_seconds_per_query",
    "score",
]

SENTENCE_SUFFIX = ".sentence"


@dataclass
class CETrainConfig:
    """One training run. ``experts`` None: every expert of the corpus. ``lam`` 0: no teachers."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    margin: float = 0.09
    shared_dim: int = 128
    netvlad_clusters: int = 8
    experts: list[str] | None = None
    seed: int = 0
    eval_every: int = 1
    phi: str = "mean"
    distance: str = "smooth_l1"
    lam: float = 10.0  # with smooth-L1 on cosines, lam 1 barely moves the student
    kl_temperature: float = 0.1
    torch_threads: int | None = 1  # these models are small: one thread is fastest on a busy CPU

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "shared_dim", "netvlad_clusters", "eval_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise UserError("batch_size: the ranking loss needs at least 2 pairs per batch")
        if self.lr <= 0 or self.lam < 0 or self.margin < 0:
            raise UserError("lr must be > 0; lam and margin >= 0")
        if self.phi not in list_phis():
            raise UserError(f"phi: {self.phi!r} is not one of {', '.join(list_phis())}")
        if self.distance not in list_distances():
            raise UserError(
                f"distance: {self.distance!r} is not one of {', '.join(list_distances())}"
            )


@dataclass
class SplitData:
    """One split as tensors: experts (V x D_e), availability (V x E), captions' text
    (C x T x D + mask, or C x D) and ``caption_video`` (C, index into ``videos``)."""

    videos: list[str]
    experts: dict[str, torch.Tensor]
    available: torch.Tensor
    text: torch.Tensor
    mask: torch.Tensor | None
    caption_video: torch.Tensor
    caption_ids: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class TeacherCache:
    """A frozen teacher's embeddings of every training caption and video, and its val score."""

    name: str
    text: TextEmbedding
    video: VideoEmbedding
    val_score: float = 1.0

    def sims(self, captions: torch.Tensor, videos: torch.Tensor) -> torch.Tensor:
        """B x B similarities of the given caption and video rows (training-split indices)."""
        text = TextEmbedding(self.text.experts[captions], self.text.weights[captions])
        video = VideoEmbedding(self.video.experts[videos], self.video.available[videos])
        return CEModel.similarity(text, video)


@dataclass
class TrainResult:
    model: CEModel
    metrics: dict[str, dict]
    history: list[dict]
    best_epoch: int
    seconds: float


def split_data(
    features: CEFeatures, text_key: str, split: str, experts: Sequence[str] | None = None
) -> SplitData:
    """Tensors of one split (videos in split-list order, captions in corpus order)."""
    if split not in features.splits:
        raise UserError(f"split {split!r} not in the corpus (has {sorted(features.splits)})")
    if text_key not in features.text:
        raise UserError(f"text features {text_key!r} not in the corpus (has {sorted(features.text)})")
    names = list(features.experts) if experts is None else list(experts)
    unknown = [e for e in names if e not in features.experts]
    if unknown:
        raise UserError(f"experts: unknown {unknown}; the corpus has {list(features.experts)}")
    videos = list(features.splits[split])
    idx = features.video_indices(videos)
    table = features.text[text_key]
    rows, owner, ids = [], [], []
    for v, vid in enumerate(videos):
        for j, arr in enumerate(table.get(vid, [])):
            rows.append(np.asarray(arr, np.float32))
            owner.append(v)
            ids.append((vid, j))
    if not rows:
        raise UserError(f"split {split!r} has no captions with {text_key!r} features")
    if text_key.endswith(SENTENCE_SUFFIX):
        text, mask = torch.from_numpy(np.concatenate([r[:1] for r in rows])), None
    else:
        length = max(r.shape[0] for r in rows)
        text = torch.zeros(len(rows), length, rows[0].shape[1])
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            text[i, : r.shape[0]] = torch.from_numpy(r)
            mask[i, : r.shape[0]] = True
    return SplitData(
        videos=videos,
        experts={e: torch.from_numpy(features.experts[e][idx]) for e in names},
        available=torch.from_numpy(features.availability(names)[idx]),
        text=text,
        mask=mask,
        caption_video=torch.tensor(owner, dtype=torch.long),
        caption_ids=ids,
    )


def _model(data: SplitData, cfg: CETrainConfig) -> CEModel:
    return CEModel(
        CEConfig(
            expert_dims={e: int(x.shape[1]) for e, x in data.experts.items()},
            shared_dim=cfg.shared_dim,
            text_dim=int(data.text.shape[-1]),
            netvlad_clusters=cfg.netvlad_clusters,
            text_input="tokens" if data.mask is not None else "sentence",
        )
    )


def _batches(
    caption_video: np.ndarray, keep: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch: every kept caption once (bar a lone last one), batches of captions of
    distinct videos (a round's single leftover joins its previous batch)."""
    per_video: dict[int, list[int]] = {}
    for c in np.flatnonzero(keep):
        per_video.setdefault(int(caption_video[c]), []).append(int(c))
    queues = {v: list(rng.permutation(cs)) for v, cs in per_video.items()}
    batches = []
    while queues:
        order = rng.permutation(list(queues))
        round_caps = [queues[v].pop() for v in order]
        queues = {v: q for v, q in queues.items() if q}
        chunks = [round_caps[s : s + batch_size] for s in range(0, len(round_caps), batch_size)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # a lone pair has no negatives
            last = chunks.pop()
            chunks[-1] += last
        batches += [np.array(c) for c in chunks if len(c) >= 2]
    return batches


@torch.no_grad()
def embed(model: CEModel, data: SplitData) -> tuple[TextEmbedding, VideoEmbedding]:
    model.eval()
    return model.encode_text(data.text, data.mask), model.encode_video(data.experts, data.available)


def evaluate(model: CEModel, data: SplitData) -> dict[str, dict[str, float]]:
    """Retrieval metrics of ``model`` on a split, both directions."""
    text, video = embed(model, data)
    sims = CEModel.similarity(text, video).numpy()
    return retrieval_metrics(sims, data.caption_video.numpy())


def score(metrics: dict[str, dict[str, float]]) -> float:
    """Model-selection score: geometric mean of R@1/5/10, summed over both directions."""
    return metrics["t2v"]["GeoMean"] + metrics["v2t"]["GeoMean"]


def _teacher_target_fn(cfg: CETrainConfig, teachers: Sequence[TeacherCache]):
    weights = [max(t.val_score, 1e-6) for t in teachers]
    phi = create_phi(cfg.phi, weights=weights) if cfg.phi == "weighted" else create_phi(cfg.phi)
    kwargs = {"temperature": cfg.kl_temperature} if cfg.distance == "kl" else {}
    return phi, create_distance(cfg.distance, **kwargs)


def train_ce(
    features: CEFeatures,
    text_key: str,
    cfg: CETrainConfig,
    teachers: Sequence[TeacherCache] | None = None,
    keep: np.ndarray | None = None,
    report: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (student when ``teachers`` and ``cfg.lam`` > 0); ``keep``: training captions to use
    (bool per caption of the training split; denoising). ``report(epoch metrics)`` per eval."""
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    try:
        return _train(features, text_key, cfg, teachers, keep, report)
    finally:
        torch.set_num_threads(threads)


def _train(features, text_key, cfg, teachers, keep, report) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train = split_data(features, text_key, "train", cfg.experts)
    val = split_data(features, text_key, "val", cfg.experts)
    test = split_data(features, text_key, "test", cfg.experts) if "test" in features.splits else None
    model = _model(train, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    distil = bool(teachers) and cfg.lam > 0
    if distil:
        for t in teachers:
            if t.text.experts.shape[0] != train.text.shape[0]:
                raise UserError(
                    f"teacher {t.name}: cached {t.text.experts.shape[0]} captions, the "
                    f"training split has {train.text.shape[0]}"
                )
        phi, dist = _teacher_target_fn(cfg, teachers)
    keep = np.ones(len(train.caption_ids), bool) if keep is None else np.asarray(keep, bool)
    cap_video = train.caption_video.numpy()
    history, best, best_state, best_epoch = [], -np.inf, None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        losses = []
        for batch in _batches(cap_video, keep, cfg.batch_size, rng):
            cap = torch.from_numpy(batch)
            vid = train.caption_video[cap]
            text = train.text[cap]
            mask = train.mask[cap] if train.mask is not None else None
            sims = model(text, {e: x[vid] for e, x in train.experts.items()}, mask,
                         train.available[vid])
            if distil:
                stack = torch.stack([t.sims(cap, vid) for t in teachers])
                loss = teachtext_loss_parts(sims, stack, phi, dist, cfg.lam, cfg.margin)["total"]
            else:
                loss = max_margin_ranking_loss(sims, cfg.margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            continue
        val_metrics = evaluate(model, val)
        entry = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                 "val_score": score(val_metrics), "val_t2v_R1": val_metrics["t2v"]["R1"]}
        history.append(entry)
        if report is not None:
            report(entry)
        if entry["val_score"] > best:
            best, best_epoch = entry["val_score"], epoch
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    metrics = {"val": evaluate(model, val)}
    if test is not None:
        metrics["test"] = evaluate(model, test)
    return TrainResult(model, metrics, history, best_epoch, time.perf_counter() - start)


def teacher_cache(
    model: CEModel, features: CEFeatures, text_key: str, name: str, val_score: float = 1.0
) -> TeacherCache:
    """Embed the training split once with a frozen teacher."""
    data = split_data(features, text_key, "train", model.expert_names)
    text, video = embed(model, data)
    return TeacherCache(name, text, video, val_score)


def caption_agreement_ranks(teachers: Sequence[TeacherCache], caption_video: torch.Tensor
                            ) -> np.ndarray:
    """N x C: each teacher's 1-based rank of a training caption's own video among all
    training videos (ties averaged). High ranks from every teacher flag a poor caption."""
    from popdistill.retrieval.metrics import t2v_ranks

    out = []
    for t in teachers:
        sims = CEModel.similarity(t.text, t.video).numpy()
        out.append(t2v_ranks(sims, caption_video.numpy()))
    return np.stack(out)


def caption_agreement_margins(teachers: Sequence[TeacherCache], caption_video: torch.Tensor
                              ) -> np.ndarray:
    """N x C: each teacher's margin of a training caption, its similarity to its own video
    minus the best other training video's. Teachers fit their own training captions, so
    ranks saturate; the margin still orders captions from clear to doubtful matches."""
    out = []
    for t in teachers:
        sims = CEModel.similarity(t.text, t.video)
        own = sims.gather(1, caption_video[:, None]).squeeze(1)
        others = sims.scatter(1, caption_video[:, None], float("-inf")).amax(dim=1)
        out.append((own - others).numpy())
    return np.stack(out)


def denoise_keep(margins: np.ndarray, fraction: float) -> np.ndarray:
    """Keep mask dropping the ``fraction`` of captions whose *best* teacher margin is lowest
    (every teacher agrees they are poor matches)."""
    agreed = margins.max(axis=0)
    n_drop = int(round(fraction * agreed.size))
    keep = np.ones(agreed.size, bool)
    keep[np.argsort(agreed, kind="stable")[:n_drop]] = False
    return keep


def inference_seconds_per_query(model: CEModel, data: SplitData, repeats: int = 3) -> float:
    """Wall time of one text->video query (encode the caption, score the gallery), averaged
    over the split's captions one at a time; the gallery's video embeddings are precomputed."""
    model.eval()
    with torch.no_grad():
        video = model.encode_video(data.experts, data.available)
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            for c in range(data.text.shape[0]):
                mask = data.mask[c : c + 1] if data.mask is not None else None
                text = model.encode_text(data.text[c : c + 1], mask)
                CEModel.similarity(text, video).argmax()
            best = min(best, (time.perf_counter() - t0) / data.text.shape[0])
    return float(best)
