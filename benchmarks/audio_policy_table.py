"""What `train` and `score` do with every kind of input a practitioner may throw at them.

For each kind, one bad entry is put among good 10 s clips (16 kHz noise-like machine sound)
and the real CLI (`stethoscope.cli.main`, in this process, one torch thread, no cache) runs:

* ``train`` on a plain-folder set: 6 good training clips + the bad entry in ``train/``;
* ``score`` of a folder of 3 good test clips + the bad entry, with a model trained once on
  the good clips;

each with the default policy and with ``--on-bad-audio skip``. A cell says the exit code and
what happened to the bad entry: used silently, warned (and used), skipped (listed in
skipped.csv), or the error line. Writes a Markdown table (default docs/audio_policy_table.md).

    PYTHONPATH=src python3 benchmarks/audio_policy_table.py [--out docs/audio_policy_table.md]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import provenance  # noqa: E402

from stethoscope.cli import main  # noqa: E402

SR = 16_000
RUN = ["--threads", "1", "--quiet", "--no-cache"]
TRAIN = ["--system", "dcase_ae", "--set", "epochs=1", "batch_size=256", *RUN]


def _sound(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """Machine-like sound: a hum and its harmonics in low-passed noise, about -30 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    hum = sum(0.01 / k * np.sin(2 * np.pi * 120 * k * t + rng.uniform(0, 6)) for k in range(1, 5))
    noise = np.convolve(rng.standard_normal(len(t)), np.ones(4) / 4, mode="same") * 0.02
    return (hum + noise).astype(np.float32)


def _write(path: Path, wave: np.ndarray, sr: int = SR, **kw) -> None:
    sf.write(path, wave, sr, **kw)


def _renamed(fmt: str, subtype: str | None = None) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        sf.write(tmp, _sound(10, 7), SR, format=fmt, subtype=subtype)
        tmp.rename(path)

    return make


def _riff_random(path: Path) -> None:
    """A valid WAV header (PCM 16) followed by random bytes."""
    _write(path, np.zeros(10 * SR, np.float32), subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    raw[44:] = np.random.default_rng(0).bytes(len(raw) - 44)
    path.write_bytes(bytes(raw))


def _truncated(path: Path) -> None:
    _write(path, _sound(10, 8), subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:100_000])


# kind -> (file name, maker); every maker writes one entry at the path it is given
KINDS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "good 10 s WAV (control)": ("x.wav", lambda p: _write(p, _sound(10, 1))),
    "1 sample": ("x.wav", lambda p: _write(p, _sound(10, 1)[:1])),
    "0.01 s clip": ("x.wav", lambda p: _write(p, _sound(0.01, 1))),
    "0.1 s clip": ("x.wav", lambda p: _write(p, _sound(0.1, 1))),
    "0.5 s clip among 10 s clips": ("x.wav", lambda p: _write(p, _sound(0.5, 1))),
    "10-minute clip among 10 s clips": ("x.wav", lambda p: _write(p, _sound(600, 1))),
    "MP3 file (.mp3)": ("x.mp3", lambda p: _write(p, _sound(10, 1), format="MP3")),
    "Ogg Vorbis file (.ogg)": (
        "x.ogg",
        lambda p: _write(p, _sound(10, 1), format="OGG", subtype="VORBIS"),
    ),
    "FLAC file (.flac)": ("x.flac", lambda p: _write(p, _sound(10, 1))),
    "MP3 content named .wav": ("x.wav", _renamed("MP3")),
    "Ogg content named .wav": ("x.wav", _renamed("OGG", "VORBIS")),
    "AIFF content named .wav": ("x.wav", _renamed("AIFF", "PCM_16")),
    "AAC file (.m4a)": ("x.m4a", lambda p: p.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))),
    "macOS resource fork ._x.flac": (
        "._x.flac",
        lambda p: p.write_bytes(b"\x00\x05\x16\x07" + bytes(60)),
    ),
    "folder named x.wav": ("x.wav", lambda p: p.mkdir()),
    "broken symbolic link x.wav": ("x.wav", lambda p: os.symlink(p.parent / "missing.wav", p)),
    "symbolic link loop x.wav": ("x.wav", lambda p: os.symlink(p, p)),
    "FIFO named x.wav": ("x.wav", lambda p: os.mkfifo(p)),
    "empty file (0 bytes)": ("x.wav", lambda p: p.write_bytes(b"")),
    "text file named .wav": ("x.wav", lambda p: p.write_text("not audio\n" * 100)),
    "truncated WAV": ("x.wav", _truncated),
    "RIFF header with a random body": ("x.wav", _riff_random),
    "RIFF magic then garbage": (
        "x.wav",
        lambda p: p.write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + bytes(range(256)) * 8),
    ),
    "1 kHz sample rate": ("x.wav", lambda p: _write(p, _sound(10, 1, sr=1000), 1000)),
    "DC-constant signal (0.5)": ("x.wav", lambda p: _write(p, np.full(10 * SR, 0.5, np.float32))),
    "DC offset (+0.2 on sound)": ("x.wav", lambda p: _write(p, _sound(10, 1) + 0.2)),
    "all zeros": ("x.wav", lambda p: _write(p, np.zeros(10 * SR, np.float32), subtype="PCM_16")),
    "1-LSB noise (PCM 16)": (
        "x.wav",
        lambda p: _write(
            p,
            np.random.default_rng(0).integers(-1, 2, 10 * SR).astype(np.float32) / 32768,
            subtype="PCM_16",
        ),
    ),
    "float samples over range (x100)": (
        "x.wav",
        lambda p: _write(p, _sound(10, 1) * 100, subtype="FLOAT"),
    ),
    "clipped (gain x40, PCM 16)": (
        "x.wav",
        lambda p: _write(p, np.clip(_sound(10, 1) * 40, -1, 1), subtype="PCM_16"),
    ),
    "NaN samples (float WAV)": (
        "x.wav",
        lambda p: _write(p, np.full(10 * SR, np.nan, np.float32), subtype="FLOAT"),
    ),
}


