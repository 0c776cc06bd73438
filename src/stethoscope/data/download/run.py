"""`stethoscope download`: plan, dry run, and the parallel fetch-verify-unpack of a data set.

Files land in ``OUT/<dataset>/<split folder>/<machine type>/...`` (DCASE: ``dev`` and
``eval``; MIMII: ``6dB``, ``0dB``, ``-6dB``), which `stethoscope scan` reads as is. Archives
and their ``.part`` files wait in ``OUT/<dataset>/.download/`` (hidden from the scanners);
an archive counts as done once ``.download/<archive>.done.json`` exists, written after it
was verified and unpacked, so a rerun fetches only what is missing and resumes what was cut.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...errors import DownloadError
from ...fsutil import atomic_write_json
from ...progress import progress
from .extract import apply_ground_truth, extract_archive, read_ground_truth
from .fetch import Fetcher, remote_size
from .record import with_record_checksums
from .registry import Dataset, Registry, Remote, Split, select

STATE = ".download"


# .done.json's "verified" when the checksum came from the --base-url mirror itself
SELF_ATTESTED = "self-attested"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class Options:
    """What one `download` run does (see the CLI flags of the same names)."""

    out: Path
    splits: list[str] | None = None
    machines: list[str] | None = None
    jobs: int = 4
    base_url: str | None = None
    allow_unverified: bool = False
    keep_archives: bool = False
    ground_truth: bool = True
    retries: int = 5
    backoff: float = 1.0
    show_progress: bool = True
    say: Callable[[str], None] = field(default=_stderr)


@dataclass
class Plan:
    dataset: Dataset
    splits: list[Split]
    archives: list[Remote]
    truths: list[Remote]
    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE

    def marker(self, remote: Remote) -> Path:
        """What says ``remote`` is done: an archive's ``.done.json`` (verified and unpacked), a
        ground-truth table's own verified file."""
        return self.state / (f"{remote.file}.done.json" if remote.machine else remote.file)

    def into(self, remote: Remote) -> Path:
        return self.root / remote.into


def make_plan(registry: Registry, dataset: str, opts: Options) -> Plan:
    ds, splits, archives = select(registry, dataset, opts.splits, opts.machines)
    chosen = {a.machine for a in archives}
    truths = (
        [t for s in splits for t in s.ground_truths if t.labels is None or t.labels in chosen]
        if opts.ground_truth
        else []
    )
    return Plan(ds, splits, archives, truths, Path(opts.out) / dataset)


def with_checksums(plan: Plan, opts: Options) -> Plan:
    """The plan with a checksum, read from each split's Zenodo record, for every archive not yet
    done that the registry pins none for (`record`)."""
    records = {s.name: s.record for s in plan.dataset.splits.values()}
    todo = [a for a in plan.archives if not a.verifiable and not plan.marker(a).exists()]
    if not todo:
        return plan
    found = {a.file: a for a in with_record_checksums(todo, records, opts.base_url, opts.say)}
    return replace(plan, archives=[found.get(a.file, a) for a in plan.archives])


def human(size: int | None) -> str:
    """``1234567`` -> ``1.2 MB`` (decimal units, as Zenodo shows them)."""
    if size is None:
        return "size unknown"
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _check_line(remote: Remote) -> str:
    if not remote.verifiable and remote.pinned_commit:
        return f"no checksum; pinned to commit {remote.pinned_commit[:12]}, every line checked"
    if remote.md5:
        return f"md5 {remote.md5} ({', '.join(remote.sources)})"
    if remote.sha256:
        return f"sha256 {remote.sha256[:16]}... ({', '.join(remote.sources)})"
    return "UNVERIFIED (no published checksum known)"


