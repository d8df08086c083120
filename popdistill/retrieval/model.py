"""Collaborative Experts / MoEE text-video embedding model (Liu et al. 2019; Miech et al. 2018).

Video: each expert feature -> linear reduce to ``shared_dim`` -> gated embedding unit (Linear ->
context gating (BatchNorm + GLU) -> L2 norm). Text: token features pooled by NetVLAD (or a
sentence vector) -> one gated embedding unit per expert, and mixture weights
``softmax(Linear(text))`` over the experts. The caption x video similarity is the weighted sum of
per-expert cosines, the weights renormalised over the experts each video has. TeachText teachers
and students share this model, so inference is ``similarity(encode_text(..), encode_video(..))``.
Unavailable expert features are zeroed before the video units (their BatchNorm statistics see
those zeros), and contribute nothing to the similarity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from popdistill.config import choice
from popdistill.errors import UserError

__all__ = [
    "CEConfig",
    "ContextGating",
    "GatedEmbeddingUnit",
    "NetVLAD",
    "TextEmbedding",
    "VideoEmbedding",
    "CEModel",
]


@dataclass
class CEConfig:
    """Model shape. ``text_input='sentence'`` takes one vector per caption (no NetVLAD)."""

    expert_dims: dict[str, int] = field(default_factory=dict)
    shared_dim: int = 256
    text_dim: int = 384
    netvlad_clusters: int = 28
    text_input: str = choice("tokens", ["tokens", "sentence"])

    def validate(self) -> None:
        if not self.expert_dims:
            raise UserError("expert_dims: at least one video expert is needed")
        for name, dim in self.expert_dims.items():
            if dim <= 0:
                raise UserError(f"expert_dims.{name}: dimension must be > 0, got {dim}")
        for name in ("shared_dim", "text_dim", "netvlad_clusters"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.text_input not in ("tokens", "sentence"):
            raise UserError(f"text_input: {self.text_input!r} is not one of tokens, sentence")


class ContextGating(nn.Module):
    """``x * sigmoid(BN(W x + b))``, written as a GLU over ``[x, BN(W x + b)]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(torch.cat([x, self.bn(self.fc(x))], dim=1), dim=1)


