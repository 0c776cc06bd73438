"""A local HTTP server with Range support and fault injection, and small archives with the
real names and folder structure of DCASE 2025 Task 2 (and a registry pointing at them)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf
import yaml

SR = 16_000
GT_PATH = f"nttcslab/dcase2023_task2_baseline_ae/{'0' * 40}/datasets/eval_data_list_2025.csv"


@dataclass
class Faults:
    """Per file name: how many more requests get a 500, or a body cut after ``cut_at`` bytes."""

    fail: dict[str, int] = field(default_factory=dict)
    truncate: dict[str, int] = field(default_factory=dict)
    cut_at: int = 1000
    requests: list[tuple[str, str, str | None]] = field(
        default_factory=list
    )  # (method, file name, Range)

    def gets(self, name: str) -> list[str | None]:
        return [rng for method, file, rng in self.requests if method == "GET" and file == name]


class Server:
    """Serves ``files`` ({path: bytes}) on 127.0.0.1 at a free port; query strings are ignored."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults = Faults()
        handler = type("Handler", (_Handler,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: Server

    def log_message(self, format: str, *args: object) -> None:
        del format, args

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = urlsplit(self.path).path.lstrip("/")
        name = path.rsplit("/", 1)[-1]
        faults, rng = self.owner.faults, self.headers.get("Range")
        faults.requests.append((self.command, name, rng))
        data = self.owner.files.get(path)
        if data is None:
            self.send_error(404)
            return
        if body and faults.fail.get(name):
            faults.fail[name] -= 1
            self.send_error(500, "injected failure")
            return
        start = 0
        match = re.match(r"^bytes=(\d+)-$", rng or "")
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        payload = data[start:]
        if faults.truncate.get(name):
            faults.truncate[name] -= 1
            payload = payload[
                : faults.cut_at
            ]  # HTTP/1.0: the connection closes short of Content-Length
        self.wfile.write(payload)


def wav_bytes(
    seconds: float = 0.5, channels: int = 1, seed: int = 0, silent: bool = False
) -> bytes:
    n = int(seconds * SR)
    wave = (
        np.zeros((n, channels), np.float32)
        if silent
        else 0.1 * np.random.default_rng(seed).standard_normal((n, channels)).astype(np.float32)
    )
    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def dcase2025_archives() -> dict[str, bytes]:
    """{zenodo path: zip bytes} of a tiny DCASE 2025 Task 2 in the real archive structure."""
    dev = {
        f"fan/train/section_00_{d}_train_normal_{i:04d}_mode_{i}.wav": wav_bytes(seed=i)
        for i, d in enumerate(["source", "source", "target"])
    }
    dev |= {
        f"fan/test/section_00_source_test_{s}_{i:04d}_mode_1.wav": wav_bytes(seed=10 + i)
        for i, s in enumerate(["normal", "anomaly"])
    }
    dev["fan/attributes_00.csv"] = (
        b"file_name,d1p,d1v\nfan/train/section_00_source_train_normal_0000_mode_0.wav,mode,0\n"
    )
    train = {
        f"eval_data/ToyPet/train/section_00_source_train_normal_{i:04d}_noAttribute.wav": wav_bytes(
            seed=20 + i
        )
        for i in range(2)
    }
    train |= {
        "eval_data/ToyPet/supplemental/section_00_machine_0000_.wav": wav_bytes(seed=30),
        "eval_data/ToyPet/supplemental/section_00_noise_0000_.wav": wav_bytes(seed=31),
    }
    test = {f"ToyPet/test/section_00_{i:04d}.wav": wav_bytes(seed=40 + i) for i in range(2)}
    return {
        "records/15097779/files/dev_fan.zip": zip_bytes(dev),
        "records/15392814/files/eval_data_ToyPet_train.zip": zip_bytes(train),
        "records/15519362/files/eval_data_ToyPet_test.zip": zip_bytes(test),
    }


EVALUATOR_PATH = (
    f"nttcslab/dcase2026_task2_evaluator/{'a' * 40}/ground_truth_attributes/"
    "ground_truth_{machine}_section_00_test.csv"
)
EVALUATOR_TABLE = (
    b"section_00_0000.wav,section_00_source_test_anomaly_0000_noAttribute\n"
    b"section_00_0001.wav,section_00_target_test_normal_0001_noAttribute\n"
)
GROUND_TRUTH = (
    b"ToyPet\r\nsection_00_0000.wav,section_00_source_test_anomaly_0000_noAttribute.wav\r\n"
    b"section_00_0001.wav,section_00_target_test_normal_0001_noAttribute.wav\r\n"
)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def record_json(
    files: dict[str, bytes], record: int, lie: bool = False, invenio: bool = False
) -> bytes:
    """A Zenodo record's metadata listing its files of ``files`` with their md5 and size, as
    ``/api/records/N`` answers (``invenio``: as the InvenioRDM ``/files`` listing); ``lie``:
    every checksum is wrong."""
    prefix = f"records/{record}/files/"
    entries = [
        {
            "key": path[len(prefix) :],
            "size": len(data),
            "checksum": f"md5:{md5(data + (b'x' if lie else b''))}",
            "links": {"self": f"https://zenodo.org/api/{path}/content"},
        }
        for path, data in files.items()
        if path.startswith(prefix)
    ]
    document = (
        {"entries": entries}
        if invenio
        else {"id": record, "metadata": {"title": "test"}, "files": entries}
    )
    return json.dumps(document).encode()


def write_registry(
    path: Path,
    files: dict[str, bytes],
    unverified: str | None = None,
    wrong_md5: str | None = None,
    evaluator_truth: bool = False,
) -> Path:
    """A registry with the real names of DCASE 2025 (dev fan, eval ToyPet) whose checksums are
    those of ``files``; ``unverified``: that archive has none; ``wrong_md5``: that one lies;
    ``evaluator_truth``: the evaluation labels come as per-machine evaluator tables (as DCASE
    2026's) with no checksum, pinned to a commit, instead of the baseline's list."""

    def entry(machine: str, record: int, name: str) -> dict:
        data = files[f"records/{record}/files/{name}"]
        out = {
            "machine": machine,
            "file": name,
            "size": len(data),
            "md5": md5(data),
            "sources": ["test-fixture"],
        }
        if name == wrong_md5:
            out["md5"] = md5(data + b"x")
        if name == unverified:
            out = {"machine": machine, "file": name, "reason": "test: no checksum published"}
        return out

    truth = files[GT_PATH]
    registry = {
        "version": 1,
        "sources": {"test-fixture": "md5 of the test archives, computed by the test"},
        "datasets": {
            "dcase2025": {
                "title": "test DCASE 2025",
                "layout": "dcase2022",
                "licence": "test",
                "splits": {
                    "dev": {
                        "record": 15097779,
                        "into": "dev",
                        "archives": [entry("fan", 15097779, "dev_fan.zip")],
                    },
                    "add": {
                        "record": 15392814,
                        "into": "eval",
                        "archives": [entry("ToyPet", 15392814, "eval_data_ToyPet_train.zip")],
                    },
                    "eval": {
                        "record": 15519362,
                        "into": "eval",
                        "archives": [entry("ToyPet", 15519362, "eval_data_ToyPet_test.zip")],
                        "ground_truth": {
                            "file": "eval_data_list_2025.csv",
                            "host": "github",
                            "path": GT_PATH,
                            "size": len(truth),
                            "sha256": hashlib.sha256(truth).hexdigest(),
                            "sources": ["test-fixture"],
                        },
                    },
                },
            }
        },
    }
    if evaluator_truth:
        registry["datasets"]["dcase2025"]["splits"]["eval"]["ground_truth"] = {
            "per_machine": True,
            "format": "evaluator",
            "file": "ground_truth_{machine}_section_00_test.csv",
            "host": "github",
            "path": EVALUATOR_PATH,
            "reason": "test: pinned by commit",
        }
    path.write_text(yaml.safe_dump(registry, sort_keys=False))
    return path
