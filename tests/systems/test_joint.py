"""The multi-machine ("joint") fit contract: `System.fit_joint` by default equals one `fit` per
type; `train_machines`, the K-fold bench and the CLI call a joint system's `fit_joint` once
(once per fold) and save or score one system per machine type. A test-only joint system,
registered only inside these tests, records its calls."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from stethoscope.cli import main
from stethoscope.data.clip import Clip
from stethoscope.data.layouts import scan
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError, StethoscopeError
from stethoscope.evaluation.crossval import cross_validate, cross_validate_joint, group_sets
from stethoscope.systems import get_system, load_system
from stethoscope.systems.base import REGISTRY, System
from stethoscope.systems.embedding_knn import EmbeddingKNNSystem
from stethoscope.workflows.train import train_machines

MACHINES = ["fan", "gearbox"]


class JointProbe(EmbeddingKNNSystem):
    """embedding_knn marked joint: records each `fit_joint` call, leaves a file in its
    checkpoint folder (which the caller must remove), then fits per type as the default does."""

    name = "joint_probe"
    joint = True
    calls: ClassVar[list[dict[str, Any]]] = []

    def fit_joint(
        self,
        groups: Mapping[str, Sequence[Clip]],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> dict[str, System]:
        assert ctx is not None
        JointProbe.calls.append(
            {
                "machines": list(groups),
                "n": {m: len(c) for m, c in groups.items()},
                "checkpoint_dir": ctx.checkpoint_dir,
                "threshold_fit": self.threshold_fit,
                "seed": ctx.seed,
            }
        )
        if ctx.checkpoint_dir is not None:
            (ctx.checkpoint_dir / "shared").mkdir(parents=True, exist_ok=True)
            (ctx.checkpoint_dir / "shared" / "net.txt").write_text("a joint network's checkpoint")
        return super().fit_joint(groups, val, ctx)


@pytest.fixture
def probe() -> Iterator[type[JointProbe]]:
    REGISTRY[JointProbe.name] = JointProbe
    JointProbe.calls = []
    yield JointProbe
    del REGISTRY[JointProbe.name]


@pytest.fixture(scope="module")
def groups(toy_root: Path) -> dict[str, list[Clip]]:
    clips = scan(toy_root)
    return {m: [c for c in clips if c.machine == m and c.split == "train"][:6] for m in MACHINES}


def test_default_fit_joint_equals_one_fit_per_type(
    groups: dict[str, list[Clip]], toy_root: Path
) -> None:
    ctx = RunContext(seed=3, progress=False)
    params = {"epochs": 2, "batch_size": 64, "threshold_folds": 2}
    fitted = get_system("dcase_ae", **params).fit_joint(groups, ctx=ctx)
    assert list(fitted) == MACHINES
    test = [c for c in scan(toy_root) if c.split == "test"]
    for machine in MACHINES:
        alone = get_system("dcase_ae", **params).fit(groups[machine], ctx=ctx.for_run(machine))
        mine = [c for c in test if c.machine == machine][:4]
        np.testing.assert_allclose(
            fitted[machine].score(mine, ctx), alone.score(mine, ctx), rtol=1e-6, atol=1e-9
        )
        assert fitted[machine].threshold_ == pytest.approx(alone.threshold_, rel=1e-6, abs=1e-9)
        assert fitted[machine].get_params() == alone.get_params()


def test_train_machines_fits_once_saves_per_type_and_resumes(
    probe: type[JointProbe], groups: dict[str, list[Clip]], tmp_path: Path
) -> None:
    out = tmp_path / "models"
    ctx = RunContext(progress=False, checkpoint_dir=out / ".checkpoints")
    build = lambda: get_system("joint_probe", encoder="random")  # noqa: E731
    systems = train_machines(groups, build, out, ctx, say=lambda m: None)
    assert len(probe.calls) == 1
    assert probe.calls[0]["machines"] == MACHINES and probe.calls[0]["n"] == {
        "fan": 6,
        "gearbox": 6,
    }
    assert probe.calls[0]["checkpoint_dir"] == out / ".checkpoints" / "joint"
    assert not (
        out / ".checkpoints"
    ).exists()  # the joint run's folder (and sub-folders) removed once saved
    run = json.loads((out / "run.json").read_text())
    for machine in MACHINES:
        assert (
            run["items"][machine]["status"] == "trained" and run["items"][machine]["joint"] is True
        )
        loaded = load_system(out / machine)
        assert loaded.name == "joint_probe"
        assert loaded.threshold_ == pytest.approx(systems[machine].threshold_, rel=1e-6, abs=1e-9)
        cfg = json.loads((out / machine / "config.json").read_text())
        assert cfg["run"]["data_machine"] == machine and cfg["run"]["joint_machines"] == MACHINES
        other = groups[MACHINES[1 - MACHINES.index(machine)]][:2]
        np.testing.assert_allclose(
            loaded.score(other), systems[machine].score(other), rtol=1e-6, atol=1e-9
        )
    assert not np.allclose(
        systems["fan"].score(groups["fan"][:3]), systems["gearbox"].score(groups["fan"][:3])
    )

    resumed = ctx.replace(resume=True)
    train_machines(groups, build, out, resumed, say=lambda m: None)
    assert len(probe.calls) == 1  # every type trained: nothing refitted

    run["items"]["gearbox"]["status"] = "failed: killed"
    (out / "run.json").write_text(json.dumps(run))
    train_machines(groups, build, out, resumed, say=lambda m: None)
    assert (
        len(probe.calls) == 2 and probe.calls[1]["machines"] == MACHINES
    )  # one type missing: the joint fit again
    run = json.loads((out / "run.json").read_text())
    assert [rec["status"] for rec in run["items"].values()] == ["trained", "trained"]


def test_a_failed_joint_fit_fails_every_type(
    probe: type[JointProbe],
    groups: dict[str, list[Clip]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: System, *args: Any, **kwargs: Any) -> dict[str, System]:
        raise ConfigError("no classes to learn")

    monkeypatch.setattr(JointProbe, "fit_joint", broken)
    with pytest.raises(
        StethoscopeError, match=r"2 of 2 machine type\(s\) failed .*no classes to learn"
    ):
        train_machines(
            groups,
            lambda: get_system("joint_probe", encoder="random"),
            tmp_path,
            RunContext(),
            say=lambda m: None,
        )
    run = json.loads((tmp_path / "run.json").read_text())
    assert [rec["status"] for rec in run["items"].values()] == [
        "failed: joint fit: no classes to learn"
    ] * 2
    assert not any((tmp_path / m).exists() for m in MACHINES)


def test_joint_bench_fits_once_per_fold_with_the_same_folds(
    probe: type[JointProbe], toy_root: Path
) -> None:
    sets = group_sets(scan(toy_root, split="test"))
    ctx = RunContext(seed=5, progress=False)
    joint, fitted = cross_validate_joint(
        sets, lambda: get_system("joint_probe", encoder="random"), folds=2, ctx=ctx
    )
    assert [c["machines"] for c in probe.calls] == [MACHINES, MACHINES]
    assert [c["seed"] for c in probe.calls] == [5, 6] and {
        c["threshold_fit"] for c in probe.calls
    } == {"in_sample"}
    assert set(fitted) == set(MACHINES)
    for (
        name,
        clips,
    ) in sets.items():  # default fit_joint = per-type fits: the per-set protocol's figures
        alone = cross_validate(
            clips, lambda: get_system("embedding_knn", encoder="random"), folds=2, ctx=ctx
        )
        for key in ("auc", "pauc", "n_normal", "n_anomaly"):
            assert joint[name][key] == pytest.approx(alone[key]), (name, key)
        assert [f["n_train"] for f in joint[name]["folds"]] == [
            f["n_train"] for f in alone["folds"]
        ]
        assert probe.calls[0]["n"][name] == joint[name]["folds"][0]["n_train"]


def test_cli_train_and_bench_call_fit_joint(
    probe: type[JointProbe], toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runtime = ["--set", "encoder=random", "--threads", "1", "--quiet", "--no-cache"]
    assert (
        main(
            [
                "train",
                "--data",
                str(toy_root),
                "--system",
                "joint_probe",
                "--out",
                str(tmp_path / "m"),
                *runtime,
            ]
        )
        == 0
    )
    assert len(probe.calls) == 1 and all(
        (tmp_path / "m" / m / "config.json").exists() for m in MACHINES
    )
    assert (
        main(
            [
                "bench",
                "--data",
                str(toy_root),
                "--system",
                "joint_probe",
                "--out",
                str(tmp_path / "b"),
                "--folds",
                "2",
                *runtime,
            ]
        )
        == 0
    )
    assert len(probe.calls) == 3  # one per fold
    bench = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert bench["joint_fit"] is True and set(bench["sets"]) == set(MACHINES)
    assert all(0 <= s["auc"] <= 1 and len(s["folds"]) == 2 for s in bench["sets"].values())
    capsys.readouterr()
    assert main(["list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "joint_probe" in line]
    assert listed and "[joint" in listed[0]
