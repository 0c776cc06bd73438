"""The registry of systems: each built-in registers its class by name (`register`); `get_system`
builds one from its name and hyperparameters, refusing runtime keys and unknown ones;
`part_params` checks a composite's nested part parameters; `system_from_saved` rebuilds a
system from a model folder's saved hyperparameters, migrating older layouts."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .params import RUNTIME_KEYS, runtime_key_error, split_comma_lists
from .threshold import IN_SAMPLE

if TYPE_CHECKING:
    from .base import System

REGISTRY: dict[str, type[System]] = {}


def register(cls: type[System]) -> type[System]:
    """Class decorator: make a system available by its ``name`` to the CLI and `get_system`."""
    REGISTRY[cls.name] = cls
    return cls


def get_system(name: str, **params: Any) -> System:
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
        raise ConfigError(
            f"system {name!r} has no parameter(s) {unknown}; parameters: {known}"
            + _part_hint(cls, unknown)
        )
    return cls(**params)


def _part_hint(cls: type[System], unknown: list[str]) -> str:
    """Where keys that belong to a composite's part go (written flat, as before parts nested)."""
    for part, part_cls in cls.parts.items():
        theirs = [k for k in unknown if k in part_cls.constructor_param_names()]
        if theirs:
            return (
                f"; {theirs} belong to its {part!r} part: nest them under {part} (YAML "
                f"'{part}: {{{theirs[0]}: ...}}', --set {part}.{theirs[0]}=...)"
            )
    return ""


def part_params(owner: str, key: str, part: type[System], given: Any) -> dict[str, Any]:
    """Every parameter of a composite system's part ``key`` (tldiffgan's ``ldgan``): the part's
    constructor defaults, then ``given``. Each given key must be one of the part's constructor
    (not a threshold one: those are the composite's), and the part's own checks run, by
    building it."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ConfigError(
            f"{owner}: {key} must be a mapping of {part.name} parameters, got {given!r}"
        )
    names = part.constructor_param_names()
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(
            f"{owner}: unknown {key} parameter(s) {[f'{key}.{k}' for k in unknown]}; "
            f"{key} parameters: {names}"
        )
    try:
        built = part(**split_comma_lists(typing.get_type_hints(part.__init__), given))
    except ConfigError as err:  # "ldgan: epochs must be" -> "tldiffgan: ldgan.epochs must be"
        text, prefix = str(err), f"{part.name}: "
        text = f"{key}.{text[len(prefix) :]}" if text.startswith(prefix) else f"{key}: {text}"
        raise ConfigError(f"{owner}: {text}") from err
    return {k: getattr(built, k) for k in names}


def nest_flat_parts(cls: type[System], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a part's parameters saved flat beside the system's own (model folders
    written before parts were nested) moved into the part's mapping."""
    own = set(cls.param_names())
    for part, part_cls in cls.parts.items():
        flat = {
            k: params.pop(k)
            for k in list(params)
            if k not in own and k in part_cls.constructor_param_names()
        }
        if flat:
            params[part] = {**flat, **(params.get(part) or {})}
    return params


def system_from_saved(name: str, params: Mapping[str, Any]) -> System:
    """A system from the hyperparameters a model folder saved. Older layouts are migrated:
    runtime settings dropped, an old ``weights_path`` kept only as a hint of where the weights
    may be (`System.weights_hint_`), ``threshold_fit`` in_sample (folders written before
    cross-fitted thresholds), flat part parameters nested (`System.upgrade_params`)."""
    _load_builtin_systems()
    params = dict(params)
    hint = params.pop("weights_path", None)
    for key in RUNTIME_KEYS:
        params.pop(key, None)
    params.setdefault("threshold_fit", IN_SAMPLE)
    cls = REGISTRY.get(name)
    system = get_system(name, **(cls.upgrade_params(params) if cls else params))
    system.weights_hint_ = hint if isinstance(hint, str) else None
    return system


def list_systems() -> dict[str, type[System]]:
    """Every registered system class by name, sorted."""
    _load_builtin_systems()
    return dict(sorted(REGISTRY.items()))


def _load_builtin_systems() -> None:
    from .. import systems  # noqa: F401  (importing the package registers the built-ins)
