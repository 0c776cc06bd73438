"""Decision thresholds: every system's threshold hyperparameters, cross-fitted (held-out) gamma
fits by default, the DCASE in-sample fit on request, fold checkpoints apart, and the run record."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stethoscope.data.layouts import scan
from stethoscope.detectors import get_detector
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.systems import get_system, list_systems, load_system
from stethoscope.systems.threshold import crossfit_folds, false_alarm_rate, gamma_threshold
from tests.systems.test_every_system import smoke

CTX = RunContext(seed=5, progress=False, threads=1)
AE = {"epochs": 2, "batch_size": 64}


@pytest.fixture(scope="module")
def train(toy_root: Path) -> list:
    return [c for c in scan(toy_root) if c.machine == "fan" and c.split == "train"][:6]


@pytest.mark.parametrize("name", sorted(list_systems()))
def test_every_system_takes_the_threshold_hyperparameters(name: str) -> None:
    system = get_system(name, **smoke(name))
    assert {
        k: system.get_params()[k]
        for k in ("threshold_fit", "threshold_folds", "threshold_percentile")
    } == {"threshold_fit": "crossfit", "threshold_folds": 4, "threshold_percentile": 0.9}
    assert {"threshold_fit", "threshold_folds", "threshold_percentile"} <= set(
        inspect.signature(type(system)).parameters
    )
    assert (
        get_system(name, **{**smoke(name), "threshold_fit": "in_sample"}).threshold_fit
        == "in_sample"
    )


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("threshold_fit", "loo", "crossfit"),
        ("threshold_folds", 1, "[2, inf)"),
        ("threshold_percentile", 1.0, "(0, 1)"),
        ("threshold_folds", 2.5, "integer"),
    ],
)
def test_bad_threshold_hyperparameters_are_refused_naming_the_key(
    key: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError, match=f"dcase_ae: {key} must") as err:
        get_system("dcase_ae", **{key: value})
    assert allowed in str(err.value) and repr(value) in str(err.value)


def test_crossfit_folds_partition_the_clips() -> None:
    folds = crossfit_folds(10, 4, seed=3)
    assert len(folds) == 4 and sorted(np.concatenate(folds).tolist()) == list(range(10))
    assert [f.tolist() for f in folds] == [f.tolist() for f in crossfit_folds(10, 4, seed=3)]
    assert len(crossfit_folds(3, 5, seed=0)) == 3  # capped by the number of clips
    assert crossfit_folds(1, 4, seed=0) is None
    assert crossfit_folds(2, 4, seed=0, minimum=2) is None  # a fold would train on one clip
    assert false_alarm_rate(np.array([1.0, 2.0, 3.0, 4.0]), 2.5) == pytest.approx(0.5)


def test_crossfit_folds_spread_a_rare_domain_over_the_folds() -> None:
    """4 target clips of 40 (as DCASE 2022+'s 10 of 1,000): one per fold, so that no fold
    model trains without the target domain."""
    domains = ["source"] * 36 + ["target"] * 4
    for seed in range(5):
        folds = crossfit_folds(40, 4, seed, groups=domains)
        assert sorted(np.concatenate(folds).tolist()) == list(range(40))
        assert [sum(domains[i] == "target" for i in held) for held in folds] == [1, 1, 1, 1]


def test_crossfit_threshold_is_the_gamma_fit_of_held_out_fold_scores(train: list) -> None:
    """Default fit: K copies trained (seed + k) on the other folds score their fold; the
    threshold is the gamma fit of those scores, and the in-sample one is only recorded."""
    system = get_system("dcase_ae", **AE).fit(train, ctx=CTX)
    heldout = np.zeros(len(train))
    domains = [c.domain or "none" for c in train]
    for k, held in enumerate(crossfit_folds(len(train), 4, CTX.seed, groups=domains)):
        rest = [c for i, c in enumerate(train) if i not in held]
        fold = get_system("dcase_ae", **AE, threshold_fit="in_sample").fit(
            rest, ctx=CTX.replace(seed=CTX.seed + k)
        )
        heldout[held] = fold.score([train[i] for i in held], CTX)
    assert system.threshold_ == pytest.approx(gamma_threshold(heldout), rel=1e-6, abs=1e-9)
    record = system.run_["threshold"]
    in_sample = system.score(train, CTX)
    assert record["fit"] == "crossfit" and record["folds"] == 4 and record["percentile"] == 0.9
    assert record["heldout_scores"]["n"] == len(train)
    assert record["heldout_scores"]["max"] == pytest.approx(heldout.max(), rel=1e-6, abs=1e-9)
    assert record["in_sample_threshold"] == pytest.approx(
        gamma_threshold(in_sample), rel=1e-6, abs=1e-9
    )
    assert heldout.mean() > in_sample.mean()  # a model reconstructs its own clips best


def test_in_sample_fit_is_the_dcase_baselines(train: list) -> None:
    system = get_system("dcase_ae", **AE, threshold_fit="in_sample", threshold_percentile=0.8).fit(
        train, ctx=CTX
    )
    assert system.threshold_ == pytest.approx(
        gamma_threshold(system.score(train, CTX), 0.8), rel=1e-6, abs=1e-9
    )
    record = system.run_["threshold"]
    assert (
        record["fit"] == "in_sample"
        and "heldout_scores" not in record
        and record["percentile"] == 0.8
    )


def test_fold_models_checkpoint_apart_and_train_with_their_own_seeds(
    train: list, tmp_path: Path
) -> None:
    get_system("dcase_ae", **AE, threshold_folds=3).fit(
        train, ctx=CTX.replace(checkpoint_dir=tmp_path)
    )
    metas = [
        json.loads(p.read_text())
        for p in [
            tmp_path / "checkpoint.json",
            *(tmp_path / "threshold" / f"fold{k}" / "checkpoint.json" for k in range(3)),
        ]
    ]
    assert (
        len({m["fingerprint"] for m in metas}) == 4
    )  # the final model and 3 folds: none resumes another
    assert all(m["epoch"] == AE["epochs"] for m in metas)


def test_fingerprint_ignores_threshold_hyperparameters(train: list) -> None:
    """A run may be resumed with another threshold fit: it does not change what is learned."""
    a = get_system("dcase_ae", **AE).fingerprint(train, CTX)
    assert a == get_system(
        "dcase_ae", **AE, threshold_fit="in_sample", threshold_folds=7
    ).fingerprint(train, CTX)
    assert a != get_system("dcase_ae", epochs=2, batch_size=32).fingerprint(train, CTX)


def test_embedding_knn_refits_only_its_detector_per_fold(train: list) -> None:
    params = {"encoder": "random", "detector": "knn"}
    system = get_system("embedding_knn", **params).fit(train, ctx=CTX)
    X = system.embed(train, CTX)
    heldout = np.zeros(len(train))
    for held in crossfit_folds(len(train), 4, CTX.seed, groups=[c.domain or "none" for c in train]):
        rest = np.setdiff1d(np.arange(len(train)), held)
        heldout[held] = (
            get_detector("knn", n_neighbors=2, standardize=True).fit(X[rest]).score(X[held])
        )
    assert system.threshold_ == pytest.approx(gamma_threshold(heldout), rel=1e-9, abs=1e-9)
    in_sample = get_system("embedding_knn", **params, threshold_fit="in_sample").fit(train, ctx=CTX)
    assert in_sample.threshold_ == pytest.approx(
        gamma_threshold(system.detector_.train_scores()), rel=1e-9, abs=1e-9
    )


def test_tldiffgan_folds_score_with_the_scorer_the_fit_chose(train: list) -> None:
    system = get_system("tldiffgan", **{**smoke("tldiffgan"), "selection": "validation"}).fit(
        train, ctx=CTX
    )
    assert system.selection_["chosen"] == "ensemble"  # no validation clips
    assert (
        system.fold_params()["selection"] == "ensemble"
        and system.fold_params()["threshold_fit"] == "in_sample"
    )
    assert (
        system.run_["threshold"]["fit"] == "crossfit"
        and system.run_["threshold"]["heldout_scores"]["n"] == 6
    )
    assert (
        np.isfinite(system.threshold_) and 0 < system.threshold_ < 1.5
    )  # ensemble scores are CDF positions


def test_too_few_clips_fit_in_sample_and_say_so(train: list) -> None:
    with pytest.warns(UserWarning, match="too few for cross-fitting"):
        system = get_system("dcase_ae", **AE).fit(train[:1], ctx=CTX)
    assert (
        system.run_["threshold"]["fit"] == "in_sample"
        and "1 training clips" in system.run_["threshold"]["note"]
    )
    assert system.threshold_ == pytest.approx(
        float(system.score(train[:1], CTX)[0]), rel=1e-6, abs=1e-9
    )


def test_model_folder_records_the_fit_and_old_folders_load_as_in_sample(
    train: list, tmp_path: Path
) -> None:
    system = get_system("embedding_knn", encoder="random").fit(train, ctx=CTX)
    system.save(tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert (
        cfg["params"]["threshold_fit"] == "crossfit"
        and cfg["run"]["threshold"]["fit"] == "crossfit"
    )
    assert (
        cfg["run"]["threshold"]["heldout_scores"]["n"] == len(train)
        and cfg["threshold"] == system.threshold_
    )
    assert load_system(tmp_path / "model").get_params() == system.get_params()
    for key in (
        "threshold_fit",
        "threshold_folds",
        "threshold_percentile",
    ):  # a folder from before this change
        del cfg["params"][key]
    (tmp_path / "model" / "config.json").write_text(json.dumps(cfg))
    old = load_system(tmp_path / "model")
    assert old.threshold_fit == "in_sample" and old.threshold_ == system.threshold_


# -- score normalisation per section and domain ---------------------------------------------
def test_score_norm_statistics_and_their_fallbacks() -> None:
    from stethoscope.data.clip import Clip
    from stethoscope.systems.threshold import apply_score_norm, fit_score_norm

    clips = (
        [Clip(Path(f"a{i}"), "fan", "00", "source") for i in range(4)]
        + [Clip(Path(f"b{i}"), "fan", "00", "target") for i in range(3)]
        + [Clip(Path(f"c{i}"), "fan", "01", "source") for i in range(2)]
    )
    scores = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 100.0, 200.0])
    norm = fit_score_norm(scores, clips, "section_domain")
    assert set(norm["groups"]) == {"00", "00/source", "00/target"}  # section 01 has 2 < 3 clips
    src = norm["groups"]["00/source"]
    assert src["mean"] == pytest.approx(2.5) and src["std"] == pytest.approx(np.std([1, 2, 3, 4]))
    probe = [
        Clip(Path("x"), "fan", "00", "source"),
        Clip(Path("y"), "fan", "00", None),
        Clip(Path("z"), "fan", "01", "source"),
    ]
    z = apply_score_norm(np.array([5.0, 5.0, 5.0]), probe, norm)
    tgt, pooled = norm["groups"]["00/target"], norm["pooled"]
    assert z[0] == pytest.approx((5 - 2.5) / src["std"])
    assert z[1] == pytest.approx(
        min((5 - 2.5) / src["std"], (5 - tgt["mean"]) / tgt["std"])
    )  # unknown domain
    assert z[2] == pytest.approx((5 - pooled["mean"]) / pooled["std"])  # too few clips: pooled
    assert apply_score_norm(np.array([5.0]), None, norm)[0] == pytest.approx(
        z[2]
    )  # a waveform: pooled
    assert fit_score_norm(scores, clips, "none") is None


def test_one_threshold_serves_sections_of_different_scales(tmp_path: Path) -> None:
    """A pooled detector over a quiet steady section and a loud varied one: raw held-out scores
    differ by section; normalised, each section's are standardised and the model keeps them."""
    from stethoscope.data.clip import Clip
    from stethoscope.systems import load_system
    from tests.conftest import write_wav

    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 16_000
    clips = []
    for section, spread in (("00", 0.02), ("01", 3.0)):
        for i in range(9):
            gain = 1 + spread * rng.random()  # the whole clip louder or quieter: every bin moves
            wave = gain * (0.1 * np.sin(2 * np.pi * 200 * t) + 0.01 * rng.standard_normal(len(t)))
            clips.append(
                Clip(
                    write_wav(tmp_path / f"{section}_{i}.wav", wave.astype(np.float32)),
                    "fan",
                    section,
                )
            )
    raw = get_system("mel_stats", per_section=False, detector="knn", stats=["mean"], n_mels=16).fit(
        clips, ctx=CTX
    )
    normed = get_system(
        "mel_stats",
        per_section=False,
        detector="knn",
        stats=["mean"],
        n_mels=16,
        score_norm="section",
    ).fit(clips, ctx=CTX)
    held_raw, held = raw.fit_scores_["heldout"], normed.fit_scores_["heldout"]
    assert held_raw[9:].mean() > 2 * held_raw[:9].mean()  # the loud varied section scores higher
    for part in (slice(0, 9), slice(9, 18)):
        assert held[part].mean() == pytest.approx(0.0, abs=1e-9) and held[
            part
        ].std() == pytest.approx(1.0)
    assert normed.run_["threshold"]["score_norm"]["mode"] == "section"
    normed.save(tmp_path / "m")
    loaded = load_system(tmp_path / "m")
    assert loaded.score_norm_ == normed.score_norm_
    expected = (
        raw.score(clips[:2], CTX) - normed.score_norm_["groups"]["00"]["mean"]
    ) / normed.score_norm_["groups"]["00"]["std"]
    np.testing.assert_allclose(loaded.score(clips[:2], CTX), expected, rtol=1e-9, atol=1e-9)


def test_a_system_without_a_constructor_takes_the_threshold_hyperparameters() -> None:
    """`System.__init_subclass__` (no metaclass): the base constructor takes them too."""
    from stethoscope.systems.base import System

    class Bare(System):
        name = "bare"

        def fit(self, train: Any, val: Any = None, ctx: Any = None) -> System:
            return self

        def feature_request(self) -> Any:
            return None

        def score_decoded(self, decoded: Any, ctx: Any) -> np.ndarray:
            return np.zeros(0)

        def state_tensors(self) -> dict:
            return {}

        def load_state_tensors(self, tensors: dict) -> None:
            del tensors

    assert Bare().get_params()["threshold_fit"] == "crossfit"
    assert (
        Bare(threshold_fit="in_sample").threshold_fit == "in_sample"
        and Bare.constructor_param_names() == []
    )
    assert list(inspect.signature(Bare).parameters) == [
        "threshold_fit",
        "threshold_folds",
        "threshold_percentile",
        "score_norm",
    ]
    with pytest.raises(ConfigError, match="bare: threshold_folds must"):
        Bare(threshold_folds=1)
