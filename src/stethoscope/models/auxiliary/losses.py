"""Classification heads with angular margins: ArcFace and sub-cluster AdaCos.

Both take a batch of embeddings and a (possibly mixed) pair of labels ``y_a``, ``y_b`` with
mixing weights ``lam`` (``lam = 1`` and ``y_b = y_a`` when no mixup is used) and return one
loss per sample, as the engine's training loop expects. Heads run in float32 (the cosines
and their scale do not survive bf16). Sources and every choice are in ``docs/aux_classifier.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-7
MIX_MODES = ("none", "mixup", "noisy_arcmix")


def cosines(embeddings: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, d) x (N, d) -> (B, N) cosine similarities."""
    return F.normalize(embeddings, dim=1) @ F.normalize(centres, dim=1).T


class ArcFace(nn.Module):
    """Additive angular margin softmax (Deng et al. 2019): the target class's logit is
    ``s * cos(theta + m)``, every other class's ``s * cos(theta)``. Where ``theta + m``
    would pass pi the logit continues as ``cos(theta) - m * sin(m)`` (monotone in theta,
    the usual ArcFace fallback).

    Mixup modes: ``mixup`` (ArcMix) is ``lam * CE(margin on y_a, y_a) + (1 - lam) *
    CE(margin on y_b, y_b)``, the margin put on each term's own label; ``noisy_arcmix``
    (Choi et al. 2023) puts the margin on ``y_a`` only and uses those logits for both terms.
    Since ``lam ~ Beta(alpha, alpha)`` is symmetric, the class that gets the margin is the
    dominant one only about half of the time: that random placement is the "noise".
    """

    def __init__(self, dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.7) -> None:
        super().__init__()
        self.scale, self.margin = scale, margin
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)

    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits with the angular margin on each row's ``labels`` class."""
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target.clamp(-1 + EPS, 1 - EPS))
        shifted = torch.where(
            theta + self.margin < math.pi,
            torch.cos(theta + self.margin),
            target - self.margin * math.sin(self.margin),
        )
        return self.scale * cos.scatter(1, labels[:, None], shifted)

    def forward(
        self,
        embeddings: torch.Tensor,
        y_a: torch.Tensor,
        y_b: torch.Tensor,
        lam: torch.Tensor,
        mode: str = "none",
    ) -> torch.Tensor:
        cos = cosines(embeddings, self.weight)
        logits_a = self.margin_logits(cos, y_a)
        logits_b = logits_a if mode == "noisy_arcmix" else self.margin_logits(cos, y_b)
        ce_a = F.cross_entropy(logits_a, y_a, reduction="none")
        ce_b = F.cross_entropy(logits_b, y_b, reduction="none")
        return lam * ce_a + (1 - lam) * ce_b

    def class_centres(self) -> torch.Tensor:
        """(n_classes, 1, dim) unit-norm class centres."""
        return F.normalize(self.weight.detach(), dim=1)[:, None]


class SubClusterAdaCos(nn.Module):
    """Sub-cluster AdaCos (Wilkinghoff 2021): ``sub_clusters`` centres per class, a softmax
    over every centre's scaled cosine, a class's probability the sum over its centres, and
    cross-entropy against (mixed) soft labels. No margin.

    The scale adapts during training (AdaCos, Zhang et al. 2019, as Wilkinghoff applies it):
    ``s <- log(B_avg) / cos(min(pi/4, theta_med))`` where ``B_avg`` is the batch mean of
    ``sum_j exp(s * cos_ij)`` over all centres and ``theta_med`` the median angle between an
    embedding and its own class (here: the closest centre of that class, weighted by the
    soft label). It starts at ``sqrt(2) * log(N - 1)`` for ``N`` centres (``N - 1`` is taken
    as at least 2, so that one or two centres still give a positive scale). Centres are
    fixed random directions by default, as in Wilkinghoff's code; ``trainable=True`` learns them.
    """

    scale: torch.Tensor  # a buffer (typed here: nn.Module's attribute lookup is untyped)

    def __init__(
        self, dim: int, n_classes: int, sub_clusters: int = 16, trainable: bool = False
    ) -> None:
        super().__init__()
        self.n_classes, self.sub_clusters = n_classes, sub_clusters
        self.centres = nn.Parameter(
            torch.empty(n_classes * sub_clusters, dim), requires_grad=trainable
        )
        nn.init.xavier_uniform_(self.centres)
        self.register_buffer("scale", torch.tensor(self.initial_scale(n_classes * sub_clusters)))

    @staticmethod
    def initial_scale(n_centres: int) -> float:
        return math.sqrt(2.0) * math.log(max(n_centres - 1, 2))

    def soft_labels(self, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        one_a = F.one_hot(y_a, self.n_classes).float()
        one_b = F.one_hot(y_b, self.n_classes).float()
        return lam[:, None] * one_a + (1 - lam[:, None]) * one_b

    @torch.no_grad()
    def adapt_scale(self, cos: torch.Tensor, target: torch.Tensor) -> None:
        """The AdaCos update of ``scale`` from one batch (cosines to every centre, soft labels)."""
        theta = torch.acos(cos.clamp(-1 + EPS, 1 - EPS)).view(
            len(cos), self.n_classes, self.sub_clusters
        )
        theta_target = (target * theta.min(dim=2).values).sum(dim=1)
        theta_med = torch.median(theta_target).clamp(max=math.pi / 4)
        log_b_avg = torch.logsumexp(self.scale * cos, dim=1).logsumexp(dim=0) - math.log(len(cos))
        self.scale.copy_(log_b_avg / torch.cos(theta_med))

    def forward(
        self,
        embeddings: torch.Tensor,
        y_a: torch.Tensor,
        y_b: torch.Tensor,
        lam: torch.Tensor,
        mode: str = "none",
    ) -> torch.Tensor:
        del mode  # no margin: mixup is soft labels whatever the mode
        cos = cosines(embeddings, self.centres)
        target = self.soft_labels(y_a, y_b, lam)
        if self.training:
            self.adapt_scale(cos, target)
        log_p = F.log_softmax(self.scale * cos, dim=1).view(
            len(cos), self.n_classes, self.sub_clusters
        )
        return -(target * torch.logsumexp(log_p, dim=2)).sum(dim=1)

    def class_centres(self) -> torch.Tensor:
        """(n_classes, sub_clusters, dim) unit-norm centres."""
        return F.normalize(self.centres.detach(), dim=1).view(self.n_classes, self.sub_clusters, -1)
