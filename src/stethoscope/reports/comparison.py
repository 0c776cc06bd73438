"""The comparison card of a multi-system bench folder (``comparison.json`` of ``stethoscope
bench --system a,b,c``): every system's mean AUC with its bootstrap interval, then every pair's
difference with its paired interval and a verdict, "within noise" where the interval holds 0."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from ..workflows.bench import COMPARISON_FILE
from .results import read_json_object


def read_comparison(folder: Path) -> dict[str, Any] | None:
    """``folder/comparison.json`` when there is one (a clear error naming it when malformed)."""
    path = folder / COMPARISON_FILE
    return read_json_object(path, "`stethoscope bench --system a,b`") if path.is_file() else None


def _verdict(pair: dict[str, Any]) -> str:
    if pair["within_noise"]:
        return "within noise"
    return f"{pair['a'] if pair['diff'] > 0 else pair['b']} better"


def comparison_html(comparison: dict[str, Any]) -> str:
    """The card: systems, then pairs (differences are first minus second)."""
    level = round(100 * comparison["level"])
    systems = "".join(
        f'<tr><td>{escape(name)}</td><td class="m">{m["auc"]:.3f}</td>'
        f"<td>[{m['low']:.3f}, {m['high']:.3f}]</td></tr>"
        for name, m in comparison["mean_auc"].items()
    )
    pairs = "".join(
        f"<tr><td>{escape(p['a'])} − {escape(p['b'])}</td><td "
        f'class="m">{p["diff"]:+.3f}</td>'
        f"<td>[{p['low']:+.3f}, "
        f"{p['high']:+.3f}]</td><td>{escape(_verdict(p))}</td></tr>"
        for p in comparison["pairs"]
    )
    return (
        '<section class="card" id="comparison"><div '
        'class="card-head"><h2>Comparison</h2></div>'
        f'<p class="counts">{escape(comparison["method"])}; {comparison["n_boot"]} '
        f"replicates, {level} % "
        f"intervals over the {len(comparison['compared_sets'])} sets all systems have. A "
        "difference whose interval "
        f"holds 0 is within noise: these sets are too small to tell the two systems apart.</p>"
        '<div class="table-wrap"><table><thead><tr><th>system</th><th>mean '
        f"AUC</th><th>{level} % interval"
        f"</th></tr></thead><tbody>{systems}</tbody></table></div>"
        "<div "
        f'class="table-wrap"><table><thead><tr><th>difference</th><th>AUC</th><th>{level} '
        "% interval</th>"
        f"<th>verdict</th></tr></thead><tbody>{pairs}</tbody></table></div></section>"
    )


def comparison_markdown(comparison: dict[str, Any]) -> list[str]:
    """The card's Markdown lines."""
    level = round(100 * comparison["level"])
    lines = [
        "## Comparison",
        "",
        f"{comparison['method']}; {comparison['n_boot']} replicates, "
        f"{level} % intervals. "
        "A difference whose interval holds 0 is within noise.",
        "",
        f"| system | mean AUC | {level} % interval |",
        "| --- | ---: | --- |",
    ]
    lines += [
        f"| {name} | {m['auc']:.3f} | [{m['low']:.3f}, {m['high']:.3f}] |"
        for name, m in comparison["mean_auc"].items()
    ]
    lines += [
        "",
        f"| difference | AUC | {level} % interval | verdict |",
        "| --- | ---: | --- | --- |",
    ]
    lines += [
        f"| {p['a']} − {p['b']} | {p['diff']:+.3f} | [{p['low']:+.3f}, {p['high']:+.3f}] | "
        f"{_verdict(p)} |"
        for p in comparison["pairs"]
    ]
    return [*lines, ""]
