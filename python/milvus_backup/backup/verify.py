"""Is a backup whole? What ``mbackup verify`` does, and the quick check restore runs first.

Quick check: one LIST of the backup dir (no HEAD per object), then every object the backup
should hold must be listed with the expected size, and every meta file must parse. What it
should hold: the objects of mbackup's manifest (``meta/mbackup_manifest.json``) plus the
binlogs the meta lists; a backup made by the Go tool has no manifest, so the meta alone.
Deep check: also read every object back through the engine and compare its checksum with
the one the manifest recorded when the object was copied and verified.

Problems make a backup fail (missing, resized, corrupted or unreadable objects, damaged or
missing meta); objects under ``binlogs/`` that nothing lists are only a warning: restore
never reads them.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import EXIT_FAILED, EXIT_INTEGRITY, IntegrityError, MetaError
from ..format import meta, untrusted
from ..storage.location import NotFound, StorageError
from ..transfer.cancel import run_cancellable
from ..transfer.copy import CopySettings
from ..transfer.progress import SILENT, Reporter
from ..units import format_bytes
from . import manifest as manifests
from .catalog import (
    IN_PROGRESS,
    BackupNotFound,
    Stores,
    backup_dir,
    backup_storage_errors,
    collection_segments,
)

_COLLECTION_L0 = re.compile(r"binlogs/delta_log/[0-9]+/-1/[0-9]+/[0-9]+")  # partition -1: no group dir
MANIFEST_KEY = manifests.MANIFEST_KEY

# Which message each meta file holds.
_META_CLASSES = {
    meta.BACKUP_META: meta.BackupInfo,
    meta.COLLECTION_META: meta.CollectionLevelBackupInfo,
    meta.PARTITION_META: meta.PartitionLevelBackupInfo,
    meta.SEGMENT_META: meta.SegmentLevelBackupInfo,
    meta.FULL_META: meta.BackupInfo,
}


@dataclass
class Finding:
    """One problem or warning about one object; ``key`` is relative to the backup dir."""

    kind: str  # missing, resized, corrupted, unreadable, damaged, unlisted; warnings: unexpected, unchecked
    key: str
    detail: str
    expected_size: int | None = None
    found_size: int | None = None
    expected_checksum: str | None = None
    found_checksum: str | None = None

    @property
    def line(self) -> str:
        text = f"{self.kind}: {untrusted.shown(self.key)}: {self.detail}" if self.key else self.detail
        return f"warning: {text}" if self.kind in ("unexpected", "unchecked") else text

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Expected:
    size: int
    checksum: str | None = None


@dataclass
class VerifyReport:
    name: str
    url: str
    deep: bool
    manifest: bool = False
    checksum_algo: str | None = None
    objects: int = 0  # objects checked: expected objects and meta files
    bytes: int = 0  # their listed sizes
    checksums: int = 0  # objects read back and compared (deep)
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    info: meta.BackupInfo | None = None  # the meta restore would use, when readable
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """1 when the backup is incomplete (a create or delete did not finish: run it again) or
        the only problems are objects the store did not let us read; 4 when an object is
        missing, resized, corrupted or the meta damaged; 0 when whole."""
        marker = f"{meta.META_DIR}/{meta.BACKUP_META}"
        if any(p.kind == "missing" and p.key == marker for p in self.problems):
            return EXIT_FAILED
        if any(p.kind != "unreadable" for p in self.problems):
            return EXIT_INTEGRITY
        return EXIT_FAILED if self.problems else 0

    def summary_line(self) -> str:
        checked = f", {self.checksums:,} checksums" if self.deep else ""
        text = (f"verified {self.objects:,} objects ({format_bytes(self.bytes)}){checked}: "
                f"{_count(len(self.problems), 'problem')}")
        if self.warnings:
            text += f", {_count(len(self.warnings), 'warning')}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "backup": self.name, "url": self.url, "ok": self.ok, "deep": self.deep, "manifest": self.manifest,
            "checksum_algo": self.checksum_algo, "objects": self.objects, "bytes": self.bytes,
            "checksums": self.checksums, "problems": [p.to_json() for p in self.problems],
            "warnings": [w.to_json() for w in self.warnings], "seconds": round(self.seconds, 3),
        }


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def verify_backup(stores: Stores, name: str, *, deep: bool = False, settings: CopySettings | None = None,
                  reporter: Reporter = SILENT) -> VerifyReport:
    """Check backup ``name``; raises BackupNotFound when nothing is under its directory."""
    started = time.monotonic()
    bdir = backup_dir(stores, name)
    report = VerifyReport(name, stores.backup_url(name), deep)
    backup = stores.backup
    with backup_storage_errors(stores):
        listed = {o.key[len(bdir) + 1:]: o.size for o in backup.list(bdir) if o.key.startswith(bdir + "/")}
    if not listed:
        raise BackupNotFound(f"no backup named {name!r} at {report.url} (mbackup list shows the backups there)")

    def read(rel: str) -> bytes | None:
        try:
            return backup.read(f"{bdir}/{rel}")
        except NotFound:
            report.problems.append(Finding("missing", rel, "listed, then gone when read"))
        except StorageError as e:
            report.problems.append(Finding("unreadable", rel, str(e)))
        return None

    report.info, meta_source = _read_meta(listed, read, report)
    manifest = _read_manifest(listed, read, report) if MANIFEST_KEY in listed else None
    expected, in_meta = _expected(bdir, report, meta_source, manifest)
    # An incremental backup's binlogs live in the root's pool, or in the full backup that lends
    # them: listed there, read from there.
    with backup_storage_errors(stores):
        places = manifests.locate(stores, manifest, listed=True)
    where = {rel: place.key for rel, place in places.items()}
    listed |= {rel: place.size for rel, place in places.items() if place.size is not None}
    if report.info is not None and report.info.format == meta.FORMAT_SNAPSHOT:
        _check_snapshots(report.info, listed, report)

    for rel, exp in sorted(expected.items()):
        report.objects += 1
        size = listed.get(rel)
        if size is None:
            report.problems.append(Finding("missing", rel, f"expected {exp.size:,} bytes", expected_size=exp.size))
        elif size != exp.size:
            report.problems.append(Finding("resized", rel, f"expected {exp.size:,} bytes, found {size:,} bytes",
                                           expected_size=exp.size, found_size=size))
        report.bytes += size or 0
    if report.info is not None or manifest is not None:  # else nothing says which binlogs belong
        for rel in sorted(listed):
            if not rel.startswith("binlogs/") or rel in in_meta:
                continue
            if meta_source != meta.FULL_META and report.info is not None and _COLLECTION_L0.fullmatch(rel):
                # Only full_meta.json lists collection-level L0 segments: read from the level
                # files, the meta lost them, and a restore would bring back the rows they delete.
                report.problems.append(Finding(
                    "unlisted", rel, f"a collection-level L0 delete log that only {meta.META_DIR}/{meta.FULL_META} "
                    "lists, and the meta was read without it: restore would leave its deletes out",
                    found_size=listed[rel]))
            elif rel not in expected:
                report.warnings.append(Finding("unexpected", rel, f"{listed[rel]:,} bytes, not in the backup's meta "
                                               "or manifest (restore does not read it)", found_size=listed[rel]))

    if deep:
        if manifest is None:
            report.warnings.append(Finding(
                "unchecked", "", "deep verification needs a backup made by mbackup: this one has no checksum "
                f"manifest ({MANIFEST_KEY}), so only sizes were checked"))
        else:
            todo = [(rel, exp) for rel, exp in sorted(expected.items()) if exp.checksum and listed.get(rel) == exp.size]
            without = sum(1 for rel, exp in expected.items() if not exp.checksum and listed.get(rel) == exp.size)
            if without:
                report.warnings.append(Finding("unchecked", "", f"{_count(without, 'object')} without a checksum in "
                                               f"the manifest: only their sizes were checked"))
            _deep_check(stores, bdir, todo, report, settings or CopySettings(), reporter, where)
    for problem in report.problems:
        if problem.key in places:  # one damaged shared object fails every backup that references it
            problem.detail += _shared(places[problem.key], problem.kind == "missing")
    report.seconds = time.monotonic() - started
    return report


def _shared(place: manifests.Place, missing: bool) -> str:
    """What a problem with a shared object adds: which object, and for a lent one, whose."""
    if place.lender is None:
        return f" (the shared object {place.pool})"
    if missing:
        return (f" (lent by backup {place.lender!r}, which no longer holds it, and not in the pool as {place.pool}: "
                f"{place.lender!r} was deleted by another tool than mbackup delete, which first moves what other "
                "backups borrow into the pool)")
    return f" (the shared object {place.key}, lent by backup {place.lender!r})"


def _read_meta(listed: dict[str, int], read: Callable[[str], bytes | None],
               report: VerifyReport) -> tuple[meta.BackupInfo | None, str]:
    """Parse every meta file present; return the tree restore would use (full_meta.json,
    else the level files) and the file it came from."""
    parsed: dict[str, Any] = {}
    for fname, cls in _META_CLASSES.items():
        rel = f"{meta.META_DIR}/{fname}"
        if rel not in listed:
            continue
        report.objects += 1
        report.bytes += listed[rel]
        data = read(rel)
        if data is None:
            continue
        try:
            parsed[fname] = meta.load_file(cls, data, fname)
        except MetaError as e:
            report.problems.append(Finding("damaged", rel, _meta_detail(str(e), rel)))
    if f"{meta.META_DIR}/{meta.BACKUP_META}" not in listed:
        # The completion marker: without it the backup is unfinished, whatever else is missing.
        why = ("a create did not finish or is still running" if IN_PROGRESS in listed
               else "a create or delete did not finish")
        report.problems.append(Finding("missing", f"{meta.META_DIR}/{meta.BACKUP_META}",
                                       f"the backup is incomplete ({why})"))
    if meta.FULL_META in parsed:
        return parsed[meta.FULL_META], meta.FULL_META
    backup = parsed.get(meta.BACKUP_META)
    levels = [meta.COLLECTION_META] + ([] if backup and backup.format == meta.FORMAT_SNAPSHOT
                                       else [meta.PARTITION_META, meta.SEGMENT_META])
    if f"{meta.META_DIR}/{meta.FULL_META}" not in listed and meta.BACKUP_META in parsed:
        for fname in levels:
            if f"{meta.META_DIR}/{fname}" not in listed:
                report.problems.append(Finding("missing", f"{meta.META_DIR}/{fname}",
                                               f"needed when there is no {meta.META_DIR}/{meta.FULL_META}"))
    if backup is None or any(f not in parsed for f in levels):
        return None, ""
    colls = parsed[meta.COLLECTION_META]
    if meta.PARTITION_META not in levels:
        return dataclasses.replace(backup, collection_backups=list(colls.infos)), meta.COLLECTION_META
    info = meta.level_to_tree(backup, colls, parsed[meta.PARTITION_META], parsed[meta.SEGMENT_META])
    return info, meta.SEGMENT_META


def _meta_detail(message: str, rel: str) -> str:
    """The reader's message without the file name in front and the advice to run verify."""
    text = message.removesuffix(f": {meta._DAMAGED}")
    for prefix in (f"{rel}: ", f"{rel} is ", f"{rel} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _read_manifest(listed: dict[str, int], read: Callable[[str], bytes | None],
                   report: VerifyReport) -> dict[str, Any] | None:
    report.objects += 1
    report.bytes += listed[MANIFEST_KEY]
    data = read(MANIFEST_KEY)
    if data is None:
        return None
    try:
        manifest = manifests.parse(data)
    except ValueError as e:
        report.problems.append(Finding("damaged", MANIFEST_KEY, str(e)))
        return None
    if report.info is not None and manifest.get("id") and report.info.id and manifest["id"] != report.info.id:
        report.problems.append(Finding("damaged", MANIFEST_KEY, f"belongs to another backup (id {manifest['id']}; "
                                       f"the meta says {report.info.id})"))
        return None
    report.manifest = True
    report.checksum_algo = manifest["checksum_algo"]
    return manifest


