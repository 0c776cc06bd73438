"""Peak memory on hostile input (issue 23): decompression bombs against ``stethoscope score``
and a running ``stethoscope serve``, with the ``--max-seconds`` limit (default 600) in force.

A tiny dcase_ae is trained on toy-factory fan clips. Then:

* ``score``: each case runs ``stethoscope score`` in a fresh child process, which prints its
  own peak RSS at the end: a normal 10 s clip (the baseline: Python, torch and the model), a
  2-hour FLAC of constant DC (0.36 MB on disk, 460 MB as float32: refused from its header), and
  the same file decoded with the limit raised past it (``--max-seconds 7300``: what the limit
  saves; decoding only, through `data.audio.load_audio`).
* ``serve``: one service on loopback; after each upload its peak RSS is read: the warm-up,
  a 10 s clip, the 2-hour FLAC posted, a 50 MiB WAV of 1,638 s at 16 kHz (refused from its
  header), and a 49 MiB WAV of 540 s at 48 kHz (under every limit: decoded, resampled and
  scored: the most one accepted upload costs).

Peak RSS is Linux's ``VmHWM`` of the process (``/proc/PID/status``), not ``getrusage``'s
``ru_maxrss``: the latter carries the parent's peak over fork + exec, so a child would report
its parent's peak as its own.

    python benchmarks/bench_bombs.py
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_header, table, toy_set  # noqa: E402
from bench_serve import TOKEN, cli, free_port  # noqa: E402

CHILD = """
import json, sys
from stethoscope.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "peak_mib": peak / 1024}))
"""
DECODE = """
import json, sys
from stethoscope.data.audio import load_audio
from stethoscope.data.policy import AudioPolicy
with AudioPolicy(max_seconds=float(sys.argv[2]), say=lambda m: None).active():
    n = len(load_audio(sys.argv[1]))
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"code": 0, "samples": n, "peak_mib": peak / 1024}))
"""


def constant_flac(path: Path, seconds: int, rate: int = 16_000) -> Path:
    with sf.SoundFile(str(path), "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        block = np.full(60 * rate, 0.25, np.float32)
        for _ in range(seconds // 60):
            out.write(block)
    return path


def noise_wav(seconds: float, rate: int) -> bytes:
    buf = io.BytesIO()
    wave = np.random.default_rng(0).normal(0, 0.05, int(seconds * rate)).astype(np.float32)
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def child(code: str, *args: str) -> dict:
    """Run a Python snippet in a fresh process; its JSON line (code, peak) and the time taken."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines else {"code": done.returncode, "peak_mib": float("nan")}
    out["seconds"] = time.perf_counter() - start
    out["said"] = (done.stderr.strip().splitlines() or [""])[-1][:140]
    return out


def peak_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def main() -> None:
    import httpx

    work = Path(tempfile.mkdtemp(prefix="bench-bombs-"))
    data = toy_set(work / "toy", n_train=8, n_test=1, seconds=10.0)
    models = work / "model"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stethoscope.cli",
            "train",
            "--data",
            str(data),
            "--system",
            "dcase_ae",
            "--out",
            str(models),
            "--set",
            "epochs=2",
            "--quiet",
        ],
        check=True,
    )
    normal = work / "normal.wav"
    normal.write_bytes(noise_wav(10, 16_000))
    bomb = constant_flac(work / "bomb.flac", 2 * 3600)
    rows = []
    for label, snippet, args in [
        (
            "score: 10 s clip (baseline)",
            CHILD,
            ["score", "--model", str(models), str(normal), "--quiet"],
        ),
        (
            "score: 2 h constant FLAC, --max-seconds 600",
            CHILD,
            ["score", "--model", str(models), str(bomb), "--quiet"],
        ),
        ("decode: 2 h constant FLAC, --max-seconds 7300 (no limit)", DECODE, [str(bomb), "7300"]),
    ]:
        got = child(snippet, *args)
        size = (bomb if "FLAC" in label else normal).stat().st_size
        rows.append(
            [
                label,
                f"{size / 1e6:.2f} MB",
                f"exit {got['code']}",
                f"{got['peak_mib']:.0f}",
                f"{got['seconds']:.1f}",
                got["said"],
            ]
        )
        print(rows[-1], file=sys.stderr)

    port, db = free_port(), work / "events.db"
    log = open(work / "serve.log", "wb")
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
        "1",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit((work / "serve.log").read_text())
            time.sleep(0.2)
        rows.append(
            ["serve: started and warmed up", "-", "-", f"{peak_mib(proc.pid):.0f}", "-", ""]
        )
        uploads = [
            ("serve: POST 10 s clip", normal.read_bytes()),
            ("serve: POST 2 h constant FLAC", bomb.read_bytes()),
            ("serve: POST 50 MiB WAV, 1,638 s at 16 kHz", noise_wav(1638, 16_000)),
            ("serve: POST 49 MiB WAV, 540 s at 48 kHz (accepted)", noise_wav(540, 48_000)),
        ]
        with httpx.Client(
            base_url=url,
            timeout=600,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "audio/wav"},
        ) as session:
            for label, body in uploads:
                start = time.perf_counter()
                answer = session.post("/score", params={"machine": "fan"}, content=body)
                took = time.perf_counter() - start
                detail = "" if answer.status_code == 200 else answer.json()["detail"][:140]
                rows.append(
                    [
                        label,
                        f"{len(body) / 1e6:.2f} MB",
                        f"HTTP {answer.status_code}",
                        f"{peak_mib(proc.pid):.0f}",
                        f"{took:.1f}",
                        detail,
                    ]
                )
                print(rows[-1], file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    print(markdown_header("Peak RSS on decompression bombs (issue 23)"))
    print(table(["case", "input", "outcome", "peak RSS MiB", "s", "message"], rows))


if __name__ == "__main__":
    main()
