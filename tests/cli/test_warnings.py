"""Python warnings reach the user of the command line as one ``warning: <message>`` line each:
no source path, line number or code line."""

from __future__ import annotations

import io
import warnings

import pytest

from stethoscope.cli import listing, main, show_warning


def test_show_warning_is_one_line() -> None:
    out = io.StringIO()
    show_warning(
        UserWarning("ldgan: TMixup is off\nfor this run"),
        UserWarning,
        "/src/crossval.py",
        87,
        out,
        "    warnings.warn(...)",
    )
    assert out.getvalue() == "warning: ldgan: TMixup is off for this run\n"


def test_a_warning_during_a_command_is_one_warning_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def systems() -> dict:
        warnings.warn("ldgan: TMixup is off (mixup_alpha=0)", UserWarning, stacklevel=1)
        return {}

    monkeypatch.setattr(listing, "list_systems", systems)
    before = warnings.showwarning
    assert main(["list", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "warning: ldgan: TMixup is off (mixup_alpha=0)"
    assert ".py:" not in err and "UserWarning" not in err and "warnings.warn" not in err
    assert warnings.showwarning is before  # the hook is the command's only
