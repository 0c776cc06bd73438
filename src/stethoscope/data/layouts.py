"""Scanners that turn a data folder into `Clip` records, one per known layout, plus auto-detection.

The one place that parses file names. Every audio file (.wav/.flac) under a scanned folder
must parse, or `LayoutError` names it: nothing is dropped silently. Other files (.csv, .txt,
.md, ...) are ignored. Layouts:

* ``dcase2020``: ``<type>/{train,test}/[normal|anomaly]_id_XX_NNNNNNNN.wav``
* ``dcase2021``: ``<type>/{train,source_test,target_test}/section_XX_{source,target}_{train,test}_[{normal,anomaly}_]NNNN[_attrs].wav``
* ``dcase2022`` (2022-2025): ``<type>/{train,test}/section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN_<attrs>.wav``
  with ``<type>/attributes_XX.csv``; unlabelled evaluation names ``section_XX_NNNN.wav``
* ``mimii``: ``<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav`` (8-channel raw files: ``channel`` picks one)
* ``folder``: ``<root>/{normal,anomaly|abnormal}/...`` (test) and optional ``<root>/train/`` (normals)
* ``manifest``: a CSV file ``path,label[,machine,section,domain,split]``
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Callable, Iterable

from ..errors import LayoutError
from .audio import AUDIO_SUFFIXES
from .clip import ANOMALY, NORMAL, Clip

LAYOUTS = ("dcase2020", "dcase2021", "dcase2022", "mimii", "folder", "manifest")
_LABELS = {"normal": NORMAL, "anomaly": ANOMALY, "abnormal": ANOMALY}

_RE_2020 = re.compile(r"^(?:(normal|anomaly)_)?id_(\d+)_(\d+)$")
_RE_SECTION = re.compile(r"^section_(\d+)_(source|target)_(train|test)_(normal|anomaly)_(\d+)(?:_(.+))?$")
_RE_2021_EVAL = re.compile(r"^section_(\d+)_(source|target)_test_(\d+)$")
_RE_2022_EVAL = re.compile(r"^section_(\d+)_(\d+)$")
_RE_ID = re.compile(r"^id_(\d+)$")


# -- helpers ------------------------------------------------------------------------------------
def is_audio(path: Path) -> bool:
    """True for .wav / .flac files (any case); hidden files are never audio."""
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")


def audio_files(root: Path) -> list[Path]:
    """All audio files below ``root``, sorted (deterministic order)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and is_audio(p))


def _section(digits: str) -> str:
    return f"{int(digits):02d}"


def _name_attributes(tail: str | None) -> tuple[tuple[str, str], ...]:
    """``speed_1500_load_40`` -> (("speed", "1500"), ("load", "40")); an odd token count keeps
    the whole tail as one ``("attributes", tail)`` pair rather than guessing."""
    if not tail:
        return ()
    tokens = tail.split("_")
    if len(tokens) % 2:
        return (("attributes", tail),)
    return tuple(zip(tokens[0::2], tokens[1::2]))


def _mismatch(path: Path, layout: str, expected: str) -> LayoutError:
    return LayoutError(f"{path}: file name/location does not match the {layout} layout (expected {expected})")


def _scan_files(root: Path, layout: str, parse: Callable[[Path], Clip | None], expected: str) -> list[Clip]:
    root = _existing_dir(root, layout)
    files = audio_files(root)
    if not files:
        raise LayoutError(f"{root}: no audio files (.wav/.flac) found for layout {layout}")
    clips = []
    for path in files:
        clip = parse(path)
        if clip is None:
            raise _mismatch(path, layout, expected)
        clips.append(clip)
    return clips


def _existing_dir(root: str | Path, layout: str) -> Path:
    root = Path(root).absolute()
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder (layout {layout})")
    return root


# -- DCASE 2020 -------------------------------------------------------------------------------
def scan_dcase2020(root: str | Path, channel: int = 0) -> list[Clip]:
    """DCASE 2020 Task 2: ``<type>/{train,test}/`` files; ``root`` may be the data set or one type folder."""

    def parse(path: Path) -> Clip | None:
        m = _RE_2020.match(path.stem)
        split = path.parent.name
        if m is None or split not in ("train", "test"):
            return None
        state, ident, _ = m.groups()
        label = _LABELS[state] if state else None
        if split == "train" and label != NORMAL:
            return None
        return Clip(path, path.parent.parent.name, _section(ident), None, split, label, (), "dcase2020", channel)

    return _scan_files(Path(root), "dcase2020", parse,
                       "<type>/{train,test}/[normal|anomaly]_id_XX_NNNNNNNN.wav")


def _labelled_section(stem: str) -> tuple[str, str, str, int, tuple[tuple[str, str], ...]] | None:
    """(section, domain, split, label, name attributes) of a labelled DCASE 2021+ file name."""
    m = _RE_SECTION.match(stem)
    if m is None:
        return None
    section, domain, split, state, _, tail = m.groups()
    return section, domain, split, _LABELS[state], _name_attributes(tail)


