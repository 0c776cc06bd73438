"""The Grafana dashboard of deploy/grafana/ against the real `/metrics`: its JSON has what
Grafana needs to load it, every PromQL expression names only series a real `stethoscope serve`
exposes (scraped and parsed with prometheus_client's parser), and a real Prometheus scraping
that service (with the scrape job of deploy/grafana/prometheus.yml, token included) evaluates
every expression, with data. Grafana itself is not run here (no Debian or PyPI package)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .conftest import AUTH, TOKEN, Server, fan_clip, free_port, wav_bytes

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "stethoscope.json"
PROMETHEUS_MADE = {"up"}  # series Prometheus makes for every scrape job, not served by /metrics
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}
PANEL_KINDS = {"stat", "timeseries", "state-timeline"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression: the panels' targets and the query variables."""
    found = [t["expr"] for p in board["panels"] for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            found.append(re.sub(r"^label_values\((\w+),\s*\w+\)$", r"\1", var["query"]["query"]))
    return found


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: what is left once strings, label
    matchers, ranges, grouping clauses, Grafana variables, functions and keywords are gone."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    tokens = re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {
        t.group()
        for t in tokens
        if not text[t.end() :].lstrip().startswith("(") and t.group().lower() not in PROMQL_WORDS
    }


def concrete(expr: str) -> str:
    """The expression as Grafana sends it with every machine chosen."""
    return expr.replace("$machine", ".*").replace("$__rate_interval", "1m")


def test_the_dashboard_json_has_what_grafana_needs() -> None:
    board = dashboard()
    assert board["uid"] == "stethoscope-monitor" and len(board["uid"]) <= 40 and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource"
        and variables["datasource"]["query"] == "prometheus"
    )
    ids, cells = set(), set()
    for panel in board["panels"]:
        assert panel["id"] not in ids and panel["type"] in PANEL_KINDS and panel["title"], panel
        ids.add(panel["id"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "xywh") and grid["x"] + grid["w"] <= 24, panel[
            "title"
        ]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        assert all(
            t["expr"].strip() and t["datasource"] == panel["datasource"] for t in panel["targets"]
        )


def test_the_provisioning_files_point_at_the_dashboard_and_prometheus() -> None:
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "stethoscope.yaml").read_text()
    )
    assert sources["apiVersion"] == 1 and [s["type"] for s in sources["datasources"]] == [
        "prometheus"
    ]
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "stethoscope.yaml").read_text()
    )
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"]
    jobs = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())["scrape_configs"]
    assert [j["job_name"] for j in jobs] == ["stethoscope"] and jobs[0][
        "metrics_path"
    ] == "/metrics"
    assert 'up{job="stethoscope"}' in expressions(dashboard())


def test_the_metric_name_reader() -> None:
    assert metric_names('sum by (le, route) (rate(a_bucket{status=~"5.."}[$__rate_interval]))') == {
        "a_bucket"
    }
    assert metric_names('x{machine=~"$machine"} / on(machine) y') == {"x", "y"}
    assert metric_names('time() - z_seconds{machine=~"$machine"}') == {"z_seconds"}


