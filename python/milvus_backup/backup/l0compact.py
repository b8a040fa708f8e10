"""``mbackup l0compact``: a backup whose deletes sit in L0 segments (Milvus 2.5+), made into one
that keeps them in its data segments' delta logs, so a Milvus without L0 import (2.3, 2.4's
``--skip-l0`` case) restores it with its deletes. The Go tool's command of the same name
(``core/l0compact/task.go``), to the same result:

- the source backup is read and never changed; the output is a new, complete backup
  ``<root>/<output>`` (default ``<name>_l0compacted``) in the Go layout, with meta files as
  create writes them (the output's name, a new id) and a version 1 manifest;
- every binlog of a data segment is copied (by the engine, server-side within a store) and
  checked against the checksums the source recorded; an L0 segment's delete logs are not
  copied, and the L0 segments leave the meta;
- each data segment's primary keys are read (its pk field's insert binlogs, or the column
  group that holds the pk column); each L0 delete of a key the segment holds goes into one
  new delete log of that segment, with its own timestamp (the latest when a key is deleted
  twice): a partition's L0 segments fold into that partition, the collection-level ones
  (partition -1) into every partition's segments of the same virtual channel (all of them
  where the backup names no channel: made before 2.5.8). A delete of a key no segment
  holds deleted nothing, and is left out;
- the new delete logs are written as Milvus's JSON delete-log writer writes them, for every
  storage version (Milvus's import reads delete logs with its envelope reader), with log
  ids above the highest of the backup, their size in the meta (``log_size``) and the
  backup key as ``log_path``, as the Go tool records them.

A backup without L0 segments is copied all the same (the Go tool does too), and said so.
The destination must be empty; ``--force`` empties it first. Everything is read and folded
before anything is written; ``backup_meta.json`` is written last, and a run that fails after
writing removes what it wrote, so a failed run leaves nothing that looks like a backup.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import _engine
from ..errors import IntegrityError, MBackupError
from ..format import meta
from ..milvus import deltalog
from ..storage.location import ObjectInfo
from ..transfer.copy import CopySettings, Plan, run_plan
from ..transfer.progress import SILENT, Reporter
from . import manifest as manifests
from .catalog import IN_PROGRESS, LOCK, Stores, backup_dir, backup_storage_errors, in_progress_marker, read_backup
from .lock import StoreLock
from .verify import checked_manifest

PrimaryKey = deltalog.PrimaryKey
Deletes = dict[PrimaryKey, int]  # pk -> the latest delete timestamp


class L0CompactError(MBackupError):
    """The fold cannot be made as asked; nothing was written."""


@dataclass
class Fold:
    """What folding one backup's L0 segments makes: per data segment (by id), the delete log
    to add as (log id, bytes); and what was read."""

    logs: dict[int, tuple[int, bytes]]
    l0_segments: int
    deletes: int  # distinct (partition, pk) deletes the L0 segments hold
    folded: int  # delete entries written into data segments
    unmatched: int  # deletes of keys no data segment holds


@dataclass
class L0CompactResult:
    name: str
    output: str
    url: str
    objects: int
    bytes: int
    fold: Fold
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "output": self.output, "url": self.url, "objects": self.objects,
                "bytes": self.bytes, "l0_segments": self.fold.l0_segments, "deletes": self.fold.deletes,
                "deletes_folded": self.fold.folded, "deletes_matching_no_row": self.fold.unmatched,
                "delta_logs_written": len(self.fold.logs), "seconds": round(self.seconds, 3)}


def merge(into: Deletes, deletes: list[tuple[PrimaryKey, int]]) -> None:
    """Add ``deletes`` to ``into``, keeping the latest timestamp of a key deleted twice."""
    for pk, ts in deletes:
        if ts > into.get(pk, -1):
            into[pk] = ts


def hits(pks: list[PrimaryKey], deletes: Deletes) -> list[tuple[PrimaryKey, int]]:
    """The deletes of the keys a segment holds (``pks``), each once, in the segment's order."""
    out, seen = [], set()
    for pk in pks:
        if pk in deletes and pk not in seen:
            seen.add(pk)
            out.append((pk, deletes[pk]))
    return out