def _run(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def _outcome(code: int, err: str, name: str, skipped_csv: Path) -> str:
    """One table cell: exit code and what happened to the entry ``name``."""
    short = lambda text: text.replace(str(skipped_csv.parent.parent.parent), "…")  # noqa: E731
    lines = err.splitlines()
    if code != 0:
        line = next((x for x in lines if x.startswith("error:")), lines[-1] if lines else "")
        return f"exit {code}: `{short(line)[:170]}`"
    if skipped_csv.exists():
        with open(skipped_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                if Path(row["file"]).name == name:
                    return f"exit 0, skipped: {short(row['reason'])}"
    said = [
        x.split(f"{name}: ", 1)[1] for x in lines if x.startswith("warning:") and f"/{name}: " in x
    ]
    if said:
        return f"exit 0, warned, used: {short(said[0])}"
    return "exit 0, used" if not name.startswith(".") else "exit 0, ignored (hidden)"


def _good_set(root: Path) -> tuple[Path, Path]:
    """(data root with 6 good training clips in train/, a folder of 3 good test clips)."""
    for i in range(6):
        _write_new(root / "pump" / "train" / f"n{i}.wav", _sound(10, 100 + i))
    for i in range(3):
        _write_new(root / "test" / f"t{i}.wav", _sound(10, 200 + i))
    return root / "pump", root / "test"


def _write_new(path: Path, wave: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, wave)


def table(work: Path) -> list[tuple[str, list[str]]]:
    data, _ = _good_set(work / "good")
    model = work / "model"
    code, err = _run(["train", "--data", str(data), "--out", str(model), *TRAIN])
    assert code == 0, err
    rows = []
    for n, (kind, (name, make)) in enumerate(KINDS.items()):
        train, score = [], []
        for mode in ([], ["--on-bad-audio", "skip"]):
            data, test = _good_set(work / f"k{n}{'s' if mode else ''}")
            make(data / "train" / name)
            make(test / name)
            out = data.parent / "model"
            train.append(
                _outcome(
                    *_run(["train", "--data", str(data), "--out", str(out), *TRAIN, *mode]),
                    name,
                    out / "skipped.csv",
                )
            )
            scores = data.parent / "scored" / "scores.csv"
            score.append(
                _outcome(
                    *_run(
                        [
                            "score",
                            "--model",
                            str(model),
                            str(test),
                            "--csv",
                            str(scores),
                            *RUN,
                            *mode,
                        ]
                    ),
                    name,
                    scores.parent / "skipped.csv",
                )
            )
        rows.append((kind, train + score))
        print(f"{kind}: {train + score}", file=sys.stderr)
    return rows


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=str(Path(__file__).parents[1] / "docs" / "audio_policy_table.md")
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = table(Path(tmp))
    lines = [
        "# Input kinds: what `train` and `score` do",
        "",
        "Generated by `PYTHONPATH=src python3 benchmarks/audio_policy_table.py` (the real CLI on each kind:",
        "one bad entry among six good 10 s training clips, or among three good test clips scored with a model",
        "trained on good clips); default policy and `--on-bad-audio skip`. `…` stands for the temporary folder.",
        f"libsndfile {sf.__libsndfile_version__}, soundfile {sf.__version__}.",
        "",
        "```",
        provenance(),
        "```",
        "",
        "| input kind | `train` | `train --on-bad-audio skip` | `score` | `score --on-bad-audio skip` |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {kind} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        for kind, cells in rows
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"table: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main_()
