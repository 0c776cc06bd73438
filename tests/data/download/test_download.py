"""`stethoscope download` against a local server: a good run that `scan` reads, a dry run, a
resumed partial download, a checksum mismatch, a truncated download, a 500 then a retry,
archives with no checksum, and a real full disk (a file size limit in a subprocess)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stethoscope.cli import main
from stethoscope.data import scan

from .fixtures import EVALUATOR_PATH, EVALUATOR_TABLE, Server, record_json, write_registry

SRC = Path(__file__).resolve().parents[3] / "src"


def _download(server: Server, registry: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "download",
            "dcase2025",
            "--out",
            str(out),
            "--base-url",
            server.url,
            "--registry",
            str(registry),
            "--quiet",
            *extra,
        ]
    )


def _data_files(root: Path) -> list[str]:
    """Every file under ``root`` outside the hidden download state."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and ".download" not in p.parts
    )


def test_good_run_lands_in_the_scanned_layout(
    server: Server, registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "data"
    assert _download(server, registry, out, "--jobs", "3") == 0
    said = capsys.readouterr()
    assert "3 archive(s) fetched and unpacked, 0 already there" in said.out
    root = out / "dcase2025"
    dev = {(c.machine, c.split, c.label, c.domain) for c in scan(root / "dev")}
    assert dev == {
        ("fan", "train", 0, "source"),
        ("fan", "train", 0, "target"),
        ("fan", "test", 0, "source"),
        ("fan", "test", 1, "source"),
    }
    assert dict(scan(root / "dev", split="train")[0].attributes) == {
        "mode": "0"
    }  # from attributes_00.csv
    clips = scan(root / "eval")
    test = {c.path.name: c for c in clips if c.split == "test"}  # renamed by the ground truth
    assert set(test) == {
        "section_00_source_test_anomaly_0000_noAttribute.wav",
        "section_00_target_test_normal_0001_noAttribute.wav",
    }
    assert all(c.hidden_attributes and c.attributes == () for c in test.values())
    supplemental = [c for c in clips if c.split == "supplemental"]
    assert sorted(dict(c.attributes)["kind"] for c in supplemental) == ["machine", "noise"]
    assert (root / "eval" / "ToyPet" / "eval_official_names.csv").read_text().splitlines()[
        1
    ] == "section_00_0000.wav,section_00_source_test_anomaly_0000_noAttribute.wav"
    state = root / ".download"
    assert sorted(p.name for p in state.iterdir()) == [
        "dev_fan.zip.done.json",
        "eval_data_ToyPet_test.zip.done.json",
        "eval_data_ToyPet_train.zip.done.json",
        "eval_data_list_2025.csv",
    ]
    assert json.loads((state / "dev_fan.zip.done.json").read_text())["verified"] is True
    assert main(["scan", str(root / "eval")]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"ToyPet\s+section_00\s+-\s+supplemental\s+unlabelled\s+2\s+-", shown)
    assert re.search(r"ToyPet\s+section_00\s+source\s+train\s+normal\s+2\s+2\n", shown)
    assert (
        "roles: supplemental (2), test (2), train (2); supplemental: extra clean machine" in shown
    )
    assert "attributes: 2 clip(s) with attributes, 4 withheld (noAttribute), 0 with none" in shown

    before = len(server.faults.requests)
    assert _download(server, registry, out) == 0  # a second run fetches no archive again
    assert "0 archive(s) fetched and unpacked, 3 already there" in capsys.readouterr().out
    assert not any(name.endswith(".zip") for _, name, _ in server.faults.requests[before:])


def test_dry_run_lists_files_sizes_and_sources(
    server: Server, archives: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    registry = write_registry(tmp_path / "r.yaml", archives, unverified="eval_data_ToyPet_test.zip")
    out = tmp_path / "data"
    assert _download(server, registry, out, "--dry-run") == 0
    shown = capsys.readouterr().out
    size = len(archives["records/15097779/files/dev_fan.zip"])
    assert re.search(
        rf"dev_fan.zip\s+fan\s+{size / 1000:.1f} kB\s+md5 [0-9a-f]{{32}} "
        r"\(test-fixture\)",
        shown,
    )
    test_size = len(archives["records/15519362/files/eval_data_ToyPet_test.zip"])
    assert re.search(
        rf"eval_data_ToyPet_test.zip\s+ToyPet\s+{test_size / 1000:.1f} kB "
        r"\(server\)\s+UNVERIFIED",
        shown,
    )
    assert (
        "no checksum: test: no checksum published" in shown
    )  # the test server has no record metadata
    assert f"{server.url}/records/15097779/files/dev_fan.zip?download=1" in shown
    assert "would fetch 4 file(s)" in shown and "needs --allow-unverified" in shown
    assert not out.exists() and not server.faults.gets("dev_fan.zip")


def test_a_partial_download_is_resumed(
    server: Server, registry: Path, archives: dict[str, bytes], tmp_path: Path
) -> None:
    data = archives["records/15097779/files/dev_fan.zip"]
    part = tmp_path / "data" / "dcase2025" / ".download" / "dev_fan.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    assert _download(server, registry, tmp_path / "data", "--split", "dev") == 0
    assert server.faults.gets("dev_fan.zip") == [f"bytes={len(data) // 2}-"]
    assert len(scan(tmp_path / "data" / "dcase2025" / "dev")) == 5 and not part.exists()


def test_a_checksum_mismatch_deletes_the_file(
    server: Server, archives: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    registry = write_registry(tmp_path / "r.yaml", archives, wrong_md5="dev_fan.zip")
    out = tmp_path / "data"
    assert _download(server, registry, out, "--split", "dev") == 2
    err = capsys.readouterr().err
    assert (
        "error: 1 of 1 archive(s) failed" in err and "dev_fan.zip: checksum mismatch (md5 " in err
    )
    assert "checksum from test-fixture); the file was deleted" in err
    root = out / "dcase2025"
    assert not list((root / ".download").iterdir()) and _data_files(root) == []


def test_a_truncated_download_resumes_and_a_persistent_one_fails(
    server: Server, registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.faults.truncate["dev_fan.zip"] = 1
    assert _download(server, registry, tmp_path / "a", "--split", "dev") == 0
    assert server.faults.gets("dev_fan.zip") == [None, f"bytes={server.faults.cut_at}-"]
    assert "connection closed after 1000 of" in capsys.readouterr().err

    server.faults.truncate["dev_fan.zip"] = 99
    assert _download(server, registry, tmp_path / "b", "--split", "dev", "--retries", "1") == 2
    err = capsys.readouterr().err
    assert "dev_fan.zip: gave up after 2 attempts (connection closed after 1000 of" in err
    part = tmp_path / "b" / "dcase2025" / ".download" / "dev_fan.zip.part"
    assert part.stat().st_size == 2000 and "run the same command again to resume" in err
    assert _data_files(tmp_path / "b" / "dcase2025") == []


def test_a_server_error_is_retried(
    server: Server, registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.faults.fail["eval_data_ToyPet_train.zip"] = 1
    assert _download(server, registry, tmp_path, "--split", "add") == 0
    assert server.faults.gets("eval_data_ToyPet_train.zip") == [None, None]
    assert (
        "eval_data_ToyPet_train.zip: HTTP 500 injected failure; retry 1 of 5"
        in capsys.readouterr().err
    )
    assert len(scan(tmp_path / "dcase2025" / "eval")) == 4


def test_archives_without_a_checksum_need_the_flag(
    server: Server, archives: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    registry = write_registry(tmp_path / "r.yaml", archives, unverified="dev_fan.zip")
    assert _download(server, registry, tmp_path / "data", "--split", "dev") == 2
    err = capsys.readouterr().err
    assert (
        "warning: Zenodo record 15097779: its metadata could not be read (" in err
        and "HTTP 404" in err
    )
    assert (
        "no published checksum is known for 1 archive(s) (dev_fan.zip): test: no checksum "
        "published; their Zenodo record's metadata gave none either (see the warnings). "
        "Nothing was downloaded"
    ) in err
    assert not server.faults.gets("dev_fan.zip")
    assert (
        _download(server, registry, tmp_path / "data", "--split", "dev", "--allow-unverified") == 0
    )
    said = capsys.readouterr()
    assert "warning: dev_fan.zip: no published checksum; it will be kept UNVERIFIED" in said.err
    assert "1 UNVERIFIED" in said.out
    marker = tmp_path / "data" / "dcase2025" / ".download" / "dev_fan.zip.done.json"
    assert json.loads(marker.read_text())["verified"] is False


@pytest.mark.parametrize("invenio", [False, True])
def test_a_missing_checksum_is_read_from_the_zenodo_record(
    server: Server,
    archives: dict[str, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    invenio: bool,
) -> None:
    """An archive the registry pins no checksum for is verified against the md5 its Zenodo
    record lists (``/api/records/N``, or the InvenioRDM ``/files`` listing), and cited so; read
    from the ``--base-url`` mirror that also serves the archive, it is labelled self-attested."""
    registry = write_registry(tmp_path / "r.yaml", archives, unverified="dev_fan.zip")
    where = "api/records/15097779" + ("/files" if invenio else "")
    server.files[where] = record_json(archives, 15097779, invenio=invenio)
    out = tmp_path / "data"
    assert _download(server, registry, out, "--split", "dev", "--dry-run") == 0
    digest = hashlib.md5(archives["records/15097779/files/dev_fan.zip"]).hexdigest()
    cited = (
        f"Zenodo record 15097779 metadata ({server.url}/api/records/15097779, read at "
        "download time)"
    )
    assert f"md5 {digest} ({cited})" in capsys.readouterr().out
    assert _download(server, registry, out, "--split", "dev") == 0
    said = capsys.readouterr()
    assert "UNVERIFIED" not in said.out + said.err
    marker = json.loads((out / "dcase2025" / ".download" / "dev_fan.zip.done.json").read_text())
    assert (
        marker["verified"] == "self-attested"
        and marker["md5"] == digest
        and marker["sources"] == [cited]
    )
    assert len(scan(out / "dcase2025" / "dev")) == 5


def test_a_record_checksum_that_does_not_match_deletes_the_file(
    server: Server, archives: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    registry = write_registry(tmp_path / "r.yaml", archives, unverified="dev_fan.zip")
    server.files["api/records/15097779"] = record_json(archives, 15097779, lie=True)
    out = tmp_path / "data"
    assert _download(server, registry, out, "--split", "dev") == 2
    err = capsys.readouterr().err
    assert (
        "dev_fan.zip: checksum mismatch (md5 " in err
        and "checksum from Zenodo record 15097779 metadata" in err
    )
    assert (
        not list((out / "dcase2025" / ".download").iterdir())
        and _data_files(out / "dcase2025") == []
    )


def test_per_machine_evaluator_tables_label_the_evaluation_clips(
    server: Server, archives: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """DCASE 2026's labels: one evaluator table per machine type, no checksum, a commit-pinned
    URL; every line is checked before a clip is renamed, and a bad table renames nothing."""
    registry = write_registry(tmp_path / "r.yaml", archives, evaluator_truth=True)
    table = EVALUATOR_PATH.replace("{machine}", "ToyPet")
    server.files[table] = EVALUATOR_TABLE
    out = tmp_path / "data"
    assert _download(server, registry, out, "--split", "eval", "--dry-run") == 0
    assert re.search(
        r"ground_truth_ToyPet_section_00_test.csv\s+ground truth\s+.*no checksum; "
        r"pinned to commit "
        r"aaaaaaaaaaaa, every line checked",
        capsys.readouterr().out,
    )
    assert _download(server, registry, out, "--split", "eval") == 0
    said = capsys.readouterr()
    assert (
        f"it comes from a URL pinned to commit {'a' * 40}, and every line was checked"
        in said.out + said.err
    )
    test = sorted(c.path.name for c in scan(out / "dcase2025" / "eval") if c.split == "test")
    assert test == [
        "section_00_source_test_anomaly_0000_noAttribute.wav",
        "section_00_target_test_normal_0001_noAttribute.wav",
    ]

    server.files[table] = b"section_00_0000.wav,section_00_source_test_anomaly_0007_noAttribute\n"
    assert _download(server, registry, tmp_path / "bad", "--split", "eval") == 2
    err = capsys.readouterr().err
    assert (
        "ground_truth_ToyPet_section_00_test.csv: line 1 (" in err
        and "the table is not used" in err
    )
    names = sorted(
        p.name for p in (tmp_path / "bad" / "dcase2025" / "eval" / "ToyPet" / "test").iterdir()
    )
    assert names == ["section_00_0000.wav", "section_00_0001.wav"]  # official names kept
    assert not (
        tmp_path / "bad" / "dcase2025" / ".download" / "ground_truth_ToyPet_section_00_test.csv"
    ).exists()


_LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from stethoscope.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def test_a_full_disk_stops_cleanly(
    server: Server, archives: dict[str, bytes], tmp_path: Path
) -> None:
    """A real EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored): once while downloading (the archive is
    larger than the limit), once while unpacking (a small zip whose member is larger)."""
    from .fixtures import wav_bytes, zip_bytes

    big = archives["records/15097779/files/dev_fan.zip"]
    silent = zip_bytes(
        {"ToyPet/test/section_00_0000.wav": wav_bytes(seconds=4, silent=True)}, compress=True
    )
    server.files["records/15519362/files/eval_data_ToyPet_test.zip"] = silent
    files = {**archives, "records/15519362/files/eval_data_ToyPet_test.zip": silent}
    registry = write_registry(tmp_path / "r.yaml", files)
    limit = 64_000
    assert len(big) > limit > len(silent) and len(wav_bytes(seconds=4, silent=True)) > limit
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}

    def start(out: Path, split: str) -> subprocess.Popen:
        argv = [
            "download",
            "dcase2025",
            "--out",
            str(out),
            "--split",
            split,
            "--base-url",
            server.url,
            "--registry",
            str(registry),
            "--quiet",
            "--no-ground-truth",
        ]
        return subprocess.Popen(
            [sys.executable, "-c", _LIMITED, str(limit), *argv],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    runs = [start(tmp_path / "a", "dev"), start(tmp_path / "b", "eval")]
    (_, err_a), (_, err_b) = (p.communicate(timeout=300) for p in runs)
    assert runs[0].returncode == 2, err_a
    assert (
        "dev_fan.zip.part: file too large for this file system or the process's file size "
        "limit while downloading dev_fan.zip"
    ) in err_a and "Traceback" not in err_a
    assert _data_files(tmp_path / "a" / "dcase2025") == []
    assert runs[1].returncode == 2, err_b
    assert (
        "while unpacking eval_data_ToyPet_test.zip" in err_b
        and "nothing of this archive was kept" in err_b
    )
    root_b = tmp_path / "b" / "dcase2025"
    assert _data_files(root_b) == [] and not any(
        p.name.endswith(".unpacking") for p in root_b.iterdir()
    )
    assert sorted(p.name for p in (root_b / ".download").iterdir()) == [
        "eval_data_ToyPet_test.zip"
    ]  # kept, verified
    gets = len(server.faults.gets("eval_data_ToyPet_test.zip"))
    assert (
        main(
            [
                "download",
                "dcase2025",
                "--out",
                str(tmp_path / "b"),
                "--split",
                "eval",
                "--base-url",
                server.url,
                "--registry",
                str(registry),
                "--quiet",
                "--no-ground-truth",
            ]
        )
        == 0
    )  # room again: no new fetch
    assert len(server.faults.gets("eval_data_ToyPet_test.zip")) == gets
    assert _data_files(root_b) == ["eval/ToyPet/test/section_00_0000.wav"]
