"""Operator actions in the store, without HTTP: a mute's window (start, end, cancel) as the
one rule `Monitor.muted` gives, a mute that suppresses raising but not clearing an alarm, the
bounds of notes and windows, and which labelled clips calibration gets."""

from __future__ import annotations

import time

import pytest

from stethoscope.errors import ConfigError
from stethoscope.monitor.operators import MAX_MUTE_S, ActionRefused

from .conftest import fan_clip


def test_a_mute_holds_from_its_start_to_its_end_unless_cancelled(monitor) -> None:
    now = time.time()
    mute = monitor.operators.mute("fan", now + 100, now + 200, "planned maintenance", "alice")
    assert monitor.muted("fan") is None and monitor.muted("fan", now + 99) is None
    assert (
        monitor.muted("fan", now + 100)["id"] == mute["id"]
        and monitor.muted("fan", now + 199.9)["reason"] == "planned maintenance"
    )
    assert monitor.muted("fan", now + 200) is None and monitor.muted("gearbox", now + 150) is None
    assert [m["id"] for m in monitor.operators.mutes(current=True)] == [mute["id"]]
    cancelled = monitor.operators.cancel_mute(mute["id"], "bob")
    assert cancelled["cancelled_by"] == "bob" and monitor.muted("fan", now + 150) is None
    assert (
        monitor.operators.mutes(current=True) == []
        and len(monitor.operators.mutes(current=False)) == 1
    )
    with pytest.raises(ActionRefused) as again:
        monitor.operators.cancel_mute(mute["id"], "bob")
    assert again.value.status == 409


@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        (100, 50, "must end after it starts"),
        (-200, -100, "in the past"),
        (0, MAX_MUTE_S + 100, "at most 31 days"),
    ],
)
def test_bad_mute_windows_are_refused(monitor, start: float, end: float, said: str) -> None:
    now = time.time()
    with pytest.raises(ConfigError, match=said):
        monitor.operators.mute("fan", now + start, now + end, "x", "alice")
    with pytest.raises(ConfigError, match="at most 1000"):
        monitor.operators.acknowledge(1, "alice", "x" * 1001)


def test_a_mute_stops_raising_alarms_but_not_clearing_them(monitor) -> None:
    monitor.store.set_alarm_rule("alarming", 1, 1)
    raised = monitor.score_wave("alarming", fan_clip(1), 16_000)
    assert raised.alarm.state == "raised" and not raised.muted
    monitor.operators.mute("alarming", None, time.time() + 600, "cleaning", "alice")
    monitor.store.set_alarm_rule(
        "alarming", 5, 5
    )  # 2 anomalous decisions of the last 5 (every one of 2)
    cleared = monitor.score_wave("alarming", fan_clip(2), 16_000)
    assert cleared.muted and cleared.alarm is not None and cleared.alarm.state == "cleared"
    monitor.store.set_alarm_rule("alarming", 1, 1)
    quiet = monitor.score_wave("alarming", fan_clip(4), 16_000)
    assert quiet.muted and quiet.decision == 1 and quiet.alarm is None  # would raise, but muted
    assert len(monitor.store.alarms("alarming")) == 1 and len(monitor.store.events("alarming")) == 3


def test_labelled_clips_bring_their_kept_audio_and_the_latest_label(monitor) -> None:
    first, second = (monitor.score_wave("fan", fan_clip(seed), 16_000) for seed in (5, 6))
    monitor.operators.label(first.id, "fault", "alice")
    monitor.operators.label(first.id, "normal", "bob", "it was the cleaning machine")
    monitor.operators.label(second.id, "fault", "alice")
    (normal,) = monitor.operators.labelled_clips("fan", "normal")
    assert normal["id"] == first.id and normal["score"] == pytest.approx(
        first.score, rel=1e-9, abs=1e-12
    )
    assert normal["flac"] == monitor.store.clip_audio(first.id)
    assert [a["action"] for a in monitor.operators.actions("fan")] == ["label"] * 3
    with pytest.raises(ActionRefused) as missing:
        monitor.operators.label(10**9, "normal", "alice")
    assert missing.value.status == 404
