"""Per-bin log-mel statistics of a clip, and their scoring network (the `mel_stats` system).

A clip's log-mel (n_mels, frames) is summarised per mel bin by a list of statistics over time
(mean, standard deviation, percentiles, maximum, minimum, the standard deviation of the
frame-to-frame change), optionally followed by modulation
features: the log power spectrum of band envelopes over time, pooled into log-spaced bins.
`MelStatsFeatures` computes them in float64 torch; `MelStatsScorer` standardises them and
scores them with fitted detectors (one per section and domain group; a clip's score is the
smallest over the groups it may belong to) and spreads each feature's squared standardised
deviation over the frames that drive it: the anomaly map. Score, map and ONNX export all run
this one module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..detectors.module import DetectorModule, f64

DEFAULT_STATS = ("mean", "std", "p10", "p90", "max")
STATISTICS = ("mean", "std", "min", "max", "p10", "p25", "p50", "p75", "p90", "dstd")
FRAME_RATE = 16_000 / 512  # log-mel frames per second at the DCASE parameters
MODULATION_HZ = (0.25, FRAME_RATE / 2)


class OrderStats:
    """The order statistics (k-th smallest values over the last axis) that the percentiles, min
    and max of ``stats`` need, from at most two partial sorts (`torch.topk`: a full sort of
    128 x 313 values costs more than everything else in scoring a clip; TopK exports to ONNX)."""

    def __init__(self, x: torch.Tensor, stats: Sequence[str]) -> None:
        self.frames = frames = x.shape[-1]
        ranks = sorted({r for s in stats for r in self.ranks(s)})
        low = [r for r in ranks if r < frames / 2]
        high = [r for r in ranks if r >= frames / 2]
        self.low = (
            torch.topk(x, max(low) + 1, dim=-1, largest=False).values if low else None
        )  # ascending
        self.high = torch.topk(x, frames - min(high), dim=-1).values if high else None  # descending

    def ranks(self, name: str) -> tuple[int, ...]:
        """The ranks (0 = smallest) a statistic reads; none for those that read no order."""
        if name == "min":
            return (0,)
        if name == "max":
            return (self.frames - 1,)
        if name.startswith("p"):
            pos = float(name[1:]) / 100.0 * (self.frames - 1)
            return (math.floor(pos), min(math.floor(pos) + 1, self.frames - 1))
        return ()

    def value(self, rank: int) -> torch.Tensor:
        if rank < self.frames / 2:
            return self.low[..., rank]  # type: ignore[index]
        return self.high[..., self.frames - 1 - rank]  # type: ignore[index]

    def percentile(self, q: float) -> torch.Tensor:
        """numpy's default (linear) percentile ``q``."""
        pos = q / 100.0 * (self.frames - 1)
        lo, hi = self.ranks(f"p{q:g}")
        frac = pos - lo
        return self.value(lo) * (1.0 - frac) + self.value(hi) * frac


