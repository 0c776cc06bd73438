"""`train`, `bench` and `demo`: model folders, run.json, checked hyperparameters, runtime apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stethoscope.cli import main
from stethoscope.systems.params import RUNTIME_KEYS
from tests.cli.conftest import FAST, RUNTIME, ok, read_json, run_cli, run_many

MACHINES = ("fan", "gearbox")


def test_train_writes_one_model_per_machine(trained: Path) -> None:
    for machine in MACHINES:
        cfg = read_json(trained / machine / "config.json")
        assert cfg["system"] == "dcase_ae" and cfg["params"]["epochs"] == 2
        assert cfg["threshold"] > 0 and cfg["run"]["versions"]["torch"]
        assert (trained / machine / "weights.safetensors").exists()
    run = read_json(trained / "run.json")
    assert {m: rec["status"] for m, rec in run["items"].items()} == {m: "trained" for m in MACHINES}


def test_unknown_system_is_clear(
    tmp_path: Path, toy_root: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(["train", "--data", str(toy_root), "--system", "nosuch", "--out", str(tmp_path / "m")])
        == 2
    )
    assert "unknown system" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


# -- hyperparameters are checked, runtime settings refused, before any audio is read ------
BAD = {  # --set item -> what the message must name besides the key: the flag, or the allowed range
    "device=cuda": "--device",
    "seed=3": "--seed",
    "epochs=abc": "[1, inf)",
    "epochs=0": "[1, inf)",
    "batch_size=0": "[2, inf)",
    "learning_rate=nan": "(0, inf)",
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory, cli_cache: Path) -> dict:
    """A real `stethoscope train` per bad --set item, all at once, on a data root that does
    not exist: (result, its OUT)."""
    tmp = tmp_path_factory.mktemp("bad")
    outs = [tmp / f"out{i}" for i in range(len(BAD))]
    results = run_many(
        [
            [
                "train",
                "--data",
                tmp / "no-such-data",
                "--out",
                out,
                "--system",
                "dcase_ae",
                "--set",
                item,
                *RUNTIME,
            ]
            for out, item in zip(outs, BAD, strict=True)
        ],
        cli_cache,
    )
    return {item: (result, out) for item, result, out in zip(BAD, results, outs, strict=True)}


@pytest.mark.parametrize("item", list(BAD))
def test_bad_setting_exits_2_naming_key_and_remedy(bad_runs: dict, item: str) -> None:
    """An error naming the key, not the missing data root, and no output folder show that
    the setting was refused before any audio was read."""
    result, out = bad_runs[item]
    key = item.split("=")[0]
    assert result.returncode == 2, result.stderr
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert key in err and BAD[item] in err, err
    assert "no-such-data" not in err
    assert not out.exists()


# -- a real multi-type run in a subprocess ---------------------------------------------
@pytest.fixture(scope="module")
def multi(tiny_root: Path, cli_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi") / "models"
    ok(
        run_cli(
            [
                "train",
                "--data",
                tiny_root,
                "--out",
                out,
                *FAST,
                *RUNTIME,
                "--seed",
                "3",
                "--no-cache",
            ],
            cli_cache,
        )
    )
    return out


def test_multi_type_train_records_every_type_and_leaves_no_checkpoints(multi: Path) -> None:
    run = read_json(multi / "run.json")
    assert {m: rec["status"] for m, rec in run["items"].items()} == {m: "trained" for m in MACHINES}
    for machine in MACHINES:
        assert run["items"][machine]["model"] == str(multi / machine)
        assert (multi / machine / "weights.safetensors").exists()
    assert not (multi / ".checkpoints").exists()


def test_saved_config_keeps_runtime_apart_from_hyperparameters(multi: Path) -> None:
    for machine in MACHINES:
        cfg = read_json(multi / machine / "config.json")
        assert not set(RUNTIME_KEYS) & set(cfg["params"]), cfg["params"]
        assert not set(RUNTIME_KEYS) & set(cfg["run"]["config"])
        runtime = cfg["run"]["runtime"]
        assert runtime["device"] == "cpu" and runtime["seed"] == 3 and runtime["threads"] == 1
        assert runtime["cache_dir"] is None
        assert cfg["run"]["data_machine"] == machine


def test_single_type_model_sits_in_out(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --quiet, info lines and (stderr not being a terminal) progress as log lines."""
    monkeypatch.setenv("STETHOSCOPE_PROGRESS_SECONDS", "0")  # a progress line per step
    out = tmp_path / "fan"
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_root),
                "--machine",
                "fan",
                "--out",
                str(out),
                *FAST,
                "--threads",
                "1",
                "--no-cache",
            ]
        )
        == 0
    )
    assert (out / "config.json").exists() and (out / "weights.safetensors").exists()
    items = read_json(out / "run.json")["items"]
    assert list(items) == ["fan"] and items["fan"]["status"] == "trained"
    assert not (out / ".checkpoints").exists()
    err = capsys.readouterr().err
    assert "[fan] saved to" in err and "\r" not in err
    assert re.search(
        r"^train dcase_ae: epoch 2/2, \d+\.\d (s/epoch|epoch/s), loss \S+$", err, re.M
    ), err
    assert re.search(r"^decode: clip 4/4, ", err, re.M), err


