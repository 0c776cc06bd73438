"""Hyperparameter checks on construction, before any audio is read.

Types come from the constructor's annotations (int, float, bool, str, optional, sequences of
str); ranges and choices from the class's ``param_rules``: an interval string such as
``"[1, inf)"`` or ``"(0, 0.5]"``, or a tuple of allowed values. NaN and infinite floats are
refused unless the interval includes ``inf``. Errors name the system, the key, the allowed
values and what was given. A string given for a list-typed parameter is read as a comma
list (`split_comma_lists`): ``--set members=dcase_ae,embedding_knn``.
"""

from __future__ import annotations

import collections.abc
import math
import re
import typing
from collections.abc import Mapping, Sequence
from types import UnionType
from typing import Any

import yaml

from ..errors import ConfigError

_INTERVAL = re.compile(r"^\s*([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(-?inf|[-+0-9.e]+)\s*([\])])\s*$")
RUNTIME_KEYS = (
    "device",
    "seed",
    "progress",
    "cache_dir",
    "checkpoint_dir",
    "checkpoint_every",
    "threads",
    "precision",
    "data_parallel",
    "weights_path",
)
# the CLI flag that sets each runtime key (several have no flag of the same name)
RUNTIME_FLAGS = {
    "device": "--device",
    "seed": "--seed",
    "progress": "--quiet",
    "cache_dir": "--cache DIR / --no-cache",
    "checkpoint_dir": "--out (checkpoints go to OUT/.checkpoints)",
    "checkpoint_every": "--checkpoint-every",
    "threads": "--threads",
    "precision": "--precision",
    "data_parallel": "--data-parallel",
    "weights_path": "--weights-dir DIR or $STETHOSCOPE_WEIGHTS_DIR (a folder)",
}


def check_params(
    owner: str, hints: Mapping[str, Any], values: Mapping[str, Any], rules: Mapping[str, Any]
) -> None:
    """Raise `ConfigError` for the first value whose type, range or choice is wrong."""
    for key, value in values.items():
        kind = hints.get(key)
        rule = rules.get(key)
        if kind is not None:
            _check_type(owner, key, value, kind, rule)
        if rule is None or value is None:
            continue
        if isinstance(rule, tuple):
            if value not in rule:
                raise ConfigError(f"{owner}: {key} must be one of {list(rule)}, got {value!r}")
        elif not _in_interval(float(value), rule):
            raise ConfigError(f"{owner}: {key} must be in {rule}, got {value!r}")


def split_comma_lists(hints: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each string given for a list-typed parameter (``list[str]``,
    ``Sequence[float] | None``...) split on commas: ``"a, b"`` -> ``["a", "b"]``; the items of a
    list of numbers are YAML-typed (``"1,2.5"`` -> ``[1, 2.5]``), those of a list of strings stay
    strings. What a `--set key=a,b` gives; a YAML list (``[a, b]``) needs no splitting."""
    out = dict(values)
    for key, value in values.items():
        item = _list_item_type(hints.get(key))
        if item is None or not isinstance(value, str):
            continue
        parts = [part.strip() for part in value.split(",")]
        out[key] = (
            parts if item is str else [yaml.safe_load(part) if part else None for part in parts]
        )
    return out


def _list_item_type(kind: Any) -> Any:
    """The item type of a list-typed annotation (also inside ``X | None``); None for others."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, UnionType):
        found = [_list_item_type(a) for a in args if a is not type(None)]
        return next((f for f in found if f is not None), None)
    if typing.get_origin(kind) in (list, collections.abc.Sequence):
        return args[0] if args else Any
    return None


def runtime_key_error(owner: str, keys: Sequence[str]) -> ConfigError:
    """The error for runtime settings given as hyperparameters (they are flags, not config)."""
    flags = ", ".join(RUNTIME_FLAGS.get(k, f"--{k.replace('_', '-')}") for k in keys)
    what = (
        "is a runtime setting, not a hyperparameter"
        if len(keys) == 1
        else "are runtime settings, not hyperparameters"
    )
    return ConfigError(f"{owner}: {', '.join(keys)} {what}; use {flags} (or RunContext in the API)")


def _check_type(owner: str, key: str, value: Any, kind: Any, rule: Any = None) -> None:
    args = typing.get_args(kind)
    if value is None:
        if type(None) not in args:
            raise ConfigError(f"{owner}: {key} must not be null")
        return
    options = (
        [a for a in args if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, UnionType)
        else [kind]
    )
    for option in options:
        if _matches(value, option):
            return
    allowed = (
        f" in {rule}"
        if isinstance(rule, str)
        else f" among {list(rule)}"
        if isinstance(rule, tuple)
        else ""
    )
    raise ConfigError(
        f"{owner}: {key} must be {_describe(options)}{allowed}, "
        f"got {value!r} ({type(value).__name__})"
    )


def _matches(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        inner = typing.get_args(kind)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and all(
            inner[0] is Any or _matches(v, inner[0]) for v in value
        )
    return True  # anything richer is the constructor's own business


def _describe(options: list[Any]) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(
        names.get(o, "a list" if typing.get_origin(o) else getattr(o, "__name__", str(o)))
        for o in options
    )


def _in_interval(value: float, rule: str) -> bool:
    match = _INTERVAL.match(rule)
    if not match:
        raise ValueError(f"bad interval rule {rule!r}")
    left, lo, hi, right = match.groups()
    lo_v, hi_v = float(lo), float(hi)
    if math.isnan(value) or (math.isinf(value) and not math.isinf(hi_v if value > 0 else lo_v)):
        return False
    above = value > lo_v or (left == "[" and value == lo_v)
    below = value < hi_v or (right == "]" and value == hi_v)
    return above and below