class GatedEmbeddingUnit(nn.Module):
    """Linear -> context gating -> L2 normalisation."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.gate = ContextGating(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.gate(self.fc(x)), dim=-1)


class NetVLAD(nn.Module):
    """NetVLAD pooling of a padded token set (Arandjelovic et al. 2016), B x T x D -> B x KD.

    Soft-assignment (Linear + BatchNorm over the real tokens + softmax over K clusters),
    assignment-weighted residuals to the K centres, intra-normalisation per cluster, then L2
    normalisation of the flattened descriptor. Padded tokens take no part.
    """

    def __init__(self, dim: int, clusters: int):
        super().__init__()
        self.dim, self.clusters = dim, clusters
        self.assign = nn.Linear(dim, clusters, bias=False)
        self.bn = nn.BatchNorm1d(clusters)
        self.centres = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))
        self.out_dim = clusters * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        mask = mask.bool()
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        logits = self.assign(x)  # B x T x K
        normed = torch.zeros_like(logits)
        normed[mask] = self.bn(logits[mask])
        soft = F.softmax(normed, dim=-1) * mask[..., None].to(x.dtype)
        vlad = torch.einsum("btk,btd->bkd", soft, x) - soft.sum(dim=1)[..., None] * self.centres
        vlad = F.normalize(vlad, dim=2)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=1)


@dataclass
class TextEmbedding:
    """Per-expert unit vectors ``experts`` (C x E x D) and mixture ``weights`` (C x E)."""

    experts: torch.Tensor
    weights: torch.Tensor


@dataclass
class VideoEmbedding:
    """Per-expert unit vectors ``experts`` (V x E x D) and the ``available`` mask (V x E)."""

    experts: torch.Tensor
    available: torch.Tensor


class CEModel(nn.Module):
    """Collaborative Experts / MoEE retrieval model built from one ``CEConfig``."""

    def __init__(self, cfg: CEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.expert_names = list(cfg.expert_dims)
        d = cfg.shared_dim
        # ModuleLists (not dicts): expert names such as "imagenet.senet154.0" contain dots.
        self.video_reduce = nn.ModuleList(
            nn.Linear(cfg.expert_dims[e], d) for e in self.expert_names
        )
        self.video_units = nn.ModuleList(GatedEmbeddingUnit(d, d) for _ in self.expert_names)
        if cfg.text_input == "tokens":
            self.text_pool: NetVLAD | None = NetVLAD(cfg.text_dim, cfg.netvlad_clusters)
            text_out = self.text_pool.out_dim
        else:
            self.text_pool = None
            text_out = cfg.text_dim
        self.text_units = nn.ModuleList(GatedEmbeddingUnit(text_out, d) for _ in self.expert_names)
        self.mixture = nn.Linear(text_out, len(self.expert_names))

    def encode_text(self, text: torch.Tensor, mask: torch.Tensor | None = None) -> TextEmbedding:
        """``text``: C x T x D_text token features (``mask`` C x T, True = real token) in
        ``tokens`` mode, or C x D_text sentence vectors in ``sentence`` mode."""
        if self.text_pool is not None:
            if text.ndim != 3:
                raise ValueError(f"token text features must be C x T x D, got {tuple(text.shape)}")
            pooled = self.text_pool(text, mask)
        else:
            if text.ndim != 2:
                raise ValueError(f"sentence text features must be C x D, got {tuple(text.shape)}")
            pooled = text
        experts = torch.stack([unit(pooled) for unit in self.text_units], dim=1)
        return TextEmbedding(experts=experts, weights=F.softmax(self.mixture(pooled), dim=-1))

    def encode_video(
        self, experts: Mapping[str, torch.Tensor], available: torch.Tensor | None = None
    ) -> VideoEmbedding:
        """``experts``: name -> V x D_e features; ``available``: V x E (config order).

        A feature row containing NaN is unavailable whatever the mask says.
        """
        missing = [e for e in self.expert_names if e not in experts]
        if missing:
            raise ValueError(
                f"video features lack experts {missing}; model has {self.expert_names}"
            )
        feats = [experts[e] for e in self.expert_names]
        finite = torch.stack([~torch.isnan(f).any(dim=1) for f in feats], dim=1)
        avail = finite if available is None else finite & available.bool().to(finite.device)
        out = []
        for i, (x, reduce, unit) in enumerate(zip(feats, self.video_reduce, self.video_units)):
            x = torch.where(avail[:, i : i + 1], x, torch.zeros((), dtype=x.dtype, device=x.device))
            out.append(unit(reduce(x)))
        return VideoEmbedding(experts=torch.stack(out, dim=1), available=avail)

    @staticmethod
    def similarity(text: TextEmbedding, video: VideoEmbedding, eps: float = 1e-8) -> torch.Tensor:
        """Captions x videos: sum_e w_ce a_ve cos_cve / sum_e w_ce a_ve (0 if a video has none)."""
        avail = video.available.to(text.weights.dtype)
        weighted_text = (text.weights[..., None] * text.experts).flatten(1)  # C x ED
        masked_video = (avail[..., None] * video.experts).flatten(1)  # V x ED
        numerator = weighted_text @ masked_video.T
        denominator = text.weights @ avail.T
        return numerator / denominator.clamp_min(eps)

    def forward(
        self,
        text: torch.Tensor,
        experts: Mapping[str, torch.Tensor],
        text_mask: torch.Tensor | None = None,
        available: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Similarity matrix of a batch (captions x videos)."""
        return self.similarity(
            self.encode_text(text, text_mask), self.encode_video(experts, available)
        )
