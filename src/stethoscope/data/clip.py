"""The `Clip` record: one audio file and what its name and attribute files say about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NORMAL, ANOMALY = 0, 1
SUPPLEMENTAL = "supplemental"  # the split of DCASE 2025's extra clean machine / noise clips
HIDDEN = "noAttribute"  # what DCASE 2024+ writes where a machine type's attributes are withheld


@dataclass(frozen=True)
class Clip:
    """One recording. Scanners build these; nothing else parses file names.

    ``section`` is a two-digit string: the DCASE 2021+ section or the 2020/MIMII machine id.
    ``label`` is 0 (normal), 1 (anomaly) or None (unlabelled evaluation clip).
    ``domain`` is "source", "target" or None where the layout has no domains.
    ``split`` is "train", "test" or "supplemental" (DCASE 2025's clean machine and noise
    recordings: no label, used by a system only if it asks for them).
    ``channel`` is the channel read from multichannel files (DCASE 2026: 0 near, 1 far
    microphone; MIMII: one of 8), None for the mean of all channels.
    ``hidden_attributes`` is True where the data set withholds the clip's attributes
    (``noAttribute``); ``attributes`` is then empty.
    """

    path: Path
    machine: str
    section: str = "00"
    domain: str | None = None
    split: str = "test"
    label: int | None = None
    attributes: tuple[tuple[str, str], ...] = field(default=())
    layout: str = "folder"
    channel: int | None = 0
    hidden_attributes: bool = False

    @property
    def name(self) -> str:
        """File name as DCASE result files list it."""
        return self.path.name

    @property
    def section_tag(self) -> str:
        """``id_XX`` for the 2020 / MIMII layouts, ``section_XX`` otherwise (used in CSV names)."""
        return (
            f"id_{self.section}"
            if self.layout in ("dcase2020", "mimii")
            else f"section_{self.section}"
        )

    @property
    def is_target(self) -> bool:
        return self.domain == "target"


def parse_channel(text: str | int | None) -> int | None:
    """``"0"``, ``"1"``, ... -> that channel; ``"mean"`` (or None) -> None (the mean of all
    channels). Anything else is a `ConfigError`."""
    from ..errors import ConfigError

    if text is None or (isinstance(text, str) and text.strip().lower() == "mean"):
        return None
    try:
        channel = int(text)
    except (TypeError, ValueError):
        raise ConfigError(f"channel must be a number (0, 1, ...) or 'mean', got {text!r}") from None
    if channel < 0:
        raise ConfigError(f"channel must be >= 0 or 'mean', got {channel}")
    return channel


def channel_name(channel: int | None) -> int | str:
    """How a channel choice is written in a model's run record: the number, or ``"mean"``."""
    return "mean" if channel is None else channel
