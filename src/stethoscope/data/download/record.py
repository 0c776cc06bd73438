"""Checksums read from a Zenodo record's own metadata at download time.

Where the packaged registry pins no checksum for an archive (it could not be read when the
registry was written, see docs/data.md), `download` asks the record's API
(``https://zenodo.org/api/records/N``, or the same path under ``--base-url``) for its file
list: each file's ``checksum`` (``md5:<hex>``) and ``size`` are the ones Zenodo computed on
upload. The archive is then verified against them exactly as against a pinned one, and its
``.done.json`` names the record it was read from. A record that cannot be read, or that does
not list the file, leaves the archive unverified (``--allow-unverified`` decides).
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from .fetch import USER_AGENT
from .registry import HOSTS, Remote

_MD5 = re.compile(r"^(?:md5:)?([0-9a-f]{32})$")
LIMIT = 16 << 20  # a record's metadata is a few kB; never read more than this


def record_url(record: int, base: str | None = None) -> str:
    """The API address of a Zenodo record (under ``base`` for a mirror or a test server)."""
    return f"{(base or HOSTS['zenodo']).rstrip('/')}/api/records/{record}"


def source_name(record: int, base: str | None = None) -> str:
    """How a checksum read from the record is cited (in the dry run and ``.done.json``)."""
    return f"Zenodo record {record} metadata ({record_url(record, base)}, read at download time)"


def _entries(document: Any) -> list[dict[str, Any]]:
    """The file entries of a record document: Zenodo's ``files`` list, or InvenioRDM's
    ``files.entries`` (a list or a mapping by name), or a ``/files`` answer's ``entries``."""
    files = document.get("files", document) if isinstance(document, dict) else None
    if isinstance(files, dict):
        files = files.get("entries")
    if isinstance(files, dict):
        files = list(files.values())
    return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []


def parse_record(document: Any) -> dict[str, tuple[str, int | None]]:
    """{file name: (md5, size)} of every file the record lists with an md5 checksum."""
    out: dict[str, tuple[str, int | None]] = {}
    for entry in _entries(document):
        name = entry.get("key") or entry.get("filename")
        match = _MD5.match(str(entry.get("checksum", "")).lower())
        size = entry.get("size", entry.get("filesize"))
        if isinstance(name, str) and match:
            out[name] = (match.group(1), size if isinstance(size, int) and size > 0 else None)
    return out


def _get(url: str, timeout: float) -> dict[str, tuple[str, int | None]]:
    request = Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    with urlopen(request, timeout=timeout) as response:
        return parse_record(json.loads(response.read(LIMIT)))


def read_record(
    record: int,
    base: str | None = None,
    attempts: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> dict[str, tuple[str, int | None]]:
    """The record's {file: (md5, size)}, from its metadata or else its ``/files`` listing;
    `OSError` saying why when neither gives one. Server errors and dropped connections are
    retried with exponential backoff; a 404 or a listing without checksums is not."""
    urls = [record_url(record, base), record_url(record, base) + "/files"]
    last = ""
    for attempt in range(attempts):
        retry = False
        for url in urls:
            try:
                found = _get(url, timeout)
            except HTTPError as err:
                last = f"{url}: HTTP {err.code} {err.reason}"
                retry |= err.code >= 500 or err.code == 429
                continue
            except (URLError, OSError, http.client.HTTPException) as err:
                last, retry = f"{url}: {err}", True
                continue
            except ValueError as err:
                last = f"{url}: not a JSON record ({err})"
                continue
            if found:
                return found
            last = f"{url} lists no file with an md5 checksum"
        if not retry:
            break
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise OSError(last)


def with_record_checksums(
    remotes: Iterable[Remote],
    records: dict[str, int | None],
    base: str | None,
    say: Callable[[str], None],
) -> list[Remote]:
    """``remotes`` with the record's md5 (and size) filled in wherever the registry has none.

    ``records``: the Zenodo record of each split. One request per record; an archive the
    record does not list, or a record that cannot be read, stays as it was (warned)."""
    remotes = list(remotes)
    wanted = sorted({rec for r in remotes if not r.verifiable and (rec := records.get(r.split))})
    read: dict[int, dict[str, tuple[str, int | None]]] = {}
    for record in wanted:
        try:
            read[record] = read_record(record, base)
        except OSError as err:
            say(
                f"warning: Zenodo record {record}: its metadata could not be read ({err}); its "
                "archives have no checksum to be verified against"
            )
    out = []
    for remote in remotes:
        rec = records.get(remote.split)
        if remote.verifiable or rec is None or rec not in read:
            out.append(remote)
            continue
        listed = read[rec].get(remote.file)
        if listed is None:
            say(
                f"warning: {remote.file}: not listed in Zenodo record {rec}'s metadata; no "
                "checksum to verify"
            )
            out.append(remote)
        else:
            md5, size = listed
            out.append(
                replace(
                    remote,
                    md5=md5,
                    size=remote.size or size,
                    sources=(source_name(rec, base),),
                    reason=None,
                )
            )
    return out