@pytest.fixture(scope="module")
def protected(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real `serve` whose reads, /metrics included, need the token (as off loopback),
    with scores of its three machines (one in alarm) and a refused request (404) behind it."""
    tmp = tmp_path_factory.mktemp("grafana")
    server = Server(
        models_dir, tmp / "events.db", tmp / "serve.log", extra=["--protect-reads"]
    ).start()
    try:
        for machine, seed in (
            ("fan", 50),
            ("gearbox", 51),
            *(("alarming", seed) for seed in (52, 53, 54)),
        ):
            answer = httpx.post(
                f"{server.url}/score",
                params={"machine": machine},
                timeout=30,
                content=wav_bytes(fan_clip(seed)),
                headers={"Content-Type": "audio/wav", **AUTH},
            )
            assert answer.status_code == 200, answer.text
        refused = httpx.post(
            f"{server.url}/score",
            params={"machine": "nope"},
            content=b"x",
            timeout=30,
            headers={"Content-Type": "audio/wav", **AUTH},
        )
        assert refused.status_code == 404, refused.text
        yield server
    finally:
        server.stop()


def scrape(server: Server) -> set[str]:
    """The sample names the real /metrics serves, parsed as Prometheus parses them."""
    answer = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    return {
        s.name for family in text_string_to_metric_families(answer.text) for s in family.samples
    }


def test_score_and_threshold_gauges_are_the_stores(protected: Server) -> None:
    """``stethoscope_score_last`` is each machine's newest stored score (any writer), next to
    ``stethoscope_threshold``, its served model's threshold."""
    text = httpx.get(f"{protected.url}/metrics", headers=AUTH, timeout=10).text
    gauges = {
        (s.name, s.labels.get("machine")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for machine in httpx.get(f"{protected.url}/machines", headers=AUTH, timeout=10).json():
        name = machine["machine"]
        newest = httpx.get(
            f"{protected.url}/events",
            params={"machine": name, "limit": 1},
            headers=AUTH,
            timeout=10,
        ).json()[0]
        assert gauges["stethoscope_threshold", name] == pytest.approx(
            machine["threshold"], rel=1e-12
        )
        assert gauges["stethoscope_score_last", name] == pytest.approx(newest["score"], rel=1e-12)
        assert gauges["stethoscope_score_last_timestamp_seconds", name] == pytest.approx(
            newest["time"], abs=1e-3
        )


def test_every_expression_names_only_served_metrics(protected: Server) -> None:
    served = scrape(protected)
    assert (
        httpx.get(f"{protected.url}/metrics", timeout=10).status_code == 401
    )  # the token is needed
    used = set().union(*(metric_names(e) for e in expressions(dashboard())))
    assert used - PROMETHEUS_MADE <= served, sorted(used - PROMETHEUS_MADE - served)
    assert {
        "stethoscope_score_last",
        "stethoscope_threshold",
        "stethoscope_alarms_active",
        "stethoscope_http_request_duration_seconds_bucket",
        "stethoscope_http_requests_total",
    } <= used


def test_a_real_prometheus_evaluates_every_panel(protected: Server, tmp_path: Path) -> None:
    """Prometheus scrapes the service every second with the shipped job (its target and
    interval changed); each panel's query must then be valid PromQL and return series, but
    those of 5xx answers (none happened) may be empty."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no Prometheus server here (apt-get install prometheus)")
    token = tmp_path / "stethoscope.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    job = config["scrape_configs"][0]
    job["authorization"]["credentials_file"] = str(token)
    job["static_configs"] = [{"targets": [protected.url.removeprefix("http://")]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        api = f"http://127.0.0.1:{port}/api/v1"
        wanted = [e for e in expressions(dashboard()) if '"5.."' not in e]
        results = poll_until_all_have_data(api, [concrete(e) for e in wanted], prometheus, tmp_path)
        for expr in expressions(dashboard()):
            answer = httpx.get(f"{api}/query", params={"query": concrete(expr)}, timeout=10).json()
            assert answer["status"] == "success", (expr, answer)
        machines = httpx.get(
            f"{api}/label/machine/values", params={"match[]": "stethoscope_threshold"}
        ).json()
        assert machines["data"] == ["alarming", "fan", "gearbox"]
        alarms = {r["metric"]["machine"]: r["value"][1] for r in results[concrete(wanted[0])]}
        assert alarms == {
            "alarming": "1",
            "fan": "0",
            "gearbox": "0",
        }  # threshold 0: 3 of 3 anomalous, rule 3/5
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def poll_until_all_have_data(
    api: str,
    queries: list[str],
    prometheus: subprocess.Popen,
    tmp_path: Path,
    timeout: float = 90.0,
) -> dict[str, list[dict[str, Any]]]:
    """Each query's result once every one has series (rates need two scrapes; a hang guard,
    not a timing). Until Prometheus says it is ready (``/-/ready``), it answers 503 "Service
    Unavailable" in plain text while it opens its database: not yet an answer to judge."""
    deadline = time.monotonic() + timeout
    results: dict[str, list[dict[str, Any]]] = {}
    ready = api.removesuffix("/api/v1") + "/-/ready"
    while True:
        if prometheus.poll() is not None:
            pytest.fail(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-3000:]}")
        try:
            if httpx.get(ready, timeout=10).status_code == 200:
                for query in queries:
                    answer = httpx.get(f"{api}/query", params={"query": query}, timeout=10)
                    assert answer.status_code == 200, (query, answer.status_code, answer.text)
                    assert answer.json()["status"] == "success", (query, answer.text)
                    results[query] = answer.json()["data"]["result"]
        except httpx.TransportError:
            results = {}
        empty = [q for q in queries if not results.get(q)]
        if not empty:
            return results
        if time.monotonic() > deadline:
            pytest.fail(f"no data for {empty}: {(tmp_path / 'prometheus.log').read_text()[-3000:]}")
        time.sleep(0.5)