def _expected(bdir: str, report: VerifyReport, meta_source: str,
              manifest: dict[str, Any] | None) -> tuple[dict[str, Expected], set[str]]:
    """The binlogs the meta lists, with the manifest's sizes and checksums over them; and
    which of them the meta lists."""
    expected: dict[str, Expected] = {}
    info = report.info
    if info is not None:
        try:
            for coll in info.collection_backups:
                for seg in collection_segments(coll):
                    if seg is None:
                        continue
                    for _, key, size in meta.segment_files(bdir, seg):
                        expected[key[len(bdir) + 1:]] = Expected(size)
        except MetaError as e:
            rel = f"{meta.META_DIR}/{meta_source}"
            report.problems.append(Finding("damaged", rel, _meta_detail(str(e), rel)))
    in_meta = set(expected)
    if manifest is not None:
        for rel, entry in manifest["objects"].items():
            expected[rel] = Expected(entry["size"], entry.get("checksum"))
    return expected, in_meta


def _check_snapshots(info: meta.BackupInfo, listed: dict[str, int], report: VerifyReport) -> None:
    """A snapshot-format backup holds, per collection, the bundle Milvus exported; restore hands
    Milvus its metadata file, which must be in the backup (its other files are Milvus's to read)."""
    for coll in info.collection_backups:
        label = f"{coll.db_name or 'default'}.{coll.collection_name}"
        path = coll.snapshot_backup.metadata_path.strip("/") if coll.snapshot_backup else ""
        if not path or not untrusted.RELATIVE_KEY.pattern.fullmatch(path):
            report.problems.append(Finding("damaged", f"{meta.META_DIR}/{meta.FULL_META}",
                                           f"{label}: no snapshot metadata path inside the backup "
                                           f"({untrusted.shown(path) or 'none'})"))
            continue
        report.objects += 1
        if path not in listed:
            report.problems.append(Finding("missing", path, f"the snapshot metadata of {label}"))
        else:
            report.bytes += listed[path]


