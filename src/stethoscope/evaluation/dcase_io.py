"""DCASE result files: anomaly scores and decisions per machine and section, and the
official evaluator's ground-truth folders."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LayoutError
from ..fsutil import atomic_write_text


@dataclass(frozen=True)
class ScoredClip:
    """One clip's outcome; what every evaluation and report works from."""

    file: str
    machine: str
    section: str
    label: int | None
    domain: str | None
    score: float
    decision: int
    layout: str = "dcase2022"

    @property
    def section_tag(self) -> str:
        return (
            f"id_{self.section}"
            if self.layout in ("dcase2020", "mimii")
            else f"section_{self.section}"
        )


def result_file_names(machine: str, section_tag: str) -> tuple[str, str]:
    """(anomaly score file, decision file) names: ``..._section_XX_test.csv`` or 2020's
    ``..._id_XX.csv``."""
    suffix = "" if section_tag.startswith("id_") else "_test"
    return (
        f"anomaly_score_{machine}_{section_tag}{suffix}.csv",
        f"decision_result_{machine}_{section_tag}{suffix}.csv",
    )


def _csv_text(rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_result_csvs(out_dir: str | Path, results: Sequence[ScoredClip]) -> list[Path]:
    """Write one score and one decision CSV (no header, ``file,value``) per machine and section."""
    out_dir = Path(out_dir)
    groups: dict[tuple[str, str], list[ScoredClip]] = {}
    for r in results:
        groups.setdefault((r.machine, r.section_tag), []).append(r)
    written = []
    for (machine, tag), rows in sorted(groups.items()):
        score_name, decision_name = result_file_names(machine, tag)
        atomic_write_text(
            out_dir / score_name, _csv_text([(r.file, repr(float(r.score))) for r in rows])
        )
        atomic_write_text(
            out_dir / decision_name, _csv_text([(r.file, int(r.decision)) for r in rows])
        )
        written += [out_dir / score_name, out_dir / decision_name]
    return written


def read_pairs(path: Path) -> dict[str, str]:
    """``file,value`` rows of a headerless CSV as a dict; a clear error when malformed."""
    out: dict[str, str] = {}
    with open(path, newline="") as handle:
        for i, row in enumerate(csv.reader(handle), 1):
            if not row:
                continue
            if len(row) < 2:
                raise LayoutError(f"{path}: line {i} has no value column: {row}")
            out[row[0]] = row[1]
    return out


_GT = re.compile(r"ground_truth_(?P<machine>.+)_section_(?P<section>\d+)_test\.csv$")


def read_submission(scores_dir: str | Path, ground_truth_dir: str | Path) -> list[ScoredClip]:
    """Join a submission's CSVs with ground truth in the official evaluator's layout.

    ``ground_truth_dir`` holds ``ground_truth_data/ground_truth_<machine>_section_<ss>_test.csv``
    (``file,label``), ``ground_truth_domain/...`` (``file,domain``, 1 = target) and optionally
    ``ground_truth_attributes/...`` (``new_name,original_name``) mapping renamed evaluation files.
    """
    scores_dir, gt_dir = Path(scores_dir), Path(ground_truth_dir)
    data_dir = gt_dir / "ground_truth_data"
    gt_files = (
        sorted(data_dir.glob("ground_truth_*_section_*_test.csv")) if data_dir.is_dir() else []
    )
    if not gt_files:
        raise LayoutError(
            f"{gt_dir}: no ground_truth_data/ground_truth_<machine>_section_<ss>_test.csv files"
        )
    out: list[ScoredClip] = []
    for gt_path in gt_files:
        m = _GT.search(gt_path.name)
        assert m is not None
        machine, section = m["machine"], m["section"]
        labels = read_pairs(gt_path)
        dom_path = gt_dir / "ground_truth_domain" / gt_path.name
        if not dom_path.exists():
            raise LayoutError(f"{dom_path}: missing domain file for {gt_path.name}")
        domains = read_pairs(dom_path)
        attr_path = gt_dir / "ground_truth_attributes" / gt_path.name
        rename = {}
        if attr_path.exists():  # maps submitted (renamed) names back to ground-truth names
            rename = {
                f"{orig}.wav" if not orig.endswith(".wav") else orig: new
                for new, orig in read_pairs(attr_path).items()
            }
        score_name, decision_name = result_file_names(machine, f"section_{section}")
        score_path, decision_path = scores_dir / score_name, scores_dir / decision_name
        for p in (score_path, decision_path):
            if not p.exists():
                raise LayoutError(f"{p}: missing submission file for {machine} section {section}")
        scores = {rename.get(k, k): v for k, v in read_pairs(score_path).items()}
        decisions = {rename.get(k, k): v for k, v in read_pairs(decision_path).items()}
        for name, table in (("anomaly scores", scores), ("decisions", decisions)):
            missing = sorted(set(labels) - set(table))
            if missing:
                raise LayoutError(
                    f"{scores_dir}: {name} for {machine} section {section} lack "
                    f"{len(missing)} ground-truth file(s), e.g. {missing[0]}"
                )
        for file in sorted(labels):
            out.append(
                ScoredClip(
                    file=file,
                    machine=machine,
                    section=section,
                    label=int(float(labels[file])),
                    domain="target" if int(float(domains[file])) == 1 else "source",
                    score=float(scores[file]),
                    decision=int(float(decisions[file])),
                )
            )
    return out
