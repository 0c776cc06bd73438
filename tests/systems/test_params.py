"""Hyperparameter checks: types from annotations, intervals and choices from rules."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stethoscope.errors import ConfigError
from stethoscope.systems import get_system
from stethoscope.systems.params import check_params, runtime_key_error, split_comma_lists

HINTS = {
    "n": int,
    "rate": float,
    "flag": bool,
    "name": str,
    "maybe": str | None,
    "names": Sequence[str],
}
RULES = {"n": "[1, inf)", "rate": "(0, 0.5]", "name": ("a", "b")}


@pytest.mark.parametrize(
    "values",
    [
        {"n": 1},
        {"n": 10**9},
        {"rate": 0.5},
        {"rate": 1e-9},
        {"flag": False},
        {"name": "b"},
        {"maybe": None},
        {"names": ["x", "y"]},
        {"names": ("x",)},
    ],
)
def test_good_values_pass(values: dict) -> None:
    check_params("sys", HINTS, values, RULES)  # raises on failure


@pytest.mark.parametrize(
    "values, words",
    [
        ({"n": "abc"}, ["n must be an integer", "'abc'"]),
        ({"n": True}, ["n must be an integer"]),
        ({"n": 0}, ["n must be in [1, inf)", "got 0"]),
        ({"n": 2.0}, ["n must be an integer"]),
        ({"rate": float("nan")}, ["rate must be in (0, 0.5]", "nan"]),
        ({"rate": float("inf")}, ["rate must be in (0, 0.5]"]),
        ({"rate": 0}, ["rate must be in (0, 0.5]"]),
        ({"rate": 1}, ["rate must be in (0, 0.5]"]),
        ({"flag": 1}, ["flag must be true or false"]),
        ({"name": "c"}, ["name must be one of ['a', 'b']"]),
        ({"names": "xy"}, ["names must be a list"]),
        ({"names": [1]}, ["names must be a list"]),
        ({"name": None}, ["name must not be null"]),
    ],
)
def test_bad_values_name_key_and_range(values: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        check_params("sys", HINTS, values, RULES)
    assert str(err.value).startswith("sys: ")
    for word in words:
        assert word in str(err.value)


def test_unbounded_interval_admits_infinity() -> None:
    check_params("sys", {"x": float}, {"x": float("inf")}, {"x": "[0, inf]"})


def test_runtime_keys_point_at_their_flags() -> None:
    message = str(runtime_key_error("dcase_ae", ["device"]))
    assert "device is a runtime setting" in message and "--device" in message


def test_comma_lists_for_list_typed_parameters_only() -> None:
    hints = {"names": Sequence[str], "maybe": list[float] | None, "name": str, "n": int}
    given = {"names": "a, b", "maybe": "1,2.5", "name": "x,y", "n": 3}
    assert split_comma_lists(hints, given) == {
        "names": ["a", "b"],
        "maybe": [1, 2.5],
        "name": "x,y",
        "n": 3,
    }
    assert split_comma_lists(hints, {"names": ["a,b"], "maybe": None}) == {
        "names": ["a,b"],
        "maybe": None,
    }
    # what `--set detectors=knn,gmm` gives a system
    assert get_system("tldiffgan", detectors="knn,gmm", selection="knn").detectors == ["knn", "gmm"]