def _pk_field(coll: meta.CollectionBackupInfo) -> tuple[int, int]:
    label = f"{coll.db_name or 'default'}.{coll.collection_name}"
    pk = next((f for f in (coll.schema.fields if coll.schema else []) if f.is_primary_key), None)
    if pk is None:
        raise L0CompactError(f"{label} has no primary key field in the backup's schema: its meta is damaged")
    if pk.data_type not in deltalog.PK_TYPES:
        raise L0CompactError(f"{label}: primary key {pk.name!r} of data type {pk.data_type}, which Milvus does not "
                             "have (Int64 or VarChar)")
    return pk.field_id, pk.data_type


def _max_log_id(info: meta.BackupInfo, bdir: str) -> int:
    return max((int(key.rsplit("/", 1)[1]) for c in info.collection_backups for s in _segments(c)
                for _, key, _ in meta.segment_files(bdir, s)), default=0)


def _segments(coll: meta.CollectionBackupInfo) -> list[meta.SegmentBackupInfo]:
    return [s for p in coll.partition_backups for s in p.segment_backups if s is not None] + [
        s for s in coll.l0_segments if s is not None]


def plan_fold(info: meta.BackupInfo, bdir: str, read: Callable[[str], bytes]) -> Fold:
    """Fold the L0 segments of the backup ``info`` at ``bdir``, whose objects ``read`` reads
    (by backup key); reads only. Delete logs are numbered from above the backup's highest log id."""
    next_id = _max_log_id(info, bdir) + 1
    fold = Fold({}, 0, 0, 0, 0)
    for coll in info.collection_backups:
        l0 = [s for s in _segments(coll) if s.is_l0]
        if not l0:
            continue
        fold.l0_segments += len(l0)
        field_id, pk_type = _pk_field(coll)

        def deletes_of(segs: list[meta.SegmentBackupInfo], pk_type: int = pk_type) -> Deletes:
            out: Deletes = {}
            for seg in segs:
                for _, key, _ in meta.segment_files(bdir, seg):
                    with _damaged(key):
                        merge(out, deltalog.read_deltalog(read(key), seg.storage_version, pk_type))
            return out

        # The collection-level deletes, by the virtual channel of their L0 segment: a key lives on
        # one channel. A segment that names none (a backup listed before 2.5.8) matches every one.
        channels: dict[str, Deletes] = {}
        for s in coll.l0_segments:
            if s is not None:
                merge(channels.setdefault(s.v_channel, {}), list(deletes_of([s]).items()))
        every: set[tuple[Any, PrimaryKey]] = {(("channel", ch), pk) for ch, d in channels.items() for pk in d}
        matched: set[tuple[Any, PrimaryKey]] = set()  # (partition id or ("channel", name), pk)
        for part in coll.partition_backups:
            own = deletes_of([s for s in part.segment_backups if s is not None and s.is_l0])
            every |= {(part.partition_id, pk) for pk in own}
            for seg in (s for s in part.segment_backups if s is not None and not s.is_l0):
                mine = [ch for ch in channels if not ch or not seg.v_channel or ch == seg.v_channel]
                deletes = dict(own)
                for ch in mine:
                    merge(deletes, list(channels[ch].items()))
                found = hits(_segment_pks(seg, bdir, field_id, pk_type, read), deletes) if deletes else []
                if not found:
                    continue
                matched |= {(part.partition_id, pk) for pk, _ in found if pk in own}
                matched |= {(("channel", ch), pk) for ch in mine for pk, _ in found if pk in channels[ch]}
                fold.logs[seg.segment_id] = (next_id, deltalog.write_deltalog(
                    found, pk_type, seg.collection_id, seg.partition_id, seg.segment_id))
                next_id += 1
                fold.folded += len(found)
        fold.deletes += len(every)
        fold.unmatched += len(every - matched)
    return fold


@contextlib.contextmanager
def _damaged(where: str) -> Iterator[None]:
    """A file that is not what Milvus writes, as one line naming it."""
    try:
        yield
    except deltalog.DeltalogError as e:
        raise IntegrityError(f"{where}: {e}: the backup is damaged or not Milvus's; nothing was written") from None


