"""The CLI verbs end to end on the toy factory and on the real shared clips."""
import csv
import json

import numpy as np
import pytest

from stethoscope.cli import main

from tests.conftest import write_wav

FAST = ["--set", "epochs=2", "batch_size=64", "progress=false"]


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    assert main(["train", "--data", str(toy_root), "--system", "dcase_ae", "--out", str(out), *FAST]) == 0
    return out


def test_list_shows_systems(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ("dcase_ae", "gamma_vae", "ldgan", "tldiffgan", "embedding_knn", "efficientat_mn04", "eat_base",
                 "knn", "lof", "gmm", "sos"):
        assert f"  {name} " in text


def test_train_writes_one_model_per_machine(trained):
    for machine in ("fan", "gearbox"):
        cfg = json.loads((trained / machine / "config.json").read_text())
        assert cfg["system"] == "dcase_ae" and cfg["params"]["epochs"] == 2
        assert cfg["threshold"] > 0 and cfg["run"]["versions"]["torch"]
        assert (trained / machine / "weights.safetensors").exists()


def test_score_prints_file_score_decision(trained, toy_root, tmp_path, capsys):
    wav = sorted((toy_root / "fan" / "test").glob("*.wav"))[0]
    assert main(["score", "--model", str(trained / "fan"), str(wav), "--csv", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert wav.name in out and ("normal" in out or "ANOMALY" in out)
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 1 and float(rows[0]["score"]) > 0


def test_stream_prints_one_score_per_hop(trained, toy_root, capsys):
    wav = sorted((toy_root / "gearbox" / "test").glob("*.wav"))[0]  # 4 s toy clip
    assert main(["stream", "--model", str(trained / "gearbox"), str(wav), "--window", "2", "--hop", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [float(r[0]) for r in rows] == [2.0, 3.0, 4.0]
    assert all(r[2] in ("normal", "ANOMALY") for r in rows)


def test_evaluate_from_models_then_from_submission_csvs(trained, toy_root, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(toy_root), "--models", str(trained), "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert set(result["machines"]) == {"fan", "gearbox"}
    sec = result["machines"]["fan"]["sections"]["section_00"]
    assert 0 <= sec["auc_source"] <= 1 and 0 <= sec["auc_target"] <= 1 and 0 <= sec["pauc"] <= 1
    assert (out / "anomaly_score_fan_section_00_test.csv").exists()
    assert (out / "decision_result_gearbox_section_00_test.csv").exists()
    # the official evaluator's ground-truth folders, made from the scored clips' labels
    gt = tmp_path / "gt"
    rows = list(csv.DictReader(open(out / "scores.csv")))
    for sub in ("ground_truth_data", "ground_truth_domain"):
        (gt / sub).mkdir(parents=True)
    for machine in ("fan", "gearbox"):
        sel = [r for r in rows if r["machine"] == machine]
        name = f"ground_truth_{machine}_section_00_test.csv"
        (gt / "ground_truth_data" / name).write_text("".join(f"{r['file']},{r['label']}\n" for r in sel))
        (gt / "ground_truth_domain" / name).write_text(
            "".join(f"{r['file']},{int(r['domain'] == 'target')}\n" for r in sel))
    capsys.readouterr()
    assert main(["evaluate", "--scores", str(out), "--ground-truth", str(gt), "--out", str(tmp_path / "e2")]) == 0
    printed = capsys.readouterr().out
    again = json.loads((tmp_path / "e2" / "results.json").read_text())
    assert again["official_score"] == pytest.approx(result["official_score"])
    assert "official score" in printed and "AUC-s" in printed


def test_bench_writes_documented_json(toy_root, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--data", str(toy_root), "--system", "dcase_ae", "--folds", "2", "--out", str(out),
                 "--quiet", *FAST]) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert bench["system"] == "dcase_ae"
    fan = bench["sets"]["fan"]
    for key in ("n_normal", "n_anomaly", "auc", "pauc", "auc_source", "auc_target", "folds", "train_seconds",
                "score_ms_per_clip"):
        assert key in fan
    assert len(fan["folds"]) == 2 and 0 <= fan["auc"] <= 1


def test_bench_score_modes_share_training(toy_root, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--data", str(toy_root), "--machine", "fan", "--folds", "2", "--out", str(out),
                 "--score-modes", "mse,mahala", "--quiet", *FAST]) == 0
    mse = json.loads((out / "mse" / "bench.json").read_text())
    mahala = json.loads((out / "mahala" / "bench.json").read_text())
    assert mse["params"]["score_mode"] == "mse" and mahala["params"]["score_mode"] == "mahala"
    assert mse["sets"]["fan"]["train_seconds"] == mahala["sets"]["fan"]["train_seconds"]
    assert mse["sets"]["fan"]["folds"] != mahala["sets"]["fan"]["folds"]  # two scorings, not one copied


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-train", "6", "--n-test", "6", *FAST]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["official_score"] is not None
    assert (out / "models" / "fan" / "config.json").exists()
    assert "official score" in capsys.readouterr().out


def test_bad_audio_gives_clear_error(trained, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert main(["score", "--model", str(trained / "fan"), str(empty)]) == 2
    err = capsys.readouterr().err
    assert "empty.wav" in err and "empty" in err
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32))
    assert main(["score", "--model", str(trained / "fan"), str(silent)]) == 2
    assert "silent.wav" in capsys.readouterr().err


def test_missing_model_and_unknown_system_are_clear(tmp_path, toy_root, capsys):
    assert main(["score", "--model", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert main(["train", "--data", str(toy_root), "--system", "nosuch", "--out", str(tmp_path / "m")]) == 2
    assert "unknown system" in capsys.readouterr().err


def test_cli_on_real_dcase2020_clips(real_data, tmp_path, capsys):
    data = real_data / "dcase2020" / "slider"
    models = tmp_path / "models"
    assert main(["train", "--data", str(data), "--out", str(models), *FAST]) == 0
    wav = sorted((data / "test").glob("anomaly_*.flac"))[0]
    assert main(["score", "--model", str(models), str(wav)]) == 0
    assert main(["evaluate", "--data", str(data), "--models", str(models), "--out", str(tmp_path / "ev")]) == 0
    result = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert "id_00" in result["machines"]["slider"]["sections"]
    assert (tmp_path / "ev" / "anomaly_score_slider_id_00.csv").exists()


def test_bench_on_real_mimii(real_data, tmp_path):
    out = tmp_path / "b"
    assert main(["bench", "--data", str(real_data / "mimii_0db"), "--machine", "fan", "--folds", "2",
                 "--out", str(out), "--quiet", *FAST]) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert bench["sets"]["fan"]["n_normal"] == 12 and bench["sets"]["fan"]["auc_source"] is None