def dry_run(plan: Plan, opts: Options) -> int:
    """Print what would be fetched, where from, its size and checksum source; fetch nothing.
    Checksums the registry lacks are read from the Zenodo records, sizes it lacks are asked of
    the server (HEAD); 0."""
    plan = with_checksums(plan, opts)
    ds = plan.dataset
    print(f"{ds.name}: {ds.title}; licence {ds.licence}")
    files = [*plan.archives, *plan.truths]
    unknown = [r for r in files if r.size is None]
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        asked = dict(
            zip(
                unknown, pool.map(lambda r: remote_size(r.url(opts.base_url)), unknown), strict=True
            )
        )
    total, n_unknown, n_done = 0, 0, 0
    for split in [s for s in plan.splits if any(a.split == s.name for a in plan.archives)]:
        where = (
            f"record {split.record} (https://doi.org/{split.doi})"
            if split.record
            else "no Zenodo record"
        )
        print(f"  {split.name}: {split.title}; {where} -> {plan.root / split.into}")
        for remote in [a for a in plan.archives if a.split == split.name] + [
            t for t in plan.truths if t.split == split.name
        ]:
            size = remote.size if remote.size is not None else asked.get(remote)
            done = plan.marker(remote).exists()
            n_done += done
            if not done:
                total += size or 0
                n_unknown += size is None
            said = human(size) + (" (server)" if remote.size is None and size is not None else "")
            state = "already done" if done else said
            print(
                f"    {remote.file:<42} {remote.machine or 'ground truth':<20} {state:<20} "
                f"{_check_line(remote)}"
            )
            print(f"      {remote.url(opts.base_url)}")
        reasons = dict.fromkeys(
            a.reason for a in plan.archives if a.split == split.name and a.reason
        )
        for reason in reasons:
            print(f"    no checksum: {reason}")
        if not split.ground_truths and split.ground_truth_missing:
            print(f"    ground truth: not fetched: {split.ground_truth_missing}")
    todo = len(files) - n_done
    more = f" (+{n_unknown} of unknown size)" if n_unknown else ""
    print(f"would fetch {todo} file(s), {human(total)}{more}; {n_done} already done")
    unverified = [r.file for r in plan.archives if not r.verifiable]
    if unverified:
        print(
            f"{len(unverified)} archive(s) have no checksum, pinned or in their Zenodo record's "
            "metadata; downloading them needs --allow-unverified"
        )
    return 0


def _allow_unverifiable(dataset: str, todo: Sequence[Remote], opts: Options) -> None:
    """Refuse archives with no published checksum before anything is fetched, unless
    ``--allow-unverified``; then warn once for each."""
    unverifiable = [a.file for a in todo if not a.verifiable]
    if unverifiable and not opts.allow_unverified:
        reason = next(a.reason for a in todo if not a.verifiable)
        raise DownloadError(
            f"{dataset}: no published checksum is known for {len(unverifiable)} "
            f"archive(s) ({', '.join(unverifiable)}): {reason}; their Zenodo "
            "record's metadata gave none either (see the warnings). Nothing was "
            "downloaded. Run again with --allow-unverified to fetch them anyway "
            "(each zip member's CRC is still checked)"
        )
    for name in unverifiable:
        opts.say(
            f"warning: {name}: no published checksum; it will be kept UNVERIFIED "
            "(--allow-unverified)"
        )


def _install(
    plan: Plan, remote: Remote, archive: Path, label: bool | str, base_url: str | None
) -> None:
    """Unpack a fetched archive into its split's folder, then write its ``.done.json`` marker
    (``label``: True, False or `SELF_ATTESTED`; an archive not verified is not kept whole)."""
    n = extract_archive(archive, plan.into(remote), plan.dataset.layout, discard=label is not True)
    atomic_write_json(
        plan.marker(remote),
        {
            "file": remote.file,
            "split": remote.split,
            "machine": remote.machine,
            "into": str(plan.into(remote)),
            "files": n,
            "verified": label,
            "md5": remote.md5,
            "sources": list(remote.sources),
            "url": remote.url(base_url),
        },
    )


