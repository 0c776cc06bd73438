"""The `ensemble` system: members normalised by their held-out training scores and averaged;
one model folder; bad members named; `--set members=a,b` through the CLI; joint members."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from safetensors.torch import load_file

from stethoscope.cli import main
from stethoscope.data.clip import Clip
from stethoscope.data.layouts import scan
from stethoscope.detectors import get_detector
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.systems import get_system, load_system
from stethoscope.systems.ensemble import EnsembleSystem, normalisation_stats, normalise
from stethoscope.systems.threshold import crossfit_folds
from stethoscope.workflows.train import train_machines
from tests.systems.test_joint import MACHINES, JointProbe, probe  # noqa: F401  (the fixture)

AE = {"epochs": 2, "batch_size": 64}
TINY = {
    "members": ["dcase_ae", "embedding_knn"],
    "threshold_folds": 3,
    "member_params": {"dcase_ae": AE, "embedding_knn": {"encoder": "random"}},
}


@pytest.fixture(scope="module")
def data(toy_root: Path) -> tuple[list[Clip], list[Clip]]:
    clips = [c for c in scan(toy_root) if c.machine == "fan"]
    return [c for c in clips if c.split == "train"][:9], [c for c in clips if c.split == "test"][:6]


@pytest.fixture(scope="module")
def fitted(data: tuple[list[Clip], list[Clip]]):
    return get_system("ensemble", **TINY, weights=[2.0, 1.0]).fit(
        data[0], ctx=RunContext(seed=4, progress=False)
    )


def test_scores_are_the_weighted_mean_of_normalised_members_and_survive_save_load(
    fitted, data: tuple[list[Clip], list[Clip]], tmp_path: Path
) -> None:
    _, test = data
    ctx = RunContext(progress=False)
    scores = fitted.score(test, ctx)  # one decoding pass feeds both members
    ae, knn = fitted.members_
    z = [
        (m.score(test, ctx) - s["mean"]) / s["std"]
        for m, s in zip((ae, knn), fitted.norm_, strict=True)
    ]
    np.testing.assert_allclose(scores, (2 * z[0] + z[1]) / 3, rtol=1e-6, atol=1e-9)

    fitted.save(tmp_path / "model")
    tensors = load_file(str(tmp_path / "model" / "weights.safetensors"))
    assert {k.split(".")[0] for k in tensors} == {"m0", "m1"}
    members = json.loads((tmp_path / "model" / "config.json").read_text())["extra_state"]["members"]
    assert [m["system"] for m in members] == ["dcase_ae", "embedding_knn"]
    assert members[0]["params"]["epochs"] == 2 and members[1]["params"]["encoder"] == "random"
    assert (
        members[0]["normalisation"] == fitted.norm_[0] and members[0]["threshold"] == ae.threshold_
    )
    loaded = load_system(tmp_path / "model")
    np.testing.assert_allclose(loaded.score(test, ctx), scores, rtol=1e-6, atol=1e-9)
    assert loaded.threshold_ == fitted.threshold_ and [m.threshold_ for m in loaded.members_] == [
        ae.threshold_,
        knn.threshold_,
    ]
    np.testing.assert_array_equal(loaded.decide(scores), fitted.decide(scores))


def test_an_old_folder_with_weights_paths_and_flat_parts_loads(
    fitted, data: tuple[list[Clip], list[Clip]], tmp_path: Path
) -> None:
    """Written before the weights' location left the hyperparameters and before parts nested:
    ``weights_path`` in a member's overrides and record is dropped (a hint at most), flat
    tldiffgan overrides nest under ``ldgan``."""
    fitted.save(tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["params"]["member_params"]["embedding_knn"]["weights_path"] = "/no/such/mn04_as_mAP_432.pt"
    cfg["extra_state"]["members"][1]["params"]["weights_path"] = "/no/such/mn04_as_mAP_432.pt"
    path.write_text(json.dumps(cfg))
    loaded = load_system(tmp_path / "model")
    ctx = RunContext(progress=False)
    np.testing.assert_allclose(
        loaded.score(data[1], ctx), fitted.score(data[1], ctx), rtol=1e-6, atol=1e-9
    )
    assert loaded.get_params() == fitted.get_params()
    flat = {"encoder": "random", "epochs": 3, "weights_path": None}
    old = {"members": ["tldiffgan"], "member_params": {"tldiffgan": flat}}
    nested = {"tldiffgan": {"encoder": "random", "ldgan": {"epochs": 3}}}
    assert EnsembleSystem.upgrade_params(old)["member_params"] == nested


def test_normalisation_uses_held_out_training_scores(
    fitted, data: tuple[list[Clip], list[Clip]]
) -> None:
    """Recomputed by hand: per fold, a fresh member fitted on the other clips scores the fold."""
    train, _ = data
    folds = crossfit_folds(len(train), 3, 4, groups=[c.domain or "none" for c in train])
    assert folds is not None
    ae_heldout, knn_heldout = np.zeros(len(train)), np.zeros(len(train))
    X = fitted.members_[1].embed(train, RunContext(progress=False))
    for k, held in enumerate(folds):
        rest = np.setdiff1d(np.arange(len(train)), held)
        ae = get_system("dcase_ae", **AE, threshold_fit="in_sample")
        ae.fit([train[i] for i in rest], ctx=RunContext(seed=4 + k, progress=False))
        ae_heldout[held] = ae.score([train[i] for i in held], RunContext(progress=False))
        knn_heldout[held] = (
            get_detector("knn", n_neighbors=2, standardize=True).fit(X[rest]).score(X[held])
        )
    for stats, heldout, member in zip(
        fitted.norm_, (ae_heldout, knn_heldout), fitted.members_, strict=True
    ):
        assert stats["kind"] == "zscore"
        assert stats["mean"] == pytest.approx(heldout.mean(), rel=1e-5, abs=1e-9)
        assert stats["std"] == pytest.approx(heldout.std(), rel=1e-5, abs=1e-9)
        assert stats["mean"] != pytest.approx(
            member.fit_scores_["in_sample"].mean(), rel=1e-3
        )  # not in-sample
    # the ensemble's own threshold: gamma fit of the normalised, averaged held-out scores
    z = [
        (h - s["mean"]) / s["std"]
        for h, s in zip((ae_heldout, knn_heldout), fitted.norm_, strict=True)
    ]
    expected = np.average(np.stack(z), axis=0, weights=[2, 1])
    assert fitted.run_["threshold"]["fit"] == "crossfit"
    assert fitted.run_["threshold"]["heldout_scores"]["mean"] == pytest.approx(
        expected.mean(), abs=1e-6
    )
    assert [m["statistics_of"] for m in fitted.run_["members"]] == ["heldout", "heldout"]


def test_gamma_normalisation_is_decades_of_rarity() -> None:
    h = scipy.stats.gamma.rvs(3.0, loc=1.0, scale=2.0, size=400, random_state=0)
    stats = normalisation_stats(h, "gamma")
    q90 = scipy.stats.gamma.ppf(0.9, stats["shape"], loc=stats["loc"], scale=stats["scale"])
    q99 = scipy.stats.gamma.ppf(0.99, stats["shape"], loc=stats["loc"], scale=stats["scale"])
    np.testing.assert_allclose(normalise(np.array([q90, q99]), stats), [1.0, 2.0], rtol=1e-6)
    flat = normalisation_stats(np.ones(5), "gamma")  # no spread: no gamma fit, unit-spread z-score
    assert flat == {"kind": "zscore", "mean": 1.0, "std": 1.0}
    assert math.isclose(normalise(np.array([3.0]), flat)[0], 2.0)


@pytest.mark.parametrize(
    "params, words",
    [
        ({"members": "dcase_ae,nosuch"}, ["unknown member system 'nosuch'", "dcase_ae"]),
        ({"members": []}, ["at least one"]),
        ({"members": ["dcase_ae", "dcase_ae"]}, ["distinct"]),
        ({"members": ["ensemble"]}, ["cannot be a member"]),
        ({"member_params": {"gamma_vae": {"epochs": 1}}}, ["member_params names ['gamma_vae']"]),
        (
            {"member_params": {"dcase_ae": {"epochs": 0}}},
            ["member 'dcase_ae'", "epochs must be in [1, inf)"],
        ),
        ({"member_params": {"dcase_ae": {"seed": 1}}}, ["member 'dcase_ae'", "--seed"]),
        ({"weights": [1.0]}, ["weights must be 2"]),
        ({"weights": "1,-1"}, ["non-negative"]),
        ({"normalise": "rank"}, ["normalise must be one of"]),
    ],
)
def test_bad_configs_are_named(params: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        get_system("ensemble", **params)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_comma_lists_parse() -> None:
    system = get_system("ensemble", members="dcase_ae, gamma_vae", weights="2,1.5")
    assert system.members == ["dcase_ae", "gamma_vae"] and system.weights == [2, 1.5]
    assert not system.joint and system.feature_request().logmel is not None


def test_cli_train_and_score(toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "models"
    assert (
        main(
            [
                "train",
                "--data",
                str(toy_root),
                "--system",
                "ensemble",
                "--out",
                str(out),
                "--set",
                "members=dcase_ae,gamma_vae",
                "threshold_folds=2",
                "member_params={dcase_ae: {epochs: 2, batch_size: 64}, "
                "gamma_vae: {epochs: 2, batch_size: 64}}",
                "--threads",
                "1",
                "--quiet",
                "--no-cache",
            ]
        )
        == 0
    )
    for machine in MACHINES:
        cfg = json.loads((out / machine / "config.json").read_text())
        assert cfg["system"] == "ensemble" and cfg["params"]["members"] == ["dcase_ae", "gamma_vae"]
        assert [m["system"] for m in cfg["extra_state"]["members"]] == ["dcase_ae", "gamma_vae"]
        assert math.isfinite(cfg["threshold"])
    assert not (
        out / ".checkpoints"
    ).exists()  # the members' checkpoint folders went with the saved models
    test = [c for c in scan(toy_root) if c.machine == "fan" and c.split == "test"][:4]
    capsys.readouterr()
    assert (
        main(
            [
                "score",
                "--model",
                str(out / "fan"),
                *[str(c.path) for c in test],
                "--csv",
                str(tmp_path / "s.csv"),
                "--threads",
                "1",
                "--quiet",
                "--no-cache",
            ]
        )
        == 0
    )
    with (tmp_path / "s.csv").open() as f:
        rows = list(csv.DictReader(f))
    expected = load_system(out / "fan").score(test, RunContext(progress=False))
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5, atol=1e-9)


def test_a_joint_member_makes_the_ensemble_joint(
    probe: type[JointProbe],  # noqa: F811  (the imported fixture)
    toy_root: Path,
    tmp_path: Path,
) -> None:
    clips = scan(toy_root)
    groups = {m: [c for c in clips if c.machine == m and c.split == "train"][:6] for m in MACHINES}

    def build() -> EnsembleSystem:
        system = get_system(
            "ensemble",
            members=["dcase_ae", "joint_probe"],
            threshold_folds=2,
            member_params={"dcase_ae": AE, "joint_probe": {"encoder": "random"}},
        )
        assert isinstance(system, EnsembleSystem)
        return system

    assert build().joint and not get_system("ensemble", **TINY).joint
    systems = train_machines(
        groups, build, tmp_path, RunContext(progress=False), say=lambda m: None
    )
    assert len(probe.calls) == 1 and probe.calls[0]["machines"] == MACHINES
    test = [c for c in clips if c.machine == "gearbox" and c.split == "test"][:3]
    for machine in MACHINES:
        loaded = load_system(tmp_path / machine)
        assert [m.name for m in loaded.members_] == ["dcase_ae", "joint_probe"]
        np.testing.assert_allclose(
            loaded.score(test), systems[machine].score(test), rtol=1e-6, atol=1e-9
        )
    # each type's ensemble holds that type's members (the AE of its own clips)
    assert not np.allclose(
        systems["fan"].members_[0].score(test), systems["gearbox"].members_[0].score(test)
    )
