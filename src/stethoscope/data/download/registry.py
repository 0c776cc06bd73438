"""The download registry: which archives make up each data set, where they live, their size
and checksum, and where each checksum was read (a packaged YAML file, `registry.yaml`).

Loading checks every entry, so a registry of one's own (``--registry FILE``: a mirror, a
test server) fails early with the key and value named, never half-way through a download.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ...errors import ConfigError

HOSTS = {"zenodo": "https://zenodo.org", "github": "https://raw.githubusercontent.com"}
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_COMMIT = re.compile(r"/([0-9a-f]{40})/")
TRUTH_FORMATS = ("list", "evaluator")


@dataclass(frozen=True)
class Remote:
    """One file to fetch: an archive (``machine`` set) or a ground-truth table (``machine`` None).

    ``md5``/``sha256`` None: no published checksum is known, ``reason`` says why. A ground-truth
    table is in ``format`` "list" (the baseline's ``eval_data_list_YYYY.csv``, every machine
    type) or "evaluator" (the evaluator's ``ground_truth_<type>_section_XX_test.csv`` of the
    one machine type ``labels``).
    """

    dataset: str
    split: str
    machine: str | None
    file: str
    host: str
    path: str
    into: str
    size: int | None
    md5: str | None
    sha256: str | None
    sources: tuple[str, ...]
    reason: str | None = None
    format: str = "list"
    labels: str | None = None

    @property
    def pinned_commit(self) -> str | None:
        """The full git commit named in the path (raw.githubusercontent.com serves it unchanged)."""
        match = _COMMIT.search(f"/{self.path}/")
        return match.group(1) if match else None

    @property
    def verifiable(self) -> bool:
        return self.md5 is not None or self.sha256 is not None

    def url(self, base: str | None = None) -> str:
        """The file's URL: the host's own, or under ``base`` (a mirror or a test server)."""
        root = (base or HOSTS[self.host]).rstrip("/")
        return f"{root}/{self.path}"


@dataclass(frozen=True)
class Split:
    name: str
    record: int | None
    title: str
    into: str
    archives: tuple[Remote, ...]
    ground_truths: tuple[Remote, ...]
    ground_truth_missing: str | None

    @property
    def record_url(self) -> str | None:
        return f"https://zenodo.org/records/{self.record}" if self.record else None

    @property
    def doi(self) -> str | None:
        return f"10.5281/zenodo.{self.record}" if self.record else None


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    layout: str
    licence: str
    licence_source: str
    splits: dict[str, Split]

    def machines(self) -> list[str]:
        seen: dict[str, None] = {}
        for split in self.splits.values():
            seen.update(dict.fromkeys(a.machine for a in split.archives if a.machine))
        return list(seen)


@dataclass(frozen=True)
class Registry:
    datasets: dict[str, Dataset]
    sources: dict[str, str]
    origin: str


def _need(table: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(
            f"{where}: key {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}"
        )
    return value


def _checksums(entry: Mapping[str, Any], where: str) -> tuple[Any, Any, Any]:
    """An archive entry's (md5, sha256, size), each None or well formed."""
    md5, sha256, size = entry.get("md5"), entry.get("sha256"), entry.get("size")
    if md5 is not None and not (isinstance(md5, str) and _MD5.match(md5)):
        raise ConfigError(f"{where}: md5 {md5!r} is not 32 lowercase hex digits")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256)):
        raise ConfigError(f"{where}: sha256 {sha256!r} is not 64 lowercase hex digits")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ConfigError(f"{where}: size {size!r} must be a positive number of bytes or null")
    return md5, sha256, size


def _remote(
    entry: Mapping[str, Any],
    where: str,
    dataset: str,
    split: str,
    record: int | None,
    into: str,
    machine: str | None,
    default_reason: str | None,
    sources: Mapping[str, str],
) -> Remote:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {entry!r}")
    name = _need(entry, "file", where, str)
    if not _SAFE_NAME.match(name):
        raise ConfigError(
            f"{where}: file name {name!r} must be a plain name (letters, digits, _ . -)"
        )
    host = entry.get("host", "zenodo")
    if host not in HOSTS:
        raise ConfigError(f"{where}: host {host!r} is not one of {', '.join(HOSTS)}")
    path = entry.get("path") or (
        f"records/{record}/files/{name}?download=1" if host == "zenodo" and record else None
    )
    if not isinstance(path, str) or ".." in path.split("/"):
        raise ConfigError(
            f"{where}: needs a 'path' (relative to the {host} base URL), got {path!r}"
        )
    md5, sha256, size = _checksums(entry, where)
    cited = tuple(entry.get("sources") or ())
    unknown = [s for s in cited if s not in sources]
    if unknown:
        raise ConfigError(f"{where}: sources {unknown} are not listed under 'sources:'")
    reason = entry.get("reason", default_reason)
    if md5 is None and sha256 is None:
        if not reason:
            raise ConfigError(
                f"{where}: no checksum and no 'reason' saying why (a checksum is never guessed)"
            )
    elif not cited:
        raise ConfigError(f"{where}: a checksum needs 'sources' saying where it was read")
    return Remote(
        dataset,
        split,
        machine,
        name,
        host,
        path,
        into,
        size,
        md5,
        sha256,
        cited,
        None if (md5 or sha256) else str(reason),
    )


