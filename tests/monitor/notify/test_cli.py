"""``--notify`` on the command line: a bad file stops ``serve`` and ``watch`` with exit 2 and the
key named, before any model loads; a real ``watch`` subprocess notifies a webhook of the alarm
its files raise, and nothing secret (the HMAC secret, the URL's token) reaches its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stethoscope.cli import main

from ..conftest import SRC, fan_clip, wav_bytes
from .conftest import SECRET, Receiver, wait_for


@pytest.mark.parametrize("verb", ["serve", "watch"])
def test_a_bad_notify_file_stops_the_verb(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "notify.yaml"
    bad.write_text("notify:\n  mqtt: {host: 127.0.0.1, prot: 1883}\n")
    where = [str(tmp_path)] if verb == "watch" else ["--no-token"]
    argv = [
        verb,
        *where,
        "--models",
        str(tmp_path / "no-models-needed"),
        "--db",
        str(tmp_path / "e.db"),
        "--notify",
        str(bad),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--notify {bad}: notify.mqtt.prot: unknown key" in err and "Traceback" not in err
    assert not (tmp_path / "e.db").exists()  # refused before the store was opened


def test_watch_notifies_a_webhook_and_logs_no_secret(models_dir: Path, tmp_path: Path) -> None:
    receiver = Receiver(fail_first=1)
    folder = tmp_path / "in"
    (folder / "alarming").mkdir(parents=True)
    notify = tmp_path / "notify.yaml"
    notify.write_text(
        f"notify:\n  webhooks: [{{url: '{receiver.url}', secret_env: HOOK_SECRET, retry_max_s: 1, "
        f"name: ops}}]\n"
    )
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HOOK_SECRET=SECRET,
        PYTHONPATH=os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    log_path = tmp_path / "watch.log"
    command = [
        sys.executable,
        "-m",
        "stethoscope.cli",
        "watch",
        str(folder),
        "--models",
        str(models_dir),
        "--db",
        str(tmp_path / "events.db"),
        "--settle",
        "0",
        "--poll",
        "0.2",
        "--alarm",
        "1/1",
        "--notify",
        str(notify),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        (folder / "alarming" / "a.wav").write_bytes(wav_bytes(fan_clip(3)))
        body = wait_for(
            lambda: receiver.bodies() or proc.poll() is not None,
            timeout=120,
            what="the watcher's alarm webhook",
        )
        assert proc.poll() is None, log_path.read_text()
        assert (
            body[0]["kind"] == "alarm"
            and body[0]["state"] == "raised"
            and body[0]["machine"] == "alarming"
        )
        assert body[0]["source"] == "alarming/a.wav"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        receiver.close()
    said = log_path.read_text()
    assert (
        "webhook:ops (http://127.0.0.1:" in said
    )  # the first call's 500 was reported, by host and port only
    assert SECRET not in said and "url-secret" not in said and "/hook" not in said