def _batches(items: list[tuple[str, Expected]], parallel: int) -> list[list[tuple[str, Expected]]]:
    """Groups for one engine call each (the engine reports per call, so progress moves per
    group): at least ``2 * parallel`` objects to keep every reader busy; past that, closed at
    ``max(4 * parallel, 64)`` objects or about ``parallel * 256 MiB``."""
    parallel = max(parallel, 1)
    least, most, byte_cap = 2 * parallel, max(4 * parallel, 64), parallel * (256 << 20)
    out: list[list[tuple[str, Expected]]] = [[]]
    size = 0
    for item in items:
        if len(out[-1]) >= most or (len(out[-1]) >= least and size >= byte_cap):
            out.append([])
            size = 0
        out[-1].append(item)
        size += item[1].size
    return [b for b in out if b]


def _deep_check(stores: Stores, bdir: str, todo: list[tuple[str, Expected]], report: VerifyReport,
                settings: CopySettings, reporter: Reporter, where: dict[str, str]) -> None:
    """Read ``todo`` back in parallel and compare checksums. Ctrl-C cancels the reads, and
    KeyboardInterrupt is raised once they stopped."""
    algo = report.checksum_algo or "crc32c"
    copier = settings.copier()
    store = stores.backup.store
    counters = {"objects_total": len(todo), "objects_done": 0, "bytes_total": sum(e.size for _, e in todo),
                "bytes_done": 0, "failures": 0}
    results: list[tuple[str, Expected, tuple[str | None, int | None, str | None]]] = []

    def work() -> None:
        for batch in _batches(todo, settings.parallel):
            if copier.cancelled:
                return
            sums = copier.checksums([(store, where.get(rel, f"{bdir}/{rel}")) for rel, _ in batch], algo)
            for (rel, exp), got in zip(batch, sums, strict=True):
                results.append((rel, exp, got))
                counters["objects_done"] += 1
                counters["bytes_done"] += got[1] or 0
                counters["failures"] += int(got[2] is not None or got[0] != exp.checksum)

    with reporter.phase("verify", lambda: dict(counters)):
        _, interrupted = run_cancellable(work, copier.cancel, name="mbackup-verify")
    if interrupted:
        raise KeyboardInterrupt
    for rel, exp, (checksum, _, error) in results:
        if error is not None:
            report.problems.append(Finding("unreadable", rel, error))
            continue
        report.checksums += 1
        if checksum != exp.checksum:
            report.problems.append(Finding("corrupted", rel, f"{algo} expected {exp.checksum}, found {checksum}",
                                           expected_checksum=exp.checksum, found_checksum=checksum))


