"""Named, scoped tokens: the tokens file (token from an environment variable or as its SHA-256),
its errors naming the file, entry and key, the scopes' order, and the single --token of old."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stethoscope.cli import main
from stethoscope.errors import ConfigError
from stethoscope.monitor.tokens import Identity, Tokens, load_tokens

ALICE = "alice-token-0123456789abcdef"
VIEW = "viewer-token-0123456789abcdef"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    return path


def test_a_tokens_file_names_tokens_from_the_environment_or_their_sha256(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""tokens:
  - {{name: alice, scope: operate, token_env: ALICE_TOKEN}}
  - {{name: viewer, scope: read, sha256: {hashlib.sha256(VIEW.encode()).hexdigest().upper()}}}
""",
    )
    tokens = load_tokens(path, {"ALICE_TOKEN": ALICE})
    assert tokens.who(ALICE) == Identity("alice", "operate") and tokens.who(VIEW) == Identity(
        "viewer", "read"
    )
    assert tokens.who(ALICE[:-1]) is None and tokens.who("") is None and tokens.who(None) is None
    assert tokens.describe() == "alice (operate), viewer (read)" and ALICE not in repr(
        tokens.entries
    )
    assert Identity("alice", "operate").allows("read") and not Identity("alice", "operate").allows(
        "write"
    )
    assert Tokens.single(ALICE).who(ALICE) == Identity("admin", "write")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("tokens: []", "needs 'tokens:'"),
        ("- a", "needs 'tokens:'"),
        (
            "tokens: [{name: a, scope: admin, token_env: ALICE_TOKEN}]",
            "tokens[0].scope (a): one of read, operate",
        ),
        ("tokens: [{name: 'a b', scope: read, token_env: ALICE_TOKEN}]", "tokens[0].name"),
        ("tokens: [{name: a, scope: read}]", "exactly one of token_env"),
        ("tokens: [{name: a, scope: read, token_env: MISSING_ENV}]", "'MISSING_ENV' is not set"),
        ("tokens: [{name: a, scope: read, token_env: SHORT}]", "holds 5 characters"),
        (
            "tokens: [{name: a, scope: read, sha256: abc}]",
            "tokens[0].sha256 (a): must be 64 hex digits",
        ),
        (
            "tokens: [{name: a, scope: read, token_env: ALICE_TOKEN, password: x}]",
            "unknown key(s) password",
        ),
        (
            (
                "tokens: [{name: a, scope: read, token_env: ALICE_TOKEN},"
                " {name: a, scope: read, token_env: B}]"
            ),
            "tokens[1]: the name 'a' is used twice",
        ),
        (
            (
                "tokens: [{name: a, scope: read, token_env: ALICE_TOKEN},"
                " {name: b, scope: read, token_env: ALICE_TOKEN}]"
            ),
            "tokens[1] (b): the same token",
        ),
        ("tokens: [", "not valid YAML"),
    ],
)
def test_a_bad_tokens_file_is_a_clear_error(tmp_path: Path, text: str, said: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_tokens(path, {"ALICE_TOKEN": ALICE, "SHORT": "short", "B": VIEW})
    assert said in str(err.value) and str(path) in str(err.value) and ALICE not in str(err.value)


def test_serve_refuses_tokens_with_token_and_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STETHOSCOPE_TOKEN", raising=False)
    path = _write(tmp_path, "tokens: [{name: a, scope: read, token_env: ALICE_TOKEN}]")
    assert main(["serve", "--models", str(tmp_path), "--tokens", str(path), "--token", ALICE]) == 2
    assert "--tokens" in capsys.readouterr().err
    assert main(["serve", "--models", str(tmp_path), "--tokens", str(tmp_path / "none.yaml")]) == 2
    said = capsys.readouterr().err
    assert "none.yaml: cannot read it" in said and "Traceback" not in said
