"""Reading the folders a report is made of: clear errors for what no Stethoscope verb writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stethoscope.cli import main as cli_main
from stethoscope.errors import StethoscopeError
from stethoscope.reports import build_report


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[]",
            "results.json: expected a JSON object as `stethoscope evaluate` writes it, got list",
        ),
        ("3", "got int"),
        ('{"machines": []}', "key 'machines' holds list"),
        ('{"machines": {"fan": []}}', "machines.fan is not an object"),
        ("{not json", "corrupt JSON"),
    ],
)
def test_malformed_results_json_is_a_clear_error(tmp_path: Path, text: str, message: str):
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(StethoscopeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_report(tmp_path, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_cli_reports_a_non_object_results_json_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    (tmp_path / "results.json").write_text("[]")
    assert cli_main(["report", "--results", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: ")
        and "results.json: expected a JSON object" in err
        and "Traceback" not in err
    )


def test_non_object_bench_json_is_a_clear_error(tmp_path: Path):
    (tmp_path / "mse").mkdir()
    (tmp_path / "mse" / "bench.json").write_text("[]")
    with pytest.raises(
        StethoscopeError,
        match=r"mse/bench.json: expected a JSON object as "
        r"`stethoscope bench`",
    ):
        build_report(tmp_path, tmp_path / "report.html")


def test_a_folder_of_neither_kind_names_what_is_expected(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        StethoscopeError,
        match=r"neither an evaluation folder "
        r"\(results.json.*bench.json",
    ):
        build_report(tmp_path, tmp_path / "report.html")
    with pytest.raises(StethoscopeError, match="no such folder"):
        build_report(tmp_path / "missing", tmp_path / "report.html")
