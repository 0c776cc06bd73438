"""Auxiliary-classification (discriminative) anomaly detection, the DCASE Task 2 field's
strongest family: a network trained to classify the metadata of normal clips (machine type,
section / machine id, attributes) with an angular-margin loss; its clip embeddings are then
scored by a back-end per domain (kNN with SMOTE by default).

Front-ends (`models.auxiliary`): ``stgram`` (STgram-MFN) or ``mn04`` (EfficientAT, fine-tuned all /
last blocks / frozen). Heads: ``arcface`` or ``subcluster_adacos``. Augmentation: waveform
mixup (``mixup``, or ``noisy_arcmix``) and SpecAugment. Back-ends: ``knn`` (+ SMOTE),
``centres``, ``gmm``.

Joint fit (``joint = True``): `fit_joint` trains ONE network over every machine type given
(classes = (machine, section, attributes), so other machines' clips are negatives) and
returns one system per machine type, each holding the shared network and its own back-end
and threshold; each saves to its own folder (the network weights are duplicated per folder).
`fit` is the joint fit of the clips it is given. The threshold's held-out scores come from
back-ends refitted on the other folds' embeddings (the network is not retrained per fold).
Choices and sources: ``docs/aux_classifier.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.clip import Clip
from ..detectors.backend import BACKENDS, EmbeddingBackend
from ..engine import OptimiserSpec, RunContext, train
from ..errors import CheckpointError, ConfigError, StethoscopeError
from ..features.extract import Decoded, FeatureRequest
from ..models.auxiliary import (
    FINETUNE_MODES,
    MIX_MODES,
    AuxNet,
)
from .aux_backend import fit_backend, machine_centres
from .aux_data import CLASS_MODES, WaveBank, crop_samples, derive_classes
from .aux_net import embed_by_length, load_net, make_net
from .base import Explanation, System, register
from .occlusion import occlusion_map


@register
class AuxClassifierSystem(System):
    """Metadata classifier (STgram-MFN or mn04, ArcFace or sub-cluster AdaCos) + embedding
    back-end."""

    name = "aux_classifier"
    description = (
        "discriminative: STgram-MFN or fine-tuned mn04 classifying machine/section/attributes "
        "(ArcFace / sub-cluster AdaCos, mixup, SpecAugment) + kNN with SMOTE per domain; joint fit"
    )
    smoke_params: ClassVar[dict[str, Any]] = {
        "epochs": 1,
        "batch_size": 4,
        "crop_frames": 16,
        "width": 0.125,
        "n_mels": 32,
        "embedding_dim": 16,
    }
    joint = True
    no_export = (
        "its back end (kNN with SMOTE, or GMM, per domain; detectors/backend.py) is not a "
        "torch module"
    )
    param_rules: ClassVar[dict[str, Any]] = {
        "frontend": ("stgram", "mn04"),
        "n_mels": "[16, inf)",
        "width": "(0, 4]",
        "embedding_dim": "[2, inf)",
        "finetune": FINETUNE_MODES,
        "last_blocks": "[1, 17]",
        "lora_rank": "[1, 64]",
        "mn04_weights": ("pretrained", "random"),
        "loss": ("arcface", "subcluster_adacos"),
        "scale": "(0, inf)",
        "margin": "[0, 1.5]",
        "sub_clusters": "[1, inf)",
        "mixup": MIX_MODES,
        "mixup_alpha": "(0, inf)",
        "specaug_masks": "[0, inf)",
        "specaug_freq": "[0, inf)",
        "specaug_time": "[0, inf)",
        "classes": CLASS_MODES,
        "crop_frames": "[8, inf)",
        "epochs": "[1, inf)",
        "batch_size": "[2, inf)",
        "learning_rate": "(0, inf)",
        "backend": BACKENDS,
        "n_neighbors": "[1, inf)",
        "smote_ratio": "(0, 1]",
        "gmm_components": "[1, inf)",
    }

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    frontend: str
    n_mels: int
    width: float
    embedding_dim: int
    finetune: str
    last_blocks: int
    lora_rank: int
    mn04_weights: str
    loss: str
    scale: float
    margin: float
    sub_clusters: int
    trainable_centres: bool
    mixup: str
    mixup_alpha: float
    specaugment: bool
    specaug_masks: int
    specaug_freq: int
    specaug_time: int
    classes: str
    crop_frames: int
    epochs: int
    batch_size: int
    learning_rate: float
    backend: str
    n_neighbors: int
    smote: bool
    smote_ratio: float
    per_section: bool
    gmm_components: int

    def __init__(
        self,
        *,
        frontend: str = "stgram",
        n_mels: int = 128,
        width: float = 0.25,
        embedding_dim: int = 128,
        finetune: str = "last",
        last_blocks: int = 3,
        lora_rank: int = 8,
        mn04_weights: str = "pretrained",
        loss: str = "arcface",
        scale: float = 30.0,
        margin: float = 0.7,
        sub_clusters: int = 16,
        trainable_centres: bool = False,
        mixup: str = "noisy_arcmix",
        mixup_alpha: float = 0.5,
        specaugment: bool = True,
        specaug_masks: int = 2,
        specaug_freq: int = 16,
        specaug_time: int = 16,
        classes: str = "section_attributes",
        crop_frames: int = 64,
        epochs: int = 20,
        batch_size: int = 16,
        learning_rate: float = 1e-3,
        backend: str = "knn",
        n_neighbors: int = 1,
        smote: bool = True,
        smote_ratio: float = 1.0,
        per_section: bool = True,
        gmm_components: int = 1,
    ) -> None:
        self._set_params(locals())
        if self.mixup == "noisy_arcmix" and self.loss != "arcface":
            raise ConfigError(
                f"{self.name}: mixup 'noisy_arcmix' places an angular margin and "
                f"needs loss 'arcface' (got loss {self.loss!r}); use mixup 'mixup' "
                "(soft labels) or 'none'"
            )
        self.net_: AuxNet | None = None
        self.backend_: EmbeddingBackend | None = None
        self.classes_: list[str] = []
        self.machine_: str | None = None
        self.machines_: list[str] = []
        self.history_: list[dict[str, float]] = []
        self.frontend_weights_: dict[str, Any] = {}
        self._backend_index: dict[str, Any] = {}
        self._seed = 0

    def feature_request(self) -> FeatureRequest:
        return FeatureRequest(wave=True)

    def weights_sha256(self) -> str | None:
        """The pretrained mn04 front-end's weights (set by `build_net`); None for the others."""
        return self.frontend_weights_.get("weights_sha256")

    # -- the network ----------------------------------------------------------------------
    def build_net(
        self, n_classes: int, pretrained: bool = False, weights_dirs: Sequence[Path] = ()
    ) -> AuxNet:
        """A fresh network for ``n_classes`` classes; ``pretrained`` loads the mn04 weights
        (found by sha256 in ``weights_dirs``, `encoders.weights`) or calibrates the ``random``
        control, and records them; a reload needs neither (the whole network is saved)."""
        net, weights = make_net(self, n_classes, pretrained, weights_dirs)
        if weights is not None:
            self.frontend_weights_ = weights
        return net

    def embed_waves(
        self, waves: Sequence[np.ndarray], ctx: RunContext, net: AuxNet | None = None
    ) -> np.ndarray:
        """(n, embedding_dim) embeddings of whole clips, batched by equal length."""
        net = net or self.net_
        if net is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        return embed_by_length(net, waves, self.batch_size, self.embedding_dim, ctx)

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        train: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> AuxClassifierSystem:
        """The joint fit of the given clips (all their machine types), kept in this object."""
        del val  # nothing is selected on validation data
        machines = sorted({c.machine for c in train})
        key = "+".join(machines) if machines else "none"
        self._fit_groups({key: list(train)}, ctx, {key: self})
        return self

    def fit_joint(
        self,
        groups: Mapping[str, Sequence[Clip]],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> dict[str, System]:
        """One network over every machine type in ``groups``; one fitted system per type."""
        del val
        targets = {m: type(self)(**self.get_params()) for m in groups}
        self._fit_groups({m: list(c) for m, c in groups.items()}, ctx, targets)
        return dict(targets)

    def _fit_groups(
        self,
        groups: Mapping[str, list[Clip]],
        ctx: RunContext | None,
        targets: Mapping[str, AuxClassifierSystem],
    ) -> None:
        """Train the network on every group's clips (checkpoints in ``ctx.checkpoint_dir``: the
        callers of `fit_joint` give a ``joint`` folder), then each target's back-end."""
        ctx = ctx or RunContext()
        clips = [c for m in groups for c in groups[m]]
        owners = [m for m in groups for _ in groups[m]]
        if len(clips) < 2:
            raise ConfigError(f"{self.name}: fit needs at least 2 training clips, got {len(clips)}")
        ctx.seed_everything()
        self._seed = ctx.seed
        bank = WaveBank.from_clips(clips, ctx.cache_dir, ctx.progress)
        net, classes, history = self._train_net(bank, clips, ctx)
        embeddings = self.embed_waves(bank.waves, ctx, net)
        kept_owner = [owners[i] for i in bank.index]
        for machine, target in targets.items():
            rows = [i for i, owner in enumerate(kept_owner) if owner == machine]
            if not rows:
                raise StethoscopeError(
                    f"{self.name}: every {machine} clip was left out by the audio checks"
                )
            target.net_, target.classes_, target.history_ = net, classes, history
            target.machine_, target.machines_ = machine, list(groups)
            target.frontend_weights_, target._seed = self.frontend_weights_, ctx.seed
            target.run_ = {
                "runtime": ctx.metadata(),
                "n_train": len(groups[machine]),
                "joint": {
                    "machines": list(groups),
                    "n_classes": len(classes),
                    "n_clips": len(bank),
                },
            }
            target._fit_backend(embeddings[rows], [bank.clips[i] for i in rows], ctx)

    def _train_net(
        self, bank: WaveBank, clips: Sequence[Clip], ctx: RunContext
    ) -> tuple[AuxNet, list[str], list[dict[str, float]]]:
        """The network trained to classify the ``bank``'s clips: (network, classes, history);
        ``clips`` (all given, before the audio checks) enter the checkpoint's fingerprint."""
        classes, labels = derive_classes(bank.clips, self.classes)
        if len(classes) < 2:
            warnings.warn(
                f"{self.name}: the training clips form a single class ({classes[0]!r}): "
                "the classification loss is degenerate (constant) and the network learns "
                "nothing; train jointly over several machine types (fit_joint, or "
                "`stethoscope train` on the whole data folder) or use data "
                "with sections / attributes",
                stacklevel=4,
            )
        net = self.build_net(len(classes), pretrained=True, weights_dirs=ctx.weights_dirs)
        net = net.to(ctx.torch_device)
        batches = bank.batches(
            labels, self.batch_size, crop_samples(self.crop_frames), self.mixup, self.mixup_alpha
        )
        result = train(
            net,
            batches,
            self.epochs,
            OptimiserSpec(self.learning_rate),
            ctx,
            self.fingerprint(clips, ctx),
            name=f"train {self.name}",
        )
        return net, classes, result.history

    def _backend_params(self) -> dict[str, Any]:
        """The back-end's constructor arguments (`detectors.backend.EmbeddingBackend`)."""
        return {
            "kind": self.backend,
            "n_neighbors": self.n_neighbors,
            "smote": self.smote,
            "smote_ratio": self.smote_ratio,
            "per_section": self.per_section,
            "gmm_components": self.gmm_components,
            "seed": self._seed,
        }

    def _fit_backend(self, embeddings: np.ndarray, clips: Sequence[Clip], ctx: RunContext) -> None:
        """This machine type's back-end, then the threshold (held out: back-ends refitted per
        fold, `aux_backend.fit_backend`)."""
        centres: np.ndarray | None = None
        owners: list[str] = []
        if self.backend == "centres":
            assert self.net_ is not None  # the network is trained before any back-end
            centres, owners = machine_centres(self.net_, self.classes_, clips, self.classes)
        params = self._backend_params()
        self.backend_, heldout = fit_backend(params, embeddings, clips, centres, owners)
        self._backend_index = self.backend_.index()
        self.fit_threshold(self.backend_.train_scores(), clips, ctx, minimum=2, heldout=heldout)

    # -- scoring --------------------------------------------------------------------------
    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        if self.backend_ is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        embeddings = self.embed_waves(decoded.waves, ctx)  # type: ignore[arg-type]
        sections = [c.section for c in decoded.clips] if decoded.clips else None
        return self.backend_.score(embeddings, sections)

    def explain_decoded(self, decoded: Decoded, ctx: RunContext) -> Explanation:
        """The score and an occlusion map (`occlusion`): how much deleting each of 8 mel bands x
        10 time chunks from the waveform lowers the score. 81 scorings of the clip."""
        backend = self.backend_
        if backend is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        section = decoded.clips[0].section if decoded.clips else None

        def score_waves(waves: Sequence[np.ndarray]) -> np.ndarray:
            return backend.score(self.embed_waves(waves, ctx), [section] * len(waves))

        logmel = decoded.logmels[0]  # type: ignore[index]
        params = self._explain_request().logmel
        score, amap = occlusion_map(decoded.waves[0], score_waves, params)  # type: ignore[index,arg-type]
        return Explanation(
            score=score,
            logmel=logmel,
            anomaly_map=amap,
            map_title="occlusion, how much deleting each region lowers the score",
            map_unit="score drop",
        )

    # -- persistence ----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.net_ is None or self.backend_ is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        state = {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        state.update(
            {
                f"backend.{k}": torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
                for k, v in self.backend_.state().items()
            }
        )
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not self.classes_:
            raise CheckpointError(f"{self.name}: the saved config lists no classes")
        self.net_ = load_net(self.build_net(len(self.classes_)), tensors, self.name)
        backend = {k[8:]: v.numpy() for k, v in tensors.items() if k.startswith("backend.")}
        self.backend_ = EmbeddingBackend.from_state(
            backend, self._backend_index, **self._backend_params()
        )

    def extra_state(self) -> dict[str, Any]:
        return {
            "classes": self.classes_,
            "machine": self.machine_,
            "machines": self.machines_,
            "history": self.history_,
            "frontend_weights": self.frontend_weights_,
            "backend": self._backend_index,
            "seed": self._seed,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.classes_ = list(state.get("classes", []))
        self.machine_, self.machines_ = state.get("machine"), list(state.get("machines", []))
        self.history_ = list(state.get("history", []))
        self.frontend_weights_ = dict(state.get("frontend_weights", {}))
        self._backend_index = dict(state.get("backend", {}))
        self._seed = int(state.get("seed", 0))
