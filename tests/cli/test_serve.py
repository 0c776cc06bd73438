"""``serve``'s refusals happen before anything listens: no token, a weak one, open writes on
a network address, a bad alarm rule, a missing folder, a missing extra: exit 2, one clear line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stethoscope.cli import main
from stethoscope.cli.serve import parse_alarm

GOOD = "0123456789abcdef-token"


def serve(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(["serve", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture(autouse=True)
def _no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STETHOSCOPE_TOKEN", raising=False)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no token: set $STETHOSCOPE_TOKEN"),
        (["--token", "short"], "use at least 16"),
        (["--no-token", "--host", "0.0.0.0"], "would let anyone on the network"),
        (["--no-token", "--token", GOOD], "choose one"),
        (["--token", GOOD, "--alarm", "3"], "--alarm must be K/N"),
        (["--token", GOOD, "--alarm", "6/5"], "1 <= k <= n"),
        (["--token", GOOD, "--workers", "0"], "--workers >= 1"),
        (["--token", GOOD, "--hop", "0.01"], "<= --hop <= --window"),
        (["--token", GOOD, "--keep-audio-mb", "-1"], "--keep-audio-mb >= 0"),
        (["--token", GOOD, "--max-connections", "0"], "--max-connections >= 1"),
        (["--token", GOOD, "--max-streams", "0"], "--max-streams >= 1"),
        (["--token", GOOD, "--allowed-host", "a*b"], "--allowed-host must be"),
        (["--token", GOOD, "--allow-origin", "evil.example"], "--allow-origin must be"),
        (["--token", GOOD, "--allow-origin", "https://x.example/path"], "--allow-origin must be"),
    ],
)
def test_refusals(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, err = serve(["--models", str(tmp_path), "--db", str(tmp_path / "e.db"), *args], capsys)
    assert code == 2 and message in err


def test_token_from_the_environment_and_missing_models(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STETHOSCOPE_TOKEN", GOOD)
    code, err = serve(["--models", str(tmp_path / "none"), "--db", str(tmp_path / "e.db")], capsys)
    assert code == 2 and "no such folder" in err  # past the token check
    code, err = serve(["--models", str(tmp_path), "--db", str(tmp_path / "e.db")], capsys)
    assert code == 2 and "no trained model" in err


def test_without_the_serve_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        sys.modules, "fastapi", None
    )  # what an install without the extra looks like
    code, err = serve(["--models", str(tmp_path), "--token", GOOD], capsys)
    assert code == 2 and "pip install 'stethoscope[serve]'" in err and "fastapi" in err


def test_parse_alarm() -> None:
    assert parse_alarm("3/5") == (3, 5) and parse_alarm(None) is None


@pytest.mark.parametrize(
    "host, flags, protected",
    [
        ("127.0.0.1", [], False),
        ("::1", [], False),
        ("localhost", [], False),
        ("127.0.0.1", ["--protect-reads"], True),
        ("0.0.0.0", [], True),
        ("192.168.1.20", [], True),
        ("::", [], True),
        ("plant-pc.lan", [], True),
        ("192.168.1.20", ["--public-reads"], False),
    ],
)
def test_reads_need_the_token_unless_the_host_is_loopback(
    host: str, flags: list[str], protected: bool
) -> None:
    from stethoscope.cli.parser import build_parser
    from stethoscope.cli.serve import reads_protected

    args = build_parser().parse_args(["serve", "--models", "m", "--host", host, *flags])
    assert reads_protected(args) is protected


def test_protect_and_public_reads_contradict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = serve(
        [
            "--models",
            str(tmp_path),
            "--token",
            GOOD,
            "--host",
            "10.0.0.5",
            "--protect-reads",
            "--public-reads",
        ],
        capsys,
    )
    assert code == 2 and "contradict" in err
