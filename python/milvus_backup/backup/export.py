"""``mbackup export``: a self-contained copy of a backup in the Go tool's layout.

An incremental backup keeps its binlogs in the root's shared pool, which only mbackup
reads. Export writes ``<root>/<output>/`` the way a full ``create`` would have: every binlog
under the backup dir at its Go-layout key, the meta files (byte-identical to the source's
when the name is kept), and a version 1 manifest. Copies stay inside the backup store
(server-side where the store can) and are verified against the checksums the source
recorded, so a damaged shared object is refused, never exported. Like create, it writes
``backup_meta.json`` last: a killed export is not a backup yet, and the same export run
again finishes it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError, MBackupError
from ..format import meta
from ..storage.location import ObjectInfo
from ..transfer.copy import CopyReport, CopySettings, Plan, checksums, run_plan
from ..transfer.progress import SILENT, Reporter
from . import manifest as manifests
from .catalog import IN_PROGRESS, LOCK, Stores, backup_storage_errors, collection_segments, read_backup
from .lock import StoreLock
from .verify import verify_backup


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


def export_backup(stores: Stores, name: str, output: str | None, to_root: str | None, settings: CopySettings,
                  reporter: Reporter = SILENT) -> ExportResult:
    """Export backup ``name`` as ``output`` (default: the same name) under ``to_root`` (default:
    the backup root) of the backup store."""
    started = time.monotonic()
    output = meta.validate_backup_name(output or name)
    root = stores.backup_root if to_root is None else to_root.strip("/")
    bdir, ddir = meta.backup_dir(stores.backup_root, name), meta.backup_dir(root, output)
    where = "/".join(p for p in (stores.backup.url, ddir) if p)
    if ddir == bdir:
        raise ExportError(f"export of {name!r} would overwrite it: give another --output name or --to-root")
    with backup_storage_errors(stores):
        info = read_backup(stores, name)
        if info.format == meta.FORMAT_SNAPSHOT:
            raise ExportError(f"backup {name!r} is a snapshot-format backup, whose data Milvus keeps in its bundle: "
                              "only binlog backups can be exported")
        present = {o.key: o.size for o in stores.backup.list(f"{ddir}/")}
        if f"{ddir}/{meta.META_DIR}/{meta.BACKUP_META}" in present:
            raise ExportError(f"{where} already holds a backup: give another --output name or --to-root, or delete it")
        if any(not k.startswith((f"{ddir}/binlogs/", f"{ddir}/{meta.META_DIR}/", f"{ddir}/{LOCK}",
                                 f"{ddir}/{IN_PROGRESS}")) for k in present):
            raise ExportError(f"{where} holds objects that are not an export's: give another --output name or --to-root")
        checked = verify_backup(stores, name)
        if checked.problems:
            raise IntegrityError(f"backup {name!r} failed the quick check ({checked.problems[0].line}): "
                                 f"see mbackup verify -n {name}; nothing was exported")
        try:
            found = manifests.read(stores, name)
        except ValueError as e:
            raise IntegrityError(f"the manifest of backup {name!r} is damaged ({e}): nothing was exported") from None
    algo = found["checksum_algo"] if found else (settings.checksum if settings.checksum != "none" else "crc32c")
    recorded = {f"{bdir}/{rel}": e.get("checksum") for rel, e in (found or {}).get("objects", {}).items()}
    pooled = manifests.located(stores, bdir, found)
    lock = StoreLock(stores.backup, f"{ddir}/{LOCK}", f"export {output!r}", command="export",
                     on_loss="stopped before marking the export complete: run the same export again",
                     warn=reporter.warning)
    with backup_storage_errors(stores), lock:
        files = [(src_key, ddir + key[len(bdir):], size) for c in info.collection_backups
                 for seg in collection_segments(c) for _, key, size in meta.segment_files(bdir, seg)
                 for src_key in [pooled.get(key, key)]]
        expected = {dst: recorded.get(bdir + dst[len(ddir):]) for _, dst, _ in files}
        plan = Plan(jobs=[], skipped=[])
        for src, dst, size in files:
            (plan.skipped.append(ObjectInfo(dst, size)) if present.get(dst) == size
             else plan.jobs.append((ObjectInfo(src, size), dst)))
        verified = CopySettings(**{**settings.__dict__, "verify": True, "checksum": algo})
        _recheck(plan, stores, expected, verified, lock)
        with reporter.step("export", backup=name):
            report = run_plan(plan, stores.backup, stores.backup, verified, reporter=reporter, label="export",
                              stop=lock.lost)
        lock.check()
        report.raise_for_failures(ExportError, "the export is incomplete, run the same export again to finish it",
                                  resume="run the same export again to finish it")
        wrong = [r for r in report.copied if expected.get(r["dst_key"]) not in (None, r["checksum"])]
        if wrong:
            rel = wrong[0]["src_key"]
            raise IntegrityError(f"{len(wrong)} objects of backup {name!r} do not match the checksums it recorded "
                                 f"(first: {rel}): run mbackup verify -n {name} --deep; the export is incomplete")
        _write(stores, bdir, ddir, info, output, report, verified, lock)
    return ExportResult(output, where, len(files), sum(s for _, _, s in files), len(report.copied),
                        time.monotonic() - started)


def _recheck(plan: Plan, stores: Stores, expected: dict[str, str | None], settings: CopySettings,
             lock: StoreLock) -> None:
    """Objects an interrupted export already wrote are read back and kept only when they
    match the checksum the source recorded (or, without one, copied again)."""
    if not plan.skipped:
        return
    sums = checksums(settings, [(stores.backup.store, o.key) for o in plan.skipped], settings.checksum, stop=lock.lost)
    kept = []
    for obj, (got, _, _) in zip(plan.skipped, sums, strict=True):
        if got is not None and got == expected.get(obj.key):
            kept.append(obj)
            plan.checksums[obj.key] = got
        else:
            plan.jobs.append((obj, obj.key))
    plan.skipped = kept


def _write(stores: Stores, bdir: str, ddir: str, info: meta.BackupInfo, output: str, report: CopyReport,
           settings: CopySettings, lock: StoreLock) -> None:
    """The manifest (version 1) and the meta files: the source's own bytes when the name is
    kept, else rendered for the new name as create renders them; backup_meta.json last."""
    from .create import write_meta

    if output == info.name:
        files = {obj.key.rsplit("/", 1)[-1]: stores.backup.read(obj.key) for obj in stores.backup.list(f"{bdir}/meta/")
                 if obj.key.rsplit("/", 1)[-1] in meta.META_FILES}
        write_meta(stores, ddir, info, report, settings, lock, meta_files=files)
    else:
        write_meta(stores, ddir, dataclasses.replace(info, name=output), report, settings, lock)
