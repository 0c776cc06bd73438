"""Log-mel throughput: Stethoscope's batched torch path vs the per-file librosa path of the
official baselines (librosa.load + melspectrogram + log10), in the same run on the same files.

    python benchmarks/bench_logmel.py [--n 200] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import provenance, table  # noqa: E402

from stethoscope.data import make_toy_dataset, scan  # noqa: E402
from stethoscope.features.extract import logmels  # noqa: E402
from stethoscope.features.logmel import EPS  # noqa: E402


def librosa_path(paths: list[Path]) -> list[np.ndarray]:
    import librosa

    out = []
    for p in paths:
        y, sr = librosa.load(p, sr=16000, mono=True)
        mel = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=2.0
        )
        out.append(10.0 * np.log10(np.maximum(mel, EPS)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="number of 10 s toy clips")
    parser.add_argument("--data", help="use this data folder instead of toy clips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (
            Path(args.data)
            if args.data
            else make_toy_dataset(
                Path(tmp) / "toy", machines=("fan",), n_train=args.n, n_test=0, seed=0
            )
        )
        clips = scan(root)[: args.n]
        paths = [c.path for c in clips]
        librosa_path(paths[:2])  # import and JIT warm-up outside the timing
        logmels(clips[:2], cache_dir=None, progress=False)  # cache_dir=None: no cache
        t0 = time.perf_counter()
        ref = librosa_path(paths)
        t_librosa = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = logmels(clips, cache_dir=None, progress=False)
        t_ours = time.perf_counter() - t0
        cache = Path(tmp) / "cache"
        logmels(clips, cache_dir=cache, progress=False)
        t0 = time.perf_counter()
        logmels(clips, cache_dir=cache, progress=False)
        t_cached = time.perf_counter() - t0
        err = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))
    n = len(clips)
    print(provenance() + "\n")
    print(
        table(
            ["path", "clips/s", "speed-up vs librosa"],
            [
                ["librosa.load + melspectrogram, per file", n / t_librosa, 1.0],
                ["stethoscope batched torch (no cache)", n / t_ours, t_librosa / t_ours],
                ["stethoscope, cache hit", n / t_cached, t_librosa / t_cached],
            ],
        )
    )
    print(f"\n{n} clips of 10 s; max |difference| to librosa: {err:.2e} dB")


if __name__ == "__main__":
    main()