def test_quiet_train_says_nothing(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STETHOSCOPE_PROGRESS_SECONDS", "0")
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_root),
                "--out",
                str(tmp_path / "m"),
                *FAST,
                *RUNTIME,
                "--no-cache",
            ]
        )
        == 0
    )
    assert capsys.readouterr().err == ""


# -- bench and demo ----------------------------------------------------------------------
def test_bench_writes_documented_json(toy_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert (
        main(
            [
                "bench",
                "--data",
                str(toy_root),
                "--system",
                "dcase_ae",
                "--folds",
                "2",
                "--out",
                str(out),
                "--seed",
                "5",
                "--no-cache",
                *FAST,
                *RUNTIME,
            ]
        )
        == 0
    )
    bench = read_json(out / "bench.json")
    assert bench["system"] == "dcase_ae" and bench["seed"] == 5
    assert not set(RUNTIME_KEYS) & set(bench["params"])
    assert bench["run"]["runtime"]["seed"] == 5 and bench["run"]["runtime"]["threads"] == 1
    for machine in MACHINES:
        st = bench["sets"][machine]
        for key in (
            "n_normal",
            "n_anomaly",
            "auc",
            "pauc",
            "auc_source",
            "auc_target",
            "folds",
            "train_seconds",
            "score_ms_per_clip",
        ):
            assert key in st
        assert len(st["folds"]) == 2 and 0 <= st["auc"] <= 1
    assert 0 <= bench["mean_auc"] <= 1
    assert not (out / ".checkpoints").exists()


def test_bench_score_modes_share_training(toy_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert (
        main(
            [
                "bench",
                "--data",
                str(toy_root),
                "--machine",
                "fan",
                "--folds",
                "2",
                "--out",
                str(out),
                "--score-modes",
                "mse,mahala",
                "--no-cache",
                *FAST,
                *RUNTIME,
            ]
        )
        == 0
    )
    mse = read_json(out / "mse" / "bench.json")
    mahala = read_json(out / "mahala" / "bench.json")
    assert mse["params"]["score_mode"] == "mse" and mahala["params"]["score_mode"] == "mahala"
    # one training per fold, timed once, reported under both modes
    assert mse["sets"]["fan"]["train_seconds"] == pytest.approx(
        mahala["sets"]["fan"]["train_seconds"], rel=1e-12
    )
    assert (
        mse["sets"]["fan"]["folds"] != mahala["sets"]["fan"]["folds"]
    )  # two scorings, not one copied


def test_bench_compares_several_systems_on_the_same_folds(
    toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bench"
    knn = tmp_path / "knn.yaml"
    knn.write_text("detector: knn\n")
    assert (
        main(
            [
                "bench",
                "--data",
                str(toy_root),
                "--system",
                f"mel_stats,mel_stats@{knn}",
                "--folds",
                "3",
                "--out",
                str(out),
                "--no-cache",
                *RUNTIME,
            ]
        )
        == 0
    )
    comparison = read_json(out / "comparison.json")
    labels = ["mel_stats", f"mel_stats@{knn}"]
    assert list(comparison["mean_auc"]) == labels and comparison["compared_sets"] == sorted(
        MACHINES
    )
    (pair,) = comparison["pairs"]
    assert pair["low"] <= pair["diff"] <= pair["high"] and pair["within_noise"] == (
        pair["low"] <= 0 <= pair["high"]
    )
    first, second = (read_json(out / comparison["folders"][lab] / "bench.json") for lab in labels)
    for machine in MACHINES:  # the same folds: the same test clips, fold by fold
        assert [f["clips"] for f in first["sets"][machine]["folds"]] == [
            f["clips"] for f in second["sets"][machine]["folds"]
        ]
    assert second["params"]["detector"] == "knn" and first["params"]["detector"] == "mahalanobis"
    printed = capsys.readouterr().out
    assert "difference (a - b)" in printed and ("within noise" in printed or "better" in printed)


def test_bench_of_several_systems_refuses_shared_overrides(
    toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "bench",
                "--data",
                str(toy_root),
                "--system",
                "mel_stats,dcase_ae",
                "--out",
                str(tmp_path / "b"),
                "--set",
                "epochs=2",
                *RUNTIME,
            ]
        )
        == 2
    )
    assert "name@variant" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--n-train",
                "6",
                "--n-test",
                "6",
                "--no-cache",
                *FAST,
                *RUNTIME,
            ]
        )
        == 0
    )
    result = read_json(out / "results.json")
    assert result["official_score"] is not None
    for machine in MACHINES:
        assert (out / "models" / machine / "config.json").exists()
    assert {rec["status"] for rec in read_json(out / "models" / "run.json")["items"].values()} == {
        "trained"
    }
    assert not (out / ".checkpoints").exists()
    printed = capsys.readouterr().out
    assert "official score" in printed and f"report: {out / 'report.html'}" in printed
    assert (
        "<html" in (out / "report.html").read_text()[:500].lower()
    )  # the demo writes its own report


