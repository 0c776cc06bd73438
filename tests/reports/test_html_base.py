"""Audio players of the report: small clips embedded, large ones linked by a path that resolves."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import soundfile as sf

from stethoscope.reports.html_base import AUDIO_EMBED_LIMIT, audio_html


def _wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * 16_000), np.float32), 16_000, subtype="PCM_16")
    return path


def test_a_clip_under_the_limit_is_embedded(tmp_path: Path):
    clip = _wav(tmp_path / "data" / "small clip.wav", 10.0)  # 320 kB
    assert clip.stat().st_size <= AUDIO_EMBED_LIMIT
    (src,) = re.findall(
        r'<audio controls preload="metadata" src="([^"]+)">', audio_html(clip, tmp_path / "out")
    )
    assert (
        src.startswith("data:audio/wav;base64,")
        and base64.b64decode(src.split(",", 1)[1]) == clip.read_bytes()
    )


def test_a_clip_over_the_limit_is_linked_relative_to_the_page(tmp_path: Path):
    clip = _wav(tmp_path / "data" / "long clip.wav", 40.0)  # 1.28 MB
    page_dir = tmp_path / "reports" / "today"
    page_dir.mkdir(parents=True)
    html = audio_html(clip, page_dir)
    (src,) = re.findall(r'<audio controls preload="none" src="([^"]+)">', html)
    assert not src.startswith(("data:", "/", "file:")) and "%20" in src  # relative, URL-quoted
    assert (page_dir / unquote(src)).resolve() == clip.resolve()
    assert "1.3 MB: linked from" in html and "not embedded" in html