def _truths(
    entry: Any,
    where: str,
    dataset: str,
    split: str,
    record: int | None,
    into: str,
    machines: list[str],
    sources: Mapping[str, str],
) -> tuple[Remote, ...]:
    """A split's ground-truth tables: one, or with ``per_machine: true`` one per machine type of
    the split (``{machine}`` in ``file`` and ``path``). A table without a checksum must name a
    full git commit in its path, so that what is fetched cannot change."""
    if not entry:
        return ()
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {entry!r}")
    fmt = entry.get("format", "list")
    if fmt not in TRUTH_FORMATS:
        raise ConfigError(f"{where}: format {fmt!r} is not one of {', '.join(TRUTH_FORMATS)}")
    per_machine = entry.get("per_machine", False)
    if per_machine and not all("{machine}" in str(entry.get(k, "")) for k in ("file", "path")):
        raise ConfigError(f"{where}: per_machine needs '{{machine}}' in both 'file' and 'path'")
    expand = machines if per_machine else [None]
    out = []
    for machine in expand:
        filled = {
            k: (v.replace("{machine}", machine) if machine and isinstance(v, str) else v)
            for k, v in entry.items()
            if k not in ("format", "per_machine")
        }
        truth = replace(
            _remote(filled, where, dataset, split, record, into, None, None, sources),
            format=fmt,
            labels=machine,
        )
        if not truth.verifiable and truth.pinned_commit is None:
            raise ConfigError(
                f"{where}: a ground-truth table without a checksum must name a full "
                f"40-digit git commit in its path, got {truth.path!r}"
            )
        out.append(truth)
    return tuple(out)


def _split(dname: str, sname: str, sbody: Any, where: str, sources: Mapping[str, str]) -> Split:
    """One checked split of a data set: its record, folder, archives and ground truth."""
    swhere = f"{where}.splits.{sname}"
    record = sbody.get("record")
    if record is not None and (not isinstance(record, int) or isinstance(record, bool)):
        raise ConfigError(f"{swhere}: record {record!r} must be a Zenodo record number")
    into = str(sbody.get("into", sname))
    if not _SAFE_NAME.match(into):
        raise ConfigError(f"{swhere}: 'into' {into!r} must be a plain folder name")
    archives = []
    for i, entry in enumerate(_need(sbody, "archives", swhere, list)):
        machine = _need(entry, "machine", f"{swhere}.archives[{i}]", str)
        archives.append(
            _remote(
                entry,
                f"{swhere}.archives[{i}]",
                dname,
                sname,
                record,
                into,
                machine,
                sbody.get("missing_reason"),
                sources,
            )
        )
    names = [a.file for a in archives]
    if len(set(names)) != len(names):
        raise ConfigError(f"{swhere}: an archive is listed twice")
    truths = _truths(
        sbody.get("ground_truth"),
        f"{swhere}.ground_truth",
        dname,
        sname,
        record,
        into,
        [a.machine for a in archives if a.machine],
        sources,
    )
    return Split(
        sname,
        record,
        str(sbody.get("title", sname)),
        into,
        tuple(archives),
        truths,
        sbody.get("ground_truth_missing"),
    )


def parse_registry(data: Any, origin: str) -> Registry:
    """Check a registry document (see `registry.yaml`) and build it; errors name the entry."""
    if not isinstance(data, Mapping) or data.get("version") != 1:
        raise ConfigError(f"{origin}: not a download registry (needs 'version: 1')")
    sources = {str(k): str(v) for k, v in (data.get("sources") or {}).items()}
    datasets: dict[str, Dataset] = {}
    for dname, body in _need(data, "datasets", origin, dict).items():
        where = f"{origin}: datasets.{dname}"
        splits: dict[str, Split] = {}
        for sname, sbody in _need(body, "splits", where, dict).items():
            splits[str(sname)] = _split(str(dname), str(sname), sbody, where, sources)
        datasets[str(dname)] = Dataset(
            str(dname),
            str(body.get("title", dname)),
            _need(body, "layout", where, str),
            str(body.get("licence", "unknown")),
            str(body.get("licence_source", "")),
            splits,
        )
    return Registry(datasets, sources, origin)


def load_registry(path: str | Path | None = None) -> Registry:
    """The packaged registry, or the YAML file at ``path``."""
    if path is None:
        text = resources.files(__package__).joinpath("registry.yaml").read_text(encoding="utf-8")
        origin = "packaged registry.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the registry ({err.strerror or err})") from err
        origin = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin}: not valid YAML ({err})") from err
    return parse_registry(data, origin)


def select(
    registry: Registry,
    dataset: str,
    splits: list[str] | None = None,
    machines: list[str] | None = None,
) -> tuple[Dataset, list[Split], list[Remote]]:
    """The data set, its chosen splits and the archives of the chosen machine types (case does
    not matter); unknown names are a `ConfigError` listing the known ones."""
    if dataset not in registry.datasets:
        raise ConfigError(f"unknown data set {dataset!r}; known: {', '.join(registry.datasets)}")
    ds = registry.datasets[dataset]
    chosen = splits if splits else list(ds.splits)
    unknown = [s for s in chosen if s not in ds.splits]
    if unknown:
        raise ConfigError(f"{dataset}: unknown split(s) {unknown}; known: {', '.join(ds.splits)}")
    wanted = None
    if machines:
        known = {m.lower(): m for m in ds.machines()}
        missing = [m for m in machines if m.lower() not in known]
        if missing:
            raise ConfigError(
                f"{dataset}: unknown machine type(s) {missing}; known: {', '.join(ds.machines())}"
            )
        wanted = {known[m.lower()] for m in machines}
    split_objs = [ds.splits[s] for s in chosen]
    archives = [a for s in split_objs for a in s.archives if wanted is None or a.machine in wanted]
    if not archives:
        raise ConfigError(
            f"{dataset}: no archive of machine type(s) {sorted(wanted or [])} in "
            f"split(s) {', '.join(chosen)}"
        )
    return ds, split_objs, archives
