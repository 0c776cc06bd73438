"""The model folders of ``train --out``: one model (named by the machine type in its run record)
or one sub-folder per machine type. Read by every consumer of a models folder (``serve``,
``watch``, ``score --engine ray``), so that all of them find the same models."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.quality import is_hidden
from ..errors import CheckpointError
from .base import CONFIG_FILE


def model_folders(folder: str | Path, flag: str = "--models") -> dict[str, Path]:
    """{machine type: model folder} of ``folder``; a `CheckpointError` naming ``flag`` and the
    folder when it is missing, holds no model or has a corrupt model config."""
    root = Path(folder)
    if not root.is_dir():
        raise CheckpointError(f"{flag} {root}: no such folder")
    if (root / CONFIG_FILE).is_file():
        try:
            run = json.loads((root / CONFIG_FILE).read_text()).get("run") or {}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise CheckpointError(f"{root / CONFIG_FILE}: corrupt model config ({err})") from err
        return {str(run.get("data_machine") or root.resolve().name): root}
    found = {
        sub.name: sub
        for sub in sorted(root.iterdir())
        if sub.is_dir() and not is_hidden(sub.name) and (sub / CONFIG_FILE).is_file()
    }
    if not found:
        raise CheckpointError(
            f"{flag} {root}: no trained model in it (expected {root}/{CONFIG_FILE} or "
            f"{root}/<machine>/{CONFIG_FILE}, as `stethoscope train --out` writes)"
        )
    return found


def model_folder_for(folder: str | Path, machine: str) -> Path:
    """The model that scores ``machine``'s clips: ``folder`` itself where it holds one model
    (whatever type it was trained on), else ``folder/<machine>``; a `CheckpointError` otherwise."""
    root = Path(folder)
    if (root / CONFIG_FILE).exists():
        return root
    if (root / machine / CONFIG_FILE).exists():
        return root / machine
    raise CheckpointError(
        f"{root}: no model for machine type {machine!r} (expected {root / machine}/{CONFIG_FILE})"
    )
