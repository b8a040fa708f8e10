"""Copy everything under one location to another: plan in Python, move bytes in Rust.

The planner lists both sides once, applies include/exclude globs, skips destination
objects that already match (so an interrupted copy resumes by running it again), and
hands the rest to the engine. Results come back per object and go into a manifest.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _engine
from ..config.params import engine_default
from ..errors import EXIT_UNREACHABLE, UnreachableError, engine_exit_code
from ..storage.leftovers import remove_for_keys
from ..storage.location import Location, ObjectInfo, shown_key
from .cancel import Interrupted, run_cancellable
from .progress import SILENT, Reporter

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .._engine import CopyResult

_RUN_AGAIN = "run again to copy them (objects already copied are skipped)"

# Engine error codes that name a cause many objects share (a full disk, a read-only folder, a
# bucket gone), what each means and what to do about it: such failures are reported once, with
# these words. Failures with any other code are reported one by one, with their own message
# (an unreachable server's says how the connection failed).
CAUSES = {
    "disk_full": ("the disk is full (no space left on device)",
                  "free some space or copy to a bigger target, then run again (objects already copied are skipped)"),
    "quota_exceeded": ("the disk quota is exceeded", "free some space or raise the quota, then run again"),
    "read_only": ("the destination is read-only (read-only file system)",
                  "copy to a writable folder, or remount it read-write, then run again"),
    "permission_denied": ("permission denied", "check the owner and permissions of the folders, then run again"),
    "not_permitted": ("operation not permitted", "check the owner and permissions of the folders, then run again"),
    "symlink": ("the path crosses a symbolic link, which mbackup never follows",
                "remove the link, or copy the folder it points to by naming it"),
    "bad_key": ("object keys that cannot be addressed", "--exclude skips them"),
    "key_clash": ("keys a folder cannot hold side by side (an object x and objects under x/, which S3 can hold)",
                  "--exclude skips one of each pair"),
    "no_such_bucket": ("the bucket does not exist (NoSuchBucket)", "create it or fix the bucket name, then run again"),
    "access_denied": ("access denied (AccessDenied)", "check what the credentials are allowed to do"),
    "throttled": ("the store asked to slow down (throttling)", f"lower --parallel or --max-requests, or {_RUN_AGAIN}"),
    "server_error": ("the store failed (HTTP 5xx)", _RUN_AGAIN),
}


class CopyUnreachable(UnreachableError):
    """Every object that failed, failed because a store did not answer, timed out or throttled."""


@dataclass
class CopySettings:
    """The engine's Copier arguments. Defaults of the ones a user sets come from the settings
    table (config/params.py); sizes in bytes, 0 for no cap."""

    parallel: int = engine_default("parallel")
    checksum: str = engine_default("checksum")
    verify: bool = False
    max_bandwidth: int = engine_default("max_bandwidth")  # bytes/s, 0 = unlimited
    max_requests_per_sec: float = engine_default("max_requests_per_sec")
    part_size: int = engine_default("part_size")
    multipart_threshold: int = engine_default("multipart_threshold")
    copy_part_size: int = engine_default("copy_part_size")
    multipart_copy_threshold: int = engine_default("multipart_copy_threshold")
    part_parallel: int = 4
    memory_budget: int = engine_default("memory_budget")
    max_attempts: int = 5

    def copier(self) -> _engine.Copier:
        return _engine.Copier(**asdict(self))


@dataclass
class Plan:
    jobs: list[tuple[ObjectInfo, str]]  # (source object, destination key relative to dst)
    skipped: list[ObjectInfo]
    repaired: list[ObjectInfo] = field(default_factory=list)  # present but different: recopied
    listed: int = 0  # objects under the source before filters
    checksums: dict[str, str] = field(default_factory=dict)  # skipped key -> checksum proven by recheck_skipped
    new_bucket: bool = False  # the destination's bucket does not exist yet: the run makes it

    @property
    def bytes(self) -> int:
        return sum(o.size for o, _ in self.jobs)


@dataclass
class CopyReport:
    results: list[CopyResult]
    skipped: list[ObjectInfo]
    elapsed: float
    cancelled: bool = False
    counters: dict[str, int] = field(default_factory=dict)
    repaired: int = 0
    skipped_checksums: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[CopyResult]:
        return [r for r in self.results if r["error"] and r["error_code"] != "cancelled"]

    @property
    def copied(self) -> list[CopyResult]:
        return [r for r in self.results if not r["error"]]

    @property
    def bytes_copied(self) -> int:
        return sum(r["bytes"] for r in self.copied)

    @property
    def exit_code(self) -> int:
        """What the failures mean for the run: 3 when a store did not answer for every one of
        them (retry later), else 1 (partly failed). 0 when nothing failed."""
        if not self.failed:
            return 0
        codes = {engine_exit_code(r["error_code"]) for r in self.failed}
        return EXIT_UNREACHABLE if codes == {EXIT_UNREACHABLE} else 1

    def raise_for_failures(self, error: type[Exception], what: str, resume: str = "") -> None:
        """Interrupted when cancelled, saying what was copied and ``resume`` (how to finish);
        ``error`` naming the first failure when any object failed (``what`` says what was
        being copied and what it means), CopyUnreachable when they all failed because a store
        did not answer."""
        if self.cancelled:
            raise Interrupted(f"copied {len(self.copied):,} of {len(self.results):,} objects"
                              + (f", {len(self.skipped):,} more already there" if self.skipped else "")
                              + (f"; {resume}" if resume else ""))
        if self.failed:
            first = self.failed[0]
            cls = CopyUnreachable if self.exit_code == EXIT_UNREACHABLE else error
            raise cls(f"{what}: {len(self.failed)} of {len(self.results)} objects failed "
                      f"(first: {first['src_key']}: {first['error']})")

    def failure_groups(self) -> list[tuple[str | None, list[CopyResult]]]:
        """Failures by cause (an error code in CAUSES), largest group first; failures with
        another code are each their own."""
        groups: dict[str, list[CopyResult]] = {}
        alone = []
        for r in self.failed:
            if r["error_code"] in CAUSES:
                groups.setdefault(r["error_code"], []).append(r)
            else:
                alone.append(r)
        ordered: list[tuple[str | None, list[CopyResult]]] = sorted(groups.items(), key=lambda g: -len(g[1]))
        return ordered + [(None, [r]) for r in alone]

    def summary(self) -> dict[str, Any]:
        rate = self.bytes_copied / self.elapsed if self.elapsed > 0 else 0.0
        return {
            "objects_copied": len(self.copied),
            "objects_skipped": len(self.skipped),
            "objects_repaired": self.repaired,
            "objects_failed": len(self.failed),
            "objects_not_started": sum(1 for r in self.results if r["error_code"] == "cancelled"),
            "bytes_copied": self.bytes_copied,
            "seconds": round(self.elapsed, 3),
            "bytes_per_second": round(rate, 1),
            "retries": self.counters.get("retries", 0),
            "cancelled": self.cancelled,
            "strategies": _count(r["strategy"] for r in self.copied if r["strategy"]),  # a copied object has one
        }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def selected(key: str, include: list[str], exclude: list[str]) -> bool:
    """rsync-like filters on keys relative to the source: a key is copied when it matches
    some include (or there are none) and no exclude."""
    if include and not any(fnmatch.fnmatchcase(key, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(key, g) for g in exclude)


def matches(src: ObjectInfo, dst: ObjectInfo | None) -> bool:
    """Is the destination already a copy of the source? Same size, and the same ETag when
    both are plain MD5 ETags (single-part uploads on S3-compatible stores)."""
    if dst is None or dst.size != src.size:
        return False
    a, b = md5_etag(src.etag), md5_etag(dst.etag)
    return a is None or b is None or a == b


def md5_etag(etag: str | None) -> str | None:
    if not etag:
        return None
    e = etag.strip('"').lower()
    return e if len(e) == 32 and all(c in "0123456789abcdef" for c in e) else None


def plan_copy(src: Location, dst: Location, include: Sequence[str] = (), exclude: Sequence[str] = (),
              skip_existing: bool = True) -> Plan:
    listed = list(src.list())
    sources = [o for o in listed if selected(o.key, list(include), list(exclude))]
    # The destination's listing also says whether its bucket exists: no request of its own.
    there = dst.list_if_bucket() if skip_existing else []
    existing = {o.key: o for o in there or ()}
    plan = Plan(jobs=[], skipped=[], listed=len(listed), new_bucket=there is None)
    for obj in sources:
        if matches(obj, existing.get(obj.key)):
            plan.skipped.append(obj)
        else:
            plan.jobs.append((obj, obj.key))
    return plan


def recheck_skipped(plan: Plan, src: Location, dst: Location, settings: CopySettings) -> None:
    """With --verify, objects the destination already has are proven too: both sides are
    read and checksummed, and any that differ are copied again."""
    if not plan.skipped:
        return
    algo = settings.checksum if settings.checksum != "none" else "crc32c"
    items = [(src.store, src.key(o.key)) for o in plan.skipped] + [(dst.store, dst.key(o.key)) for o in plan.skipped]
    sums = checksums(settings, items, algo)
    n = len(plan.skipped)
    keep = []
    for i, obj in enumerate(plan.skipped):
        (a, _, _), (b, _, _) = sums[i], sums[n + i]
        if a is not None and a == b:
            keep.append(obj)
            plan.checksums[obj.key] = a
        else:
            plan.repaired.append(obj)
            plan.jobs.append((obj, obj.key))
    plan.skipped = keep


def checksums(settings: CopySettings, items: list[tuple[Any, str]], algo: str,
              stop: threading.Event | None = None) -> list[tuple[str | None, int | None, str | None]]:
    """``(checksum, size, error)`` of each ``(store, key)``, read in parallel within the caps.
    Ctrl-C stops the reads and raises KeyboardInterrupt; ``stop`` set stops them too, and
    what was not read has the error "cancelled"."""
    copier = settings.copier()
    sums, interrupted = run_cancellable(lambda: copier.checksums(items, algo), copier.cancel, stop,
                                        name="mbackup-checksums")
    if interrupted:
        raise KeyboardInterrupt
    return sums


def run_plan(plan: Plan, src: Location, dst: Location, settings: CopySettings, *,
             reporter: Reporter = SILENT, label: str = "copy", stop: threading.Event | None = None) -> CopyReport:
    """Run the copy so that Ctrl-C cancels it (see run_cancellable), waits for in-flight work
    to stop (multipart uploads are aborted) and reports what finished. ``stop`` set (a lost
    lock, say) cancels the copy the same way; the caller says why. The engine's counters go
    to ``reporter`` under ``label``."""
    copier = settings.copier()
    copier.note_skipped(len(plan.skipped), sum(o.size for o in plan.skipped))
    # The listed ETag pins the version copied: an object rewritten mid-copy is copied again
    # whole, never as a mix of two versions.
    jobs = [(src.store, src.key(o.key), dst.store, dst.key(k), o.size, o.etag) for o, k in plan.jobs]
    # An interrupted earlier run of this copy may have left staging files or incomplete
    # uploads of these keys: nothing else will ever remove them. A bucket made by this run
    # holds none.
    if not plan.new_bucket:
        remove_for_keys(dst.store, [job[3] for job in jobs])
    started = time.monotonic()
    with reporter.phase(label, copier.progress):
        results, cancelled = run_cancellable(lambda: copier.run(jobs), copier.cancel, stop, name="mbackup-copy")
    # Report keys relative to the two locations, the way the user named them.
    for r, (obj, key) in zip(results, plan.jobs, strict=True):
        r["src_key"], r["dst_key"] = obj.key, key
        if r["error"]:
            log.warning("%s: failed %s: %s", label, shown_key(obj.key), r["error"])
    return CopyReport(results, plan.skipped, time.monotonic() - started, cancelled, copier.progress(),
                      repaired=len(plan.repaired), skipped_checksums=dict(plan.checksums))


def manifest(report: CopyReport, src: Location, dst: Location, algo: str) -> dict[str, Any]:
    """Every object now at the destination with its size and, when known, its checksum.
    Skipped objects are listed too: the manifest describes the destination, not the run."""
    objects = {o.key: {"size": o.size, "etag": o.etag, "checksum": report.skipped_checksums.get(o.key),
                       "checksum_algo": algo if o.key in report.skipped_checksums else None}
               for o in report.skipped}
    for r in report.copied:
        objects[r["dst_key"]] = {"size": r["bytes"], "etag": r["etag"], "checksum": r["checksum"],
                                 "checksum_algo": r["checksum_algo"], "verified": r["verified"]}
    return {"version": 1, "source": src.url, "destination": dst.url, "checksum_algo": algo,
            "objects": dict(sorted(objects.items()))}


def write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")
