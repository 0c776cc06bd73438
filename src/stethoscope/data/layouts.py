"""Scanners that turn a data folder into `Clip` records, one per known layout, plus auto-detection.

The one place that walks data folders (the file-name parsers are in `layout_names`). Which
files are audio is the audio policy's call (`data.policy.list_audio`: audio suffixes, hidden
names ignored, non-regular entries refused by name); every audio file under a scanned folder
must parse, or `LayoutError` names it: nothing is dropped silently. Other files (.csv, .txt,
.md, ...) are ignored. Layouts:

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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayoutError
from .clip import Clip
from .layout_names import EXPECTED, PARSERS
from .manifest import scan_manifest
from .policy import current_policy, list_audio

LAYOUTS = ("dcase2020", "dcase2021", "dcase2022", "mimii", "folder", "manifest")


# -- helpers ------------------------------------------------------------------------------------
def audio_files(root: Path) -> list[Path]:
    """The regular audio files below ``root``, sorted; audio-named entries that are not
    regular files (folders, FIFOs, broken links) go through the active audio policy."""
    files, refused = list_audio(root)
    policy = current_policy()
    for path, problem in refused:
        policy.judge(path, [problem])
    return files


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


# -- one scanner per layout ---------------------------------------------------------------
def scan_dcase2020(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """DCASE 2020 Task 2: ``<type>/{train,test}/`` files; ``root`` may be the data set or one type
    folder."""
    return _scan_files(Path(root), "dcase2020", channel)


def scan_dcase2021(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """DCASE 2021 Task 2: ``<type>/{train,source_test,target_test}/section_XX_...`` files."""
    return _scan_files(Path(root), "dcase2021", channel)


def scan_dcase2022(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """DCASE 2022-2025 Task 2: ``<type>/{train,test}/section_XX_...`` plus ``attributes_XX.csv``."""
    return _scan_files(Path(root), "dcase2022", channel)


def scan_mimii(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """MIMII: ``<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav``; ``root`` may be the data set, a
    type folder or an id folder. Raw MIMII files have 8 channels: ``channel`` picks one."""
    return _scan_files(Path(root), "mimii", channel)


def scan_folder(root: str | Path, channel: int | None = 0) -> list[Clip]:
    """``<root>/normal/``, ``<root>/anomaly/`` (or ``abnormal/``) as test clips and an optional
    ``<root>/train/`` of normal clips; the machine is the root folder's name."""
    return _scan_files(Path(root), "folder", channel)


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