# -- DCASE 2021 -------------------------------------------------------------------------------
def scan_dcase2021(root: str | Path, channel: int = 0) -> list[Clip]:
    """DCASE 2021 Task 2: ``<type>/{train,source_test,target_test}/section_XX_...`` files."""

    def parse(path: Path) -> Clip | None:
        folder, machine = path.parent.name, path.parent.parent.name
        named = _labelled_section(path.stem)
        if named is not None:
            section, domain, split, label, attrs = named
        elif (e := _RE_2021_EVAL.match(path.stem)) is not None:
            section, domain, _ = e.groups()
            split, label, attrs = "test", None, ()
        else:
            return None
        expected_folder = "train" if split == "train" else f"{domain}_test"
        if folder not in (expected_folder, split):  # also accept a plain test/ folder
            return None
        return Clip(path, machine, _section(section), domain, split, label, attrs, "dcase2021", channel)

    return _scan_files(Path(root), "dcase2021", parse,
                       "<type>/{train,source_test,target_test}/section_XX_{source,target}_{train,test}_"
                       "{normal,anomaly}_NNNN[_attrs].wav or section_XX_{source,target}_test_NNNN.wav")


# -- DCASE 2022-2025 --------------------------------------------------------------------------
def read_attribute_csvs(type_dir: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    """``attributes_XX.csv`` files of one machine type -> {"<split>/<file name>": attributes}.

    DCASE 2022+ format: ``file_name,d1p,d1v,d2p,d2v,...`` with ``file_name`` like
    ``<type>/train/<name>.wav``; empty parameter cells are skipped.
    """
    table: dict[str, tuple[tuple[str, str], ...]] = {}
    for csv_path in sorted(type_dir.glob("attributes_*.csv")):
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header or header[0].strip() != "file_name":
                raise LayoutError(f"{csv_path}: attribute file must start with a 'file_name' column")
            for row in reader:
                if not row or not row[0].strip():
                    continue
                parts = Path(row[0].strip()).parts
                key = "/".join(parts[-2:])
                values = [c.strip() for c in row[1:]]
                pairs = tuple((p, v) for p, v in zip(values[0::2], values[1::2]) if p)
                table[key] = pairs
    return table


def scan_dcase2022(root: str | Path, channel: int = 0) -> list[Clip]:
    """DCASE 2022-2025 Task 2: ``<type>/{train,test}/section_XX_...`` plus ``attributes_XX.csv``."""
    tables: dict[Path, dict[str, tuple[tuple[str, str], ...]]] = {}

    def attributes_of(path: Path) -> tuple[tuple[str, str], ...] | None:
        type_dir = path.parent.parent
        if type_dir not in tables:
            tables[type_dir] = read_attribute_csvs(type_dir)
        return tables[type_dir].get(f"{path.parent.name}/{path.name}")

    def parse(path: Path) -> Clip | None:
        folder, machine = path.parent.name, path.parent.parent.name
        named = _labelled_section(path.stem)
        if named is not None:
            section, domain, split, label, attrs = named
        elif (e := _RE_2022_EVAL.match(path.stem)) is not None:
            section, domain, split, label, attrs = e.group(1), None, "test", None, ()
        else:
            return None
        if folder != split:
            return None
        from_csv = attributes_of(path)
        return Clip(path, machine, _section(section), domain, split, label,
                    from_csv if from_csv else attrs, "dcase2022", channel)

    return _scan_files(Path(root), "dcase2022", parse,
                       "<type>/{train,test}/section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN_<attrs>.wav"
                       " or <type>/test/section_XX_NNNN.wav")


# -- MIMII ------------------------------------------------------------------------------------
def scan_mimii(root: str | Path, channel: int = 0) -> list[Clip]:
    """MIMII: ``<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav``; ``root`` may be the data set, a
    type folder or an id folder. Raw MIMII files have 8 channels: ``channel`` picks one."""

    def parse(path: Path) -> Clip | None:
        state, ident = path.parent.name, _RE_ID.match(path.parent.parent.name)
        if state not in ("normal", "abnormal") or ident is None or not path.stem.isdigit():
            return None
        return Clip(path, path.parent.parent.parent.name, _section(ident.group(1)), None, "test",
                    _LABELS[state], (), "mimii", channel)

    return _scan_files(Path(root), "mimii", parse, "<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav")


# -- plain folder -----------------------------------------------------------------------------
_FOLDER_SPLITS = {"normal": ("test", NORMAL), "anomaly": ("test", ANOMALY), "abnormal": ("test", ANOMALY),
                  "train": ("train", NORMAL)}


def scan_folder(root: str | Path, channel: int = 0) -> list[Clip]:
    """``<root>/normal/``, ``<root>/anomaly/`` (or ``abnormal/``) as test clips and an optional
    ``<root>/train/`` of normal clips; the machine is the root folder's name."""
    base = _existing_dir(root, "folder")

    def parse(path: Path) -> Clip | None:
        top = path.relative_to(base).parts[0]
        if top not in _FOLDER_SPLITS or path.parent == base:
            return None
        split, label = _FOLDER_SPLITS[top]
        return Clip(path, base.name, "00", None, split, label, (), "folder", channel)

    return _scan_files(base, "folder", parse, "<root>/{train,normal,anomaly,abnormal}/<file>.wav")


# -- CSV manifest -----------------------------------------------------------------------------
_MANIFEST_LABELS = {"normal": NORMAL, "0": NORMAL, "anomaly": ANOMALY, "abnormal": ANOMALY, "1": ANOMALY, "": None}


def scan_manifest(csv_path: str | Path, channel: int = 0) -> list[Clip]:
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
            raise LayoutError(f"{csv_path}: manifest header must contain 'path' and 'label' (got {fields})")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    clips = []
    for line, row in enumerate(rows, start=2):
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        where = f"{csv_path}, line {line}"
        if not row["path"] or not is_audio(path):
            raise LayoutError(f"{where}: {row['path']!r} is not a .wav/.flac path")
        if not path.is_file():
            raise LayoutError(f"{where}: audio file {path} not found")
        label = row["label"].lower()
        if label not in _MANIFEST_LABELS:
            raise LayoutError(f"{where}: label {row['label']!r} is not normal/anomaly/0/1/empty")
        domain = row.get("domain", "").lower() or None
        if domain not in (None, "source", "target"):
            raise LayoutError(f"{where}: domain {row['domain']!r} is not source/target/empty")
        section = row.get("section", "") or "00"
        clips.append(Clip(path, row.get("machine", "") or csv_path.parent.name,
                          _section(section) if section.isdigit() else section, domain,
                          row.get("split", "") or "test", _MANIFEST_LABELS[label], (), "manifest", channel))
    if not clips:
        raise LayoutError(f"{csv_path}: manifest lists no clips")
    return clips


SCANNERS: dict[str, Callable[..., list[Clip]]] = {
    "dcase2020": scan_dcase2020, "dcase2021": scan_dcase2021, "dcase2022": scan_dcase2022,
    "mimii": scan_mimii, "folder": scan_folder, "manifest": scan_manifest,
}


# -- detection and the front door -------------------------------------------------------------
def _looks_like(layout: str, root: Path, files: Iterable[Path]) -> bool:
    for path in files:
        stem, folder = path.stem, path.parent.name
        if layout == "mimii" and folder in ("normal", "abnormal") and _RE_ID.match(path.parent.parent.name):
            return True
        if layout == "dcase2021" and stem.startswith("section_") and folder in ("source_test", "target_test"):
            return True
        if layout == "dcase2022" and stem.startswith("section_"):
            return True
        if layout == "dcase2020" and _RE_2020.match(stem):
            return True
        if layout == "folder" and path.relative_to(root).parts[0] in _FOLDER_SPLITS and path.parent != root:
            return True
    return False


def detect_layout(root: str | Path) -> str:
    """Which layout ``root`` holds, by looking at its files (most specific layout first)."""
    root = Path(root).absolute()
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "manifest"
        raise LayoutError(f"{root}: a file that is not a .csv manifest; give a data folder or a manifest")
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder or file")
    tried = ("mimii", "dcase2021", "dcase2022", "dcase2020", "folder")
    files = audio_files(root)
    if not files:
        raise LayoutError(f"{root}: no audio files (.wav/.flac) found; tried layouts {', '.join(tried)} "
                          "(a manifest must be given as the .csv file itself)")
    for layout in tried:
        if _looks_like(layout, root, files):
            return layout
    raise LayoutError(f"{root}: no known layout matches (tried {', '.join(tried)}, manifest); "
                      f"e.g. {files[0].relative_to(root)} fits none of them")


def scan(root: str | Path, layout: str = "auto", machine: str | None = None, split: str | None = None,
         channel: int = 0) -> list[Clip]:
    """All clips under ``root`` (a folder, or a .csv manifest), sorted by path.

    ``layout`` is one of `LAYOUTS` or "auto" (see `detect_layout`); ``machine`` and ``split``
    keep only matching clips; ``channel`` selects the channel of multichannel files.
    """
    auto = layout == "auto"
    if auto:
        layout = detect_layout(root)
    if layout not in SCANNERS:
        raise LayoutError(f"unknown layout {layout!r}; known: auto, {', '.join(LAYOUTS)}")
    if channel < 0:
        raise LayoutError(f"channel must be >= 0, got {channel}")
    try:
        clips = SCANNERS[layout](root, channel=channel)
    except LayoutError as err:
        if not auto:
            raise
        raise LayoutError(f"{err} [layout auto-detected as {layout} from the folder's files; a folder "
                          "mixing layouts must be scanned one part at a time, or pass layout=...]") from err
    if machine is not None:
        kept = [c for c in clips if c.machine == machine]
        if not kept:
            raise LayoutError(f"{root}: no {layout} clips of machine {machine!r}; machines present: "
                              f"{', '.join(sorted({c.machine for c in clips}))}")
        clips = kept
    if split is not None:
        kept = [c for c in clips if c.split == split]
        if not kept:
            raise LayoutError(f"{root}: no {layout} clips in split {split!r}; splits present: "
                              f"{', '.join(sorted({c.split for c in clips}))}")
        clips = kept
    return sorted(clips, key=lambda c: str(c.path))