def test_train_without_system_fits_the_default_mel_stats(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_root),
                "--machine",
                "fan",
                "--out",
                str(out),
                *RUNTIME,
                "--no-cache",
            ]
        )
        == 0
    )
    config = read_json(out / "config.json")
    assert config["system"] == "mel_stats" and config["params"]["detector"] == "mahalanobis"


# -- real clips (skipped without ../shared) ----------------------------------------------
def test_cli_on_real_dcase2020_clips(real_data: Path, tmp_path: Path) -> None:
    data = real_data / "dcase2020" / "slider"
    models = tmp_path / "models"
    assert (
        main(["train", "--data", str(data), "--out", str(models), "--no-cache", *FAST, *RUNTIME])
        == 0
    )
    wav = sorted((data / "test").glob("anomaly_*.flac"))[0]
    assert main(["score", "--model", str(models), str(wav), "--no-cache", *RUNTIME]) == 0
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(data),
                "--models",
                str(models),
                "--out",
                str(tmp_path / "ev"),
                "--no-cache",
                *RUNTIME,
            ]
        )
        == 0
    )
    result = read_json(tmp_path / "ev" / "results.json")
    assert "id_00" in result["machines"]["slider"]["sections"]
    assert (tmp_path / "ev" / "anomaly_score_slider_id_00.csv").exists()


def test_bench_on_real_mimii(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert (
        main(
            [
                "bench",
                "--data",
                str(real_data / "mimii_0db"),
                "--machine",
                "fan",
                "--folds",
                "2",
                "--out",
                str(out),
                "--no-cache",
                *FAST,
                *RUNTIME,
            ]
        )
        == 0
    )
    bench = read_json(out / "bench.json")
    assert bench["sets"]["fan"]["n_normal"] == 12 and bench["sets"]["fan"]["auc_source"] is None
