"""The registry of systems: each built-in registers its class by name (`register`); `get_system`
builds one from its name and hyperparameters, refusing runtime keys and unknown ones."""
from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .params import RUNTIME_KEYS, runtime_key_error, split_comma_lists

if TYPE_CHECKING:
    from .base import System

REGISTRY: dict[str, type["System"]] = {}


def register(cls: type["System"]) -> type["System"]:
    """Class decorator: make a system available by its ``name`` to the CLI and `get_system`."""
    REGISTRY[cls.name] = cls
    return cls


def get_system(name: str, **params: Any) -> "System":
    """Build a registered system from its name and hyperparameters."""
    _load_builtin_systems()
    if name not in REGISTRY:
        raise ConfigError(f"unknown system {name!r}; known: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    params = split_comma_lists(typing.get_type_hints(cls.__init__), params)  # --set members=a,b
    runtime = [k for k in params if k in RUNTIME_KEYS]
    if runtime:
        raise runtime_key_error(name, runtime)
    known = cls.param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"system {name!r} has no parameter(s) {unknown}; parameters: {known}")
    return cls(**params)


def list_systems() -> dict[str, type["System"]]:
    """Every registered system class by name, sorted."""
    _load_builtin_systems()
    return dict(sorted(REGISTRY.items()))


def _load_builtin_systems() -> None:
    from .. import systems  # noqa: F401  (importing the package registers the built-ins)
