"""Fault soak (issue 23): ``stethoscope serve`` and ``stethoscope watch`` on one SQLite database
while files arrive and clients post clips, both killed with ``-9`` at random and restarted.

Files dropped into the watched folder (``<dir>/fan/``), at random: good clips; growing clips
(a good clip written in pieces over 2-4 s, as a slow recorder does); poison (a float WAV
whose samples are about 1e25: its score is NaN); truncated WAVs; garbage bytes; decompression
bombs (a 2-hour FLAC of constant DC, and 30 minutes of 8-channel silence as FLAC); symbolic
links to a file outside the folder. Clients post good clips and the same poison and bombs to
``POST /score``. A chaos thread kills ``serve``, ``watch`` or both with SIGKILL at random
intervals and restarts them at once; any other exit of either is counted as a crash.

At the end the watcher is left to finish every file, and the database is read directly:

* *lost*: events acknowledged (``POST /score`` answered 200 with an id) missing from the store,
  and files dropped that were never marked (scored or skipped): both must be 0;
* every good and growing file scored, every other kind skipped with its reason, no poison
  stored as a score, no symlinked (outside) audio stored;
* *crashes*: exits of ``serve`` or ``watch`` that were not our kills: must be 0;
* peak RSS (Linux ``VmHWM``) of every ``serve`` and ``watch`` process, sampled until it died.

    nice -n 10 python benchmarks/fault_soak.py --minutes 10 [--json soak.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _soak import SCORED_KINDS, TOKEN, Payloads, Proc, train_models, wait_http
from bench_serve import free_port

DROP_KINDS = {
    "good": 4,
    "growing": 1,
    "poison": 1,
    "truncated": 1,
    "garbage": 1,
    "bomb_flac": 1,
    "bomb_8ch": 1,
    "link_out": 1,
}
POST_KINDS = {"good": 6, "poison": 1, "truncated": 1, "garbage": 1, "bomb_flac": 1, "bomb_8ch": 1}


class Soak:
    """The producers, the clients and the chaos, and what they saw."""

    def __init__(
        self,
        work: Path,
        models: Path,
        seconds: float,
        kill_every: float,
        seed: int = 0,
        clients: int = 2,
        drop_every: float = 0.5,
    ) -> None:
        import httpx  # noqa: F401 - fail early when the serve extra is missing

        self.work, self.seconds, self.kill_every = work, seconds, kill_every
        self.clients, self.drop_every = clients, drop_every
        self.rng = random.Random(seed)
        self.folder, self.db = work / "in", work / "events.db"
        (self.folder / "fan").mkdir(parents=True, exist_ok=True)
        self.secret = work / "outside" / "secret.wav"
        self.payloads = Payloads.make()
        self.secret.parent.mkdir(exist_ok=True)
        self.secret.write_bytes(self.payloads.good[0])
        self.port = free_port()
        store = ["--models", str(models), "--db", str(self.db), "--threads", "1", "--quiet"]
        self.serve = Proc(
            "serve",
            ["serve", *store, "--port", str(self.port), "--workers", "1"],
            work / "serve.log",
            wait_http(self.port),
        )
        self.watch = Proc(
            "watch",
            ["watch", str(self.folder), *store, "--settle", "2"],
            work / "watch.log",
            lambda proc: None,
        )
        self.dropped: dict[str, str] = {}  # relative path -> kind
        self.posted: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()  # "kind status"
        self.acked: list[int] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.growers: list[threading.Thread] = []

    def _drop(self, n: int) -> None:
        kind = self.rng.choices(list(DROP_KINDS), list(DROP_KINDS.values()))[0]
        name = f"{kind}_{n:05d}{'.flac' if kind.startswith('bomb') else '.wav'}"
        path = self.folder / "fan" / name
        with self.lock:
            self.dropped[f"fan/{name}"] = kind
        if kind == "link_out":
            os.symlink(self.secret, path)
        elif kind == "growing":
            data = self.payloads.of(kind, self.rng)
            grower = threading.Thread(target=self._grow, args=(path, data, self.rng.random()))
            grower.start()
            self.growers.append(grower)
        else:
            path.write_bytes(self.payloads.of(kind, self.rng))

    @staticmethod
    def _grow(path: Path, data: bytes, jitter: float) -> None:
        """Written in 8 pieces, 0.2-0.5 s apart (under the watcher's 2 s settle time)."""
        cuts = np.linspace(0, len(data), 9).astype(int)
        with open(path, "wb") as out:
            for a, b in itertools.pairwise(cuts):
                out.write(data[a:b])
                out.flush()
                time.sleep(0.2 + 0.3 * jitter)

    def _dropper(self) -> None:
        n = 0
        while not self.stop.wait(self.drop_every):
            self._drop(n)
            n += 1

    def _client(self, k: int) -> None:
        import httpx

        rng = random.Random(1000 + k)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "audio/wav"}
        url = f"http://127.0.0.1:{self.port}"
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            i = 0
            while not self.stop.wait(0.2):
                kind = rng.choices(list(POST_KINDS), list(POST_KINDS.values()))[0]
                i += 1
                try:
                    params = {"machine": "fan", "source": f"post-{k}-{i}-{kind}"}
                    body = self.payloads.of(kind, rng)
                    answer = client.post("/score", params=params, content=body)
                    status = str(answer.status_code)
                except httpx.TransportError:
                    status = "no answer (service down)"
                    self.stop.wait(1.0)  # a recorder retries a second later, not in a tight loop
                with self.lock:
                    self.posted[kind] += 1
                    self.answers[f"{kind} {status}"] += 1
                    if status == "200":
                        self.acked.append(int(answer.json()["id"]))

    def _chaos(self) -> None:
        """Kill serve, watch or both at random intervals (uniform up to twice ``kill_every``)."""
        while not self.stop.wait(self.rng.uniform(0.2, 2 * self.kill_every)):
            for proc in self.rng.choice([[self.serve], [self.watch], [self.serve, self.watch]]):
                proc.kill()

    def _monitor(self) -> None:
        while not self.stop.wait(0.2):
            for proc in (self.serve, self.watch):
                proc.sample()
                proc.check()

    def run(self) -> dict[str, Any]:
        """Soak for ``seconds``, let the watcher finish every file, and tally."""
        self.serve.start()
        self.watch.start()
        threads = [
            threading.Thread(target=self._dropper),
            threading.Thread(target=self._chaos),
            threading.Thread(target=self._monitor),
            *[threading.Thread(target=self._client, args=(k,)) for k in range(self.clients)],
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for thread in [*threads, *self.growers]:
            thread.join()
        soak_s = time.monotonic() - started
        drained = self._drain()
        self.serve.stop()
        self.watch.stop()
        return {**self._tally(), "soak_s": round(soak_s, 1), "drained": drained}

    def _drain(self, timeout: float = 300.0) -> bool:
        """Wait until every dropped file is marked (the watcher is alive: nothing kills it now)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.watch.check()
            self.watch.sample()
            if len(self._marks()) >= len(self.dropped):
                return True
            time.sleep(0.5)
        return False

    def _query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(sql).fetchall()

    def _marks(self) -> dict[str, tuple[int | None, str | None]]:
        try:
            rows = self._query("SELECT path, score_id, skip_reason FROM watched_files")
            return {p: (s, r) for p, s, r in rows}
        except sqlite3.OperationalError:  # not created yet
            return {}

    def _tally(self) -> dict[str, Any]:
        scores = self._query("SELECT id, source, score FROM scores")
        ids = {i for i, _, _ in scores}
        marks = self._marks()
        files: dict[str, Counter[str]] = {kind: Counter() for kind in DROP_KINDS}
        reasons: dict[str, Counter[str]] = {kind: Counter() for kind in DROP_KINDS}
        wrong: list[str] = []
        for path, kind in sorted(self.dropped.items()):
            score_id, reason = marks.get(path, (None, None))
            outcome = (
                "unmarked" if path not in marks else "scored" if score_id is not None else "skipped"
            )
            files[kind][outcome] += 1
            if outcome == "skipped":
                reasons[kind][_short(reason or "")] += 1
            if outcome != "unmarked" and (outcome == "scored") != (kind in SCORED_KINDS):
                wrong.append(f"{path}: {outcome} ({reason})")
        poison = [k for k in DROP_KINDS if k not in SCORED_KINDS]
        bad_sources = [s for _, s, _ in scores if any(k in s for k in poison)]
        return {
            "posted": dict(self.posted),
            "answers": dict(sorted(self.answers.items())),
            "acknowledged": len(self.acked),
            "acknowledged_lost": len(set(self.acked) - ids),
            "files": {k: dict(v) for k, v in files.items()},
            "dropped": len(self.dropped),
            "files_unmarked": sum(v["unmarked"] for v in files.values()),
            "wrong_outcomes": wrong,
            "skip_reasons": {k: dict(v) for k, v in reasons.items() if v},
            "dangling_marks": sum(1 for s, _ in marks.values() if s is not None and s not in ids),
            "poison_stored": len(bad_sources),
            "scores_stored": len(scores),
            "non_finite_stored": sum(1 for _, _, s in scores if s is None or not np.isfinite(s)),
            "kills": {"serve": self.serve.kills, "watch": self.watch.kills},
            "crashes": {"serve": self.serve.crashes, "watch": self.watch.crashes},
            "crash_tails": self.serve.crash_tails + self.watch.crash_tails,
            "peak_rss_mib": {p.name: round(p.peak, 1) for p in (self.serve, self.watch)},
            "serve_ready_s": [round(x, 1) for x in self.serve.start_s],
        }


def _short(reason: str) -> str:
    """A skip reason without the numbers that differ per file, for counting."""
    words = reason.split()
    return " ".join("#" if any(c.isdigit() for c in w) else w for w in words)[:110]


def report(result: dict[str, Any], minutes: float) -> str:
    """The reliability table (markdown) of one soak."""
    files = result["files"]
    posted = result["posted"]
    kills, crashes, peak = result["kills"], result["crashes"], result["peak_rss_mib"]
    rows = [
        [
            "soak",
            f"{result['soak_s']:.0f} s (asked {minutes:g} min), then the watcher "
            "finished every file",
        ],
        ["kills (`kill -9`)", f"serve {kills['serve']}, watch {kills['watch']}"],
        [
            "serve: start to /health answering",
            "median {:.0f} s, max {:.0f} s".format(
                float(np.median(result["serve_ready_s"])), max(result["serve_ready_s"])
            ),
        ],
        [
            "files dropped",
            f"{result['dropped']}: "
            + ", ".join(f"{k} {sum(v.values())}" for k, v in files.items()),
        ],
        [
            "files scored / skipped",
            ", ".join(f"{k} {v.get('scored', 0)}/{v.get('skipped', 0)}" for k, v in files.items()),
        ],
        ["files never marked", result["files_unmarked"]],
        ["files with the wrong outcome", len(result["wrong_outcomes"])],
        [
            "clips posted",
            f"{sum(posted.values())}: " + ", ".join(f"{k} {v}" for k, v in posted.items()),
        ],
        ["answers", ", ".join(f"{k}: {v}" for k, v in result["answers"].items())],
        ["events acknowledged (200)", result["acknowledged"]],
        ["acknowledged events lost", result["acknowledged_lost"]],
        [
            "poison or bomb stored as a score / non-finite scores",
            f"{result['poison_stored']} / {result['non_finite_stored']}",
        ],
        [
            "crashes (exits not caused by a kill)",
            f"serve {crashes['serve']}, watch {crashes['watch']}",
        ],
        ["peak RSS MiB (any one process)", f"serve {peak['serve']}, watch {peak['watch']}"],
    ]
    return "| what | count |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=20.0, help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the tally here")
    args = parser.parse_args()
    from _common import provenance

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        models = train_models(work)
        result = Soak(work, models, args.minutes * 60, args.kill_every, args.seed).run()
    print(provenance())
    print(report(result, args.minutes))
    print("skip reasons:", json.dumps(result["skip_reasons"], indent=1))
    if result["wrong_outcomes"] or result["crash_tails"]:
        print("wrong outcomes:", result["wrong_outcomes"][:20])
        print("crashes:", result["crash_tails"][:3])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    failed = (
        result["acknowledged_lost"]
        or result["files_unmarked"]
        or result["wrong_outcomes"]
        or sum(result["crashes"].values())
        or result["poison_stored"]
    )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
