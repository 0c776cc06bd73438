"""Auxiliary-classification anomaly detection: front-ends (STgram-MFN, fine-tuned EfficientAT
mn04), margin heads (ArcFace, sub-cluster AdaCos), augmentation (mixup, Noisy-ArcMix,
SpecAugment). Plain modules; their embedding back ends (kNN with SMOTE, class centres, GMM) are
`detectors.backend`; the `aux_classifier` system glues them (see ``docs/aux_classifier.md``)."""

from .augment import MixedBatch, beta_sample, mixup, no_mix, spec_augment
from .losses import MIX_MODES, ArcFace, SubClusterAdaCos, cosines
from .mn04 import FINETUNE_MODES, MN04Frontend, Upsample2
from .network import AuxNet
from .stgram import MobileFaceNet, STgramMFN, TgramBranch

__all__ = [
    "FINETUNE_MODES",
    "MIX_MODES",
    "ArcFace",
    "AuxNet",
    "MN04Frontend",
    "MixedBatch",
    "MobileFaceNet",
    "STgramMFN",
    "SubClusterAdaCos",
    "TgramBranch",
    "Upsample2",
    "beta_sample",
    "cosines",
    "mixup",
    "no_mix",
    "spec_augment",
]
