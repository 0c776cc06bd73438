"""The dashboard's pictures of one scored clip: its anomaly map and its log-mel spectrogram,
drawn on demand from the clip audio the store kept, by the machine's *served* model, and kept
in a small in-memory LRU cache (a clicked event is usually looked at a few times, then never).

One `System.explain_waveform` pass gives both pictures, so both are drawn (and cached) when
either is asked for. Systems without an anomaly map still get their spectrogram.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import StethoscopeError
from ..features.extract import FeatureRequest, decode_waves
from ..features.logmel import LogMelParams
from .service import Monitor

KINDS = ("map", "spectrogram")
CACHE_SIZE = 32
FIGURE_SIZE, DPI = (7.5, 2.6), 100


class NotKept(StethoscopeError):
    """What a request asked for does not exist (any more): an unknown event, audio not kept or
    pruned, no served model for the event's machine, or a system without an anomaly map."""


def kept_audio(monitor: Monitor, event_id: int) -> tuple[dict[str, Any], bytes]:
    """The event and its kept FLAC bytes, or `NotKept` saying which is missing."""
    event = monitor.store.event(event_id)
    if event is None:
        raise NotKept(f"no event {event_id}")
    audio = monitor.store.clip_audio(event_id)
    if audio is None:
        why = (
            "audio keeping is off (--keep-audio 0)"
            if monitor.keep_audio == 0
            else (
                f"only the newest {monitor.keep_audio} clips per machine are kept (--keep-audio)"
                + (
                    ""
                    if monitor.keep_bytes is None
                    else f", within {monitor.keep_bytes / 2**20:g} MB in all (--keep-audio-mb)"
                )
            )
        )
        raise NotKept(f"no audio kept for event {event_id}: {why}")
    return event, audio


class EventPictures:
    """PNG bytes of an event's pictures (see the module docstring), at most ``size`` events cached.
    Events are drawn one at a time: the page asks for both pictures at once, and the second
    request then finds the first one's result instead of drawing it again."""

    def __init__(self, monitor: Monitor, size: int = CACHE_SIZE) -> None:
        self.monitor, self.size = monitor, size
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache
        self._drawing = threading.Lock()  # one event drawn at a time (matplotlib, and the cores)

    def png(self, event_id: int, kind: str) -> bytes:
        """The ``kind`` ("map" or "spectrogram") picture of event ``event_id``."""
        if kind not in KINDS:
            raise NotKept(f"no picture {kind!r}; there are {', '.join(KINDS)}")
        pictures = self._cached(event_id)
        if pictures is None:
            with self._drawing:
                pictures = self._cached(event_id)
                if pictures is None:
                    pictures = self._draw(event_id)
                    with self._lock:
                        self._cache[event_id] = pictures
                        while len(self._cache) > self.size:
                            self._cache.popitem(last=False)
        picture = pictures[kind]
        if picture is None:
            raise NotKept(
                f"event {event_id}: its machine's model ({pictures['system']!r}) "
                "gives no anomaly map"
            )
        return picture

    def _cached(self, event_id: int) -> dict[str, Any] | None:
        with self._lock:
            pictures = self._cache.get(event_id)
            if pictures is not None:
                self._cache.move_to_end(event_id)
            return pictures

    def _draw(self, event_id: int) -> dict[str, Any]:
        event, audio = kept_audio(self.monitor, event_id)
        served = self.monitor.models.get(event["machine"])
        if served is None:
            raise NotKept(
                f"event {event_id}: machine {event['machine']!r} is no longer served; "
                "no model to draw with"
            )
        wave, rate = sf.read(io.BytesIO(audio), dtype="float32")
        system = served.system
        params = system.feature_request().logmel or LogMelParams()
        amap, unit = None, ""
        if system.has_anomaly_map:
            explained = system.explain_waveform(wave, rate, self.monitor.ctx)
            logmel, amap, unit = explained.logmel, explained.anomaly_map, explained.map_unit
        else:
            logmel = decode_waves([wave], rate, FeatureRequest(logmel=params)).logmels[0]  # type: ignore[index]
        where = f"event {event_id} · {event['machine']} · model {served.version}"
        return {
            "system": system.name,
            "spectrogram": _picture(logmel, None, params, f"{where} · log-mel input"),
            "map": None
            if amap is None
            else _picture(None, amap, params, f"{where} · anomaly map", unit),
        }


def _picture(
    logmel: np.ndarray | None,
    amap: np.ndarray | None,
    params: LogMelParams,
    title: str,
    unit: str = "",
) -> bytes:
    """One panel (a spectrogram, or an anomaly map when ``amap`` is given) as PNG bytes."""
    from ..reports.maps import figure_png_bytes, new_figure, plot_anomaly_map, plot_logmel

    fig = new_figure(FIGURE_SIZE)
    ax = fig.subplots()
    if amap is not None:
        plot_anomaly_map(ax, amap, params.sample_rate, params.hop_length, unit=unit)
    else:
        plot_logmel(ax, np.asarray(logmel), params.sample_rate, params.hop_length)
    ax.set_title(title, loc="left", fontsize=9)
    ax.set_xlabel("time (s)")
    return figure_png_bytes(fig, dpi=DPI)
