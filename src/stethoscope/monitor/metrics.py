"""Prometheus metrics of one app (its own registry, so several apps in one process never clash):
requests and their latency per route, scores per machine and decision, open streams, and, as
the store has them at scrape time, the active alarms and each machine's newest score next to its
decision threshold (deploy/grafana/ draws these)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .service import Monitor

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
Scope = dict[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class _ActiveAlarms(Collector):
    """``stethoscope_alarms_active{machine}``: 1 while the store holds an uncleared alarm
    (read from the store, so alarms raised by another process writing to it count too)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "stethoscope_alarms_active",
            "1 while an alarm of the machine is active",
            labels=["machine"],
        )
        for row in self.monitor.store.machines():
            family.add_metric([row["name"]], 0.0 if row["active_alarm"] is None else 1.0)
        yield family


class _LastScores(Collector):
    """``stethoscope_score_last{machine}`` and its ``_timestamp_seconds``: the newest score in
    the store (whichever process wrote it: serve, a stream, `watch`), and
    ``stethoscope_threshold{machine}``: the served model's decision threshold, so that a
    dashboard draws each score against the line it is decided by."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last = GaugeMetricFamily(
            "stethoscope_score_last",
            "newest stored anomaly score of the machine",
            labels=["machine"],
        )
        when = GaugeMetricFamily(
            "stethoscope_score_last_timestamp_seconds",
            "Unix time of the newest stored score of the machine",
            labels=["machine"],
        )
        threshold = GaugeMetricFamily(
            "stethoscope_threshold",
            "decision threshold of the machine's served model: a score above it is anomalous",
            labels=["machine"],
        )
        for machine, served in sorted(self.monitor.models.items()):
            threshold.add_metric([machine], served.threshold)
            newest = self.monitor.store.events(machine, limit=1)
            if newest:
                last.add_metric([machine], float(newest[0]["score"]))
                when.add_metric([machine], float(newest[0]["time"]))
        yield from (last, when, threshold)


class Metrics:
    """The app's metrics and their registry."""

    def __init__(self, monitor: Monitor) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "stethoscope_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stethoscope_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scores = Counter(
            "stethoscope_scores",
            "scores recorded by this process",
            ["machine", "decision"],
            registry=self.registry,
        )
        self.scoring = Histogram(
            "stethoscope_scoring_duration_seconds",
            "decode, score and commit of one posted clip",
            ["machine"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.streams = Gauge(
            "stethoscope_streams_open", "websocket streams open", registry=self.registry
        )
        self.registry.register(_ActiveAlarms(monitor))
        self.registry.register(_LastScores(monitor))
        if monitor.notifier is not None:  # the outbox backlog per channel (--notify)
            from .notify import NotifyCollector

            self.registry.register(NotifyCollector(monitor.notifier))

    def scored(self, machine: str, decision: int) -> None:
        self.scores.labels(machine, "anomaly" if decision else "normal").inc()


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (``/score``, never the query),
    so that the label set stays small whatever clients send."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
