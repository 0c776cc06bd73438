"""The file-name parsers of the folder layouts: one function per layout that turns an audio
file's path into a `Clip`, or None where the path does not fit that layout's names and folders.

`layouts` walks a folder and applies them (and detects which one fits); this module only reads
names, plus DCASE 2022+'s ``attributes_XX.csv`` files.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import LayoutError
from .clip import ANOMALY, HIDDEN, NORMAL, SUPPLEMENTAL, Clip

Parser = Callable[[Path], "Clip | None"]

_LABELS = {"normal": NORMAL, "anomaly": ANOMALY, "abnormal": ANOMALY}

_RE_2020 = re.compile(r"^(?:(normal|anomaly)_)?id_(\d+)_(\d+)$")
_RE_SECTION = re.compile(
    r"^section_(\d+)_(source|target)_(train|test)_(normal|anomaly)_(\d+)(?:_(.*))?$"
)
_RE_SUPPLEMENTAL = re.compile(r"^section_(\d+)_([A-Za-z]+)_(\d+)(?:_(.*))?$")
_RE_2021_EVAL = re.compile(r"^section_(\d+)_(source|target)_test_(\d+)$")
_RE_2022_EVAL = re.compile(r"^section_(\d+)_(\d+)$")
_RE_ID = re.compile(r"^id_(\d+)$")


# -- shared name pieces ------------------------------------------------------------------
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
