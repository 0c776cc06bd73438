"""The `Clip` record: one audio file and what its name and attribute files say about it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NORMAL, ANOMALY = 0, 1


@dataclass(frozen=True)
class Clip:
    """One recording. Scanners build these; nothing else parses file names.

    ``section`` is a two-digit string: the DCASE 2021+ section or the 2020/MIMII machine id.
    ``label`` is 0 (normal), 1 (anomaly) or None (unlabelled evaluation clip).
    ``domain`` is "source", "target" or None where the layout has no domains.
    """

    path: Path
    machine: str
    section: str = "00"
    domain: str | None = None
    split: str = "test"
    label: int | None = None
    attributes: tuple[tuple[str, str], ...] = field(default=())
    layout: str = "folder"
    channel: int = 0

    @property
    def name(self) -> str:
        """File name as DCASE result files list it."""
        return self.path.name

    @property
    def section_tag(self) -> str:
        """``id_XX`` for the 2020 / MIMII layouts, ``section_XX`` otherwise (used in CSV names)."""
        return f"id_{self.section}" if self.layout in ("dcase2020", "mimii") else f"section_{self.section}"

    @property
    def is_target(self) -> bool:
        return self.domain == "target"
