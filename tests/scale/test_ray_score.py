"""Batch scoring on Ray Data: equal to the single-process path, outputs, bad files, filesystems."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.cli import main
from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.systems.base import load_system
from tests.conftest import write_wav

pytest.importorskip(
    "ray", reason="Ray is the optional extra stethoscope[ray] (CI installs it with .[dev])"
)
from stethoscope.scale import score_with_ray

QUIET = ["--threads", "1", "--quiet", "--no-cache"]


def _csv_scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}


def _single_process(models: Path, paths: list[str], machines: list[str]) -> np.ndarray:
    """The scores `System.score` gives each file with its machine type's model, one process."""
    out = np.zeros(len(paths))
    for machine in set(machines):
        rows = [i for i, m in enumerate(machines) if m == machine]
        system = load_system(models / machine)
        out[rows] = system.score(
            [Clip(path=paths[i], machine=machine) for i in rows], RunContext(progress=False)
        )
    return out


def test_scores_equal_the_single_process_path(
    ray_local, fleet_data: Path, fleet_models: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    paths, rows = score_with_ray(
        [fleet_data], fleet_models, tmp_path / "out", ctx=RunContext(progress=False)
    )
    assert len(rows) == 16 and paths == sorted(paths)  # 2 types x (4 train + 4 test), input order
    machines = [r.machine for r in rows]
    assert machines == [Path(p).parts[-3] for p in paths]  # <root>/<machine>/<split>/<file>
    reference = _single_process(fleet_models, paths, machines)
    np.testing.assert_allclose([r.score for r in rows], reference, rtol=1e-6, atol=1e-9)
    table = pq.read_table(tmp_path / "out" / "scores.parquet").to_pydict()
    assert table["path"] == paths and table["machine"] == machines
    np.testing.assert_allclose(table["score"], reference, rtol=1e-6, atol=1e-9)
    thresholds = {m: load_system(fleet_models / m).threshold_ for m in ("fan", "gearbox")}
    assert table["decision"] == [
        int(s > thresholds[m]) for s, m in zip(reference, machines, strict=True)
    ]
    assert table["threshold"] == [thresholds[m] for m in machines]
    assert _csv_scores(tmp_path / "out" / "scores.csv") == pytest.approx(
        dict(zip(paths, reference, strict=True)), rel=1e-6, abs=1e-9
    )
    assert (tmp_path / "out" / "anomaly_score_fan_section_00_test.csv").is_file()
    assert (tmp_path / "out" / "decision_result_gearbox_section_00_test.csv").is_file()


def test_cli_engine_ray_equals_cli_local(
    ray_local, fleet_data: Path, fleet_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = fleet_data / "fan" / "test"
    assert (
        main(
            [
                "score",
                "--model",
                str(fleet_models / "fan"),
                str(folder),
                "--csv",
                str(tmp_path / "local.csv"),
                *QUIET,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "score",
                "--engine",
                "ray",
                "--model",
                str(fleet_models / "fan"),
                str(folder),
                "--out",
                str(tmp_path / "ray"),
                *QUIET,
            ]
        )
        == 0
    )
    local, ray = _csv_scores(tmp_path / "local.csv"), _csv_scores(tmp_path / "ray" / "scores.csv")
    assert len(ray) == 4 and ray == pytest.approx(local, rel=1e-6, abs=1e-9)
    assert "fan" in capsys.readouterr().out  # the per-machine summary table


def test_fsspec_filesystem_and_file_uris_score_alike(
    ray_local, fleet_data: Path, fleet_models: Path
) -> None:
    fsspec = pytest.importorskip("fsspec", reason="fsspec comes with ray[data]")
    folder = fleet_data / "gearbox" / "test"
    _, by_path = score_with_ray([str(folder)], fleet_models)
    uris, by_uri = score_with_ray([folder.as_uri()], fleet_models)
    _, by_fsspec = score_with_ray([str(folder)], fleet_models, filesystem=fsspec.filesystem("file"))
    assert all(u.startswith("file://") for u in uris)
    np.testing.assert_allclose(
        [r.score for r in by_uri], [r.score for r in by_path], rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        [r.score for r in by_fsspec], [r.score for r in by_path], rtol=1e-6, atol=1e-9
    )


@pytest.fixture
def with_bad_files(fleet_data: Path, tmp_path: Path) -> Path:
    """Four good fan clips, one file of random bytes and one 0.01 s clip, under fan/."""
    folder = tmp_path / "plant" / "fan"
    folder.mkdir(parents=True)
    for wav in sorted((fleet_data / "fan" / "test").glob("*.wav")):
        (folder / wav.name).write_bytes(wav.read_bytes())
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    write_wav(folder / "short.wav", np.sin(np.arange(160) / 3).astype(np.float32))
    return tmp_path / "plant"


def test_a_bad_file_stops_the_job_by_default_naming_it(
    ray_local,
    with_bad_files: Path,
    fleet_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    assert (
        main(
            [
                "score",
                "--engine",
                "ray",
                "--model",
                str(fleet_models),
                str(with_bad_files),
                "--out",
                str(tmp_path / "out"),
                *QUIET,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "error: " in err
        and ("corrupt.wav: " in err or "short.wav: " in err)
        and "Traceback" not in err
    )
    assert "--on-bad-audio skip" in err


def test_skip_lists_bad_files_and_scores_the_rest(
    ray_local,
    with_bad_files: Path,
    fleet_models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "score",
                "--engine",
                "ray",
                "--model",
                str(fleet_models),
                str(with_bad_files),
                "--out",
                str(out),
                "--on-bad-audio",
                "skip",
                *QUIET,
            ]
        )
        == 0
    )
    assert len(_csv_scores(out / "scores.csv")) == 4
    with open(out / "skipped.csv", newline="") as handle:
        skipped = {Path(row["file"]).name: row["reason"] for row in csv.DictReader(handle)}
    assert set(skipped) == {"corrupt.wav", "short.wav"}
    assert "not a readable audio file" in skipped["corrupt.wav"] and "short" in skipped["short.wav"]
    assert "2 file(s) skipped" in capsys.readouterr().err


def test_a_file_no_model_claims_exits_2(
    ray_local, fleet_data: Path, fleet_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    stray = tmp_path / "valve" / "a.wav"
    stray.parent.mkdir()
    stray.write_bytes(next((fleet_data / "fan" / "test").glob("*.wav")).read_bytes())
    assert (
        main(
            [
                "score",
                "--engine",
                "ray",
                "--model",
                str(fleet_models),
                str(stray),
                "--out",
                str(tmp_path / "out"),
                *QUIET,
            ]
        )
        == 2
    )
    assert (
        "valve/a.wav: no enclosing folder is named after a model's machine type"
        in capsys.readouterr().err
    )


@pytest.fixture
def with_poison(fleet_data: Path, tmp_path: Path) -> Path:
    """Two good fan clips; a float WAV whose samples are about 1e25 (it decodes, its score is
    NaN); random bytes; an 8 s clip (over --max-seconds 5)."""
    folder = tmp_path / "plant" / "fan"
    folder.mkdir(parents=True)
    good = sorted((fleet_data / "fan" / "test").glob("*.wav"))[:2]
    for wav in good:
        (folder / wav.name).write_bytes(wav.read_bytes())
    wave = sf.read(good[0], dtype="float32")[0]
    write_wav(folder / "poison.wav", wave * np.float32(1e25), subtype="FLOAT")
    (folder / "garbage.wav").write_bytes(np.random.default_rng(1).bytes(5000))
    write_wav(folder / "long.wav", np.tile(wave, 4))
    return tmp_path / "plant"


def _skipped(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        return {Path(row["file"]).name: row["reason"] for row in csv.DictReader(handle)}


def test_poison_files_are_skipped_as_locally(
    ray_local, with_poison: Path, fleet_models: Path, tmp_path: Path
) -> None:
    """A NaN score, undecodable bytes and audio over --max-seconds: each file is skipped with its
    reason, never fatal and never stored as a score, and the local engine skips the same."""
    common = [
        "--model",
        str(fleet_models / "fan"),
        str(with_poison),
        "--on-bad-audio",
        "warn",
        "--max-seconds",
        "5",
        *QUIET,
    ]
    assert main(["score", "--engine", "ray", *common, "--out", str(tmp_path / "ray")]) == 0
    (tmp_path / "local").mkdir()
    assert main(["score", *common, "--csv", str(tmp_path / "local" / "scores.csv")]) == 0
    scores = _csv_scores(tmp_path / "ray" / "scores.csv")
    bad = {"poison.wav", "garbage.wav", "long.wav"}
    good = {p.name for p in (with_poison / "fan").iterdir()} - bad
    assert {Path(p).name for p in scores} == good and len(good) == 2
    assert all(np.isfinite(s) for s in scores.values())
    skipped = _skipped(tmp_path / "ray" / "skipped.csv")
    assert set(skipped) == bad and "not finite" in skipped["poison.wav"]
    assert "not a readable audio file" in skipped["garbage.wav"]
    assert "over the --max-seconds 5 limit" in skipped["long.wav"]
    assert _skipped(tmp_path / "local" / "skipped.csv") == skipped
    local = _csv_scores(tmp_path / "local" / "scores.csv")
    assert local == pytest.approx(scores, rel=1e-6, abs=1e-9)


def test_a_nan_score_is_skipped_even_by_default(
    ray_local, with_poison: Path, fleet_models: Path, tmp_path: Path
) -> None:
    """Under the default policy too (which stops on an undecodable file), a score that is not
    finite only leaves its file out, as `stethoscope score` does locally."""
    for name in ("garbage.wav", "long.wav"):
        (with_poison / "fan" / name).unlink()
    assert (
        main(
            [
                "score",
                "--engine",
                "ray",
                "--model",
                str(fleet_models / "fan"),
                str(with_poison),
                "--out",
                str(tmp_path / "out"),
                *QUIET,
            ]
        )
        == 0
    )
    assert len(_csv_scores(tmp_path / "out" / "scores.csv")) == 2
    assert set(_skipped(tmp_path / "out" / "skipped.csv")) == {"poison.wav"}


def test_each_file_is_read_once(with_poison: Path, fleet_models: Path) -> None:
    """The map task Ray runs reads each file once, local or through an fsspec filesystem: its
    bytes serve the header check (``max_seconds`` included) and the decode; listing opens none."""
    from stethoscope.scale.ray_score import decode_batch, model_spec
    from stethoscope.scale.sources import list_inputs
    from tests.opens import counting_filesystem, counting_opens

    specs = {"fan": model_spec(fleet_models / "fan", load_system(fleet_models / "fan"))}
    fs = counting_filesystem()
    for filesystem in (None, fs):
        with counting_opens() as opens:
            paths = list_inputs([str(with_poison)], filesystem)
            assert len(paths) == 5 and not opens and not fs.opens
            batch = {
                "index": np.arange(5),
                "path": np.array(paths, dtype=object),
                "machine": np.array(["fan"] * 5, dtype=object),
            }
            out = decode_batch(batch, specs, "warn", filesystem, max_seconds=5.0)
        counted = fs.opens if filesystem is not None else opens
        assert [counted.of(p) for p in paths] == [1] * 5
        names = [Path(p).name for p in paths]
        long = names.index("long.wav")
        assert "over the --max-seconds 5 limit" in out["problems"][long] and not out["ok"][long]
        assert out["ok"][names.index("poison.wav")] and not out["ok"][names.index("garbage.wav")]
