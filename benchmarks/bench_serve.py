"""Load test of ``stethoscope serve`` on loopback: N concurrent clients post clips for a fixed
time; latency (p50, p99), clips/s, errors and lost events, for an AE and a TLDiffGAN model.

Per system a tiny model is trained on toy-factory clips (``stethoscope train``: dcase_ae, and
tldiffgan with the ``tldiffgan_cpu`` config, its encoder randomly initialised when the real
EfficientAT weights are absent: same cost), then served by a ``stethoscope serve`` subprocess
with a fresh SQLite event store (WAL, ``--sync`` full by default: every answer waits for an
fsync). ``--clients`` threads, each with its own keep-alive connection, post WAV clips for
``--duration`` seconds. Latency is the client's (request sent to answer read); "lost" counts
event ids answered 200 that are not in the store afterwards (read from the SQLite file itself).
Clients and server share this machine's cores.

    python benchmarks/bench_serve.py                       # 4 clients x 60 s, 10 s clips
    python benchmarks/bench_serve.py --duration 5 --clients 2 --train 8 --clip-seconds 2   # smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_header, table, toy_set, use_shared_weights  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
SYSTEMS = {"dcase_ae": [], "tldiffgan": ["--config", "tldiffgan_cpu"]}


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, STETHOSCOPE_TOKEN=TOKEN)
    return subprocess.Popen([sys.executable, "-m", "stethoscope.cli", *args], env=env, **kwargs)


def train(data: Path, out: Path, system: str, epochs: int, real_weights: bool) -> str:
    """Train ``system`` on the toy set's fan clips into ``out``; returns the config's label."""
    extra = list(SYSTEMS[system])
    settings = [f"ldgan.epochs={epochs}" if system == "tldiffgan" else f"epochs={epochs}"]
    label = system if not extra else extra[-1]
    if system == "tldiffgan" and not real_weights:
        settings.append("encoder=random")
        label += " (mn04 random weights: real ones absent)"
    proc = cli(
        "train",
        "--data",
        str(data),
        "--system",
        system,
        "--out",
        str(out),
        *extra,
        "--set",
        *settings,
        "--quiet",
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"training {system} failed:\n{err}")
    return label


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(
    models: Path, db: Path, port: int, args: argparse.Namespace, log: Path, timeout: float = 300.0
) -> subprocess.Popen:
    """Start the service and wait (at most ``timeout`` seconds) until /health answers."""
    import httpx

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
            str(args.threads),
            "--sync",
            args.sync,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"serve did not start:\n{log.read_text()}")


def load(url: str, clips: list[bytes], clients: int, duration: float) -> dict:
    """``clients`` threads post clips round robin for ``duration`` seconds."""
    import httpx

    latencies: list[float] = []
    answered: list[int] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def client(k: int) -> None:
        with httpx.Client(
            base_url=url,
            timeout=60,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "audio/wav"},
        ) as session:
            i = k
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    answer = session.post(
                        "/score",
                        params={"machine": "fan", "source": f"client{k}"},
                        content=clips[i % len(clips)],
                    )
                    outcome = answer.status_code
                except httpx.HTTPError as err:
                    outcome = type(err).__name__
                took = time.perf_counter() - start
                with lock:
                    if outcome == 200:
                        latencies.append(took)
                        answered.append(answer.json()["id"])
                    else:
                        errors[str(outcome)] = errors.get(str(outcome), 0) + 1
                i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "latencies": latencies,
        "answered": answered,
        "errors": errors,
        "wall": time.perf_counter() - started,
    }


def one_system(
    system: str,
    data: Path,
    work: Path,
    clips: list[bytes],
    args: argparse.Namespace,
    real_weights: bool,
) -> dict:
    models, db = work / f"model-{system}", work / f"{system}.db"
    print(f"[{system}] training", file=sys.stderr)
    label = train(data, models, system, args.epochs, real_weights)
    port = free_port()
    proc = serve(models, db, port, args, work / f"{system}.log")
    try:
        load(f"http://127.0.0.1:{port}", clips[:2], 1, 1.0)  # warm-up (not counted; its events are)
        print(f"[{system}] {args.clients} clients for {args.duration:g} s", file=sys.stderr)
        run = load(f"http://127.0.0.1:{port}", clips, args.clients, args.duration)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM scores")}
    ms = np.array(run["latencies"]) * 1000
    return {
        "system": system,
        "config": label,
        "requests": len(ms) + sum(run["errors"].values()),
        "answered": len(ms),
        "clips_per_s": len(ms) / run["wall"],
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "errors": run["errors"],
        "lost": len(set(run["answered"]) - stored),
    }


def wav_clips(data: Path, n: int) -> list[bytes]:
    """The toy set's fan test clips as 16-bit WAV bytes (what a recorder posts)."""
    import soundfile as sf

    out = []
    for path in sorted((data / "fan" / "test").glob("*.wav"))[:n]:
        wave, rate = sf.read(path, dtype="float32")
        buf = io.BytesIO()
        sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of load per system (default 60)"
    )
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--train", type=int, default=20, help="training clips (default 20)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="serve --workers (default: cores)"
    )
    parser.add_argument("--threads", type=int, default=1, help="serve --threads (default 1)")
    parser.add_argument(
        "--sync", default="full", choices=("full", "normal"), help="serve --sync (default full)"
    )
    parser.add_argument(
        "--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS), help="default: both"
    )
    parser.add_argument(
        "--data", type=Path, help="toy set folder, written once and reused (default: temporary)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    real_weights = use_shared_weights()
    with tempfile.TemporaryDirectory() as tmp:
        data = toy_set(
            args.data or Path(tmp) / "toy", args.train, 20, seconds=args.clip_seconds, exact=False
        )
        clips = wav_clips(data, 20)
        rows = [one_system(s, data, Path(tmp), clips, args, real_weights) for s in args.systems]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(report(rows, args))


def report(rows: list[dict], args: argparse.Namespace) -> str:
    body = [
        [
            r["system"],
            r["config"],
            r["answered"],
            f"{r['clips_per_s']:.1f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0",
            r["lost"],
        ]
        for r in rows
    ]
    note = (
        f"{args.clients} concurrent clients on loopback for {args.duration:g} s per system, posting "
        f"{args.clip_seconds:g} s 16-bit WAV clips; serve --workers {args.workers} --threads {args.threads} "
        f"--sync {args.sync}, SQLite event store; models trained on {args.train} toy clips ({args.epochs} "
        f"epochs). Latency as the client sees it; lost = answered 200 but not in the store.\n"
    )
    return "\n".join(
        [
            markdown_header("Monitoring service under load"),
            note,
            table(
                ["system", "config", "answered", "clips/s", "p50 ms", "p99 ms", "errors", "lost"],
                body,
            ),
        ]
    )


if __name__ == "__main__":
    main()
