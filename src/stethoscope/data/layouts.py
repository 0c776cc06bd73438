"""Scanners that turn a data folder into `Clip` records, one per known layout, plus auto-detection.

The one place that parses file names. Which files are audio is the audio policy's call
(`data.policy.list_audio`: audio suffixes, hidden names ignored, non-regular entries refused
by name); every audio file under a scanned folder must parse, or `LayoutError` names it:
nothing is dropped silently. Other files (.csv, .txt, .md, ...) are ignored. Layouts:

* ``dcase2020``: ``<type>/{train,test}/[normal|anomaly]_id_XX_NNNNNNNN.wav``
* ``dcase2021``:
``<type>/{train,source_test,target_test}/section_XX_{source,target}_{train,test}_[{normal,anomaly}_]NNNN[_attrs].wav``
* ``dcase2022`` (2022-2026):
``<type>/{train,test}/section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN_<attrs>.wav``
  with ``<type>/attributes_XX.csv``; unlabelled evaluation names ``section_XX_NNNN.wav``;
  ``<attrs>`` ``noAttribute`` (2024+) marks withheld attributes (``Clip.hidden_attributes``);
  2025's ``<type>/supplemental/`` (clean machine and noise recordings) gives clips of split
  ``supplemental``; 2026's clips have two channels (0 near, 1 far microphone: ``channel``)
* ``mimii``: ``<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav`` (8-channel raw files: ``channel`` picks
one)
* ``folder``: ``<root>/{normal,anomaly|abnormal}/...`` (test) and optional ``<root>/train/``
(normals)
* ``manifest``: a CSV file ``path,label[,machine,section,domain,split]``
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayoutError
from .clip import ANOMALY, HIDDEN, NORMAL, SUPPLEMENTAL, Clip
from .manifest import scan_manifest
from .policy import current_policy, list_audio

Parser = Callable[[Path], "Clip | None"]

LAYOUTS = ("dcase2020", "dcase2021", "dcase2022", "mimii", "folder", "manifest")
_LABELS = {"normal": NORMAL, "anomaly": ANOMALY, "abnormal": ANOMALY}

_RE_2020 = re.compile(r"^(?:(normal|anomaly)_)?id_(\d+)_(\d+)$")
_RE_SECTION = re.compile(
    r"^section_(\d+)_(source|target)_(train|test)_(normal|anomaly)_(\d+)(?:_(.*))?$"
)
_RE_SUPPLEMENTAL = re.compile(r"^section_(\d+)_([A-Za-z]+)_(\d+)(?:_(.*))?$")
_RE_2021_EVAL = re.compile(r"^section_(\d+)_(source|target)_test_(\d+)$")
_RE_2022_EVAL = re.compile(r"^section_(\d+)_(\d+)$")
_RE_ID = re.compile(r"^id_(\d+)$")


# -- helpers ------------------------------------------------------------------------------------
def audio_files(root: Path) -> list[Path]:
    """The regular audio files below ``root``, sorted; audio-named entries that are not
    regular files (folders, FIFOs, broken links) go through the active audio policy."""
    files, refused = list_audio(root)
    policy = current_policy()
    for path, problem in refused:
        policy.judge(path, [problem])
    return files


def _section(digits: str) -> str:
    return f"{int(digits):02d}"


def _name_attributes(tail: str | None) -> tuple[tuple[str, str], ...]:
    """``speed_1500_load_40`` -> (("speed", "1500"), ("load", "40")); an odd token count keeps
    the whole tail as one ``("attributes", tail)`` pair rather than guessing; ``noAttribute``
    (withheld) and an empty tail give none."""
    if not tail or tail == HIDDEN:
        return ()
    tokens = tail.split("_")
    if len(tokens) % 2:
        return (("attributes", tail),)
    return tuple(zip(tokens[0::2], tokens[1::2], strict=True))


def _mismatch(path: Path, layout: str, expected: str) -> LayoutError:
    return LayoutError(
        f"{path}: file name/location does not match the {layout} layout (expected {expected})"
    )


def _scan_files(
    root: Path, layout: str, channel: int | None, files: list[Path] | None = None
) -> list[Clip]:
    root = _existing_dir(root, layout)
    files = audio_files(root) if files is None else files
    if not files:
        raise LayoutError(f"{root}: no audio files found for layout {layout}")
    parse = PARSERS[layout](root, channel)
    clips = []
    for path in files:
        clip = parse(path)
        if clip is None:
            raise _mismatch(path, layout, EXPECTED[layout])
        clips.append(clip)
    return clips


def _existing_dir(root: str | Path, layout: str) -> Path:
    root = Path(root).absolute()
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder (layout {layout})")
    return root


# -- DCASE 2020 -------------------------------------------------------------------------------
def _parser_dcase2020(base: Path, channel: int | None) -> Parser:
    del base  # the machine type is the split folder's parent, wherever the scan started

    def parse(path: Path) -> Clip | None:
        m = _RE_2020.match(path.stem)
        split = path.parent.name
        if m is None or split not in ("train", "test"):
            return None
        state, ident, _ = m.groups()
        label = _LABELS[state] if state else None
        if split == "train" and label != NORMAL:
            return None
        return Clip(
            path,
            path.parent.parent.name,
            _section(ident),
            None,
            split,
            label,
            (),
            "dcase2020",
            channel,
        )

    return parse


def scan_dcase2020(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """DCASE 2020 Task 2: ``<type>/{train,test}/`` files; ``root`` may be the data set or one type
    folder."""
    return _scan_files(Path(root), "dcase2020", channel)


def _labelled_section(
    stem: str,
) -> tuple[str, str, str, int, tuple[tuple[str, str], ...], bool] | None:
    """(section, domain, split, label, name attributes, attributes hidden) of a labelled DCASE
    2021+ file name."""
    m = _RE_SECTION.match(stem)
    if m is None:
        return None
    section, domain, split, state, _, tail = m.groups()
    return section, domain, split, _LABELS[state], _name_attributes(tail), tail == HIDDEN


# -- DCASE 2021 -------------------------------------------------------------------------------
def _parser_dcase2021(base: Path, channel: int | None) -> Parser:
    del base

    def parse(path: Path) -> Clip | None:
        folder, machine = path.parent.name, path.parent.parent.name
        named = _labelled_section(path.stem)
        if named is not None:
            section, domain, split, label, attrs, hidden = named
        elif (e := _RE_2021_EVAL.match(path.stem)) is not None:
            section, domain, _ = e.groups()
            split, label, attrs, hidden = "test", None, (), False
        else:
            return None
        expected_folder = "train" if split == "train" else f"{domain}_test"
        if folder not in (expected_folder, split):  # also accept a plain test/ folder
            return None
        return Clip(
            path,
            machine,
            _section(section),
            domain,
            split,
            label,
            attrs,
            "dcase2021",
            channel,
            hidden,
        )

    return parse


def scan_dcase2021(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """DCASE 2021 Task 2: ``<type>/{train,source_test,target_test}/section_XX_...`` files."""
    return _scan_files(Path(root), "dcase2021", channel)


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
                raise LayoutError(
                    f"{csv_path}: attribute file must start with a 'file_name' column"
                )
            for row in reader:
                if not row or not row[0].strip():
                    continue
                parts = Path(row[0].strip()).parts
                key = "/".join(parts[-2:])
                values = [c.strip() for c in row[1:]]
                pairs = tuple((p, v) for p, v in zip(values[0::2], values[1::2], strict=False) if p)
                table[key] = pairs
    return table


def _parser_dcase2022(base: Path, channel: int | None) -> Parser:
    del base
    tables: dict[Path, dict[str, tuple[tuple[str, str], ...]]] = {}

    def attributes_of(path: Path) -> tuple[tuple[str, str], ...] | None:
        type_dir = path.parent.parent
        if type_dir not in tables:
            tables[type_dir] = read_attribute_csvs(type_dir)
        return tables[type_dir].get(f"{path.parent.name}/{path.name}")

    def parse(path: Path) -> Clip | None:
        folder, machine = path.parent.name, path.parent.parent.name
        if folder == SUPPLEMENTAL:
            return _supplemental(path, machine, channel)
        named = _labelled_section(path.stem)
        if named is not None:
            section, domain, split, label, attrs, hidden = named
        elif (e := _RE_2022_EVAL.match(path.stem)) is not None:
            section, domain, split, label, attrs, hidden = e.group(1), None, "test", None, (), False
        else:
            return None
        if folder != split:
            return None
        from_csv = attributes_of(path)
        if from_csv is not None and any(p == HIDDEN or v == HIDDEN for p, v in from_csv):
            hidden, from_csv, attrs = True, (), ()  # the attribute file withholds them
        return Clip(
            path,
            machine,
            _section(section),
            domain,
            split,
            label,
            from_csv if from_csv else attrs,
            "dcase2022",
            channel,
            hidden,
        )

    return parse


def _supplemental(path: Path, machine: str, channel: int | None) -> Clip:
    """A clip of ``<type>/supplemental/``: DCASE 2025's clean machine and noise recordings.
    ``section_XX_<kind>_NNNN[_attrs]`` gives the section, ``("kind", <kind>)`` and the
    attributes; other names are taken as they are (section 00): the folder says what they are."""
    m = _RE_SUPPLEMENTAL.match(path.stem)
    section, hidden = "00", False
    attrs: tuple[tuple[str, str], ...] = ()
    if m is not None:
        section, kind, _, tail = m.groups()
        attrs, hidden = (("kind", kind), *_name_attributes(tail)), tail == HIDDEN
    return Clip(
        path,
        machine,
        _section(section),
        None,
        SUPPLEMENTAL,
        None,
        attrs,
        "dcase2022",
        channel,
        hidden,
    )


def scan_dcase2022(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """DCASE 2022-2025 Task 2: ``<type>/{train,test}/section_XX_...`` plus ``attributes_XX.csv``."""
    return _scan_files(Path(root), "dcase2022", channel)


# -- MIMII ------------------------------------------------------------------------------------
def _parser_mimii(base: Path, channel: int | None) -> Parser:
    del base

    def parse(path: Path) -> Clip | None:
        state, ident = path.parent.name, _RE_ID.match(path.parent.parent.name)
        if state not in ("normal", "abnormal") or ident is None or not path.stem.isdigit():
            return None
        return Clip(
            path,
            path.parent.parent.parent.name,
            _section(ident.group(1)),
            None,
            "test",
            _LABELS[state],
            (),
            "mimii",
            channel,
        )

    return parse


def scan_mimii(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """MIMII: ``<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav``; ``root`` may be the data set, a
    type folder or an id folder. Raw MIMII files have 8 channels: ``channel`` picks one."""
    return _scan_files(Path(root), "mimii", channel)


# -- plain folder -----------------------------------------------------------------------------
_FOLDER_SPLITS = {
    "normal": ("test", NORMAL),
    "anomaly": ("test", ANOMALY),
    "abnormal": ("test", ANOMALY),
    "train": ("train", NORMAL),
}


def _parser_folder(base: Path, channel: int | None) -> Parser:
    def parse(path: Path) -> Clip | None:
        top = path.relative_to(base).parts[0]
        if top not in _FOLDER_SPLITS or path.parent == base:
            return None
        split, label = _FOLDER_SPLITS[top]
        return Clip(path, base.name, "00", None, split, label, (), "folder", channel)

    return parse


def scan_folder(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """``<root>/normal/``, ``<root>/anomaly/`` (or ``abnormal/``) as test clips and an optional
    ``<root>/train/`` of normal clips; the machine is the root folder's name."""
    return _scan_files(Path(root), "folder", channel)


