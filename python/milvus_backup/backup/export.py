"""``mbackup export``: a self-contained copy of a backup in the Go tool's layout.

An incremental backup keeps its binlogs in the root's shared pool, which only mbackup
reads. Export writes ``<root>/<output>/`` (or ``<URL>/<output>/``: any destination ``mbackup
copy`` takes, another bucket or a local folder) the way a full ``create`` would have: every binlog
under the backup dir at its Go-layout key, the meta files (byte-identical to the source's
when the name is kept), and a version 1 manifest. The engine copies (server-side where both
ends are one store, streamed between stores otherwise), and every copy is verified against the checksums the source
recorded, so a damaged shared object is refused, never exported. Like create, it writes
``backup_meta.json`` last, after an in-progress marker: a killed export is not a backup yet,
and the same export run again finishes it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError, MBackupError
from ..format import meta
from ..storage.location import Location, ObjectInfo
from ..transfer.copy import CopyReport, CopySettings, Plan, checksums, run_plan
from ..transfer.progress import SILENT, Reporter
from ..units import format_bytes
from . import manifest as manifests
from .catalog import (
    IN_PROGRESS,
    LOCK,
    Stores,
    backup_storage_errors,
    collection_segments,
    in_progress_marker,
    read_backup,
)
from .lock import StoreLock
from .pool import POOL_DIR
from .verify import checked_manifest


class ExportError(MBackupError):
    """The export cannot be made as asked."""


@dataclass
class ExportResult:
    name: str
    url: str
    objects: int
    bytes: int
    copied: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "objects": self.objects, "bytes": self.bytes,
                "objects_copied": self.copied, "seconds": round(self.seconds, 3)}


@dataclass
class ExportPlan:
    """What an export reads and writes, found by reading only; ``--dry-run`` shows it."""

    name: str
    output: str
    where: str
    dest: Location
    bdir: str
    ddir: str
    info: meta.BackupInfo
    new_bucket: bool
    copy: Plan  # the binlogs: to copy, or already at the destination (checked before kept)
    expected: dict[str, str | None]  # destination key -> the checksum the source recorded
    algo: str
    resumed: bool

    def summary(self) -> dict[str, Any]:
        return {"dry_run": True, "name": self.name, "url": self.where, "bucket_to_create": self.new_bucket,
                "objects_to_copy": len(self.copy.jobs), "bytes_to_copy": self.copy.bytes,
                "objects_present": len(self.copy.skipped)}

    def lines(self) -> list[str]:
        lines = [f"would create bucket for {self.dest.url}"] if self.new_bucket else []
        lines.append(f"would export backup {self.name} to {self.where}: copy {len(self.copy.jobs):,} objects "
                     f"({format_bytes(self.copy.bytes)}), check {len(self.copy.skipped):,} already there, "
                     "then write its meta files and a version 1 manifest")
        return lines


def plan_export(stores: Stores, name: str, output: str | None, to_root: str | None, settings: CopySettings,
                to: Location | None = None) -> ExportPlan:
    """Every refusal of an export of backup ``name`` as ``output`` (default: the same name) under
    ``to_root`` (default: the backup root) of the backup store, or under the location ``to``;
    then what it would copy. Reads only."""
    if to is not None and to_root is not None:
        raise ExportError("--to and --to-root both say where to export: give one of them")
    output = meta.validate_backup_name(output or name)
    dest = stores.backup if to is None else to
    root = (stores.backup_root if to_root is None else to_root.strip("/")) if to is None else ""
    bdir, ddir = meta.backup_dir(stores.backup_root, name), meta.backup_dir(root, output)
    where = "/".join(p for p in (dest.url, ddir) if p)
    elsewhere = "give another --output name or " + ("--to-root" if to is None else "--to destination")
    if to is not None and to.same_bucket(stores.backup) and to.prefix.strip("/") == stores.backup_root:
        raise ExportError(f"--to {to.url} is the backup root itself: to export within it, "
                          "drop --to and give another name with -o")
    if to is None and ddir == bdir:
        raise ExportError(f"export of {name!r} would overwrite it: give another --output name or --to-root")
    with backup_storage_errors(stores):
        inside = _backup_holding(stores, dest, ddir)
        if inside is not None:
            raise ExportError(f"{where} is inside {inside!r} of the backup root {stores.backup_url()}, which owns "
                              "that folder: export to the root itself (-o NEW) or outside it")
        info = read_backup(stores, name)
        if info.format == meta.FORMAT_SNAPSHOT:
            raise ExportError(f"backup {name!r} is a snapshot-format backup, whose data Milvus keeps in its bundle: "
                              "only binlog backups can be exported")
        found = checked_manifest(stores, name, "nothing was exported")
    # Outside backup_storage_errors: a destination's missing bucket is not backup.storage's.
    there = dest.list_if_bucket(f"{ddir}/")  # None: no bucket yet (the export makes it)
    new_bucket = there is None
    present = {o.key: o.size for o in there or ()}
    if f"{ddir}/{meta.META_DIR}/{meta.BACKUP_META}" in present:
        raise ExportError(f"{where} already holds a backup: {elsewhere}, or delete it")
    if any(not k.startswith((f"{ddir}/binlogs/", f"{ddir}/{meta.META_DIR}/", f"{ddir}/{LOCK}",
                             f"{ddir}/{IN_PROGRESS}")) for k in present):
        raise ExportError(f"{where} holds objects that are not an export's: {elsewhere}")
    algo = found["checksum_algo"] if found else (settings.checksum if settings.checksum != "none" else "crc32c")
    recorded = {f"{bdir}/{rel}": e.get("checksum") for rel, e in (found or {}).get("objects", {}).items()}
    pooled = manifests.located(stores, bdir, found)
    files = [(src_key, ddir + key[len(bdir):], size) for c in info.collection_backups
             for seg in collection_segments(c) for _, key, size in meta.segment_files(bdir, seg)
             for src_key in [pooled.get(key, key)]]
    copy = Plan(jobs=[], skipped=[], new_bucket=new_bucket)
    for src, dst, size in files:
        (copy.skipped.append(ObjectInfo(dst, size)) if present.get(dst) == size
         else copy.jobs.append((ObjectInfo(src, size), dst)))
    expected = {dst: recorded.get(bdir + dst[len(ddir):]) for _, dst, _ in files}
    return ExportPlan(name, output, where, dest, bdir, ddir, info, new_bucket, copy, expected, algo,
                      resumed=f"{ddir}/{IN_PROGRESS}" in present)


def export_backup(stores: Stores, plan: ExportPlan, settings: CopySettings, reporter: Reporter = SILENT) -> ExportResult:
    """Carry out ``plan`` (from :func:`plan_export`): ``backup_meta.json`` is written last, and
    only once every binlog there matches the checksum the source recorded."""
    started = time.monotonic()
    name, dest, ddir, info, expected, copy = plan.name, plan.dest, plan.ddir, plan.info, plan.expected, plan.copy
    objects, size = len(copy.jobs) + len(copy.skipped), copy.bytes + sum(o.size for o in copy.skipped)
    if plan.new_bucket:
        dest.make_bucket()
        reporter.warning(f"created bucket for {dest.url}")
    lock = StoreLock(dest, f"{ddir}/{LOCK}", f"export {plan.output!r}", command="export",
                     on_loss="stopped before marking the export complete: run the same export again",
                     warn=reporter.warning)
    with backup_storage_errors(stores), lock:
        verified = CopySettings(**{**settings.__dict__, "verify": True, "checksum": plan.algo})
        if not plan.resumed:  # like create's: the dir is an unfinished backup, not a stray folder
            dest.write(f"{ddir}/{IN_PROGRESS}", in_progress_marker(info.id, plan.output, export_of=name))
        _recheck(copy, dest, expected, verified, lock)
        with reporter.step("export", backup=name):
            report = run_plan(copy, stores.backup, dest, verified, reporter=reporter, label="export",
                              stop=lock.lost)
        lock.check()
        report.raise_for_failures(ExportError, "the export is incomplete, run the same export again to finish it",
                                  resume="run the same export again to finish it")
        wrong = [r for r in report.copied if expected.get(r["dst_key"]) not in (None, r["checksum"])]
        if wrong:
            rel = wrong[0]["src_key"]
            raise IntegrityError(f"{len(wrong)} objects of backup {name!r} do not match the checksums it recorded "
                                 f"(first: {rel}): run mbackup verify -n {name} --deep; the export is incomplete")
        _write(stores, dest, plan.bdir, ddir, info, plan.output, report, verified, lock)
    return ExportResult(plan.output, plan.where, objects, size, len(report.copied), time.monotonic() - started)


def _backup_holding(stores: Stores, dest: Location, ddir: str) -> str | None:
    """The backup, or the pool, of the backup root whose folder ``ddir`` at ``dest`` would go
    inside (where a delete or prune of it would take the export along), else None."""
    if not dest.same_bucket(stores.backup):
        return None
    root, key = stores.backup.key(stores.backup_root) if stores.backup_root else stores.backup.prefix, dest.key(ddir)
    if root and not key.startswith(f"{root}/"):
        return None
    first, _, deeper = key[len(root) + 1 if root else 0:].partition("/")
    owned = first == POOL_DIR or any(stores.backup.exists(f"{meta.backup_dir(stores.backup_root, first)}/{rel}")
                                     for rel in (f"{meta.META_DIR}/{meta.BACKUP_META}", IN_PROGRESS))
    return first if deeper and owned else None


def _recheck(plan: Plan, dest: Location, expected: dict[str, str | None], settings: CopySettings,
             lock: StoreLock) -> None:
    """Objects an interrupted export already wrote are read back and kept only when they
    match the checksum the source recorded (or, without one, copied again)."""
    if not plan.skipped:
        return
    sums = checksums(settings, [(dest.store, dest.key(o.key)) for o in plan.skipped], settings.checksum, stop=lock.lost)
    kept = []
    for obj, (got, _, _) in zip(plan.skipped, sums, strict=True):
        if got is not None and got == expected.get(obj.key):
            kept.append(obj)
            plan.checksums[obj.key] = got
        else:
            plan.jobs.append((obj, obj.key))
    plan.skipped = kept


def _write(stores: Stores, dest: Location, bdir: str, ddir: str, info: meta.BackupInfo, output: str, report: CopyReport,
           settings: CopySettings, lock: StoreLock) -> None:
    """The manifest (version 1) and the meta files: the source's own bytes when the name is
    kept, else rendered for the new name as create renders them; backup_meta.json last."""
    from .create import write_meta

    at_dest = dataclasses.replace(stores, backup=dest)
    if output == info.name:
        keys = [o.key for o in stores.backup.list(f"{bdir}/meta/") if o.key.rsplit("/", 1)[-1] in meta.META_FILES]
        files = {key.rsplit("/", 1)[-1]: data for key, data in stores.backup.read_many(keys).items()}
        write_meta(at_dest, ddir, info, report, settings, lock, meta_files=files)
    else:
        write_meta(at_dest, ddir, dataclasses.replace(info, name=output), report, settings, lock)
