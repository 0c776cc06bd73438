"""The aux_classifier system: classes from clip metadata, joint fit over machine types,
persistence per machine folder, hyperparameter checks, the single-class warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stethoscope.data.clip import Clip
from stethoscope.data.layouts import scan
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.systems import get_system, load_system
from stethoscope.systems.aux_data import class_key, derive_classes

TINY = {
    "epochs": 1,
    "batch_size": 4,
    "crop_frames": 16,
    "width": 0.125,
    "n_mels": 32,
    "embedding_dim": 16,
}


@pytest.fixture(scope="module")
def groups(toy_root: Path) -> dict[str, list[Clip]]:
    clips = scan(toy_root)
    return {
        m: [c for c in clips if c.machine == m and c.split == "train"][:6]
        for m in sorted({c.machine for c in clips})
    }


@pytest.fixture(scope="module")
def tests(toy_root: Path) -> dict[str, list[Clip]]:
    clips = scan(toy_root)
    return {
        m: [c for c in clips if c.machine == m and c.split == "test"][:4]
        for m in sorted({c.machine for c in clips})
    }


def test_classes_from_ids_sections_and_attributes() -> None:
    dcase2020 = Clip(Path("a.wav"), "fan", "02", layout="dcase2020")
    dcase2022 = Clip(
        Path("b.wav"), "gearbox", "01", "target", attributes=(("volt", "1.0"), ("wt", "30"))
    )
    assert class_key(dcase2020) == "fan/02"
    assert class_key(dcase2022) == "gearbox/01|volt=1.0;wt=30"
    assert class_key(dcase2022, "section") == "gearbox/01"
    classes, labels = derive_classes([dcase2022, dcase2020, dcase2020], "section_attributes")
    assert classes == ["fan/02", "gearbox/01|volt=1.0;wt=30"] and labels.tolist() == [1, 0, 0]


def test_joint_fit_gives_one_system_per_machine_type(
    groups: dict, tests: dict, tmp_path: Path
) -> None:
    ctx = RunContext(seed=4, progress=False)
    fitted = get_system("aux_classifier", **TINY).fit_joint(groups, ctx=ctx)
    assert sorted(fitted) == sorted(groups)
    first, second = (fitted[m] for m in sorted(groups))
    assert first.net_ is second.net_  # one network, shared
    assert {c.split("/")[0] for c in first.classes_} == set(
        groups
    )  # other machines' clips are negatives
    for machine, system in fitted.items():
        assert system.machine_ == machine and system.run_["n_train"] == len(groups[machine])
        assert system.run_["joint"]["machines"] == list(groups)
        scores = system.score(tests[machine], ctx)
        assert np.isfinite(scores).all() and np.isfinite(system.threshold_)
        system.save(tmp_path / machine)
        loaded = load_system(tmp_path / machine)
        assert loaded.machine_ == machine and loaded.classes_ == system.classes_
        np.testing.assert_allclose(loaded.score(tests[machine], ctx), scores, rtol=1e-6, atol=1e-9)


def test_fit_is_the_joint_fit_of_its_clips(groups: dict, tests: dict) -> None:
    machine = min(groups)
    ctx = RunContext(seed=2, progress=False)
    alone = get_system("aux_classifier", **TINY).fit(groups[machine], ctx=ctx)
    joint = get_system("aux_classifier", **TINY).fit_joint({machine: groups[machine]}, ctx=ctx)[
        machine
    ]
    np.testing.assert_allclose(
        alone.score(tests[machine], ctx), joint.score(tests[machine], ctx), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "adacos_plus"},
        {"width": 0},
        {"mixup": "cutmix"},
        {"backend": "lof"},
        {"finetune": "some"},
        {"loss": "subcluster_adacos", "mixup": "noisy_arcmix"},
        {"smote_ratio": 2.0},
        {"epochs": "ten"},
    ],
)
def test_bad_hyperparameters_are_config_errors(params: dict) -> None:
    with pytest.raises(ConfigError):
        get_system("aux_classifier", **params)


def test_single_class_fit_warns_and_still_works(groups: dict, tests: dict) -> None:
    machine = min(groups)
    with pytest.warns(UserWarning, match="single class.*jointly"):
        system = get_system("aux_classifier", **TINY, classes="section").fit(
            groups[machine], ctx=RunContext(progress=False)
        )
    assert len(system.classes_) == 1
    assert np.isfinite(system.score(tests[machine], RunContext(progress=False))).all()


@pytest.mark.parametrize(
    "params",
    [
        {
            "loss": "subcluster_adacos",
            "mixup": "mixup",
            "sub_clusters": 2,
            "backend": "centres",
            "per_section": True,
        },
        {
            "frontend": "mn04",
            "mn04_weights": "random",
            "finetune": "frozen",
            "backend": "gmm",
            "specaugment": False,
        },
        {
            "frontend": "mn04",
            "mn04_weights": "random",
            "finetune": "lora",
            "lora_rank": 2,
            "specaugment": False,
        },
    ],
)
def test_other_front_ends_heads_and_back_ends(
    params: dict, groups: dict, tests: dict, tmp_path: Path
) -> None:
    ctx = RunContext(seed=1, progress=False)
    machine = sorted(groups)[1]
    system = get_system("aux_classifier", **{**TINY, **params}).fit_joint(groups, ctx=ctx)[machine]
    scores = system.score(tests[machine], ctx)
    assert np.isfinite(scores).all()
    system.save(tmp_path / "model")
    np.testing.assert_allclose(
        load_system(tmp_path / "model").score(tests[machine], ctx), scores, rtol=1e-6, atol=1e-9
    )


def test_explain_gives_an_occlusion_map_drawn_with_its_own_unit(groups: dict, tests: dict) -> None:
    """The map is the occlusion map (`occlusion.py`, tested there on a known scorer): the
    explain score is the clip's score, the map is non-negative, constant within each of the
    8 x 10 regions, and the picture names what its values are."""
    from stethoscope.reports.maps import anomaly_figure, map_panels

    ctx = RunContext(seed=3, progress=False)
    machine = min(groups)
    system = get_system("aux_classifier", **TINY).fit_joint(groups, ctx=ctx)[machine]
    clip = tests[machine][0]
    ex = system.explain(clip, ctx)
    assert system.has_anomaly_map and ex.score == pytest.approx(
        system.score([clip], ctx)[0], rel=1e-5, abs=1e-9
    )
    assert ex.anomaly_map.shape == ex.logmel.shape and (ex.anomaly_map >= 0).all()
    assert len(np.unique(ex.anomaly_map)) <= 8 * 10 + 1
    figure = anomaly_figure(map_panels(ex))
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert "anomaly map: occlusion, how much deleting each region lowers the score" in titles
    assert any(ax.get_ylabel() == "score drop" for ax in figure.axes)  # the colour bar's label
