"""The auxiliary classifier's back-end glue (`systems.aux_classifier`; not a system).

The back-end (`detectors.backend.EmbeddingBackend`: kNN with SMOTE, GMM or class centres, per
domain) scores the network's clip embeddings. Here: the head's class centres a ``centres``
back-end compares with (`machine_centres`), and the threshold's held-out scores from
back-ends refitted on the other folds' embeddings (`fit_backend`; the network is not
retrained per fold).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.clip import Clip
from ..detectors.backend import EmbeddingBackend
from ..models.auxiliary import ArcFace, AuxNet, SubClusterAdaCos
from .aux_data import class_key


def machine_centres(
    net: AuxNet, classes: Sequence[str], clips: Sequence[Clip], class_mode: str
) -> tuple[np.ndarray, list[str]]:
    """The head's centres of the classes these clips belong to (``classes``: the network's
    class keys, `aux_data.derive_classes`), and each centre's section."""
    head = net.head
    assert isinstance(head, (ArcFace, SubClusterAdaCos))  # the heads `aux_net.make_net` makes
    centres = head.class_centres().cpu().numpy()  # (classes, sub_clusters, dim)
    sections = {class_key(c, class_mode): c.section for c in clips}
    idx = [list(classes).index(k) for k in sorted(sections)]
    return (
        centres[idx].reshape(-1, centres.shape[-1]),
        [sections[classes[i]] for i in idx for _ in range(centres.shape[1])],
    )


def fit_backend(
    params: dict[str, Any],
    embeddings: np.ndarray,
    clips: Sequence[Clip],
    centres: np.ndarray | None,
    owners: Sequence[str],
) -> tuple[EmbeddingBackend, Callable[[Sequence[np.ndarray]], np.ndarray]]:
    """A back-end of ``params`` fitted on the ``clips``' embeddings (``centres`` and their
    sections ``owners`` for the ``centres`` kind), and ``heldout(folds)`` for
    `System.fit_threshold`: each fold's clips scored by a fresh back-end fitted on the other
    folds' embeddings."""
    sections, domains = [c.section for c in clips], [c.domain for c in clips]
    backend = EmbeddingBackend(**params).fit(embeddings, sections, domains, centres, owners)

    def heldout(folds: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros(len(embeddings))
        for held in folds:
            rest = np.setdiff1d(np.arange(len(embeddings)), held)
            fold = EmbeddingBackend(**params).fit(
                embeddings[rest],
                [sections[i] for i in rest],
                [domains[i] for i in rest],
                centres,
                owners,
            )
            out[held] = fold.score(embeddings[held], [sections[i] for i in held])
        return out

    return backend, heldout