def _segment_pks(seg: meta.SegmentBackupInfo, bdir: str, field_id: int, pk_type: int,
                 read: Callable[[str], bytes]) -> list[PrimaryKey]:
    """The primary keys a data segment holds: its pk field's binlogs (storage v0/v1), or the
    first column group that has the pk column (v2/v3), one file at a time."""
    with _damaged(f"segment {seg.segment_id}"):
        envelope = deltalog.is_envelope(seg.storage_version)
    if envelope:
        own = meta.segment_files(bdir, dataclasses.replace(
            seg, binlogs=[fb for fb in seg.binlogs if fb is not None and fb.field_id == field_id], deltalogs=[]))
        if not own:
            raise IntegrityError(f"segment {seg.segment_id} has no insert binlog of its primary key (field "
                                 f"{field_id}): the backup is damaged; nothing was written")
        with _damaged(own[0][1]):
            return deltalog.read_insert_pks((read(k) for _, k, _ in own), pk_type)
    for fb in seg.binlogs:
        if fb is None:
            continue
        group = meta.segment_files(bdir, dataclasses.replace(seg, binlogs=[fb], deltalogs=[]))
        out: list[PrimaryKey] = []
        for _, key, _ in group:
            with _damaged(key):
                pks = deltalog.column_group_pks(read(key), field_id, pk_type)
            if pks is None:
                break  # the pk is not in this group
            out += pks
        else:
            if group:
                return out
    raise IntegrityError(f"segment {seg.segment_id}: no column group holds its primary key (field {field_id}): "
                         "the backup is damaged; nothing was written")


def compacted_info(info: meta.BackupInfo, fold: Fold, ddir: str, output: str) -> meta.BackupInfo:
    """The output's meta: L0 segments gone, each folded delete log added to its segment (field
    0, its backup key as log path, its size), the output's name and a new id."""
    out = copy.deepcopy(info)
    for coll in out.collection_backups:
        coll.l0_segments = []
        for part in coll.partition_backups:
            part.segment_backups = [s for s in part.segment_backups if s is not None and not s.is_l0]
            for seg in part.segment_backups:
                if seg.segment_id not in fold.logs:
                    continue
                log_id, data = fold.logs[seg.segment_id]
                entry = meta.Binlog(log_id=log_id, log_size=len(data))
                seg.deltalogs = [*seg.deltalogs, meta.FieldBinlog(field_id=0, binlogs=[entry])]
                entry.log_path = _new_log_key(ddir, seg, log_id)
    return dataclasses.replace(out, name=output, id=str(uuid.uuid4()))


def _new_log_key(bdir: str, seg: meta.SegmentBackupInfo, log_id: int) -> str:
    probe = dataclasses.replace(seg, binlogs=[], deltalogs=[meta.FieldBinlog(binlogs=[meta.Binlog(log_id=log_id)])])
    return meta.segment_files(bdir, probe)[0][1]


