import re

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from stethoscope.errors import LayoutError
from stethoscope.evaluation.dcase_io import (
    ScoredClip,
    read_submission,
    result_file_names,
    write_result_csvs,
)
from stethoscope.evaluation.evaluate import evaluate
from stethoscope.evaluation.metrics import (
    hmean,
    jackknife_ci95,
    official_score,
    pauc,
    section_metrics,
)


def test_hand_checked_dcase_example():
    # source normals 0.1, 0.4; target normals 0.5, 0.9; anomalies 0.3 (source), 0.8 (target)
    y = [0, 0, 0, 0, 1, 1]
    s = [0.1, 0.4, 0.5, 0.9, 0.3, 0.8]
    d = ["source", "source", "target", "target", "source", "target"]
    m = section_metrics(y, s, d, decisions=[0, 1, 1, 1, 0, 1])
    # AUC-s pairs every anomaly with the source normals: (0.3>0.1, 0.3<0.4, 0.8>0.1, 0.8>0.4) ->
    # 3/4.
    # (using only the source anomaly would give 1/2: the DCASE rule is all anomalies)
    assert m["auc_source"] == pytest.approx(0.75)
    # AUC-t: 0.3 < 0.5, 0.3 < 0.9, 0.8 > 0.5, 0.8 < 0.9 -> 1/4
    assert m["auc_target"] == pytest.approx(0.25)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["pauc"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
    # decisions per domain: source clips y=[0,0,1] dec=[0,1,0] -> tp 0, fp 1, fn 1
    assert m["precision_source"] == 0 and m["recall_source"] == 0
    # target clips y=[0,0,1] dec=[1,1,1] -> tp 1, fp 2 -> precision 1/3, recall 1
    assert m["precision_target"] == pytest.approx(1 / 3) and m["recall_target"] == 1.0
    assert m["f1_target"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    expected = 3 / (1 / 0.75 + 1 / 0.25 + 1 / m["pauc"])
    assert official_score([m]) == pytest.approx(expected)


def test_pauc_is_mcclish_standardised_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.standard_normal(200) + y
    assert pauc(y, s) == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
    assert pauc(y, s) != pytest.approx(roc_auc_score(y, s))


def test_hmean_floors_at_eps_like_official():
    assert hmean([0.5, 0.5]) == pytest.approx(0.5)
    assert hmean([0.0, 1.0]) < 1e-10


def test_section_needs_both_classes():
    with pytest.raises(ValueError):
        section_metrics([0, 0], [0.1, 0.2])


def test_jackknife_ci_shrinks_with_more_data():
    rng = np.random.default_rng(1)

    def ci(n):
        y = np.r_[np.zeros(n), np.ones(n)]
        s = rng.standard_normal(2 * n) + y
        return jackknife_ci95(lambda a, b: roc_auc_score(a, b), y, s)[1]

    assert 0 < ci(200) < ci(20)


def test_jackknife_standard_error_matches_bootstrap_scale():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(60), np.ones(60)]
    s = rng.standard_normal(120) + y
    fn = lambda a, b: roc_auc_score(a, b)  # noqa: E731
    _, half = jackknife_ci95(fn, y, s)
    boots = []
    for _ in range(300):
        i = rng.integers(0, 120, 120)
        if len(set(y[i])) == 2:
            boots.append(fn(y[i], s[i]))
    assert 0.5 < half / (1.96 * np.std(boots)) < 2.0
    _, official = jackknife_ci95(fn, y, s, dcase_evaluator=True)
    assert official == pytest.approx(half / (len(y) - 1), rel=1e-9)


def _rows():
    rng = np.random.default_rng(2)
    rows = []
    for machine in ("fan", "valve"):
        for section in ("00", "01"):
            for i in range(12):
                label, domain = i % 2, ("source", "target")[(i // 2) % 2]
                rows.append(
                    ScoredClip(
                        file=f"section_{section}_{i:04d}.wav",
                        machine=machine,
                        section=section,
                        label=label,
                        domain=domain,
                        score=float(rng.standard_normal() + label),
                        decision=int(rng.integers(0, 2)),
                    )
                )
    return rows


def test_submission_round_trip_matches_direct_evaluation(tmp_path):
    rows = _rows()
    write_result_csvs(tmp_path / "team", rows)
    assert (tmp_path / "team" / "anomaly_score_fan_section_00_test.csv").read_text().count(
        "\n"
    ) == 12
    gt = tmp_path / "gt"
    (gt / "ground_truth_data").mkdir(parents=True)
    (gt / "ground_truth_domain").mkdir()
    for machine in ("fan", "valve"):
        for section in ("00", "01"):
            sel = [r for r in rows if r.machine == machine and r.section == section]
            name = f"ground_truth_{machine}_section_{section}_test.csv"
            (gt / "ground_truth_data" / name).write_text(
                "".join(f"{r.file},{r.label}\n" for r in sel)
            )
            (gt / "ground_truth_domain" / name).write_text(
                "".join(f"{r.file},{int(r.domain == 'target')}\n" for r in sel)
            )
    read = read_submission(tmp_path / "team", gt)
    direct, via_files = evaluate(rows), evaluate(read)
    assert via_files["official_score"] == pytest.approx(direct["official_score"])
    sec = via_files["machines"]["valve"]["sections"]["section_01"]
    assert sec == pytest.approx(direct["machines"]["valve"]["sections"]["section_01"])
    # a missing file is reported by name
    (tmp_path / "team" / result_file_names("fan", "section_01")[1]).unlink()
    with pytest.raises(LayoutError, match=re.escape("decision_result_fan_section_01_test.csv")):
        read_submission(tmp_path / "team", gt)


def test_2020_names_and_per_id_tables(tmp_path):
    rows = [
        ScoredClip(
            file=f"normal_id_02_{i:08d}.wav",
            machine="fan",
            section="02",
            label=i % 2,
            domain=None,
            score=float(i % 2) + 0.1 * i,
            decision=i % 2,
            layout="dcase2020",
        )
        for i in range(6)
    ]
    write_result_csvs(tmp_path, rows)
    assert (tmp_path / "anomaly_score_fan_id_02.csv").exists()
    ev = evaluate(rows)
    sec = ev["machines"]["fan"]["sections"]["id_02"]
    assert sec["auc"] == 1.0 and sec["auc_source"] is None
