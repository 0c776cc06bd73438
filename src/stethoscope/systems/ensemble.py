"""Ensembles: registered systems fitted on the same clips, their scores normalised and averaged.

Each member is built from its packaged config, then ``member_params[name]``, and fitted as it
would be alone, with a cross-fitted threshold (``threshold_folds`` of the ensemble unless
``member_params`` says otherwise), so that its fit leaves the held-out scores of its training
clips (`System.fit_scores_`). A member's score ``s`` is normalised by the distribution of those
held-out scores ``h``:

* ``zscore`` (default): ``z = (s - mean(h)) / std(h)``;
* ``gamma``: ``z = -log10 P(G > s)``, G the gamma distribution fitted to ``h`` (the model of
  the DCASE threshold): how many decades rarer than a normal clip the score is.

The ensemble's score is the weighted mean of the members' ``z``. Held-out statistics, not
in-sample ones: a member scores its own training clips lower than new normal clips, the more
so the more it overfits, so in-sample statistics would shrink its spread and inflate its ``z``
for every new clip; the member that overfits most would dominate the mean. docs/ensemble.md.

The ensemble's threshold is the gamma fit of its own held-out training scores (the members'
normalised held-out scores, averaged), or of the in-sample ones with ``threshold_fit:
in_sample``; the members' folds are trained either way, the normalisation needs them.
If any member is joint the ensemble is joint: `fit_joint` fits every member over all machine
types (`System.fit_joint`) and assembles one ensemble per type. Saved: every member's tensors
under ``m<i>.`` in the one weights file; ``extra_state`` holds each member's name,
hyperparameters, threshold, JSON state, run record and normalisation statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..config import packaged_config
from ..data.audio import SAMPLE_RATE
from ..data.clip import Clip
from ..engine import RunContext
from ..errors import CheckpointError, ConfigError
from ..features.extract import Decoded, FeatureRequest, decode_waves
from .base import System, get_system, list_systems, register
from .ensemble_norm import NORMALISE, normalisation_stats, normalise
from .registry import system_from_saved
from .threshold import CROSSFIT


@register
class EnsembleSystem(System):
    """Weighted mean of member systems' scores, each normalised by its held-out training scores."""

    name = "ensemble"
    description = "mean of member systems' scores, each normalised by its held-out training scores"
    smoke_params: ClassVar[dict[str, Any]] = {
        "members": ["dcase_ae", "embedding_knn"],
        "member_params": {
            "dcase_ae": {"epochs": 2, "batch_size": 64, "threshold_folds": 2},
            "embedding_knn": {"encoder": "random", "detector": "gmm"},
        },
    }
    param_rules: ClassVar[dict[str, Any]] = {"normalise": NORMALISE}
    no_export = (
        "an ensemble's members each need their own front end and scoring module, and "
        "its score normalisation is not exported; export the members one by one"
    )

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    members: Sequence[str]
    member_params: dict[str, dict[str, Any]]  # None given: {} (`_init_members`)
    normalise: str
    weights: Sequence[float] | None

    def __init__(
        self,
        *,
        members: Sequence[str] = ("dcase_ae", "embedding_knn"),
        member_params: dict[str, dict[str, Any]] | None = None,
        normalise: str = "zscore",
        weights: Sequence[float] | None = None,
    ) -> None:
        self._set_params(locals())
        self._init_members()

    def _init_members(self) -> None:
        """Check the members and their parameters; build unfitted prototypes (what `feature_request`
        reads before a fit)."""
        self.member_params = _checked_member_params(self.members, self.member_params)
        weights = self.weights
        if weights is not None and (
            len(weights) != len(self.members)
            or min(weights) < 0
            or sum(weights) <= 0
            or not all(map(math.isfinite, weights))
        ):
            raise ConfigError(
                f"ensemble: weights must be {len(self.members)} finite non-negative numbers "
                f"(one per member) with a positive sum, got {weights}"
            )
        self._prototypes = [
            self._member(i) for i in range(len(self.members))
        ]  # checks every member's params
        requests = [p.feature_request() for p in self._prototypes]
        rates = {r.logmel.sample_rate if r.logmel else SAMPLE_RATE for r in requests}
        if len(rates) > 1:
            raise ConfigError(
                f"ensemble: members decode audio at different sample rates {sorted(rates)}"
            )
        self.joint = any(
            p.joint for p in self._prototypes
        )  # any joint member makes the ensemble joint
        self.members_: list[System] | None = None
        self.norm_: list[dict[str, Any]] | None = None

    @classmethod
    def upgrade_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Saved ``member_params`` of an older layout: each member's own migrated (its parts
        nested, `System.upgrade_params`), an old ``weights_path`` dropped (the runtime's now)."""
        overrides = params.get("member_params")
        if isinstance(overrides, Mapping):
            systems = list_systems()
            params["member_params"] = {
                name: systems[name].upgrade_params(
                    {k: v for k, v in dict(values).items() if k != "weights_path"}
                )
                if name in systems and isinstance(values, Mapping)
                else values
                for name, values in overrides.items()
            }
        return params

    def _member(self, i: int) -> System:
        """Member ``i`` unfitted: packaged config, a cross-fitted threshold, then
        ``member_params``."""
        name = self.members[i]
        folds = getattr(self, "threshold_folds", None)  # unset while the constructor runs
        params = {
            **packaged_config(name),
            "threshold_fit": CROSSFIT,
            **({"threshold_folds": folds} if folds else {}),
            **self.member_params.get(name, {}),
        }
        try:
            return get_system(name, **params)
        except ConfigError as err:
            raise ConfigError(f"ensemble: member {name!r}: {err}") from err

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        train: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> EnsembleSystem:
        ctx = self._begin_fit(train, ctx)
        members = [self._member(i) for i in range(len(self.members))]
        for i, member in enumerate(members):
            member.fit(train, val, self._member_ctx(ctx, i))
        return self._assemble(members, ctx)

    def fit_joint(
        self,
        groups: Mapping[str, Sequence[Clip]],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> dict[str, System]:
        """With a joint member: every member fitted over all types at once (a per-type member
        fits one copy per type), then one ensemble per type; else one `fit` per type."""
        if not self.joint:
            return super().fit_joint(groups, val, ctx)
        ctx = ctx or RunContext()
        fitted = [
            self._member(i).fit_joint(groups, val, self._member_ctx(ctx, i))
            for i in range(len(self.members))
        ]
        out: dict[str, System] = {}
        for machine, train in groups.items():
            missing = [
                name
                for name, per_type in zip(self.members, fitted, strict=True)
                if machine not in per_type
            ]
            if missing:
                raise ConfigError(
                    f"ensemble: member(s) {missing} returned no system for machine type {machine!r}"
                )
            ensemble = type(self)(**self.get_params())
            mctx = ensemble._begin_fit(train, ctx)
            out[machine] = ensemble._assemble([per_type[machine] for per_type in fitted], mctx)
        return out

    def _member_ctx(self, ctx: RunContext, i: int) -> RunContext:
        return ctx.for_run(f"member{i}_{self.members[i]}")

    def _assemble(self, members: list[System], ctx: RunContext) -> EnsembleSystem:
        """Normalisation statistics from each fitted member's held-out training scores, then the
        ensemble's threshold from the normalised, averaged ones (clips every member kept)."""
        refs = []
        for name, member in zip(self.members, members, strict=True):
            if member.fit_scores_ is None:
                raise ConfigError(
                    f"ensemble: member {name!r} kept no training scores (its fit must end with "
                    "System.fit_threshold)"
                )
            refs.append(member.fit_scores_)
        index = [{clip: k for k, clip in enumerate(ref["clips"])} for ref in refs]
        common = [clip for clip in refs[0]["clips"] if all(clip in ix for ix in index)]
        if not common:
            raise ConfigError("ensemble: the members kept no training clip in common")
        self.members_, self.norm_ = members, []
        heldout, in_sample, record = [], [], []
        for name, ref, ix in zip(self.members, refs, index, strict=True):
            source = "heldout" if ref["heldout"] is not None else "in_sample"
            stats = normalisation_stats(ref[source], self.normalise)
            self.norm_.append(stats)
            rows = [ix[clip] for clip in common]
            heldout.append(normalise(ref[source][rows], stats))
            in_sample.append(normalise(ref["in_sample"][rows], stats))
            record.append({"system": name, "statistics_of": source, "n": len(ref[source]), **stats})
        self.run_ = {**(self.run_ or {}), "members": record}
        ensemble_heldout = np.average(np.stack(heldout), axis=0, weights=self._weights())
        self.fit_threshold(
            np.average(np.stack(in_sample), axis=0, weights=self._weights()),
            common,
            ctx,
            heldout=lambda folds: ensemble_heldout,
        )
        return self

    def _weights(self) -> np.ndarray:
        return np.asarray(
            self.weights if self.weights is not None else [1.0] * len(self.members),
            dtype=np.float64,
        )

    # -- scoring --------------------------------------------------------------------------
    def _current(self) -> list[System]:
        return self.members_ if self.members_ is not None else self._prototypes

    def feature_request(self) -> FeatureRequest:
        """The union of the members' requests: one decoding pass feeds them all (waveforms
        too where members want different log-mels, which are then computed from them)."""
        requests = [m.feature_request() for m in self._current()]
        mels = [r.logmel for r in requests if r.logmel is not None]
        return FeatureRequest(
            logmel=mels[0] if mels else None,
            wave=any(r.wave for r in requests) or len(set(mels)) > 1,
            min_frames=max(r.min_frames for r in requests),
        )

    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        if self.members_ is None or self.norm_ is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        have = self.feature_request()
        parts = [
            normalise(
                m.normalised(
                    m.score_decoded(_view(decoded, m.feature_request(), have), ctx), decoded.clips
                ),
                stats,
            )
            for m, stats in zip(self.members_, self.norm_, strict=True)
        ]
        return np.average(np.stack(parts), axis=0, weights=self._weights())

    # -- persistence ------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.members_ is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        return {
            f"m{i}.{key}": value
            for i, m in enumerate(self.members_)
            for key, value in m.state_tensors().items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.members_ is None:
            raise CheckpointError(f"{self.name}: config.json holds no members")
        for i, member in enumerate(self.members_):
            prefix = f"m{i}."
            member.load_state_tensors(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )

    def extra_state(self) -> dict[str, Any]:
        if self.members_ is None or self.norm_ is None:
            return {}
        return {
            "members": [
                {
                    "system": m.name,
                    "params": m.get_params(),
                    "threshold": m.threshold_,
                    "score_norm": m.score_norm_,
                    "extra_state": m.extra_state(),
                    "run": m.run_,
                    "normalisation": stats,
                }
                for m, stats in zip(self.members_, self.norm_, strict=True)
            ]
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        records = state.get("members")
        if (
            not isinstance(records, list)
            or [r.get("system") for r in records if isinstance(r, dict)] != self.members
        ):
            raise CheckpointError(
                f"{self.name}: config.json's extra_state.members does not list the members "
                f"{self.members}"
            )
        members, norm = [], []
        for record in records:
            try:
                member = system_from_saved(record["system"], record["params"])
                member.threshold_, member.run_ = record.get("threshold"), record.get("run")
                member.score_norm_ = record.get("score_norm")
                member.load_extra_state(record.get("extra_state", {}))
                norm.append(dict(record["normalisation"]))
            except (KeyError, TypeError) as err:
                raise CheckpointError(
                    f"{self.name}: corrupt member record in config.json ({err!r})"
                ) from err
            members.append(member)
        self.members_, self.norm_ = members, norm


def _checked_member_params(members: Sequence[str], member_params: Any) -> dict[str, dict[str, Any]]:
    """Members are distinct registered systems (no ensembles); overrides name members only."""
    systems = list_systems()
    known = [name for name, cls in systems.items() if not issubclass(cls, EnsembleSystem)]
    if not members:
        raise ConfigError("ensemble: members must name at least one system")
    for name in members:
        if name in systems and name not in known:
            raise ConfigError(
                f"ensemble: {name!r} combines systems itself; it cannot be a member of an ensemble"
            )
        if name not in known:
            raise ConfigError(
                f"ensemble: unknown member system {name!r}; known: {', '.join(known)}"
            )
    if len(set(members)) != len(members):
        raise ConfigError(f"ensemble: members must be distinct, got {list(members)}")
    params = member_params or {}
    if not isinstance(params, Mapping) or not all(isinstance(v, Mapping) for v in params.values()):
        raise ConfigError(
            f"ensemble: member_params must map member names to parameter mappings, got {params!r}"
        )
    stray = sorted(set(params) - set(members))
    if stray:
        raise ConfigError(
            f"ensemble: member_params names {stray}, which are not members {list(members)}"
        )
    return {name: dict(values) for name, values in params.items()}


def _view(decoded: Decoded, want: FeatureRequest, have: FeatureRequest) -> Decoded:
    """The chunk as one member asked for it: its log-mel parameters, waveforms if it reads them."""
    logmels = None
    if want.logmel is not None:
        logmels = (
            decoded.logmels
            if want.logmel == have.logmel
            else decode_waves(
                decoded.waves or [], want.logmel.sample_rate, FeatureRequest(logmel=want.logmel)
            ).logmels
        )
    return Decoded(
        keys=decoded.keys,
        waves=decoded.waves if want.wave else None,
        logmels=logmels,
        clips=decoded.clips,
        index=decoded.index,
    )


__all__ = ["NORMALISE", "EnsembleSystem", "normalisation_stats", "normalise"]
