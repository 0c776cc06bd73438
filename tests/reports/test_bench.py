"""`report` on a `stethoscope bench` folder: per set and mode the fold-averaged metrics, their
spread over folds and the training time, from a real (tiny) benchmark run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from stethoscope.cli import main as cli_main
from stethoscope.reports import build_report
from stethoscope.reports.numbers import readable

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cell(mean: float, spread: float) -> str:
    return f"{mean:.3f} <small>± {spread:.3f}</small>"


def test_score_modes_folder_renders_every_set_with_its_fold_spread(bench_dir: Path, tmp_path: Path):
    out = tmp_path / "bench.html"
    assert cli_main(["report", "--results", str(bench_dir), "--out", str(out)]) == 0
    html, md = out.read_text(), out.with_suffix(".md").read_text()
    for mode in ("mse", "mahala"):
        bench = json.loads((bench_dir / mode / "bench.json").read_text())
        card = html.split(f'id="mode-{mode}"', 1)[1].split("</section>", 1)[0]
        assert f"<h2>{mode}</h2>" in card
        for name, st in bench["sets"].items():
            row = card.split(f"<tr><td>{name}</td>", 1)[1].split("</tr>", 1)[0]
            assert row.startswith(f"<td>{st['n_normal']}</td><td>{st['n_anomaly']}</td>")
            for key in ("auc", "pauc", "auc_source", "auc_target"):
                folds = [f[key] for f in st["folds"]]
                assert _cell(st[key], float(np.std(folds))) in row, (mode, name, key)
                assert f"{st[key]:.3f} ± {float(np.std(folds)):.3f}" in md
            assert f"<td>{readable(st['train_seconds'], 3)}</td>" in row
        assert f"{bench['mean_auc']:.3f}" in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    assert (tmp_path / "bench_files" / "bench" / "auc.png").read_bytes()[:8] == PNG_MAGIC
    assert "None" not in md and "None" not in html


def test_plain_bench_folder_renders(bench_dir: Path, tmp_path: Path):
    folder = tmp_path / "plain"
    folder.mkdir()
    shutil.copy(bench_dir / "mse" / "bench.json", folder / "bench.json")
    html = build_report(folder, tmp_path / "r.html").read_text()
    assert (
        'id="mode-results"' in html and "<h2>mse</h2>" in html
    )  # titled by the recorded score_mode
    assert html.count("<tr><td>fan</td>") == 1 and html.count("<tr><td>gearbox</td>") == 1


def test_a_multi_system_folder_shows_the_comparison_and_says_what_is_noise(
    toy_root: Path, tmp_path: Path
):
    out = tmp_path / "cmp"
    yaml = tmp_path / "knn.yaml"
    yaml.write_text("detector: knn\n")
    assert (
        cli_main(
            [
                "bench",
                "--data",
                str(toy_root),
                "--system",
                f"mel_stats,mel_stats@{yaml}",
                "--folds",
                "2",
                "--out",
                str(out),
                "--no-cache",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    comparison = json.loads((out / "comparison.json").read_text())
    (pair,) = comparison["pairs"]
    page = out / "report.html"
    assert cli_main(["report", "--results", str(out), "--out", str(page)]) == 0
    html, md = page.read_text(), page.with_suffix(".md").read_text()
    card = html.split('id="comparison"', 1)[1].split("</section>", 1)[0]
    verdict = (
        "within noise"
        if pair["within_noise"]
        else ("mel_stats" if pair["diff"] > 0 else pair["b"]) + " better"
    )
    assert (
        f"{pair['diff']:+.3f}" in card
        and f"[{pair['low']:+.3f}, {pair['high']:+.3f}]" in card
        and verdict in card
    )
    for name, m in comparison["mean_auc"].items():
        assert f"| {name} | {m['auc']:.3f} | [{m['low']:.3f}, {m['high']:.3f}] |" in md
    assert "mel_stats, mel_stats@" in html  # the headline names both systems
