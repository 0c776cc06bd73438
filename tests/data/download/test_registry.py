"""The packaged registry: every data set and record, official URLs, and no checksum without
a named source (and none invented: archives without one say why)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stethoscope.data.download import load_registry, select
from stethoscope.errors import ConfigError

# data set -> split -> Zenodo record, as the official baseline's download scripts name them
RECORDS = {
    "dcase2020": {"dev": 3678171, "add": 3727685, "eval": 3841772},
    "dcase2021": {"dev": 4562016, "add": 4660992, "eval": 4884786},
    "dcase2022": {"dev": 6355122, "add": 6462969, "eval": 6586456},
    "dcase2023": {"dev": 7882613, "add": 7830345, "eval": 7860847},
    "dcase2024": {"dev": 10902294, "add": 11259435, "eval": 11363076},
    "dcase2025": {"dev": 15097779, "add": 15392814, "eval": 15519362},
    "dcase2026": {"dev": 19336329, "add": 20151556, "eval": 20437238},
    "mimii": {"6dB": 3384388, "0dB": 3384388, "-6dB": 3384388},
}


def test_every_data_set_and_record_is_there() -> None:
    reg = load_registry()
    assert {
        name: {s: split.record for s, split in ds.splits.items()}
        for name, ds in reg.datasets.items()
    } == RECORDS
    for ds in reg.datasets.values():
        assert ds.licence and ds.licence_source
        for split in ds.splits.values():
            for a in split.archives:
                assert (
                    a.url()
                    == f"https://zenodo.org/records/{split.record}/files/{a.file}?download=1"
                )
                assert a.verifiable or a.reason, a.file
                assert all(s in reg.sources for s in a.sources)
            if split.name == "eval":
                assert bool(split.ground_truths) != (split.ground_truth_missing is not None), (
                    ds.name
                )
    counts = {
        name: sum(a.verifiable for s in ds.splits.values() for a in s.archives)
        for name, ds in reg.datasets.items()
    }
    assert counts == {
        "dcase2020": 18,
        "dcase2021": 0,
        "dcase2022": 0,
        "dcase2023": 21,
        "dcase2024": 0,
        "dcase2025": 0,
        "dcase2026": 12,
        "mimii": 12,
    }
    (truth,) = reg.datasets["dcase2025"].splits["eval"].ground_truths
    assert (
        truth.sha256
        and truth.format == "list"
        and truth.labels is None
        and truth.url().startswith(
            "https://raw.githubusercontent.com/nttcslab/dcase2023_task2_baseline_ae/9b64dc42276a64f65b7cbf2761d3c9ec525cff94/"
        )
    )
    # 2026: one evaluator table per evaluation machine type, pinned to the evaluator's commit
    truths = reg.datasets["dcase2026"].splits["eval"].ground_truths
    assert [t.labels for t in truths] == [
        a.machine for a in reg.datasets["dcase2026"].splits["eval"].archives
    ]
    assert all(t.format == "evaluator" and not t.verifiable and t.reason for t in truths)
    assert truths[0].url() == (
        "https://raw.githubusercontent.com/nttcslab/dcase2026_task2_evaluator/"
        "f6a94a2b5e614a9626c9d1ccff6df0705e6aaa75/ground_truth_attributes/"
        "ground_truth_BlowerDustCollector_section_00_test.csv"
    )


def test_select_by_split_and_machine() -> None:
    reg = load_registry()
    _, splits, archives = select(reg, "dcase2020", ["dev", "eval"], ["FAN", "valve"])
    assert [s.name for s in splits] == ["dev", "eval"]
    assert [a.file for a in archives] == [
        "dev_data_fan.zip",
        "dev_data_valve.zip",
        "eval_data_test_fan.zip",
        "eval_data_test_valve.zip",
    ]
    with pytest.raises(
        ConfigError,
        match=r"unknown machine type\(s\) \['drill'\]; known: ToyCar, "
        r"ToyConveyor",
    ):
        select(reg, "dcase2020", None, ["drill"])
    with pytest.raises(ConfigError, match=r"unknown split\(s\) \['test'\]; known: dev, add, eval"):
        select(reg, "dcase2020", ["test"])
    with pytest.raises(ConfigError, match="unknown data set 'dcase2019'"):
        select(reg, "dcase2019")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"md5": "abc"}, "md5 'abc' is not 32 lowercase hex digits"),
        ({"md5": None}, "no checksum and no 'reason' saying why"),
        ({"sources": []}, "a checksum needs 'sources'"),
        ({"sources": ["nowhere"]}, r"sources \['nowhere'\] are not listed"),
        ({"file": "../x.zip"}, "file name '../x.zip' must be a plain name"),
    ],
)
def test_a_bad_registry_names_the_entry(tmp_path: Path, change: dict, message: str) -> None:
    entry = {"machine": "fan", "file": "dev_fan.zip", "md5": "0" * 32, "sources": ["s"], **change}
    doc = {
        "version": 1,
        "sources": {"s": "here"},
        "datasets": {
            "d": {"layout": "dcase2022", "splits": {"dev": {"record": 1, "archives": [entry]}}}
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        ConfigError, match=rf"{path}: datasets.d.splits.dev.archives\[0\]: {message}"
    ):
        load_registry(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"path": "o/r/main/gt_{machine}.csv"},
            "a ground-truth table without a checksum must name a full 40-digit git commit",
        ),
        ({"file": "gt.csv"}, "per_machine needs '{machine}' in both 'file' and 'path'"),
        ({"format": "xml"}, "format 'xml' is not one of list, evaluator"),
    ],
)
def test_a_bad_ground_truth_entry_is_named(tmp_path: Path, change: dict, message: str) -> None:
    truth = {
        "per_machine": True,
        "format": "evaluator",
        "file": "gt_{machine}.csv",
        "host": "github",
        "path": f"o/r/{'a' * 40}/gt_{{machine}}.csv",
        "reason": "test",
        **change,
    }
    doc = {
        "version": 1,
        "datasets": {
            "d": {
                "layout": "dcase2022",
                "splits": {
                    "eval": {
                        "record": 1,
                        "archives": [{"machine": "fan", "file": "e.zip", "reason": "test"}],
                        "ground_truth": truth,
                    }
                },
            }
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        ConfigError, match=rf"{path}: datasets.d.splits.eval.ground_truth: {message}"
    ):
        load_registry(path)
