"""Reports: anomaly-map PNGs and the self-contained HTML report with its Markdown twin."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re

import matplotlib.image as mpimg
import numpy as np
import pytest
import soundfile as sf

from stethoscope.cli import main as cli_main
from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.features.logmel import mel_filterbank
from stethoscope.reports import build_report, save_anomaly_map_png
from stethoscope.reports.maps import fault_regions_for, map_panels, mel_centre_frequencies

QUIET = RunContext(progress=False)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SR = 16_000


def _images(html: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)


def test_report_is_self_contained_and_complete(workspace, results_folder, tmp_path):
    _, _, test = workspace
    results_dir = results_folder(test, tmp_path / "labelled")
    out = build_report(results_dir, results_dir / "report.html")
    html = out.read_text()
    results = json.loads((results_dir / "results.json").read_text())

    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html
    assert re.findall(r"<script\b[^>]*>", html) == [
        "<script>"
    ]  # one inline script (the clip table), no src
    images = _images(html)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    # fan: ROC + histogram + 3 most anomalous + 1 typical normal map; gearbox: ROC + histogram only
    assert len(images) == 8
    assert f"{results['official_score']:.3f}" in html
    for machine, entry in results["machines"].items():
        assert f'id="m-{machine}"' in html
        for sec in entry["sections"].values():
            for key in ("auc_source", "auc_target", "auc", "pauc", "f1"):
                assert f">{sec[key]:.3f}<" in html, (machine, key)
    gearbox = html.split('id="m-gearbox"', 1)[1]
    assert (
        "models/gearbox is missing" in gearbox and "<img" in gearbox
    )  # a note, and still its charts
    players = re.findall(
        r"<audio\b[^>]*\bsrc=\"([^\"]*)\"", html
    )  # one per mapped clip (fan's 4), embedded
    assert len(players) == 4 and all(src.startswith("data:audio/wav;base64,") for src in players)
    wave, sr = sf.read(io.BytesIO(base64.b64decode(players[0].split(",", 1)[1])))
    assert sr == SR and len(wave) == 2 * SR
    assert html.count("<tr><td>section_00_") == 16  # every clip in the clip table

    md = (results_dir / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+\.png)\)", md)
    assert len(linked) == 8
    for rel in linked:
        assert (results_dir / rel).read_bytes()[:8] == PNG_MAGIC
    assert f"{results['machines']['fan']['sections']['section_00']['auc']:.3f}" in md
    files = results_dir / "report_files"
    assert sorted(str(p.relative_to(results_dir)) for p in files.rglob("*.png")) == sorted(linked)


def test_unlabelled_report_has_histograms_but_no_roc(workspace, results_folder, tmp_path):
    _, _, test = workspace
    results_dir = results_folder(test, tmp_path / "unlabelled", labelled=False)
    html = build_report(results_dir, results_dir / "r.html").read_text()
    assert "ROC curves of" not in html and "score histogram of fan" in html
    assert html.count("score histogram of") == 2
    assert len(_images(html)) == 2 + 4  # two histograms; fan's 3 top clips + its median clip
    assert (results_dir / "r.md").exists() and len(
        list((results_dir / "r_files").glob("*/*.png"))
    ) == 6


def test_cli_report_verb(workspace, results_folder, tmp_path, capsys):
    _, _, test = workspace
    results_dir = results_folder({"gearbox": test["gearbox"]}, tmp_path / "cli")  # no model: fast
    assert (
        cli_main(["report", "--results", str(results_dir), "--out", str(results_dir / "x.html")])
        == 0
    )
    assert "x.html" in capsys.readouterr().out and (results_dir / "x.md").exists()


def test_domainless_sections_layout(workspace, results_folder, tmp_path):
    """2020-style machine ids without domains: no AUC-s/AUC-t columns, per-id curves, mean rows."""
    _, _, test = workspace
    clips = [
        Clip(c.path, "gearbox", ("00", "02")[i % 2], None, "test", c.label, layout="dcase2020")
        for i, c in enumerate(test["gearbox"])
    ]
    results_dir = results_folder({"gearbox": clips}, tmp_path / "domainless")
    html = build_report(results_dir, results_dir / "report.html").read_text()
    table = html.split("<table>", 1)[1].split("</table>", 1)[0]
    assert "AUC-s" not in table and "AUC-t" not in table and ">AUC<" in table
    assert (
        "id_00" in table
        and "id_02" in table
        and "arithmetic mean" in table
        and "harmonic mean" in table
    )
    assert (
        len(_images(html)) == 2
    )  # ROC + histogram; the model folder is missing, so a note instead of maps
    assert "models/gearbox is missing" in html


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match=re.escape("results.json")):
        build_report(tmp_path, tmp_path / "report.html")


def test_anomaly_map_png_two_and_three_panels(workspace, tmp_path):
    _, system, test = workspace
    clip = test["fan"][5]
    explanation = system.explain(clip, QUIET)  # one pass: score, input, reconstruction, map
    no_reconstruction = dataclasses.replace(
        explanation, reconstruction=None
    )  # as a system with a map only

    two = save_anomaly_map_png(no_reconstruction, clip, tmp_path / "two.png")
    img2 = mpimg.imread(two)
    assert img2.ndim == 3 and img2.shape[2] in (3, 4) and img2.shape[1] > 500
    three = save_anomaly_map_png(
        explanation, clip, tmp_path / "three.png", threshold=system.threshold_
    )
    img3 = mpimg.imread(three)
    assert img3.shape[1] == img2.shape[1] and img3.shape[0] > img2.shape[0] * 1.2
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_explain_is_one_consistent_pass(workspace):
    """The explanation's score is the clip's score; its panels are its own arrays, one shape."""
    _, system, test = workspace
    clip = test["fan"][5]
    explanation = system.explain(clip, QUIET)
    assert explanation.score == pytest.approx(
        float(system.score([clip], QUIET)[0]), rel=1e-5, abs=1e-9
    )
    panels = map_panels(explanation)
    assert (
        panels.logmel.shape
        == panels.reconstruction.shape
        == panels.amap.shape
        == explanation.logmel.shape
    )
    np.testing.assert_array_equal(panels.amap, explanation.anomaly_map)
    assert (panels.amap >= 0).all()
    with pytest.raises(Exception, match="no anomaly map"):
        map_panels(dataclasses.replace(explanation, anomaly_map=None))


def test_mel_centres_are_the_filter_peaks():
    centres = mel_centre_frequencies(128, SR)
    fft_freqs = np.linspace(0, SR / 2, 513)
    peaks = fft_freqs[mel_filterbank(SR, 1024, 128).argmax(axis=1)]
    assert np.all(np.diff(centres) > 0) and centres[-1] < SR / 2
    assert np.max(np.abs(peaks - centres)) <= SR / 1024  # within one FFT bin


def test_fault_regions_lookup(tmp_path):
    clip = tmp_path / "fan" / "test" / "a.wav"
    clip.parent.mkdir(parents=True)
    (tmp_path / "fan" / "fault_regions.csv").write_text(
        "file,kind,severity,t0,t1,f0,f1\ntest/a.wav,click,2,1.5,2.0,3000,4000\ntest/b.wav,hum,1,0,1,50,60\n"
    )
    (region,) = fault_regions_for(clip)
    assert (region.t0, region.t1, region.f0, region.f1, region.kind) == (
        1.5,
        2.0,
        3000.0,
        4000.0,
        "click",
    )
    assert fault_regions_for(tmp_path / "fan" / "train" / "a.wav") == []


def test_outputs_are_shareable_not_private(tmp_path):
    """Atomic writes go through mkstemp / mkdtemp (0600 / 0700); the results must not stay
    private."""
    import os
    import stat

    from stethoscope.fsutil import atomic_directory, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
        with atomic_directory(tmp_path / "model") as tmp:
            (tmp / "w").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_machine_names_with_one_slug_get_distinct_anchors_and_folders(tmp_path):
    """ "a b" and "a_b" both reduce to a_b: each keeps its own card, link and figure folder."""
    (tmp_path / "results.json").write_text(json.dumps({"system": "x"}))
    rows = [
        f"c{i}.wav,,{m},section_00,,{i % 2},{float(i)!r},0"
        for m in ("a b", "a_b")
        for i in range(4)
    ]
    (tmp_path / "scores.csv").write_text(
        "file,path,machine,section,domain,label,score,decision\n" + "\n".join(rows)
    )
    html = build_report(tmp_path, tmp_path / "report.html").read_text()
    assert html.count('id="m-a_b"') == 1 and html.count('id="m-a_b-2"') == 1
    assert 'href="#m-a_b"' in html and 'href="#m-a_b-2"' in html
    md = (tmp_path / "report.md").read_text()
    for key in ("a_b", "a_b-2"):
        assert (
            tmp_path / "report_files" / key / "scores.png"
        ).exists() and f"report_files/{key}/roc.png" in md
