"""Progress: a tqdm bar on a terminal; elsewhere plain lines at most every
$STETHOSCOPE_PROGRESS_SECONDS, never carriage returns; nothing when disabled."""

from __future__ import annotations

import io
import os
import re
import time

import pytest
from tqdm.std import tqdm

from stethoscope.errors import ConfigError
from stethoscope.progress import progress

LINE = re.compile(r"train dcase_ae: epoch (\d+)/6, \d+\.\d (s/epoch|epoch/s), loss 8\.12")


def test_log_lines_name_count_rate_and_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STETHOSCOPE_PROGRESS_SECONDS", "0")  # a line per step
    stream = io.StringIO()
    bar = progress(
        range(3, 6), desc="train dcase_ae", unit="epoch", total=6, initial=3, stream=stream
    )
    seen = []
    for epoch in bar:
        seen.append(epoch)
        bar.set_postfix({"loss": "8.12"})
    bar.close()
    assert seen == [3, 4, 5]
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [int(LINE.fullmatch(line).group(1)) for line in lines] == [4, 5, 6], lines


def test_no_line_before_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STETHOSCOPE_PROGRESS_SECONDS", "3600")
    stream = io.StringIO()
    bar = progress(desc="decode", unit="clip", total=100, stream=stream)
    for _ in range(100):
        bar.update(1)
    bar.close()
    assert stream.getvalue() == ""  # a short loop leaves the log alone, also at its end


def test_last_line_at_close_shows_the_final_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STETHOSCOPE_PROGRESS_SECONDS", "0.05")
    stream = io.StringIO()
    bar = progress(desc="decode", unit="clip", total=3, stream=stream)
    time.sleep(0.06)
    bar.update(2)  # past the interval: a line
    bar.update(1)  # (a line too only if this machine stalled)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("decode: clip 2/3, ") and lines[-1].startswith("decode: clip 3/3, ")
    assert len(lines) == 2


def test_disabled_passes_items_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STETHOSCOPE_PROGRESS_SECONDS", "0")
    stream = io.StringIO()
    bar = progress(["a", "b"], desc="folds", enabled=False, stream=stream)
    assert list(bar) == ["a", "b"]
    bar.set_postfix({"loss": "1"})
    bar.close()
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar() -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as terminal:
        bar = progress(range(3), desc="decode", unit="clip", stream=terminal)
        assert isinstance(bar, tqdm)
        assert list(bar) == [0, 1, 2]
        bar.close()
        terminal.flush()
        drawn = os.read(master, 65536)
    os.close(master)
    assert b"decode" in drawn and b"\r" in drawn


@pytest.mark.parametrize("bad", ["-1", "soon", "nan"])
def test_bad_interval_is_a_config_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("STETHOSCOPE_PROGRESS_SECONDS", bad)
    with pytest.raises(ConfigError, match="STETHOSCOPE_PROGRESS_SECONDS"):
        progress(desc="decode", stream=io.StringIO())
