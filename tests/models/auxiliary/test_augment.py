"""Mixup draws and SpecAugment masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from stethoscope.models.auxiliary import beta_sample, mixup, no_mix, spec_augment


def test_beta_sample_follows_beta_and_is_seeded() -> None:
    draws = beta_sample(0.5, 4000, torch.Generator().manual_seed(1))
    assert ((draws > 0) & (draws < 1)).all()
    assert stats.kstest(draws.numpy(), stats.beta(0.5, 0.5).cdf).pvalue > 0.01
    torch.testing.assert_close(draws, beta_sample(0.5, 4000, torch.Generator().manual_seed(1)))


def test_mixup_mixes_pairs_and_their_labels() -> None:
    g = torch.Generator().manual_seed(0)
    waves, labels = torch.randn(6, 100, generator=g), torch.arange(6)
    out = mixup(waves, labels, 0.5, torch.Generator().manual_seed(3))
    assert out.waves.shape == waves.shape and out.y_a.tolist() == labels.tolist()
    partner = out.y_b  # labels are the row indices, so y_b names each row's partner
    torch.testing.assert_close(
        out.waves, out.lam[:, None] * waves + (1 - out.lam[:, None]) * waves[partner]
    )
    plain = no_mix(waves, labels)
    assert (
        torch.equal(plain.waves, waves)
        and torch.equal(plain.y_b, labels)
        and (plain.lam == 1).all()
    )


def test_spec_augment_masks_bands_with_the_clip_mean() -> None:
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(4, 32, 50, generator=g) * 10 - 40
    out = spec_augment(mel, 2, 8, 10, torch.Generator().manual_seed(5))
    assert out.shape == mel.shape
    changed = out != mel
    means = mel.mean(dim=(1, 2))
    for b in range(4):
        assert torch.allclose(out[b][changed[b]], means[b].expand(int(changed[b].sum())))
        rows = changed[b].all(dim=1).sum()  # masked frequency bins cover every frame
        assert rows <= 16
    assert changed.any()
    torch.testing.assert_close(spec_augment(mel, 2, 8, 10, torch.Generator().manual_seed(5)), out)


@pytest.mark.parametrize("masks, freq, time", [(0, 8, 8), (2, 0, 0)])
def test_spec_augment_without_masks_is_identity(masks: int, freq: int, time: int) -> None:
    mel = torch.randn(2, 16, 20)
    assert torch.equal(spec_augment(mel, masks, freq, time, torch.Generator().manual_seed(0)), mel)


def test_beta_sample_mean() -> None:
    draws = beta_sample(2.0, 2000, torch.Generator().manual_seed(0)).numpy()
    assert np.mean(draws) == pytest.approx(0.5, abs=0.02)
