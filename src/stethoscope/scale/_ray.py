"""Ray as an optional dependency: the import check with the install hint, and one Ray session
per run (a local Ray by default, an existing cluster with ``address``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from ..engine.context import available_cores
from ..engine.launch import require_ray
from ..errors import ConfigError


def import_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or a `ConfigError` saying how to install it."""
    return require_ray("--engine ray", "ray.data", "Ray (with Ray Data)")


@contextmanager
def ray_session(
    address: str | None = None, cpus: int | None = None, progress: bool = False
) -> Iterator[ModuleType]:
    """Ray for the block: a session already started by the caller (a notebook, a test) is used as
    it is; else a connection to ``address`` (``auto``, ``ray://host:10001``) or a local Ray with
    ``cpus`` CPUs (default: the cores this process may use), shut down at the end. No
    dashboard, errors only, Ray Data's progress bars only with ``progress``."""
    ray = import_ray()
    if cpus is not None and cpus < 1:
        raise ConfigError(f"--ray-cpus must be >= 1, got {cpus}")
    started = False
    if not ray.is_initialized():
        if address and cpus:
            raise ConfigError(
                "--ray-cpus sizes a local Ray; the cluster named by --address has its own CPUs"
            )
        options = {
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        }
        if address:
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ConfigError(
                    f"--address {address}: cannot connect to a Ray cluster ({err})"
                ) from None
        else:
            ray.init(num_cpus=cpus or available_cores(), **options)
        started = True
    for name in ("ray", "ray.data"):  # Ray Data logs every execution at INFO on stderr
        logging.getLogger(name).setLevel(logging.INFO if progress else logging.ERROR)
    data_context = ray.data.DataContext.get_current()
    data_context.enable_progress_bars = progress
    data_context.print_on_execution_start = False
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