def l0compact_backup(stores: Stores, name: str, output: str | None, settings: CopySettings, *, force: bool = False,
                     reporter: Reporter = SILENT) -> L0CompactResult:
    """Write ``output`` (default ``<name>_l0compacted``): backup ``name`` with its L0 deletes
    folded into its data segments. Refusals first, then everything read and folded, then written."""
    started = time.monotonic()
    meta.validate_backup_name(name)
    output = output or f"{name}_l0compacted"
    if output == name:
        raise L0CompactError(f"-o/--output {output!r} is the source backup: l0compact writes a new backup, "
                             "give it another name")
    meta.validate_backup_name(output)
    bdir, ddir = backup_dir(stores, name), backup_dir(stores, output)
    where, backup = stores.backup_url(output), stores.backup
    with backup_storage_errors(stores):
        info = read_backup(stores, name)
        if info.format == meta.FORMAT_SNAPSHOT:
            raise L0CompactError(f"backup {name!r} is a snapshot-format backup, which holds no segments: "
                                 "only binlog backups have L0 segments to fold")
        present = [o.key for o in backup.list(f"{ddir}/")]
        if present and not force:
            raise L0CompactError(f"the destination {where} is not empty ({len(present):,} objects): give another "
                                 "-o/--output, or --force to empty it first")
        found = checked_manifest(stores, name, "nothing was written")
        pooled = manifests.located(stores, bdir, found)
        with reporter.step("fold", backup=name):
            fold = plan_fold(info, bdir, lambda key: backup.read(pooled.get(key, key)))
    if not fold.l0_segments:
        reporter.warning(f"backup {name!r} has no L0 segments: nothing to fold; {output!r} is a copy of it")
    recorded = {f"{bdir}/{rel}": e.get("checksum") for rel, e in (found or {}).get("objects", {}).items()}
    files = [(pooled.get(key, key), ddir + key[len(bdir):], size) for c in info.collection_backups
             for s in _segments(c) if not s.is_l0 for _, key, size in meta.segment_files(bdir, s)]
    plan = Plan(jobs=[(ObjectInfo(src, size), dst) for src, dst, size in files], skipped=[])
    expected = {dst: recorded.get(bdir + dst[len(ddir):]) for _, dst, _ in files}
    algo = found["checksum_algo"] if found else (settings.checksum if settings.checksum != "none" else "crc32c")
    verified = CopySettings(**{**settings.__dict__, "verify": True, "checksum": algo})
    out = compacted_info(info, fold, ddir, output)
    lock = StoreLock(backup, f"{ddir}/{LOCK}", f"l0compact {output!r}", command="l0compact",
                     on_loss="stopped before marking the output complete: run the same l0compact with --force",
                     warn=reporter.warning)
    with backup_storage_errors(stores), lock:
        if present:
            _empty(stores, ddir)
        try:
            _write(stores, name, out, fold, plan, expected, verified, lock, reporter)
        except BaseException:
            if not lock.lost.is_set():  # else another run owns the destination now
                with contextlib.suppress(Exception):
                    _empty(stores, ddir)
            raise
    size = sum(s for _, _, s in files) + sum(len(d) for _, d in fold.logs.values())
    return L0CompactResult(name, output, where, len(files) + len(fold.logs), size, fold, time.monotonic() - started)


def _empty(stores: Stores, ddir: str) -> None:
    """Everything under ``ddir`` but the lock; the completion marker first, so a half-emptied
    destination never looks complete."""
    keys = [o.key for o in stores.backup.list(f"{ddir}/") if o.key != f"{ddir}/{LOCK}"]
    marker = meta.meta_key(ddir, meta.BACKUP_META)
    if marker in keys:
        stores.backup.delete(marker)
    failures = stores.backup.delete_many([k for k in keys if k != marker])
    if failures:
        key, error = failures[0]
        raise L0CompactError(f"could not empty the destination ({len(failures)} objects left, first: {key}: {error})")


def _write(stores: Stores, name: str, out: meta.BackupInfo, fold: Fold, plan: Plan, expected: dict[str, str | None],
           settings: CopySettings, lock: StoreLock, reporter: Reporter) -> None:
    from .create import write_meta

    backup, ddir = stores.backup, backup_dir(stores, out.name)
    backup.write(f"{ddir}/{IN_PROGRESS}", in_progress_marker(out.id, out.name, l0compact_of=name))
    with reporter.step("copy", backup=name):
        report = run_plan(plan, backup, backup, settings, reporter=reporter, label="l0compact", stop=lock.lost)
    lock.check()
    report.raise_for_failures(L0CompactError, "the output is incomplete and was removed; run the same l0compact again")
    wrong = [r for r in report.copied if expected.get(r["dst_key"]) not in (None, r["checksum"])]
    if wrong:
        raise IntegrityError(f"{len(wrong)} objects of backup {name!r} do not match the checksums it recorded (first: "
                             f"{wrong[0]['src_key']}): run mbackup verify -n {name} --deep; nothing was kept")
    written = {}
    width = 8 if settings.checksum == "crc32c" else 16
    for coll in out.collection_backups:
        for part in coll.partition_backups:
            for seg in part.segment_backups:
                if seg.segment_id in fold.logs:
                    log_id, data = fold.logs[seg.segment_id]
                    key = _new_log_key(ddir, seg, log_id)
                    backup.write(key, data)
                    written[key] = f"{_engine.checksum(settings.checksum, data):0{width}x}"
    lock.check()
    # The new delete logs' checksums are proven as they were written: the manifest takes them
    # as it takes those of objects a resumed create found already in place.
    report.skipped_checksums = {**report.skipped_checksums, **written}
    write_meta(stores, ddir, out, report, settings, lock)
