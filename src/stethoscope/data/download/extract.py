"""Unpacking archives into the folders the scanners read, and the evaluation ground truth.

Every member is placed from its machine-type folder down, whatever the archive wraps it in:
``.../<type>/{train,test,source_test,target_test,supplemental}/...`` and
``.../<type>/attributes_XX.csv`` (DCASE), ``.../<type>/id_XX/...`` (MIMII). An archive is
unpacked into a hidden staging folder beside its destination first and only then moved in
(renames on one file system), so a full disk or a corrupt member leaves nothing half-unpacked
in the data folders: the staging folder is removed and the error names the archive. Members
that fit no known place go to ``<into>/.unplaced/<archive>/`` (hidden from the scanners).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import threading
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ...errors import DownloadError
from .fetch import DISK_FULL, disk_full_message

SPLIT_FOLDERS = {"train", "test", "source_test", "target_test", "supplemental"}
TEST_FOLDERS = ("test", "source_test", "target_test")
_ATTRIBUTES = re.compile(r"^attributes_\d+\.csv$")
_MIMII_ID = re.compile(r"^id_\d+$")
OFFICIAL_NAMES = "eval_official_names.csv"
_OFFICIAL = re.compile(r"^section_(\d{2})_(\d{4})\.wav$")
_LABELLED = re.compile(
    r"^section_(\d{2})_(?:source|target)_test_(?:normal|anomaly)_(\d{4})(?:_[^/\\]*)?\.wav$"
)
_MOVE_LOCK = threading.Lock()


def relocate(parts: tuple[str, ...], layout: str) -> PurePosixPath | None:
    """Where a member belongs below the split folder: from its machine-type folder down; None
    when its path has no machine-type folder this layout knows."""
    for i in range(1, len(parts)):
        name, is_folder = parts[i], i < len(parts) - 1
        if layout == "mimii":
            hit = is_folder and bool(_MIMII_ID.match(name))
        else:
            hit = (is_folder and name in SPLIT_FOLDERS) or (
                not is_folder and bool(_ATTRIBUTES.match(name))
            )
        if hit:
            return PurePosixPath(*parts[i - 1 :])
    return None


def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    path = PurePosixPath(name.replace("\\", "/"))
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if path.is_absolute() or ".." in parts or not parts:
        raise DownloadError(
            f"{archive}: member {name!r} points outside the archive; refusing to unpack it"
        )
    return parts


def extract_archive(archive: Path, into: Path, layout: str, discard: bool = True) -> int:
    """Unpack ``archive`` into ``into`` (see the module notes); the number of files placed.
    Any fault of the archive (not a zip, a corrupt deflate stream, a CRC mismatch, an encrypted
    or unsupported member, a member outside the archive) is a `DownloadError` naming it; the
    staging folder is removed, and with ``discard`` (an archive no independent checksum
    vouches for) the archive too, so that the next run fetches it afresh."""
    staging = into.parent / f".{into.name}.{archive.name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    placed: list[PurePosixPath] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                parts = _member_parts(info.filename, archive)
                rel = relocate(parts, layout) or PurePosixPath(".unplaced", archive.stem, *parts)
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:  # zipfile checks each CRC-32
                    shutil.copyfileobj(src, dst, 1 << 20)
                placed.append(rel)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if err.errno in DISK_FULL:
            raise DownloadError(
                disk_full_message(staging, err, f"unpacking {archive.name}")
                + "; nothing of this archive was kept in the data folder"
            ) from None
        raise DownloadError(f"{archive}: cannot unpack ({err.strerror or err})") from err
    except Exception as err:
        shutil.rmtree(staging, ignore_errors=True)
        if discard:
            archive.unlink(missing_ok=True)
        if isinstance(err, DownloadError):
            raise
        gone = (
            "; the archive was deleted: run again to fetch it afresh"
            if discard
            else "; the archive matches its published checksum, so the published file itself is "
            "damaged"
        )
        raise DownloadError(
            f"{archive}: not a readable zip archive ({_reason(err)}); "
            f"nothing of it was unpacked{gone}"
        ) from err
    try:
        with _MOVE_LOCK:  # archives unpacked in parallel may share a folder (and attributes_XX.csv)
            for rel in placed:  # renames within one file system: no copy, no new space needed
                _place(staging / rel, into / rel)
    except OSError as err:
        raise DownloadError(
            f"{into}: moving the files of {archive.name} in failed "
            f"({err.strerror or err}); "
            "its files may be partly in place: run the same command again"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(placed)


def _reason(err: Exception) -> str:
    """What was wrong with an archive, in words: the encrypted member and corrupt data cases
    named."""
    text = str(err) or type(err).__name__
    if "encrypted" in text.lower() or "password" in text.lower():
        return f"an encrypted member needs a password ({text})"
    if isinstance(err, zlib.error):
        return f"corrupt compressed data ({text})"
    return text


def _place(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``; a second ``attributes_XX.csv`` of one machine type (the
    training and the test archive may each hold one) is merged row by row, never replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and _ATTRIBUTES.match(target.name):
        text = target.read_text(encoding="utf-8")
        have = set(text.splitlines())
        rows = [
            line
            for line in source.read_text(encoding="utf-8").splitlines()[1:]
            if line and line not in have
        ]
        if rows:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(
                    ("\n" if text and not text.endswith("\n") else "") + "\n".join(rows) + "\n"
                )
        source.unlink()
        return
    os.replace(source, target)


def read_ground_truth(
    path: Path, fmt: str = "list", machine: str | None = None
) -> dict[str, list[tuple[str, str]]]:
    """A ground-truth table -> {type: [(official name, labelled name), ...]}.

    ``list``: the baseline's ``eval_data_list_YYYY.csv``, a machine-type line, then
    ``official name,labelled name[,label]`` lines. ``evaluator``: the evaluator's
    ``ground_truth_<type>_section_XX_test.csv`` of ``machine``, ``official,labelled`` lines
    whose labelled name may lack ``.wav``; every line must pair ``section_XX_NNNN.wav`` with
    ``section_XX_{source,target}_test_{normal,anomaly}_NNNN[_attributes]`` (same section and
    number), or the table is refused with the line named."""
    table: dict[str, list[tuple[str, str]]] = (
        {machine: []} if fmt == "evaluator" and machine else {}
    )
    current = machine if fmt == "evaluator" else None
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            cells = [c.strip() for c in row if c.strip()]
            if len(cells) == 1 and fmt == "list":
                current = cells[0]
                table.setdefault(current, [])
            elif len(cells) >= 2:
                if current is None:
                    raise DownloadError(f"{path}: a file line before any machine-type line")
                for name in cells[:2]:
                    if "/" in name or "\\" in name or name.startswith("."):
                        raise DownloadError(f"{path}: {name!r} is not a plain file name")
                official, labelled = cells[0], cells[1]
                if fmt == "evaluator":
                    labelled = labelled if labelled.endswith(".wav") else labelled + ".wav"
                    a, b = _OFFICIAL.match(official), _LABELLED.match(labelled)
                    if not (a and b and a.groups() == b.groups()):
                        raise DownloadError(
                            f"{path}: line {number} ({','.join(cells[:2])}) does "
                            "not pair an evaluation clip section_XX_NNNN.wav "
                            "with its labelled name of the same section and "
                            "number; the table is not used"
                        )
                table[current].append((official, labelled))
            elif cells and fmt == "evaluator":
                raise DownloadError(
                    f"{path}: line {number} has one value, expected official,labelled names"
                )
    if fmt == "evaluator" and machine and not table[machine]:
        raise DownloadError(f"{path}: no clip lines; the table is not used")
    return table


def apply_ground_truth(
    table: dict[str, list[tuple[str, str]]],
    eval_dir: Path,
    machines: list[str],
    say: Callable[[str], None],
) -> dict[str, int]:
    """Rename each machine type's evaluation clips to their labelled names (the official name
    list stays in ``<type>/eval_official_names.csv``); {type: clips renamed}. Already renamed
    clips are left alone, so a second run changes nothing."""
    done: dict[str, int] = {}
    for machine in machines:
        folder = eval_dir / machine
        if machine not in table or not folder.is_dir():
            continue
        present = {
            p.name: p
            for sub in TEST_FOLDERS
            if (folder / sub).is_dir()
            for p in (folder / sub).iterdir()
        }
        renamed = missing = 0
        for official, labelled in table[machine]:
            source = present.get(official)
            if source is not None:
                os.replace(source, source.parent / labelled)
                renamed += 1
            elif labelled not in present:
                missing += 1
        with open(folder / OFFICIAL_NAMES, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["official_name", "labelled_name"])
            writer.writerows(table[machine])
        if missing:
            say(
                f"warning: {machine}: {missing} evaluation clip(s) of the ground truth list are "
                f"not in {folder}"
            )
        done[machine] = renamed
    return done
