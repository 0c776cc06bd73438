"""The report's table of every scored clip, sortable and filterable in the page itself.

One row per line of ``scores.csv``: file, machine, section, domain, label, score, decision.
A click on a column header (or Enter on it) sorts by that column, again to reverse; typing in
the box keeps the rows that contain every typed word. Both are done by `SCRIPT`, a few lines
inlined in the page (no library, nothing fetched). Scores sort by their exact value, kept in
``data-v``, while the cell shows them `readable`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from .content import MISSING
from .numbers import readable
from .results import ScoreRow

HEADERS = (
    ("file", "text"),
    ("machine", "text"),
    ("section", "text"),
    ("domain", "text"),
    ("label", "text"),
    ("score", "number"),
    ("decision", "text"),
)
LABELS = {0: "normal", 1: "anomalous", None: MISSING}
DECISIONS = {0: "normal", 1: "ANOMALY", None: MISSING}
SCORE_DIGITS = 6  # close scores (180.41 vs 180.44) must stay apart
NUM = ' class="num"'

SCRIPT = """
(function () {
  var table = document.getElementById("clips");
  if (!table) return;
  var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
  var rows = Array.prototype.slice.call(body.rows);
  var box = document.getElementById("clip-filter"), count = document.getElementById("clip-count");
  rows.forEach(function (r) {
    var cells = Array.prototype.map.call(r.cells, function (c) { return c.textContent; });
    r.searchText = cells.join("\\t").toLowerCase();
  });
  function key(row, col, numeric) {
    var cell = row.cells[col];
    var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    if (!numeric) return v.toLowerCase();
    var f = parseFloat(v);
    return isNaN(f) ? -Infinity : f;
  }
  function sortBy(col) {
    var th = heads[col], numeric = th.getAttribute("data-type") === "number";
    var up = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", up ? "ascending" : "descending");
    rows.sort(function (a, b) {
      var x = key(a, col, numeric), y = key(b, col, numeric);
      var d = numeric ? (x > y) - (x < y) : x.localeCompare(y, undefined, {numeric: true});
      return up ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(col); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(col); }
    });
  });
  box.addEventListener("input", function () {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean), n = 0;
    rows.forEach(function (r) {
      var hit = words.every(function (w) { return r.searchText.indexOf(w) >= 0; });
      r.hidden = !hit;
      n += hit ? 1 : 0;
    });
    count.textContent = String(n);
  });
})();
"""


def _row(r: ScoreRow) -> str:
    value = repr(r.score) if math.isfinite(r.score) else ""
    decision_class = ' class="anom"' if r.decision == 1 else ""
    cells = [
        escape(r.file),
        escape(r.machine),
        escape(r.section or MISSING),
        escape(r.domain or MISSING),
        LABELS.get(r.label, str(r.label)),
    ]
    return (
        "<tr>"
        + "".join(f"<td>{c}</td>" for c in cells)
        + f'<td data-v="{value}"{NUM}>{readable(r.score, SCORE_DIGITS)}</td>'
        f"<td{decision_class}>{DECISIONS.get(r.decision, str(r.decision))}</td></tr>"
    )


def clip_table_html(rows: Sequence[ScoreRow]) -> str:
    """The card holding the table (empty when there are no rows); pair it with `SCRIPT`."""
    if not rows:
        return ""
    head = "".join(
        f'<th scope="col" data-type="{kind}"{NUM if kind == "number" else ""}>{name}</th>'
        for name, kind in HEADERS
    )
    return (
        f'<section class="card" id="all-clips"><h2>All {len(rows)} clips</h2>'
        '<p class="counts">Click a column header to sort by it (again to reverse); type '
        "words to keep the "
        "rows that contain all of them (e.g. <code>fan anomalous</code>). Higher score = "
        "more anomalous.</p>"
        '<div class="filter"><input id="clip-filter" type="search" placeholder="filter clips…" '
        f'aria-label="filter clips"><span><b id="clip-count">{len(rows)}</b> of {len(rows)} '
        "shown</span></div>"
        f'<div class="clips-wrap"><table id="clips"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(_row(r) for r in rows)
        + "</tbody></table></div></section>"
    )