def refusal(report: VerifyReport) -> str:
    """The one line restore shows when it refuses a backup that failed the quick check."""
    first = report.problems[0]
    return (f"backup {report.name!r} failed the quick check: {first.line} ({_count(len(report.problems), 'problem')}); "
            f"see them all with mbackup verify -n {report.name}, or restore anyway with --force")


def checked_manifest(stores: Stores, name: str, consequence: str) -> dict[str, Any] | None:
    """Backup ``name``'s manifest (None: the Go tool's backup, which has none), once the backup
    passed the quick check; IntegrityError ending in ``consequence`` ("nothing was exported")
    when it fails it or its manifest is damaged. For the commands that copy a backup."""
    checked = verify_backup(stores, name)
    if checked.problems:
        raise IntegrityError(f"backup {name!r} failed the quick check ({checked.problems[0].line}): "
                             f"see mbackup verify -n {name}; {consequence}")
    try:
        return manifests.read(stores, name)
    except ValueError as e:
        raise IntegrityError(f"the manifest of backup {name!r} is damaged ({e}): {consequence}") from None


class DamagedBackupError(IntegrityError):
    """Restore refused a backup that failed the quick check."""


def check_before_restore(stores: Stores, name: str, *, meta_only: bool = False) -> None:
    """Restore's quick check: refuse a backup that fails it (a meta-only restore needs no binlogs)."""
    report = verify_backup(stores, name)
    if meta_only:
        report.problems = [p for p in report.problems if not p.key.startswith("binlogs/")]
    if report.problems:
        raise DamagedBackupError(refusal(report))
