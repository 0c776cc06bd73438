"""--on-bad-audio across the verbs: every bad kind of file named, never a traceback, skip writes
skipped.csv, a score batch goes past bad files, a FIFO never blocks, compressed formats are
accepted by train and score alike."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.cli import main
from tests.cli.conftest import RUNTIME, run_cli
from tests.conftest import write_wav

TRAIN = ["--system", "dcase_ae", "--set", "epochs=1", "batch_size=64", *RUNTIME, "--no-cache"]


def _noise(seconds: float, seed: int, level: float = 0.05) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * 16_000))).astype(
        np.float32
    )


def _folder_set(root: Path, n: int = 6) -> Path:
    """A plain-folder data set: train/ normals and one normal/ and anomaly/ test clip."""
    for i in range(n):
        write_wav(root / "train" / f"n{i}.wav", _noise(1, i))
    write_wav(root / "normal" / "t0.wav", _noise(1, 50))
    write_wav(root / "anomaly" / "t1.wav", _noise(1, 51, level=0.2))
    return root


def _bad_kinds(folder: Path) -> dict[str, str]:
    """One file of each bad kind in ``folder`` -> the words the policy says about it."""
    write_wav(folder / "short.wav", _noise(0.01, 1))
    write_wav(folder / "nan.wav", np.full(16_000, np.nan, np.float32), subtype="FLOAT")
    write_wav(folder / "dc.wav", _noise(1, 2) + 0.5)
    write_wav(folder / "low_rate.wav", _noise(1, 3)[:1000], 1000)
    os.mkfifo(folder / "pipe.wav")
    os.symlink(folder / "gone.wav", folder / "broken.wav")
    (folder / "dir.wav").mkdir()
    (folder / "text.wav").write_text("not audio\n" * 50)
    return {
        "short.wav": "too short: 0.01 s",
        "nan.wav": "NaN",
        "dc.wav": "DC offset",
        "low_rate.wav": "sample rate 1000 Hz",
        "pipe.wav": "named pipe",
        "broken.wav": "broken symbolic link",
        "dir.wav": "a folder",
        "text.wav": "not a readable audio file",
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_stops_on_a_short_clip_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = _folder_set(tmp_path / "pump")
    write_wav(data / "train" / "tiny.wav", _noise(0.1, 9))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert "tiny.wav: too short: 0.1 s of audio, at least 0.128 s needed" in err
    assert "--on-bad-audio skip leaves such files out" in err and "Traceback" not in err


def test_train_skip_leaves_every_bad_kind_out_and_lists_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = _folder_set(tmp_path / "pump")
    words = _bad_kinds(data / "train")
    (data / "train" / "._n0.wav").write_bytes(
        b"\x00\x05\x16\x07 resource fork"
    )  # hidden: never data
    out = tmp_path / "m"
    assert (
        main(["train", "--data", str(data), "--out", str(out), *TRAIN, "--on-bad-audio", "skip"])
        == 0
    )
    err = capsys.readouterr().err
    listed = {Path(r["file"]).name: r["reason"] for r in _rows(out / "skipped.csv")}
    assert set(listed) == set(words)
    for name, word in words.items():
        assert word in listed[name], (name, listed[name])
    assert err.strip().splitlines()[-1] == (
        f"audio checks: 8 file(s) skipped, 0 kept with warnings; list in "
        f"{out / 'skipped.csv'} (--on-bad-audio skip)"
    )
    assert (out / "weights.safetensors").exists() and "._n0" not in err


def test_score_batch_goes_past_bad_files(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "batch"
    write_wav(folder / "good.wav", _noise(2, 0))
    _bad_kinds(folder)
    (folder / "._good.wav").write_bytes(b"junk")
    table = tmp_path / "out" / "scores.csv"
    args = ["score", "--model", str(trained / "fan"), str(folder), "--csv", str(table), *RUNTIME]
    assert main([*args, "--on-bad-audio", "warn"]) == 0
    captured = capsys.readouterr()
    assert [r["file"] for r in _rows(table)] == [
        "dc.wav",
        "good.wav",
        "low_rate.wav",
    ]  # suspicious ones kept
    assert {Path(r["file"]).name for r in _rows(tmp_path / "out" / "skipped.csv")} == {
        "short.wav",
        "nan.wav",
        "pipe.wav",
        "broken.wav",
        "dir.wav",
        "text.wav",
    }
    assert (
        captured.err.strip()
        .splitlines()[-1]
        .startswith("audio checks: 6 file(s) skipped, 2 kept with warnings")
    )
    assert "._good" not in captured.out + captured.err
    assert main([*args, "--on-bad-audio", "skip"]) == 0
    assert [r["file"] for r in _rows(table)] == ["good.wav"]
    assert main(args) == 2  # the default stops at the first unreadable file, naming it
    assert "broken.wav: a broken symbolic link" in capsys.readouterr().err


def test_suspicious_file_is_an_error_only_when_asked(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dc = write_wav(tmp_path / "dc.wav", _noise(2, 0) + 0.5)
    assert main(["score", "--model", str(trained / "fan"), str(dc), *RUNTIME]) == 0
    assert "warning: " + str(dc) + ": DC offset: mean sample value 0.5" in capsys.readouterr().err
    assert (
        main(
            ["score", "--model", str(trained / "fan"), str(dc), *RUNTIME, "--on-bad-audio", "error"]
        )
        == 2
    )
    assert f"error: {dc}: DC offset" in capsys.readouterr().err


def test_fifo_is_refused_without_blocking(trained: Path, tmp_path: Path, cli_cache: Path) -> None:
    os.mkfifo(
        tmp_path / "x.wav"
    )  # a real process: had it opened the pipe, it would block until the timeout
    for verb in (
        ["score", "--model", trained / "fan", tmp_path / "x.wav"],
        ["explain", "--model", trained / "fan", tmp_path / "x.wav", "--out", tmp_path / "x.png"],
    ):
        result = run_cli([*verb, *RUNTIME], cli_cache, timeout=60)
        assert (
            result.returncode == 2
            and "x.wav: a named pipe (FIFO), not an audio file" in result.stderr
        )
        assert "Traceback" not in result.stderr


def test_explain_and_stream_skip_a_bad_file(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `stream` lists skipped files in ./skipped.csv
    short = write_wav(tmp_path / "short.wav", _noise(0.05, 0))
    png = tmp_path / "maps" / "x.png"
    skip = [*RUNTIME, "--on-bad-audio", "skip"]
    assert (
        main(["explain", "--model", str(trained / "fan"), str(short), "--out", str(png), *skip])
        == 0
    )
    assert not png.exists() and _rows(tmp_path / "maps" / "skipped.csv")[0]["file"] == str(short)
    assert main(["stream", "--model", str(trained / "fan"), str(short), *skip]) == 0
    assert _rows(tmp_path / "skipped.csv")[0]["file"] == str(short)
    assert main(["stream", "--model", str(trained / "fan"), str(short), *RUNTIME]) == 2
    assert "short.wav: too short: 0.05 s" in capsys.readouterr().err


@pytest.mark.parametrize("fmt, suffix, subtype", [("MP3", ".mp3", None), ("OGG", ".ogg", "VORBIS")])
def test_compressed_audio_is_accepted_by_train_and_score(
    tmp_path: Path, fmt: str, suffix: str, subtype: str | None, capsys: pytest.CaptureFixture
) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    data = _folder_set(tmp_path / "pump", n=3)
    for i in range(3):
        sf.write(
            data / "train" / f"c{i}{suffix}", _noise(1, 20 + i), 16_000, format=fmt, subtype=subtype
        )
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), *TRAIN]) == 0
    assert (
        json.loads((tmp_path / "m" / "config.json").read_text())["run"]["n_train"] == 6
    )  # every file was used
    table = tmp_path / "s.csv"
    assert (
        main(
            [
                "score",
                "--model",
                str(tmp_path / "m"),
                str(data / "train"),
                "--csv",
                str(table),
                *RUNTIME,
            ]
        )
        == 0
    )
    assert sorted(r["file"] for r in _rows(table)) == sorted(
        [f"c{i}{suffix}" for i in range(3)] + [f"n{i}.wav" for i in range(3)]
    )
    renamed = (data / "train" / f"c0{suffix}").rename(data / "train" / "renamed.wav")
    assert main(["score", "--model", str(tmp_path / "m"), str(renamed), *RUNTIME]) == 0
    assert f"renamed.wav: the content is {fmt}" in capsys.readouterr().err


def test_bad_audio_flag_is_on_every_audio_verb() -> None:
    from stethoscope.cli.parser import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    with_flag = {
        name for name, p in sub.choices.items() if any(a.dest == "on_bad_audio" for a in p._actions)
    }
    assert with_flag == {
        "demo",
        "train",
        "score",
        "evaluate",
        "bench",
        "stream",
        "explain",
        "scan",
        "calibrate",
        "watch",
    }


def test_output_of_a_run_with_all_good_audio_has_no_count_line(
    trained: Path, toy_root: Path, capsys: pytest.CaptureFixture
) -> None:
    wav = sorted((toy_root / "fan" / "test").glob("*.wav"))[0]
    assert main(["score", "--model", str(trained / "fan"), str(wav), *RUNTIME]) == 0
    assert "audio checks" not in capsys.readouterr().err