PARSERS: dict[str, Callable[[Path, int | None], Parser]] = {
    "dcase2020": _parser_dcase2020,
    "dcase2021": _parser_dcase2021,
    "dcase2022": _parser_dcase2022,
    "mimii": _parser_mimii,
    "folder": _parser_folder,
}
EXPECTED = {
    "dcase2020": "<type>/{train,test}/[normal|anomaly]_id_XX_NNNNNNNN.wav",
    "dcase2021": "<type>/{train,source_test,target_test}/section_XX_{source,target}_{train,test}_"
    "{normal,anomaly}_NNNN[_attrs].wav or section_XX_{source,target}_test_NNNN.wav",
    "dcase2022": "<type>/{train,test}/section_XX_{source,target}_{train,test}_"
    "{normal,anomaly}_NNNN_<attrs>.wav, <type>/test/section_XX_NNNN.wav"
    " or <type>/supplemental/<file>",
    "mimii": "<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav",
    "folder": "<root>/{train,normal,anomaly,abnormal}/<file>.wav",
}

SCANNERS: dict[str, Callable[..., list[Clip]]] = {
    "dcase2020": scan_dcase2020,
    "dcase2021": scan_dcase2021,
    "dcase2022": scan_dcase2022,
    "mimii": scan_mimii,
    "folder": scan_folder,
    "manifest": scan_manifest,
}


