"""Verbs that use trained models: `list`, `score`, `stream`, `evaluate`, `explain`."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from stethoscope.cli import main
from tests.cli.conftest import RUNTIME, ok, read_json, run_cli
from tests.conftest import write_wav


def test_list_shows_systems(capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in (
        "dcase_ae",
        "gamma_vae",
        "ldgan",
        "tldiffgan",
        "embedding_knn",
        "efficientat_mn04",
        "eat_base",
        "knn",
        "lof",
        "gmm",
        "sos",
    ):
        assert f"  {name} " in text


def _score_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_score_prints_file_score_decision(
    trained: Path, toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    wav = sorted((toy_root / "fan" / "test").glob("*.wav"))[0]
    assert (
        main(
            [
                "score",
                "--model",
                str(trained / "fan"),
                str(wav),
                "--csv",
                str(tmp_path / "s.csv"),
                *RUNTIME,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert wav.name in out and ("normal" in out or "ANOMALY" in out)
    rows = _score_csv(tmp_path / "s.csv")
    assert len(rows) == 1 and float(rows[0]["score"]) > 0 and rows[0]["machine"] == "fan"


def test_stream_prints_one_score_per_hop(
    trained: Path, toy_root: Path, capsys: pytest.CaptureFixture
) -> None:
    wav = sorted((toy_root / "gearbox" / "test").glob("*.wav"))[0]  # 4 s toy clip
    assert (
        main(
            [
                "stream",
                "--model",
                str(trained / "gearbox"),
                str(wav),
                "--window",
                "2",
                "--hop",
                "1",
                *RUNTIME,
            ]
        )
        == 0
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [float(r[0]) for r in rows] == pytest.approx([2.0, 3.0, 4.0])
    assert all(r[2] in ("normal", "ANOMALY") for r in rows)


@pytest.mark.parametrize("window, hop", [("2", "0"), ("0", "1"), ("-1", "1")])
def test_stream_refuses_non_positive_window_or_hop(
    trained: Path, toy_root: Path, window: str, hop: str, capsys: pytest.CaptureFixture
) -> None:
    wav = sorted((toy_root / "gearbox" / "test").glob("*.wav"))[0]
    assert (
        main(
            [
                "stream",
                "--model",
                str(trained / "gearbox"),
                str(wav),
                "--window",
                window,
                "--hop",
                hop,
                *RUNTIME,
            ]
        )
        == 2
    )
    assert "--window and --hop must be positive" in capsys.readouterr().err


def test_evaluate_from_models_then_from_submission_csvs(
    trained: Path, toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(toy_root),
                "--models",
                str(trained),
                "--out",
                str(out),
                *RUNTIME,
            ]
        )
        == 0
    )
    result = read_json(out / "results.json")
    assert set(result["machines"]) == {"fan", "gearbox"}
    sec = result["machines"]["fan"]["sections"]["section_00"]
    assert 0 <= sec["auc_source"] <= 1 and 0 <= sec["auc_target"] <= 1 and 0 <= sec["pauc"] <= 1
    assert (out / "anomaly_score_fan_section_00_test.csv").exists()
    assert (out / "decision_result_gearbox_section_00_test.csv").exists()
    # the official evaluator's ground-truth folders, made from the scored clips' labels
    gt = tmp_path / "gt"
    rows = _score_csv(out / "scores.csv")
    for sub in ("ground_truth_data", "ground_truth_domain"):
        (gt / sub).mkdir(parents=True)
    for machine in ("fan", "gearbox"):
        sel = [r for r in rows if r["machine"] == machine]
        name = f"ground_truth_{machine}_section_00_test.csv"
        (gt / "ground_truth_data" / name).write_text(
            "".join(f"{r['file']},{r['label']}\n" for r in sel)
        )
        (gt / "ground_truth_domain" / name).write_text(
            "".join(f"{r['file']},{int(r['domain'] == 'target')}\n" for r in sel)
        )
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--scores",
                str(out),
                "--ground-truth",
                str(gt),
                "--out",
                str(tmp_path / "e2"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    again = read_json(tmp_path / "e2" / "results.json")
    assert again["official_score"] == pytest.approx(result["official_score"], rel=1e-9, abs=1e-9)
    assert "official score" in printed and "AUC-s" in printed


def test_bad_audio_gives_clear_error(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert main(["score", "--model", str(trained / "fan"), str(empty), *RUNTIME]) == 2
    err = capsys.readouterr().err
    assert "empty.wav" in err and "empty" in err
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32))
    assert main(["score", "--model", str(trained / "fan"), str(silent), *RUNTIME]) == 2
    assert "silent.wav" in capsys.readouterr().err


def test_missing_model_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["score", "--model", str(tmp_path / "nope"), str(tmp_path), *RUNTIME]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_explain_writes_png_and_prints_the_score_of_score(
    trained: Path, toy_root: Path, tmp_path: Path, cli_cache: Path, capsys: pytest.CaptureFixture
) -> None:
    """`explain` (a real subprocess) and `score` agree on the score and decision of one file."""
    wav = sorted((toy_root / "fan" / "test").glob("*anomaly*.wav"))[0]
    png = tmp_path / "maps" / "map.png"
    explained = ok(
        run_cli(["explain", "--model", trained / "fan", wav, "--out", png, *RUNTIME], cli_cache)
    )
    match = re.fullmatch(
        rf"{re.escape(str(wav))}: score (\S+) \((normal|ANOMALY)\); map: (.+)",
        explained.stdout.strip(),
    )
    assert match, explained.stdout
    assert Path(match.group(3)) == png and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Traceback" not in explained.stderr

    assert (
        main(
            [
                "score",
                "--model",
                str(trained / "fan"),
                str(wav),
                "--csv",
                str(tmp_path / "s.csv"),
                *RUNTIME,
            ]
        )
        == 0
    )
    (row,) = _score_csv(tmp_path / "s.csv")
    assert float(match.group(1)) == pytest.approx(
        float(row["score"]), rel=1e-5, abs=1e-9
    )  # printed with 6 digits
    assert match.group(2) == ("ANOMALY" if row["decision"] == "1" else "normal")


def _poison(path: Path, seconds: float = 4.0) -> Path:
    """A float WAV whose samples are about 1e25: it decodes, but its score is not finite."""
    wave = np.random.default_rng(0).normal(0, 0.1, int(16_000 * seconds)).astype(
        np.float32
    ) * np.float32(1e25)
    return write_wav(path, wave, subtype="FLOAT")


def test_score_and_evaluate_skip_a_poison_clip_with_a_warning(
    trained: Path, toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = sorted((toy_root / "fan" / "test").glob("*.wav"))[0]
    poison = _poison(tmp_path / "poison.wav")
    assert (
        main(
            [
                "score",
                "--model",
                str(trained / "fan"),
                str(good),
                str(poison),
                "--csv",
                str(tmp_path / "s.csv"),
                *RUNTIME,
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        "Traceback" not in captured.err
        and f"{poison}: the model's score is nan (not finite)" in captured.err
    )
    assert good.name in captured.out and "poison" not in captured.out
    assert [row["file"] for row in _score_csv(tmp_path / "s.csv")] == [good.name]
    assert "not finite" in (tmp_path / "skipped.csv").read_text()

    data = tmp_path / "data"
    shutil.copytree(toy_root, data)
    victim = sorted((data / "fan" / "test").glob("*.wav"))[0]
    _poison(victim)  # a test clip of the set turned poison, under its labelled name
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(data),
                "--models",
                str(trained),
                "--out",
                str(tmp_path / "eval"),
                *RUNTIME,
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert (
        "Traceback" not in err and victim.name in err and "not finite" in err and "(skipped)" in err
    )
    scored = _score_csv(tmp_path / "eval" / "scores.csv")
    assert victim.name not in [row["file"] for row in scored] and len(scored) == 2 * 12 - 1


def test_score_refuses_audio_over_max_seconds_from_its_header(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    long = write_wav(tmp_path / "long.wav", np.full(16_000 * 20, 0.1, np.float32))
    assert (
        main(["score", "--model", str(trained / "fan"), str(long), "--max-seconds", "10", *RUNTIME])
        == 2
    )
    err = capsys.readouterr().err
    assert f"error: {long}: 20 s of audio" in err and "over the --max-seconds 10 limit" in err
    assert "Traceback" not in err
    assert (
        main(["score", "--model", str(trained / "fan"), str(long), "--max-seconds", "0", *RUNTIME])
        == 2
    )
    assert "--max-seconds must be a positive number" in capsys.readouterr().err
