"""The HTTP API fuzzed from its own OpenAPI document by schemathesis (every check, the stateful
phase included) against a real ``stethoscope serve`` on loopback with protected reads: every
status code and body it answers is declared, no case gives a 5xx, nothing hangs. Bounded (20
examples per operation, about 10 s). Skipped when schemathesis is not installed (the dev extra).

One choice is written down rather than hidden: a request body that is valid per the schema can
still be refused with 422 by ``POST /score`` (bytes that are no decodable audio) and ``PUT
/machines/{machine}/alarm`` (k > n): JSON Schema cannot say "a decodable clip" or "k <= n", so
those two operations list 422 among the answers to schema-valid data. Likewise the operator's
actions: acknowledging an alarm that does not exist (404) or twice (409), a mute whose end is
past or before its start (422), cancelling a mute that is over (409).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import AUTH, TOKEN, Server, fan_clip, wav_bytes

pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed (pip install 'stethoscope[dev]')"
)


def _st() -> str:
    found = Path(sys.executable).with_name("st")
    return str(found) if found.exists() else (shutil.which("st") or "st")


def test_schemathesis_finds_no_failure_and_no_5xx(models_dir: Path, tmp_path: Path) -> None:
    srv = Server(
        models_dir, tmp_path / "events.db", tmp_path / "serve.log", ["--protect-reads"]
    ).start()
    try:
        event = httpx.post(
            f"{srv.url}/score",
            params={"machine": "fan"},
            content=wav_bytes(fan_clip(1)),
            headers={**AUTH, "Content-Type": "audio/wav"},
            timeout=30,
        ).json()
        config = tmp_path / "schemathesis.toml"
        # the operator actions' paths, escaped for a TOML string
        acts = r"alarms/\\{alarm_id\\}/ack|machines/\\{machine\\}/mutes|mutes/\\{mute_id\\}/cancel"
        config.write_text(f"""
[[operations]]
include-path-regex = "^/(score|machines/\\\\{{machine\\\\}}/alarm)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-path-regex = "^/({acts})$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path-regex = "^/events/\\\\{{event_id\\\\}}/"
parameters = {{ event_id = {event["id"]} }}
""")
        run = subprocess.run(
            [
                _st(),
                "--config-file",
                str(config),
                "run",
                f"{srv.url}/openapi.json",
                "--checks",
                "all",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "--max-examples",
                "20",
                "--seed",
                "23",
                "--request-timeout",
                "30",
                "--no-color",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    finally:
        srv.stop()
    said = run.stdout + run.stderr
    assert run.returncode == 0, said[-6000:]
    summary = said[said.rindex("Test cases:") :]
    generated, passed = summary.split()[2], summary.split()[4]
    assert int(generated) >= 300 and generated == passed, summary
    assert "Stateful" in said and "Coverage" in said and "Fuzzing" in said
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