def download(plan: Plan, opts: Options) -> dict[str, int]:
    """Fetch, verify and unpack every planned archive (``opts.jobs`` at a time), then apply
    the ground truth; {"archives": n, "already": n, "unverified": n, "renamed": n}."""
    say = opts.say
    if opts.jobs < 1:
        raise DownloadError(f"--jobs must be at least 1, got {opts.jobs}")
    pinned = {a.file for a in plan.archives if a.verifiable}
    plan = with_checksums(plan, opts)
    # a checksum read from the record on the mirror that also serves the archive proves only that
    # the mirror agrees with itself: such an archive is "self-attested", never "verified"
    attested = (
        {a.file for a in plan.archives if a.verifiable and a.file not in pinned}
        if opts.base_url
        else set()
    )
    todo = [a for a in plan.archives if not plan.marker(a).exists()]
    _allow_unverifiable(plan.dataset.name, todo, opts)
    fetcher, failures, unverified = _fetch_all(plan, todo, attested, opts)
    renamed = 0 if failures else _ground_truth(plan, opts, fetcher)
    if failures:
        listed = "\n  ".join(failures.values())
        raise DownloadError(
            f"{len(failures)} of {len(todo)} archive(s) failed (the others are in "
            f"place):\n  {listed}"
        )
    if unverified:
        say(
            f"warning: {len(unverified)} archive(s) kept UNVERIFIED (no published checksum): "
            f"{', '.join(unverified)}"
        )
    return {
        "archives": len(todo),
        "already": len(plan.archives) - len(todo),
        "unverified": len(unverified),
        "renamed": renamed,
    }


def _fetch_all(
    plan: Plan, todo: Sequence[Remote], attested: set[str], opts: Options
) -> tuple[Fetcher, dict[str, str], list[str]]:
    """Fetch, verify and install ``todo`` (``opts.jobs`` at a time, one progress bar):
    (the fetcher, {file: why it failed}, the files kept unverified). Ctrl-C stops the
    transfers; their .part files stay for a resume."""
    lock = threading.Lock()
    bar = progress(
        desc=f"download {plan.dataset.name}",
        unit="B",
        enabled=opts.show_progress,
        total=sum(a.size for a in todo if a.size) or None,
    )

    def received(n: int) -> None:
        with lock:
            bar.update(n)

    fetcher = Fetcher(retries=opts.retries, backoff=opts.backoff, on_bytes=received, say=opts.say)
    failures: dict[str, str] = {}
    unverified: list[str] = []

    def one(remote: Remote) -> None:
        try:
            archive = plan.state / remote.file
            verified = fetcher.fetch(remote, remote.url(opts.base_url), archive)
            label: bool | str = SELF_ATTESTED if verified and remote.file in attested else verified
            _install(plan, remote, archive, label, opts.base_url)
            if not verified:
                unverified.append(remote.file)
            if not opts.keep_archives:
                archive.unlink(missing_ok=True)
        except DownloadError as err:
            failures[remote.file] = str(err)

    pool = ThreadPoolExecutor(max_workers=opts.jobs)
    try:
        list(pool.map(one, todo))
    except KeyboardInterrupt:  # Ctrl-C: stop the transfers (their .part files stay for a resume)
        fetcher.stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return fetcher, failures, unverified


def _ground_truth(plan: Plan, opts: Options, fetcher: Fetcher) -> int:
    """Fetch each planned ground-truth table (verified by its checksum, or by its pinned commit
    and a check of every line) and rename the evaluation clips."""
    renamed = 0
    for truth in plan.truths:
        machines = (
            [truth.labels]
            if truth.labels
            else [a.machine for a in plan.archives if a.split == truth.split and a.machine]
        )
        table_path = plan.state / truth.file
        verified = fetcher.fetch(truth, truth.url(opts.base_url), table_path)
        try:
            table = read_ground_truth(table_path, truth.format, truth.labels)
        except DownloadError:
            table_path.unlink(missing_ok=True)  # fetched afresh next time
            raise
        if not verified:
            opts.say(
                f"warning: ground truth ({truth.file}): no checksum was published; it comes "
                "from a URL pinned to "
                f"commit {truth.pinned_commit}, and every line was checked"
            )
        into = plan.root / truth.into
        # the archive's own folder name is the machine type (registry names agree with it)
        done = apply_ground_truth(table, into, machines, opts.say)
        renamed += sum(done.values())
        if done:
            opts.say(
                f"ground truth ({truth.file}): {sum(done.values())} evaluation clip(s) "
                "renamed to their "
                f"labelled names in {into} (official names in <type>/eval_official_names.csv)"
            )
    return renamed
