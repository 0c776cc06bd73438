"""The dashboard screenshot of docs/monitor.md (docs/img/dashboard.png), made for real.

Trains a small ``dcase_ae`` on toy-factory fans and gearboxes, serves it with ``stethoscope
serve`` (fresh SQLite store, on a free loopback port), posts a realistic sequence (normal
clips of both machines, then a burst of faulty fan clips with a loud 3 kHz whine added (plainer
than the toy set's own faults, which this small model misses), so that the fan's 3-of-5 alarm is
raised), opens the dashboard in headless Chromium, clicks an anomalous fan event and saves the
page as a PNG (colour-quantised to stay small).

    python benchmarks/dashboard_screenshot.py                   # writes docs/img/dashboard.png
    python benchmarks/dashboard_screenshot.py --out /tmp/d.png --epochs 2 --train 6 --work /tmp/smoke  # smoke run
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import TOKEN, free_port, serve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def whine(path: Path, hz: float = 3000.0, level: float = 2.0) -> bytes:
    """The toy faulty clip at ``path`` with a bearing-like whine added (a tone at ``hz``, ``level``
    times the clip's RMS): a fault far plainer than the toy set's, so that the small model of this
    script flags it and the picture shows an alarm."""
    import numpy as np
    import soundfile as sf

    wave, rate = sf.read(path, dtype="float32")
    t = np.arange(len(wave)) / rate
    wave = wave + level * np.sqrt(np.mean(wave**2)) * np.sin(2 * np.pi * hz * t).astype(np.float32)
    buf = io.BytesIO()
    sf.write(
        buf,
        np.clip(wave / max(1.0, np.abs(wave).max()), -1, 1),
        rate,
        format="WAV",
        subtype="PCM_16",
    )
    return buf.getvalue()


def post_sequence(url: str, data: Path, pause: float) -> list[dict]:
    """Normal clips of every machine, then the fan's faulty clips; returns the fan's answers."""
    import httpx

    def clips(machine: str, anomalous: bool) -> list[Path]:
        return sorted(
            p for p in (data / machine / "test").glob("*.wav") if ("anomaly" in p.name) == anomalous
        )

    plan = [
        (m, p)
        for pair in zip(clips("fan", False), clips("gearbox", False))
        for m, p in zip(("fan", "gearbox"), pair)
    ]
    plan += [("fan", p) for p in clips("fan", True)[:6]]
    fan = []
    with httpx.Client(
        base_url=url,
        timeout=60,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "audio/wav"},
    ) as client:
        for machine, path in plan:
            body = path.read_bytes() if "normal" in path.name else whine(path)
            answer = client.post(
                "/score", params={"machine": machine, "source": path.name[:60]}, content=body
            )
            answer.raise_for_status()
            if machine == "fan":
                fan.append(answer.json())
            time.sleep(pause)
    return fan


def screenshot(url: str, fan: list[dict], out: Path, max_bytes: int) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = (
        os.environ.get("STETHOSCOPE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not chromium:
        raise SystemExit("no Chromium found: apt-get install chromium, or set STETHOSCOPE_CHROMIUM")
    flagged = [e for e in fan if e["decision"]] or fan
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(f"{url}/", wait_until="load")
        page.wait_for_selector("#m-fan circle.pt", timeout=30_000)
        page.click(f"#m-fan circle.pt[data-id='{flagged[-1]['id']}']")
        page.wait_for_function(
            "() => ['map', 'spectrogram'].every(id => document.getElementById(id).naturalWidth > 0)"
            " && document.getElementById('player').readyState >= 1",
            timeout=60_000,
        )
        png = page.screenshot(full_page=True)
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (
        256,
        128,
        64,
    ):  # a palette keeps flat UI colours exact and spectrograms readable
        buf = io.BytesIO()
        image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(
            buf, format="PNG", optimize=True
        )
        if buf.tell() <= max_bytes:
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    print(
        f"{out}: {image.width} x {image.height}, {buf.tell() // 1024} KB, {colours} colours",
        file=sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "dashboard.png")
    parser.add_argument(
        "--train", type=int, default=20, help="training clips per machine (default 20)"
    )
    parser.add_argument(
        "--test", type=int, default=36, help="test clips per machine, half faulty (default 36)"
    )
    parser.add_argument("--epochs", type=int, default=40, help="dcase_ae epochs (default 40)")
    parser.add_argument(
        "--pause", type=float, default=0.4, help="seconds between posts (default 0.4)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "stethoscope-dashboard-shot",
        help="toy set and trained models, reused by a second run (delete it to retrain; default: a folder in /tmp)",
    )
    parser.add_argument(
        "--max-kb", type=int, default=280, help="largest PNG written (default 280 KB)"
    )
    args = parser.parse_args()
    from stethoscope.data.toy_factory import make_toy_dataset

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_toy_dataset(
            args.work / "toy", ("fan", "gearbox"), n_train=args.train, n_test=args.test, seconds=4.0
        )
        models = args.work / "models"
        if not (models / "fan" / "config.json").is_file():
            trained = subprocess.run(
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
                    f"epochs={args.epochs}",
                    "--quiet",
                ]
            )
            if trained.returncode:
                raise SystemExit("training failed")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = serve(
            models,
            work / "events.db",
            port,
            argparse.Namespace(workers=2, threads=1, sync="full"),
            work / "serve.log",
            timeout=1800,
        )
        try:
            fan = post_sequence(url, data, args.pause)
            screenshot(url, fan, args.out, args.max_kb * 1024)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
