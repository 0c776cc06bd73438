"""The auxiliary classifier's network (`systems.aux_classifier`; not a system).

`make_net` assembles it from the system's hyperparameters: the front end (STgram-MFN, or
EfficientAT mn04 with its pretrained weights found by sha256, `encoders.weights`) and the
angular-margin head (ArcFace or sub-cluster AdaCos); `load_net` restores a saved one.
`embed_by_length` embeds whole clips with it, batched by equal length.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..encoders.efficientat import MN04_FILE, MN04_SHA256, MN04_URL, load_mn04_state
from ..encoders.weights import find_by_sha256
from ..engine import RunContext
from ..errors import CheckpointError
from ..models.auxiliary import ArcFace, AuxNet, MN04Frontend, STgramMFN, SubClusterAdaCos

if TYPE_CHECKING:
    from .aux_classifier import AuxClassifierSystem


def make_net(
    system: AuxClassifierSystem,
    n_classes: int,
    pretrained: bool = False,
    weights_dirs: Sequence[Path] = (),
) -> tuple[AuxNet, dict[str, Any] | None]:
    """A fresh network of ``system``'s hyperparameters for ``n_classes`` classes, and (with
    ``pretrained``) the record of its front end's initial weights, else None. ``pretrained``
    loads the mn04 weights (found by sha256 in ``weights_dirs``) or calibrates the ``random``
    control with the system's seed."""
    s = system
    specaug = (s.specaug_masks, s.specaug_freq, s.specaug_time) if s.specaugment else None
    weights: dict[str, Any] | None = None
    if s.frontend == "stgram":
        frontend: torch.nn.Module = STgramMFN(s.n_mels, s.width, s.embedding_dim, specaug)
        if pretrained:
            weights = {"frontend": "stgram", "init": "random"}
    else:
        state, calibrate = None, None
        if pretrained and s.mn04_weights == "pretrained":
            path = find_by_sha256(MN04_SHA256, MN04_FILE, weights_dirs, s.weights_hint_, MN04_URL)
            state = load_mn04_state(str(path))
            weights = {
                "frontend": "mn04",
                "init": "pretrained",
                "weights_file": MN04_FILE,
                "weights_sha256": MN04_SHA256,
            }
        elif pretrained:
            calibrate = s._seed
            weights = {"frontend": "mn04", "init": "random"}
        try:
            frontend = MN04Frontend(
                s.embedding_dim, s.finetune, s.last_blocks, specaug, state, calibrate, s.lora_rank
            )
        except RuntimeError as err:
            raise CheckpointError(f"mn04 weights do not match the architecture ({err})") from err
    if s.loss == "arcface":
        head: torch.nn.Module = ArcFace(s.embedding_dim, n_classes, s.scale, s.margin)
    else:
        head = SubClusterAdaCos(s.embedding_dim, n_classes, s.sub_clusters, s.trainable_centres)
    return AuxNet(frontend, head, s.mixup), weights


def load_net(net: AuxNet, tensors: Mapping[str, torch.Tensor], owner: str) -> AuxNet:
    """``net`` (built for the saved classes) with the saved ``net.*`` tensors, in evaluation
    mode; clear error where they do not fit it."""
    try:
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    except RuntimeError as err:
        raise CheckpointError(
            f"{owner}: saved weights do not match the configured network ({err})"
        ) from err
    net.eval()
    return net


def net_on(net: AuxNet, ctx: RunContext) -> AuxNet:
    """``net`` on the run's device, in evaluation mode."""
    device = ctx.torch_device
    if next(net.parameters()).device != device:
        net.to(device)
    if net.training:
        net.eval()
    return net


def embed_by_length(
    net: AuxNet, waves: Sequence[np.ndarray], batch_size: int, dim: int, ctx: RunContext
) -> np.ndarray:
    """(n, ``dim``) embeddings of whole clips by ``net``, batched by equal length."""
    net = net_on(net, ctx)
    out = np.zeros((len(waves), dim), np.float32)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, wave in enumerate(waves):
        by_length[len(wave)].append(i)
    for members in by_length.values():
        for start in range(0, len(members), batch_size):
            part = members[start : start + batch_size]
            x = ctx.to_device(
                torch.from_numpy(np.stack([waves[i] for i in part]).astype(np.float32))
            )
            with ctx.autocast():
                out[part] = net.embed(x).cpu().numpy()
    return out
