"""The pieces of `fault_soak.py`: the bytes of every kind of file, a restartable ``serve`` or
``watch`` process that counts its kills, crashes and peak memory, and the soak's model."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

TOKEN = "soak-token-0123456789abcdef"
SCORED_KINDS = ("good", "growing")  # the kinds a watcher must score; every other is skipped


def _wav(wave: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _flac(seconds: int, channels: int, value: float, rate: int = 16_000) -> bytes:
    """A FLAC of a constant value, written a minute at a time (little memory to make)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        block = np.full((60 * rate, channels), value, np.float32)
        for _ in range(seconds // 60):
            out.write(block)
    return buf.getvalue()


@dataclass
class Payloads:
    """The bytes of every kind of file, made once."""

    good: list[bytes]
    kinds: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def make(cls) -> Payloads:
        from stethoscope.data import toy_clip

        good = [_wav(toy_clip("fan", seed=100 + i, seconds=2.0)[0]) for i in range(8)]
        poison = _wav(toy_clip("fan", seed=1, seconds=2.0)[0] * np.float32(1e25), subtype="FLOAT")
        rng = np.random.default_rng(0)
        return cls(
            good,
            {
                "poison": poison,
                "truncated": good[0][: len(good[0]) // 2],
                "garbage": rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes(),
                "bomb_flac": _flac(2 * 3600, 1, 0.25),  # 2 h of constant DC
                "bomb_8ch": _flac(30 * 60, 8, 0.0),
            },
        )  # 30 min x 8 channels of silence

    def of(self, kind: str, rng: random.Random) -> bytes:
        return rng.choice(self.good) if kind in SCORED_KINDS else self.kinds[kind]


def vm_hwm_mib(pid: int) -> float:
    """Peak resident memory of a living process (Linux ``VmHWM``), 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return 0.0


class Proc:
    """One of the two long-running commands, restartable; tracks kills, crashes and peak RSS."""

    def __init__(self, name: str, argv: list[str], log: Path, ready: Any) -> None:
        self.name, self.argv, self.log, self.ready = name, argv, log, ready
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.kills = self.crashes = self.starts = 0
        self.peak = 0.0
        self.crash_tails: list[str] = []
        self.start_s: list[float] = []  # seconds from each start until ready (serve: /health)

    def start(self) -> None:
        began = time.monotonic()
        env = dict(os.environ, STETHOSCOPE_TOKEN=TOKEN, OMP_NUM_THREADS="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stethoscope.cli", *self.argv],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.ready(self.proc)
        self.start_s.append(time.monotonic() - began)

    def sample(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.peak = max(self.peak, vm_hwm_mib(self.proc.pid))

    def kill(self) -> None:
        """SIGKILL (after a last memory sample) and restart."""
        with self.lock:
            self.sample()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
                self.kills += 1
            self.start()

    def check(self) -> None:
        """Count an exit we did not cause as a crash, keep its log's end, and restart."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is not None:
                self.crashes += 1
                tail = self.log.read_text()[-2000:]
                self.crash_tails.append(f"exit {self.proc.returncode}: {tail}")
                self.start()

    def stop(self) -> None:
        with self.lock:
            self.sample()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None


def wait_http(port: int, timeout: float = 300.0) -> Any:
    """A ``ready`` callback: block until the service answers /health (or its process died)."""
    import httpx

    def ready(proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    return ready


def train_models(work: Path) -> Path:
    """mel_stats (seconds to fit) on a small toy fan set: ``<work>/models/fan``."""
    from stethoscope.cli import main
    from stethoscope.data.toy_factory import make_toy_dataset

    data = make_toy_dataset(
        work / "toy", machines=("fan",), n_train=8, n_test=2, seconds=2.0, seed=0
    )
    out = work / "models"
    if (
        main(
            [
                "train",
                "--data",
                str(data),
                "--system",
                "mel_stats",
                "--out",
                str(out),
                "--set",
                "threshold_fit=in_sample",
                "--threads",
                "1",
                "--quiet",
                "--no-cache",
            ]
        )
        != 0
    ):
        raise SystemExit("training the soak's model failed")
    return out
