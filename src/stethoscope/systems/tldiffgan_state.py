"""TLDiffGAN's saved state (`systems.tldiffgan`'s persistence; not a system).

Tensor names in ``weights.safetensors``: ``ldgan.*`` (the LDGAN mel branch),
``scaler.<branch>.mean|scale``, ``joint_train`` (every detector's training matrix, stored
once), ``detector.<name>.<key>`` and ``reference.<candidate>``. ``config.json``'s
``extra_state`` holds the LDGAN branch's state, the selection, the seed, the candidates, the
waveform encoder's tag and the branch dimensions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..detectors.embedding import DETECTORS, TrainingSetDetector
from ..encoders import restore_encoder_tag, saved_encoder_tag
from ..errors import CheckpointError

if TYPE_CHECKING:
    from .tldiffgan import TLDiffGANSystem
    from .tldiffgan_fusion import Scalers


def saved_tensors(system: TLDiffGANSystem) -> dict[str, torch.Tensor]:
    """Everything the fitted system learned, as named tensors (`TLDiffGANSystem.state_tensors`)."""
    if system.joint_train_ is None:
        raise RuntimeError(f"{system.name}: nothing to save, the system is not fitted")
    state = {f"ldgan.{k}": v for k, v in system.branch.state_tensors().items()}
    state.update(
        fusion_state(system.scalers_, system.joint_train_, system.detectors_, system.reference_)
    )
    return state


def restore_tensors(system: TLDiffGANSystem, tensors: dict[str, torch.Tensor]) -> None:
    """Restore what `saved_tensors` saved into ``system`` (configured as it was saved)."""
    if "joint_train" not in tensors:
        raise CheckpointError(f"{system.name}: saved weights hold no joint training matrix")
    system.branch.load_state_tensors(
        {k[6:]: v for k, v in tensors.items() if k.startswith("ldgan.")}
    )
    branches = [
        "mel",
        *(["wave"] if system.use_wave_branch else []),
        *(["stats"] if system.mel_stats_branch else []),
    ]
    params = {name: system._detector(name).get_params() for name in system.detectors}
    system.scalers_, system.joint_train_, system.detectors_, system.reference_ = load_fusion_state(
        tensors, branches, params, system.candidates
    )


def saved_extra_state(system: TLDiffGANSystem) -> dict[str, Any]:
    """The system's learned JSON state (``config.json``'s ``extra_state``)."""
    return {
        "ldgan": system.branch.extra_state(),
        "selection": system.selection_,
        "seed": system._seed,
        "candidates": system.candidates,
        **saved_encoder_tag(system.encoder_tag_),
        "dims": {b: int(m.shape[0]) for b, (m, _) in system.scalers_.items()},
    }


def restore_extra_state(system: TLDiffGANSystem, state: dict[str, Any]) -> None:
    """Restore what `saved_extra_state` saved; clear error for a model of another encoder."""
    system.branch.load_extra_state(state.get("ldgan", {}))
    system.selection_ = dict(state.get("selection", {}))
    system._seed = int(state.get("seed", 0))
    tag = restore_encoder_tag(system.name, system.encoder, state)
    if tag is not None:
        system.encoder_tag_ = tag


def fusion_state(
    scalers: Scalers,
    joint_train: np.ndarray,
    detectors: Mapping[str, TrainingSetDetector],
    reference: Mapping[str, np.ndarray],
) -> dict[str, torch.Tensor]:
    """The fitted fusion as named tensors: ``scaler.<branch>.mean|scale``, ``joint_train``
    (every detector's training matrix, stored once), ``detector.<name>.<key>`` and
    ``reference.<candidate>``."""
    state: dict[str, torch.Tensor] = {}
    for key, (mean, scale) in scalers.items():
        state[f"scaler.{key}.mean"], state[f"scaler.{key}.scale"] = (
            to_tensor(mean),
            to_tensor(scale),
        )
    state["joint_train"] = to_tensor(joint_train)
    for name, det in detectors.items():
        state.update(
            {f"detector.{name}.{k}": to_tensor(v) for k, v in det.state().items() if k != "train"}
        )
    state.update({f"reference.{c}": to_tensor(r) for c, r in reference.items()})
    return state


def load_fusion_state(
    tensors: Mapping[str, torch.Tensor],
    branches: Sequence[str],
    detector_params: Mapping[str, dict[str, Any]],
    candidates: Sequence[str],
) -> tuple[Scalers, np.ndarray, dict[str, TrainingSetDetector], dict[str, np.ndarray]]:
    """Restore what `fusion_state` saved: (scalers, joint training matrix, detectors rebuilt
    with ``detector_params`` (name -> constructor arguments), reference scores)."""
    scalers = {
        b: (tensors[f"scaler.{b}.mean"].numpy(), tensors[f"scaler.{b}.scale"].numpy())
        for b in branches
    }
    joint_train = tensors["joint_train"].numpy()
    detectors = {}
    for name, params in detector_params.items():
        prefix = f"detector.{name}."
        state = {k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
        detectors[name] = DETECTORS[name].from_state({"train": joint_train, **state}, **params)
    reference = {c: tensors[f"reference.{c}"].numpy() for c in candidates}
    return scalers, joint_train, detectors, reference


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A float64 tensor of ``array`` (the dtype the fusion is saved in)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