def _band_edges(n_mels: int, bands: int) -> list[tuple[int, int]]:
    """Contiguous mel-bin ranges of the modulation bands (as equal as the bins allow)."""
    cuts = [round(i * n_mels / bands) for i in range(bands + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(bands)]


class MelStatsFeatures(nn.Module):
    """(B, n_mels, T) log-mel in dB -> (B, D) float64 features: ``stats`` per bin (stat-major:
    all bins of the first statistic, then the next), then ``modulation_bands`` x
    ``modulation_bins`` log modulation powers."""

    def __init__(
        self, n_mels: int, stats: Sequence[str], modulation_bands: int = 0, modulation_bins: int = 8
    ) -> None:
        super().__init__()
        unknown = [s for s in stats if s not in STATISTICS]
        if unknown or not stats:
            raise ValueError(
                f"statistics must be a non-empty list of {STATISTICS}, got {list(stats)}"
            )
        self.n_mels, self.stats = n_mels, list(stats)
        self.bands = _band_edges(n_mels, modulation_bands) if modulation_bands else []
        self.modulation_bins = modulation_bins if modulation_bands else 0

    @property
    def dim(self) -> int:
        return self.n_mels * len(self.stats) + len(self.bands) * self.modulation_bins

    def _stat(self, x: torch.Tensor, order: OrderStats, name: str) -> torch.Tensor:
        if name == "mean":
            return x.mean(dim=-1)
        if name == "std":
            return x.std(dim=-1, unbiased=False)
        if name == "min":
            return order.value(0)
        if name == "max":
            return order.value(order.frames - 1)
        if name == "dstd":  # frame-to-frame change: how rough the bin's level is over time
            return (x[..., 1:] - x[..., :-1]).std(dim=-1, unbiased=False)
        return order.percentile(float(name[1:]))

    def envelopes(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, T) band envelopes: each band's mean level per frame, its time mean removed."""
        env = torch.stack([x[:, a:b].mean(dim=1) for a, b in self.bands], dim=1)
        return env - env.mean(dim=-1, keepdim=True)

    def modulation_basis(self, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cosine and sine DFT bases (T, F) of the kept modulation frequencies and the pooling
        matrix (F, bins) that averages them into log-spaced bins (empty bins borrow the nearest).
        Computed in numpy from the clip length alone: constants to an exported graph."""
        freqs = np.arange(frames // 2 + 1) * FRAME_RATE / frames
        lo, hi = MODULATION_HZ
        edges = np.logspace(np.log10(lo), np.log10(hi), self.modulation_bins + 1)
        pool = np.zeros((len(freqs), self.modulation_bins))
        for j in range(self.modulation_bins):
            inside = (freqs >= edges[j]) & (
                (freqs < edges[j + 1]) if j < self.modulation_bins - 1 else (freqs <= hi)
            )
            if not inside.any():  # short clips: too few DFT bins for the low bands
                centre = np.sqrt(edges[j] * edges[j + 1])
                inside = np.abs(freqs - centre) == np.abs(freqs - centre).min()
            pool[:, j] = inside / inside.sum()
        angle = 2 * np.pi * np.outer(np.arange(frames), np.arange(len(freqs))) / frames
        return (
            torch.from_numpy(np.cos(angle)),
            torch.from_numpy(np.sin(angle)),
            torch.from_numpy(pool),
        )

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = logmel.double()
        order = OrderStats(x, self.stats)
        parts = [self._stat(x, order, s) for s in self.stats]
        if self.bands:
            env = self.envelopes(x)
            cos, sin, pool = self.modulation_basis(x.shape[-1])
            power = ((env @ cos).square() + (env @ sin).square()) / x.shape[-1]
            parts.append(torch.log10(power @ pool + 1e-6).flatten(1))
        return torch.cat(parts, dim=-1)

    def frame_weights(
        self, logmel: torch.Tensor, normal_mean: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, n_mels x stats, T) which frames drive each bin statistic, each row summing to 1
        (a modulation feature drives every frame alike: no rows for those). A mean: the frames
        that lie beyond the normal mean (``normal_mean``, (B, n_mels)) on the side the clip's mean
        moved to (every frame when none or not given); a standard deviation: by squared deviation
        from the clip's mean; a percentile: the frames at or beyond it on its side of the median;
        min and max: the extreme frames."""
        x = logmel.double()
        order = OrderStats(x, self.stats)
        rows = []
        for name in self.stats:
            if name == "mean":
                w = torch.ones_like(x)
                if normal_mean is not None:
                    centred = x - normal_mean[..., None]
                    w = torch.relu(centred * torch.sign(centred.mean(dim=-1, keepdim=True)))
                    w = torch.where(w.sum(dim=-1, keepdim=True) > 0, w, torch.ones_like(w))
            elif name == "std":
                w = (x - x.mean(dim=-1, keepdim=True)).square() + 1e-12
            elif name == "dstd":  # the frames on either side of each change, by its squared size
                step = x[..., 1:] - x[..., :-1]
                step = (step - step.mean(dim=-1, keepdim=True)).square()
                w = (
                    torch.nn.functional.pad(step, (0, 1))
                    + torch.nn.functional.pad(step, (1, 0))
                    + 1e-12
                )
            elif name in ("min", "max"):
                w = (x == self._stat(x, order, name)[..., None]).double()
            else:
                level = self._stat(x, order, name)[..., None]
                w = (x >= level if float(name[1:]) >= 50 else x <= level).double()
                w = torch.where(w.sum(dim=-1, keepdim=True) > 0, w, torch.ones_like(w))
            rows.append(w / w.sum(dim=-1, keepdim=True))
        return torch.cat(rows, dim=1)

    def modulation_bins_of_bands(self) -> torch.Tensor:
        """(bands x modulation_bins, n_mels): the mel bins each modulation feature belongs to,
        its band's bins sharing it equally."""
        w = torch.zeros(len(self.bands) * self.modulation_bins, self.n_mels, dtype=torch.float64)
        for j, (a, b) in enumerate(self.bands):
            w[j * self.modulation_bins : (j + 1) * self.modulation_bins, a:b] = 1.0 / (b - a)
        return w


class MelStatsScorer(nn.Module):
    """Features -> (score (B,) float64, anomaly map (B, n_mels, T) float32).

    ``detectors`` are fitted detectors, one per (section, domain) group; ``groups`` says which
    of them may score a clip (``None``: all). The score is the smallest of those detectors'
    scores (the DCASE 2023 baseline's rule for a clip whose domain is not known); the map is
    that detector's squared standardised feature deviations, spread over frames and bins."""

    shift: torch.Tensor  # buffers: (G, D) feature means and scales of each group, the bands' bins
    scale: torch.Tensor
    band_bins: torch.Tensor

    def __init__(
        self,
        features: MelStatsFeatures,
        detectors: Sequence[DetectorModule],
        scales: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        super().__init__()
        self.features = features
        self.detectors = nn.ModuleList(detectors)
        self.register_buffer("shift", torch.stack([f64(s) for s, _ in scales]))  # (G, D)
        self.register_buffer("scale", torch.stack([f64(s) for _, s in scales]))
        self.register_buffer("band_bins", features.modulation_bins_of_bands())

    def group_scores(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, G) every detector's score."""
        return torch.stack([det(feats) for det in self.detectors], dim=1)

    def score(
        self, logmel: torch.Tensor, groups: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(score (B,), the detector that gave it (B,), the features (B, D)): no map."""
        feats = self.features(logmel)
        scores = self.group_scores(feats)
        if groups is not None:
            scores = scores[:, list(groups)]
        best, which = scores.min(dim=1)
        if groups is not None:
            which = torch.tensor(list(groups), dtype=torch.long)[which]
        return best, which, feats

    def forward(
        self, logmel: torch.Tensor, groups: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        best, which, feats = self.score(logmel, groups)
        return best, self.anomaly_map(logmel, feats, which)

    def anomaly_map(
        self, logmel: torch.Tensor, feats: torch.Tensor, which: torch.Tensor
    ) -> torch.Tensor:
        """(B, n_mels, T) float32: each feature's squared standardised deviation under detector
        ``which``, spread over the frames that drive it (`MelStatsFeatures.frame_weights`) and
        over its mel bins; the map sums to the clip's total squared deviation."""
        n, k = self.features.n_mels, len(self.features.stats)
        means = self.features.stats.index("mean") if "mean" in self.features.stats else None
        normal_mean = (
            self.shift[which][:, means * n : (means + 1) * n] if means is not None else None
        )
        z2 = ((feats - self.shift[which]) / self.scale[which]).square()  # (B, D)
        weights = self.features.frame_weights(logmel, normal_mean)  # (B, n * k, T)
        b, t = weights.shape[0], weights.shape[-1]
        amap = (z2[:, : n * k, None] * weights).reshape(b, k, n, t).sum(dim=1)
        if self.features.bands:  # modulation features: their band's bins, every frame alike
            amap = amap + (z2[:, n * k :] @ self.band_bins)[..., None] / t
        return amap.float()


def features_of(module: MelStatsFeatures, logmels: Sequence[np.ndarray]) -> np.ndarray:
    """(n, D) float64 features of log-mels (dB) of any lengths; equal lengths share one batch."""
    out = np.zeros((len(logmels), module.dim))
    by_length: dict[int, list[int]] = {}
    for i, mel in enumerate(logmels):
        by_length.setdefault(mel.shape[-1], []).append(i)
    for idx in by_length.values():
        with torch.no_grad():
            out[idx] = module(torch.from_numpy(np.stack([logmels[i] for i in idx]))).numpy()
    return out