# -- detection and the front door -------------------------------------------------------------
_TRIED = ("mimii", "dcase2021", "dcase2022", "dcase2020", "folder")
# where both fit every file, the more specific layout wins: names say more than folders, and
# DCASE 2021's plain test/ folder is a leniency, while DCASE 2022+ is built on it
_REFINED_BY = {
    "folder": ("mimii", "dcase2020", "dcase2021", "dcase2022"),
    "dcase2021": ("dcase2022",),
}
_FLAGS = ", ".join(f"--layout {name}" for name in (*_TRIED, "manifest"))


@dataclass(frozen=True)
class Detection:
    """The layout found in a folder, why, and how many of its ``n_files`` audio files each
    layout's names fit (``fits``)."""

    layout: str
    reason: str
    fits: dict[str, int] = field(default_factory=dict)
    n_files: int = 0
    files: tuple[Path, ...] = ()


def detect(root: str | Path) -> Detection:
    """Which layout ``root`` holds: the one whose names fit every audio file (the more specific
    one where several do); with only part of the files fitting, the one layout that fits
    any. Several layouts fitting parts, or none fitting, is a `LayoutError` listing the
    candidates and their ``--layout`` flags."""
    root = Path(root).absolute()
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return Detection("manifest", "a .csv file is a manifest")
        raise LayoutError(
            f"{root}: a file that is not a .csv manifest; give a data folder or a manifest"
        )
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder or file")
    files = audio_files(root)
    n = len(files)
    if not files:
        raise LayoutError(
            f"{root}: no audio files found; tried layouts {', '.join(_TRIED)} "
            "(a manifest must be given as the .csv file itself)"
        )
    fitted: dict[str, set[Path]] = {}
    for layout in _TRIED:
        parse = PARSERS[layout](root, 0)
        fitted[layout] = {p for p in files if parse(p) is not None}
    fits = {name: len(fitted[name]) for name in _TRIED}
    full = [name for name in _TRIED if fits[name] == n]
    best = [name for name in full if not any(other in full for other in _REFINED_BY.get(name, ()))]
    found = lambda layout, why: Detection(layout, why, fits, n, tuple(files))  # noqa: E731
    if len(best) == 1:
        also = [name for name in full if name != best[0]]
        more = f" ({', '.join(also)} fit too; {best[0]} is more specific)" if also else ""
        return found(best[0], f"all {n} audio files fit its names and folders{more}")
    if best:
        raise LayoutError(
            f"{root}: ambiguous layout: {' and '.join(best)} each fit all {n} audio "
            f"files; choose one with {' or '.join(f'--layout {b}' for b in best)}"
        )
    partial = [name for name in _TRIED if fits[name]]
    if not partial:
        raise LayoutError(
            f"{root}: no known layout matches (tried {', '.join(_TRIED)}, manifest); "
            f"e.g. {files[0].relative_to(root)} fits none of them"
        )
    widest = [a for a in partial if all(fitted[b] <= fitted[a] for b in partial)]
    if widest:  # every file some layout fits, this one fits too: the others explain nothing more
        return found(
            widest[0],
            f"{fits[widest[0]]} of {n} audio files fit its names and folders, "
            "and no other layout fits a file it does not",
        )
    listed = ", ".join(f"{name} fits {fits[name]} of {n}" for name in partial)
    raise LayoutError(
        f"{root}: no single layout fits every audio file ({listed}); scan each part "
        "on its own (one folder per layout), or choose one with "
        f"{' or '.join(f'--layout {p}' for p in partial)} to have the files it does "
        "not fit named"
    )


