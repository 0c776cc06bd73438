"""What the monitor tests share: tiny trained models, clips as bytes, and a real
``stethoscope serve`` subprocess on a free loopback port."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from stethoscope.cli import main
from stethoscope.data import toy_clip

pytest.importorskip(
    "fastapi", reason="the serve extra is not installed (pip install 'stethoscope[serve]')"
)
pytest.importorskip(
    "sqlalchemy", reason="the serve extra is not installed (pip install 'stethoscope[serve]')"
)

SRC = Path(__file__).resolve().parents[2] / "src"
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUDIO = {**AUTH, "Content-Type": "audio/wav"}  # what a recorder posting a clip sends


def wav_bytes(wave: np.ndarray, sample_rate: int = 16_000, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format=fmt)
    return buf.getvalue()


def fan_clip(seed: int, seconds: float = 1.0) -> np.ndarray:
    return toy_clip("fan", seed=seed, seconds=seconds)[0]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dcase_ae trained for 2 epochs on 6 toy clips per type: MODELS/fan and MODELS/gearbox,
    plus MODELS/alarming, a copy of fan whose threshold 0 makes every decision anomalous."""
    from stethoscope.data.toy_factory import make_toy_dataset

    root = make_toy_dataset(
        tmp_path_factory.mktemp("serve-toy"), n_train=6, n_test=2, seconds=2.0, seed=0
    )
    out = tmp_path_factory.mktemp("serve-models")
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--system",
                "dcase_ae",
                "--out",
                str(out),
                "--set",
                "epochs=2",
                "batch_size=64",
                "threshold_fit=in_sample",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    shutil.copytree(out / "fan", out / "alarming")
    config = json.loads((out / "alarming" / "config.json").read_text())
    config["threshold"] = 0.0
    (out / "alarming" / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture
def monitor(models_dir: Path, tmp_path: Path):
    """The scoring core on the tiny models and a fresh SQLite store in ``tmp_path``."""
    from stethoscope.engine import RunContext
    from stethoscope.monitor.service import Monitor

    m = Monitor.open(models_dir, str(tmp_path / "events.db"), RunContext(progress=False, threads=1))
    yield m
    m.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``stethoscope serve`` in a subprocess; `start` returns once ``/health`` answers."""

    def __init__(
        self,
        models: Path,
        db: Path,
        log: Path,
        extra: Sequence[str] = (),
        quiet: bool = True,
        token: str | None = TOKEN,
    ) -> None:
        self.models, self.db, self.log, self.extra, self.quiet, self.token = (
            models,
            db,
            log,
            list(extra),
            quiet,
            token,
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Server:
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        env.pop("STETHOSCOPE_TOKEN", None)
        if self.token is not None:
            env["STETHOSCOPE_TOKEN"] = self.token
        with open(self.log, "ab") as log:
            command = [
                sys.executable,
                "-m",
                "stethoscope.cli",
                "serve",
                "--models",
                str(self.models),
                "--db",
                str(self.db),
                "--port",
                str(self.port),
                *(["--quiet"] if self.quiet else []),
                *self.extra,
            ]
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"serve did not answer /health in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One ``stethoscope serve`` per test module, on its own SQLite file."""
    tmp = tmp_path_factory.mktemp("serve")
    srv = Server(models_dir, tmp / "events.db", tmp / "serve.log").start()
    yield srv
    srv.stop()


def poison_wav(seed: int = 0) -> bytes:
    """A float WAV whose samples are about 1e25: it decodes (with a full-scale warning), but
    its log-mel, and so its score, is not finite."""
    buf = io.BytesIO()
    sf.write(
        buf,
        (fan_clip(seed) * np.float32(1e25)).astype(np.float32),
        16_000,
        format="WAV",
        subtype="FLOAT",
    )
    return buf.getvalue()


def constant_flac(seconds: float, sample_rate: int = 16_000) -> bytes:
    """A FLAC of constant DC: tiny on disk (about 1,300x smaller than its decoded float32),
    written a minute at a time so that making it needs little memory."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sample_rate, 1, format="FLAC", subtype="PCM_16") as out:
        left = int(seconds * sample_rate)
        block = np.full(min(left, 60 * sample_rate), 0.25, np.float32)
        while left > 0:
            out.write(block[:left])
            left -= len(block)
    return buf.getvalue()
