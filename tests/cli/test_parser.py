"""The parser: every option of every verb explains itself, every verb takes --quiet, --version."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Iterator

import pytest
import torch

from stethoscope import __version__
from stethoscope.cli import build_parser, main


def _parsers(
    parser: argparse.ArgumentParser, name: str = "stethoscope"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and, recursively, every sub-command's parser, with its command line."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {verb}")


VERBS = [name for name, _ in _parsers(build_parser())][1:]


def test_every_option_has_help() -> None:
    actions = [(name, a) for name, parser in _parsers(build_parser()) for a in parser._actions]
    actions += [
        (name, verb)
        for name, a in actions
        if isinstance(a, argparse._SubParsersAction)
        for verb in a._choices_actions
    ]  # each verb's line in the verb list
    missing = [
        f"{name}: {'/'.join(a.option_strings) or a.dest}"
        for name, a in actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    missing += [
        f"{name} {verb}"
        for name, a in actions
        if isinstance(a, argparse._SubParsersAction)
        for verb in set(a.choices) - {c.dest for c in a._choices_actions}
    ]  # added without help=
    assert not missing, missing


def test_every_verb_takes_quiet() -> None:
    assert len(VERBS) >= 10
    lacking = [
        name
        for name, parser in _parsers(build_parser())
        if name in VERBS and "--quiet" not in parser._option_string_actions
    ]
    assert not lacking, lacking


def test_quiet_list_still_lists(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "systems:" in captured.out and "  dcase_ae " in captured.out and captured.err == ""


def test_version_names_package_torch_and_python(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"stethoscope {__version__} (torch {torch.__version__}, Python {platform.python_version()})"
    )


def test_repeated_set_flags_accumulate() -> None:
    """`--set a=1 --set b=2` keeps both (a later flag once silently replaced the earlier)."""
    args = build_parser().parse_args(
        [
            "train",
            "--data",
            "d",
            "--out",
            "o",
            "--set",
            "epochs=3",
            "batch_size=8",
            "--set",
            "threshold_fit=in_sample",
        ]
    )
    assert args.set == ["epochs=3", "batch_size=8", "threshold_fit=in_sample"]


def test_every_verb_comes_from_its_own_module() -> None:
    from stethoscope.cli.verbs import VERBS

    assert list(VERBS) == VERBS_LISTED
    for verb, module in VERBS.items():
        assert module.__name__.rpartition(".")[2] == ("listing" if verb == "list" else verb)
        assert callable(module.add_parser) and callable(getattr(module, f"cmd_{verb}"))


VERBS_LISTED = [name.split()[-1] for name in VERBS]


def test_device_is_the_torch_device_everywhere() -> None:
    """The runtime flags are defined once: --device means the same for every verb that takes it
    (`watch --mic` names its sound card with --input-device)."""
    helps = {
        name: parser._option_string_actions["--device"].help
        for name, parser in _parsers(build_parser())
        if name in VERBS and "--device" in parser._option_string_actions
    }
    assert {
        "stethoscope serve",
        "stethoscope watch",
        "stethoscope train",
        "stethoscope score",
    } <= set(helps)
    assert len(set(helps.values())) == 1 and "torch device" in next(iter(helps.values()))
    watch = dict(_parsers(build_parser()))["stethoscope watch"]
    assert (
        "--input-device" in watch._option_string_actions
        and "--torch-device" not in watch._option_string_actions
    )


def test_weights_dir_is_a_runtime_flag_wherever_a_model_runs(tmp_path, capsys) -> None:
    """Where the pretrained weights are is a runtime flag (never a hyperparameter), taken by
    every verb that takes --device; a folder that is not one is named (exit 2)."""
    parsers = dict(_parsers(build_parser()))
    runs = [
        name
        for name, p in parsers.items()
        if name in VERBS and "--device" in p._option_string_actions
    ]
    assert "stethoscope score" in runs and "stethoscope serve" in runs
    assert all("--weights-dir" in parsers[name]._option_string_actions for name in runs)
    rc = main(
        [
            "score",
            "--model",
            str(tmp_path),
            str(tmp_path / "a.wav"),
            "--weights-dir",
            str(tmp_path / "nope"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"--weights-dir {tmp_path / 'nope'}: not a folder" in err
    assert "Traceback" not in err
