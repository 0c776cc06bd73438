"""The CSV manifest layout: ``path,label[,machine,section,domain,split]``, one row per clip."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import LayoutError
from .clip import ANOMALY, NORMAL, Clip
from .policy import current_policy
from .quality import entry_problem, is_audio_name

_MANIFEST_LABELS = {
    "normal": NORMAL,
    "0": NORMAL,
    "anomaly": ANOMALY,
    "abnormal": ANOMALY,
    "1": ANOMALY,
    "": None,
}


def scan_manifest(csv_path: str | Path, channel: int | None = 0) -> list[Clip]:
    """A CSV with header ``path,label[,machine,section,domain,split]``; paths are relative to
    the CSV's folder (or absolute); label normal/anomaly/0/1/empty (unlabelled); other
    columns are ignored. Machine defaults to the CSV's folder name, split to ``test``."""
    csv_path = Path(csv_path).absolute()
    if not csv_path.is_file():
        raise LayoutError(f"{csv_path}: manifest file not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "path" not in fields or "label" not in fields:
            raise LayoutError(
                f"{csv_path}: manifest header must contain 'path' and 'label' (got {fields})"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    clips = []
    policy = current_policy()
    for line, row in enumerate(rows, start=2):
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        where = f"{csv_path}, line {line}"
        if not row["path"] or not is_audio_name(path.name):
            raise LayoutError(
                f"{where}: {row['path']!r} is not an audio file name (.wav, .flac, .ogg, .mp3, ...)"
            )
        if not path.exists() and not path.is_symlink():
            raise LayoutError(f"{where}: audio file {path} not found")
        problem = entry_problem(path)  # a folder, FIFO or broken link: the audio policy's call
        if problem and not policy.judge(path, [problem]):
            continue
        label = row["label"].lower()
        if label not in _MANIFEST_LABELS:
            raise LayoutError(f"{where}: label {row['label']!r} is not normal/anomaly/0/1/empty")
        domain = row.get("domain", "").lower() or None
        if domain not in (None, "source", "target"):
            raise LayoutError(f"{where}: domain {row['domain']!r} is not source/target/empty")
        section = row.get("section", "") or "00"
        clips.append(
            Clip(
                path,
                row.get("machine", "") or csv_path.parent.name,
                f"{int(section):02d}" if section.isdigit() else section,
                domain,
                row.get("split", "") or "test",
                _MANIFEST_LABELS[label],
                (),
                "manifest",
                channel,
            )
        )
    if not clips:
        raise LayoutError(f"{csv_path}: manifest lists no clips")
    return clips
