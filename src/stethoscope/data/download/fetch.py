"""One file over HTTP(S): resumed from its ``.part`` file with a Range request, retried with
exponential backoff on server errors (5xx, 429), dropped connections and short reads, then
checked against its size and published checksum before it takes its final name.

A file that fails its checksum is deleted (a resume would only extend the wrong bytes);
one cut short keeps its ``.part`` so the next run resumes it. A full disk (ENOSPC, EFBIG,
EDQUOT) stops at once: retrying cannot help.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ...errors import ChecksumError, DownloadError
from .registry import Remote

USER_AGENT = "stethoscope-download/1"
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class _Retry(Exception):
    """A failure worth another attempt (the message says what happened)."""


class _DiskFull(Exception):
    def __init__(self, path: Path, err: OSError) -> None:
        super().__init__(str(err))
        self.path, self.err = path, err


def disk_full_message(path: Path, err: OSError, what: str) -> str:
    """The user-facing text of a write that found no room (or hit the file size limit)."""
    cause = {
        errno.EFBIG: "file too large for this file system or the process's file size limit",
        errno.EDQUOT: "disk quota exceeded",
    }.get(err.errno or 0, "no space left on the device")
    return (
        f"{path}: {cause} while {what} ({err.strerror or err}); free some space and run the "
        "same command again"
    )


def file_digests(path: Path, chunk: int = 1 << 20) -> tuple[str, str]:
    """(md5, sha256) of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def verify(path: Path, remote: Remote) -> bool:
    """True when ``path`` matches the remote's published size and checksum, False when it
    has none to match; a mismatch deletes the file and raises `ChecksumError`."""
    size = path.stat().st_size
    problem = None
    if remote.size is not None and size != remote.size:
        problem = f"size {size} bytes, expected {remote.size}"
    elif remote.verifiable:
        md5, sha = file_digests(path)
        if remote.md5 and md5 != remote.md5:
            problem = f"md5 {md5}, expected {remote.md5}"
        elif remote.sha256 and sha != remote.sha256:
            problem = f"sha256 {sha}, expected {remote.sha256}"
    if problem:
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{remote.file}: checksum mismatch ({problem}; checksum from "
            f"{', '.join(remote.sources)}); the file was deleted. Run the command "
            "again to download "
            "it afresh; if it fails again, the record or the mirror has changed"
        )
    return remote.verifiable


@dataclass
class Fetcher:
    """Fetches `Remote` files; ``on_bytes`` is told of every block received (progress)."""

    retries: int = 5
    backoff: float = 1.0
    timeout: float = 60.0
    chunk: int = 1 << 20
    on_bytes: Callable[[int], None] = field(default=lambda n: None)
    say: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr))
    stop: threading.Event = field(default_factory=threading.Event)  # set: every transfer ends soon

    def fetch(self, remote: Remote, url: str, dest: Path) -> bool:
        """Download ``url`` to ``dest`` (through ``dest.part``) and verify it; True when it was
        checked against a published checksum. A ``dest`` already there is verified, not fetched."""
        if dest.exists():
            self.on_bytes(dest.stat().st_size)
            return verify(dest, remote)
        part = dest.with_name(dest.name + ".part")
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DownloadError(
                f"{part.parent}: cannot create the folder ({err.strerror or err})"
            ) from err
        if part.exists():
            self.on_bytes(part.stat().st_size)
        last = ""
        for attempt in range(self.retries + 1):
            try:
                self._attempt(url, part, remote.size)
                break
            except _DiskFull as full:
                raise DownloadError(
                    disk_full_message(full.path, full.err, f"downloading {remote.file}")
                ) from None
            except HTTPError as err:
                if err.code < 500 and err.code != 429:
                    raise DownloadError(
                        f"{remote.file}: the server answered HTTP {err.code} {err.reason} for {url}"
                    ) from err
                last = f"HTTP {err.code} {err.reason}"
            except (_Retry, URLError, OSError, http.client.HTTPException) as err:
                last = str(err) or type(err).__name__
            if attempt == self.retries:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{remote.file}: gave up after {attempt + 1} attempts "
                    f"({last}); {part} keeps the "
                    f"{kept} bytes received: run the same command again to resume"
                )
            delay = self.backoff * 2**attempt
            self.say(
                f"warning: {remote.file}: {last}; retry {attempt + 1} of {self.retries} in "
                f"{delay:.3g} s"
            )
            if self.stop.wait(delay):
                raise DownloadError(
                    f"{remote.file}: interrupted; run the same command again to resume"
                )
        verified = verify(part, remote)
        part.replace(dest)
        return verified

    def _attempt(self, url: str, part: Path, size: int | None) -> None:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        if size is not None and offset == size:
            return  # a complete .part from an earlier run: verification decides
        headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
        try:
            response = urlopen(Request(url, headers=headers), timeout=self.timeout)
        except HTTPError as err:
            if err.code == 416 and offset:  # nothing after what we hold: it is whole, or wrong
                return
            raise
        with response:
            append = offset > 0 and response.status == 206
            if append:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if match is None or int(match.group(1)) != offset:
                    part.unlink()
                    raise _Retry(
                        f"the server sent a range other than the one asked for "
                        f"({response.headers.get('Content-Range')!r}); starting over"
                    )
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with _open_part(part, append) as handle:
                while block := response.read(self.chunk):
                    if self.stop.is_set():
                        raise DownloadError(
                            f"{part.name}: interrupted; run the same command again to resume"
                        )
                    try:
                        handle.write(block)
                    except OSError as err:
                        if err.errno in DISK_FULL:
                            raise _DiskFull(part, err) from err
                        raise
                    received += len(block)
                    self.on_bytes(len(block))
        if expected is not None and received < expected:
            raise _Retry(f"connection closed after {received} of {expected} bytes")


def _open_part(part: Path, append: bool) -> BinaryIO:
    """The partial download, opened to append or to write; a full disk is `_DiskFull`."""
    try:
        return open(part, "ab" if append else "wb")
    except OSError as err:
        if err.errno in DISK_FULL:
            raise _DiskFull(part, err) from err
        raise


def remote_size(url: str, timeout: float = 10.0) -> int | None:
    """The size a server announces for ``url`` (a HEAD request), or None when it says none
    or cannot be reached."""
    try:
        request = Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
        with urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
    except (URLError, OSError, http.client.HTTPException, ValueError):
        return None
    return int(length) if length and length.isdigit() else None