def detect_layout(root: str | Path) -> str:
    """The name of the layout `detect` finds in ``root``."""
    return detect(root).layout


def scan(
    root: str | Path,
    layout: str = "auto",
    machine: str | None = None,
    split: str | None = None,
    channel: int | None = 0,
) -> list[Clip]:
    """All clips under ``root`` (a folder, or a .csv manifest), sorted by path.

    ``layout`` is one of `LAYOUTS` or "auto" (see `detect`); ``machine`` and ``split`` keep
    only matching clips; ``channel`` selects the channel of multichannel files (None: their mean).
    """
    detection = detect(root) if layout == "auto" else None
    layout = detection.layout if detection else layout
    if layout not in SCANNERS:
        raise LayoutError(f"unknown layout {layout!r}; known: auto, {', '.join(LAYOUTS)}")
    if channel is not None and channel < 0:
        raise LayoutError(
            f"channel must be >= 0 (or None for the mean of all channels), got {channel}"
        )
    try:
        if detection and layout != "manifest":  # the files detection listed, not a second walk
            clips = _scan_files(Path(root), layout, channel, list(detection.files))
        else:
            clips = SCANNERS[layout](root, channel=channel)
    except LayoutError as err:
        if detection is None:
            raise
        raise LayoutError(
            f"{err} [layout auto-detected as {layout}: {detection.reason}; "
            "a folder mixing layouts must be scanned one part at a time; "
            f"otherwise name its layout: {_FLAGS}]"
        ) from err
    if machine is not None:
        kept = [c for c in clips if c.machine == machine]
        if not kept:
            raise LayoutError(
                f"{root}: no {layout} clips of machine {machine!r}; machines "
                f"present: {', '.join(sorted({c.machine for c in clips}))}"
            )
        clips = kept
    if split is not None:
        kept = [c for c in clips if c.split == split]
        if not kept:
            raise LayoutError(
                f"{root}: no {layout} clips in split {split!r}; splits present: "
                f"{', '.join(sorted({c.split for c in clips}))}"
            )
        clips = kept
    return sorted(clips, key=lambda c: str(c.path))
