"""Alarm delivery latency of ``serve --notify`` under the 4-client load of bench_serve.py, and
what notifying costs the scoring throughput.

A tiny AE is trained on toy-factory fan clips (as in bench_serve.py); its threshold is set to the
median score of the 20 posted clips, so that about half the decisions are anomalous and the
default alarm rule (3 of the last 5) raises and clears alarms often. The same load (``--clients``
threads posting 10 s WAV clips for ``--duration`` seconds) runs against ``serve`` without and
with ``--notify``, alternately, ``--rounds`` times each, every run on a fresh SQLite store. With
notify, a real Mosquitto broker on loopback gets every score and every alarm (QoS 1), and a
local webhook receiver (http.server, checking each signature) gets every alarm. Latency is the
receiver's clock at arrival minus the event's ``time`` in the payload (set just before the
score's commit): commit, outbox, dispatcher and delivery. Clients, service, broker and
receivers share this machine's cores. Besides clips/s, the service's own CPU time per answered
clip (user + system, all its threads, from /proc) gives the cost of notifying in a way that other
jobs on the machine disturb less than throughput.

    python benchmarks/bench_notify.py                         # 4 clients, 2 x 25 s per mode
    python benchmarks/bench_notify.py --duration 5 --rounds 1 --train 8   # smoke run
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_header, table, toy_set
from bench_serve import cli, free_port, load, train, wav_clips

MOSQUITTO = "/usr/sbin/mosquitto"
SECRET = "bench-hook-secret-0123456789"


class Arrivals:
    """Arrival times of notification messages, by channel and kind: (latency s, delivery id)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[tuple[str, str], list[tuple[float, str]]] = {}

    def add(self, channel: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.got.setdefault((channel, body["kind"]), []).append(
                (time.time() - body["time"], body["delivery_id"])
            )

    def count(self, channel: str, kind: str) -> int:
        with self.lock:
            return len(self.got.get((channel, kind), []))


def start_receivers(arrivals: Arrivals, work: Path) -> tuple[Any, subprocess.Popen, Any, int, str]:
    """Mosquitto, a paho subscriber on ``bench/#`` and a signature-checking webhook receiver."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"user {getpass.getuser()}\n"
    )
    broker = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
    ready = threading.Event()
    sub.on_connect = lambda c, u, f, r, p: c.subscribe("bench/+/+", qos=1)
    sub.on_subscribe = lambda c, u, m, r, p: ready.set()
    sub.on_message = lambda c, u, msg: arrivals.add("mqtt", json.loads(msg.payload))
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    if not ready.wait(10):
        raise SystemExit("the benchmark's MQTT subscriber could not subscribe")

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            stamp = self.headers["X-Stethoscope-Timestamp"]
            mac = hmac.new(
                SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            ok = hmac.compare_digest(f"sha256={mac}", self.headers["X-Stethoscope-Signature"])
            if ok:
                arrivals.add("webhook", json.loads(body))
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    return sub, broker, hook, port, f"http://127.0.0.1:{hook.server_port}/hook"


def median_threshold(models: Path, clips: list[bytes]) -> float:
    """Set the fan model's threshold to the median score of ``clips``; returns it."""
    import io

    import soundfile as sf

    from stethoscope.engine import RunContext
    from stethoscope.systems.base import load_system

    folder = next(p.parent for p in models.rglob("config.json"))
    waves = [sf.read(io.BytesIO(c), dtype="float32")[0] for c in clips]
    scores = load_system(folder).score_waveforms(
        waves, 16_000, RunContext(progress=False, threads=1)
    )
    config = json.loads((folder / "config.json").read_text())
    config["threshold"] = float(np.median(scores))
    (folder / "config.json").write_text(json.dumps(config))
    return config["threshold"]


def run(
    models: Path,
    db: Path,
    extra: list[str],
    clips: list[bytes],
    args: argparse.Namespace,
    log: Path,
) -> dict:
    """Serve, warm up, load for ``--duration``, stop; clips/s and the client's latency."""
    import httpx

    port = free_port()
    with open(log, "wb") as handle:
        proc = cli(
            "serve",
            "--models",
            str(models),
            "--db",
            str(db),
            "--port",
            str(port),
            "--quiet",
            "--workers",
            str(args.workers),
            "--threads",
            "1",
            *extra,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start:\n{log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        load(f"http://127.0.0.1:{port}", clips[:2], 1, 1.0)
        cpu = cpu_seconds(proc.pid)
        result = load(f"http://127.0.0.1:{port}", clips, args.clients, args.duration)
        cpu = cpu_seconds(proc.pid) - cpu
        if extra:  # wait for the outbox to drain (at most 60 s)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                backlog = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["notify"]
                if all(c["pending"] == 0 for c in backlog.values()):
                    break
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    ms = np.array(result["latencies"]) * 1000
    return {
        "clips_per_s": len(ms) / result["wall"],
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": result["errors"],
        "cpu_ms_per_clip": 1000 * cpu / max(1, len(ms)),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[tuple[float, str]]) -> dict[str, float]:
    unique: dict[str, float] = {}
    for latency, delivery in values:
        unique.setdefault(delivery, latency)  # the first arrival of each message
    ms = np.array(sorted(unique.values())) * 1000
    return {
        "n": len(ms),
        "duplicates": len(values) - len(unique),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def alarm_changes(db: Path) -> int:
    """Alarm messages the store says were due: every raise and every clear."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) + count(cleared_at) FROM alarms").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument(
        "--duration", type=float, default=25.0, help="seconds of load per run (default 25)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs per mode, alternating (default 2)"
    )
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--train", type=int, default=20, help="training clips (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers (default 2)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    arrivals = Arrivals()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = toy_set(work / "toy", args.train, 20, seconds=args.clip_seconds, exact=False)
        clips = wav_clips(data, 20)
        models = work / "models"
        train(data, models, "dcase_ae", 2, False)
        threshold = median_threshold(models, clips)
        sub, broker, hook, port, url = start_receivers(arrivals, work)
        notify = work / "notify.yaml"
        notify.write_text(
            f"notify:\n  mqtt: {{host: 127.0.0.1, port: {port}, topic_prefix: bench}}\n"
            f"  webhooks: [{{url: '{url}', secret_env: HOOK_SECRET}}]\n"
        )
        os.environ["HOOK_SECRET"] = SECRET  # serve reads the webhook secret from its environment
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        due = 0
        try:
            for r in range(args.rounds):
                for mode in ("off", "on"):
                    print(
                        f"[{mode} {r + 1}/{args.rounds}] {args.clients} clients for "
                        f"{args.duration:g} s",
                        file=sys.stderr,
                    )
                    db = work / f"{mode}{r}.db"
                    extra = ["--notify", str(notify)] if mode == "on" else []
                    runs[mode].append(run(models, db, extra, clips, args, work / f"{mode}{r}.log"))
                    if mode == "on":
                        due += alarm_changes(db)
            time.sleep(2)
        finally:
            sub.loop_stop()
            broker.terminate()
            hook.shutdown()
    rows = {
        "threshold": threshold,
        "runs": runs,
        "alarm_messages_due": due,
        "load": [load_start, os.getloadavg()[0]],
        "latency": {f"{c} {k}": percentiles(v) for (c, k), v in sorted(arrivals.got.items())},
    }
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(report(rows, args))


def report(rows: dict, args: argparse.Namespace) -> str:
    speed = [
        [
            mode,
            len(runs),
            " / ".join(f"{r['clips_per_s']:.1f}" for r in runs),
            f"{np.mean([r['clips_per_s'] for r in runs]):.1f}",
            f"{np.mean([r['p50_ms'] for r in runs]):.1f}",
            f"{np.mean([r['p99_ms'] for r in runs]):.1f}",
            " / ".join(f"{r['cpu_ms_per_clip']:.1f}" for r in runs),
            sum(sum(r["errors"].values()) for r in runs),
        ]
        for mode, runs in rows["runs"].items()
    ]
    latency = [
        [
            name,
            v["n"],
            v["duplicates"],
            f"{v['p50_ms']:.1f}",
            f"{v['p99_ms']:.1f}",
            f"{v['max_ms']:.1f}",
        ]
        for name, v in rows["latency"].items()
    ]
    note = (
        f"{args.clients} clients posting {args.clip_seconds:g} s WAV clips for {args.duration:g} s "
        f"per run, {args.rounds} run(s) per mode alternating; serve --workers {args.workers} "
        f"--threads 1 --sync full; alarm rule 3/5, threshold at the median score. Alarm messages "
        f"due (raises + clears in the stores): {rows['alarm_messages_due']}. Load average "
        f"(1 min) at the start and end: {rows['load'][0]:.1f} and {rows['load'][1]:.1f}.\n"
    )
    return "\n".join(
        [
            markdown_header("Notifications under load"),
            note,
            table(
                [
                    "notify",
                    "runs",
                    "clips/s per run",
                    "clips/s",
                    "p50 ms",
                    "p99 ms",
                    "serve CPU ms per clip, per run",
                    "errors",
                ],
                speed,
            ),
            "",
            table(
                ["channel and kind", "messages", "duplicates", "p50 ms", "p99 ms", "max ms"],
                latency,
            ),
        ]
    )


if __name__ == "__main__":
    main()
