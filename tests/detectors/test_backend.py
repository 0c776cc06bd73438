"""Embedding back-ends: kNN per domain with SMOTE, class centres, GMM; persistence."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.detectors.backend import EmbeddingBackend, l2_normalise
from stethoscope.errors import ConfigError


def _data(
    n_source: int = 30, n_target: int = 4, dim: int = 8, seed: int = 0
) -> tuple[np.ndarray, list, list]:
    rng = np.random.default_rng(seed)
    source = rng.normal(0, 0.1, (n_source, dim)) + np.eye(dim)[0]
    target = rng.normal(0, 0.1, (n_target, dim)) + np.eye(dim)[1]
    X = np.vstack([source, target])
    return X, ["00"] * len(X), ["source"] * n_source + ["target"] * n_target


def test_smote_oversamples_the_few_target_embeddings() -> None:
    X, sections, domains = _data()
    backend = EmbeddingBackend("knn", smote=True, smote_ratio=1.0).fit(X, sections, domains)
    target = next(b for b in backend.banks if b.domain == "target")
    assert target.n_real == 4 and len(target.rows) == 30  # as many as the source rows
    np.testing.assert_allclose(np.linalg.norm(target.rows, axis=1), 1.0)
    np.testing.assert_allclose(target.rows[:4], l2_normalise(X[30:]), rtol=1e-6, atol=1e-7)
    half = EmbeddingBackend("knn", smote=True, smote_ratio=0.5).fit(X, sections, domains)
    assert len(next(b for b in half.banks if b.domain == "target").rows) == 15
    off = EmbeddingBackend("knn", smote=False).fit(X, sections, domains)
    assert len(next(b for b in off.banks if b.domain == "target").rows) == 4


@pytest.mark.parametrize("n_target, rows", [(1, 1), (2, 30)])
def test_smote_caps_its_neighbours_by_the_sample_count(n_target: int, rows: int) -> None:
    X, sections, domains = _data(n_target=n_target)
    backend = EmbeddingBackend("knn", smote=True).fit(X, sections, domains)
    assert len(next(b for b in backend.banks if b.domain == "target").rows) == rows


def test_knn_score_is_the_smallest_domain_distance() -> None:
    X, sections, domains = _data()
    backend = EmbeddingBackend("knn", n_neighbors=1, smote=False).fit(X, sections, domains)
    scores = backend.score(X[[0, 31]])
    np.testing.assert_allclose(scores, 0.0, atol=1e-9)  # each is its own nearest neighbour
    probe = -X[[0]]  # opposite the source cluster, orthogonal to the target one
    unit = l2_normalise(X)
    to_source, to_target = (
        1 - (unit[:30] @ l2_normalise(probe).T).max(),
        1 - (unit[30:] @ l2_normalise(probe).T).max(),
    )
    assert to_source > 1.5 and to_target < 1.5
    assert backend.score(probe)[0] == pytest.approx(min(to_source, to_target), rel=1e-6, abs=1e-9)
    loo = backend.train_scores()
    assert loo.shape == (34,) and (loo > 0).all()  # leave-one-out: no row is its own neighbour


def test_per_section_banks_score_a_clip_against_its_section() -> None:
    X, _, domains = _data()
    sections = ["00"] * 15 + ["01"] * 15 + ["00"] * 4
    backend = EmbeddingBackend("knn", smote=False, per_section=True).fit(X, sections, domains)
    assert sorted({b.group for b in backend.banks}) == ["00", "01"]
    own, other, unknown = (
        backend.score(X[[20]] + 0.01, ["01"]),
        backend.score(X[[20]] + 0.01, ["00"]),
        backend.score(X[[20]] + 0.01, [None]),
    )
    assert own[0] < other[0] and unknown[0] == pytest.approx(own[0])


def test_a_row_alone_in_its_section_gets_a_finite_in_sample_score() -> None:
    X, _, _ = _data(n_source=6, n_target=0)
    sections = ["00"] * 5 + ["01"]  # section 01 has one training clip: no neighbour of its own
    backend = EmbeddingBackend("knn", smote=False, per_section=True).fit(X, sections, [None] * 6)
    loo = backend.train_scores()
    assert np.isfinite(loo).all()
    alone = l2_normalise(X)
    assert loo[5] == pytest.approx(
        1 - (alone[:5] @ alone[5]).max()
    )  # its distance to section 00's bank


def test_centres_backend_is_cosine_distance_to_the_closest_centre() -> None:
    centres = np.eye(3)
    backend = EmbeddingBackend("centres").fit(
        np.eye(3), ["00"] * 3, [None] * 3, centres, ["00"] * 3
    )
    x = np.array([[1.0, 1.0, 0.0]])
    assert backend.score(x)[0] == pytest.approx(1 - 1 / np.sqrt(2))


def test_gmm_backend_merges_a_single_target_clip() -> None:
    X, sections, domains = _data(n_target=1)
    backend = EmbeddingBackend("gmm").fit(X, sections, domains)
    assert [(b.domain, len(b.rows)) for b in backend.banks] == [("source", 31)]
    assert np.isfinite(backend.score(X)).all()
    with pytest.raises(ConfigError, match="gmm"):
        EmbeddingBackend("gmm").fit(X[:1], ["00"], ["source"])


@pytest.mark.parametrize("kind", ["knn", "gmm", "centres"])
def test_state_round_trip_scores_equal(kind: str) -> None:
    X, sections, domains = _data()
    centres = X[[0, 31]]
    backend = EmbeddingBackend(kind, n_neighbors=2, seed=3).fit(
        X, sections, domains, centres, ["00", "00"]
    )
    again = EmbeddingBackend.from_state(
        backend.state(), backend.index(), kind=kind, n_neighbors=2, seed=3
    )
    probe = np.random.default_rng(1).normal(size=(5, 8))
    np.testing.assert_allclose(again.score(probe), backend.score(probe), rtol=1e-12, atol=1e-9)
