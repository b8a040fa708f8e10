"""A backup built by hand the way mbackup writes one, without Milvus, and the config to reach
it: shared by the verify and bad-input tests."""

from __future__ import annotations

import json
import os
import uuid

from milvus_backup import _engine
from milvus_backup.format import meta
from milvus_backup.units import format_bytes

ROOT = "backup"
COLL, PART = 447000000000000101, 447000000000000102
FIELDS = (0, 1, 100, 101)
MANIFEST = "meta/mbackup_manifest.json"


def config_yaml(seaweedfs, bucket: str, *, grpc_port: int = 1, milvus_bucket: str | None = None,
                milvus_root: str = "files", http_url: str = "") -> str:
    """A v2 backup.yaml on the test's bucket; Milvus is not needed to verify (port 1 answers nothing).
    ``http_url``: Milvus' REST and management endpoints (the contract server's)."""
    http = f"  rest:\n    endpoint: {http_url}\n  management:\n    endpoint: {http_url}\n" if http_url else ""
    return f"""configVersion: v2
milvus:
  grpc:
    address: 127.0.0.1
    port: {grpc_port}
{http}  storage:
    provider: minio
    address: {seaweedfs.host}
    port: {seaweedfs.s3_port}
    bucketName: {milvus_bucket or bucket}
    rootPath: {milvus_root}
    auth:
      accessKeyID: {seaweedfs.access_key}
      secretAccessKey: {seaweedfs.secret_key}
backup:
  storage:
    bucketName: {bucket}
    rootPath: {ROOT}
"""


def crc32c(s: _engine.Store, key: str) -> str:
    (checksum, _, error), = _engine.Copier().checksums([(s, key)], "crc32c")
    assert error is None, error
    return checksum


class Sample:
    """A small two-segment backup written the way mbackup writes one."""

    def __init__(self, s: _engine.Store, name: str, *, manifest: bool = True, binlog_bytes: int = 1000) -> None:
        self.store, self.name, self.bdir = s, name, meta.backup_dir(ROOT, name)
        self.objects: dict[str, bytes] = {}  # every object under the backup dir, by relative key
        self.deleted: set[str] = set()  # still expected, so still counted as checked
        self.orphans: set[str] = set()  # under binlogs/ but not part of the backup
        self.sources: dict[str, bytes] = {}  # binlog contents by their key in the Milvus bucket
        self.binlog_bytes = binlog_bytes  # about the size of each insert log
        segments = [self._segment(5001, deltas=1), self._segment(5002, deltas=0)]
        size = sum(seg.size for seg in segments)
        info = meta.BackupInfo(
            id=str(uuid.uuid4()), name=name, milvus_version="v2.3.5", size=size,
            collection_backups=[meta.CollectionBackupInfo(
                collection_id=COLL, db_name="default", collection_name="products", size=size,
                schema=meta.CollectionSchema(name="products", fields=[
                    meta.FieldSchema(field_id=100, name="id", is_primary_key=True, data_type=meta.DataType.Int64),
                    meta.FieldSchema(field_id=101, name="vec", data_type=meta.DataType.FloatVector,
                                     type_params=[meta.KeyValuePair("dim", "8")])]),
                partition_backups=[meta.PartitionBackupInfo(partition_id=PART, partition_name="_default",
                                                            collection_id=COLL, segment_backups=segments, size=size)])])
        for seg in segments:
            for src, key, _ in meta.segment_files(self.bdir, seg):
                self.put(key[len(self.bdir) + 1:], self.sources[src])
        self.binlogs = sorted(self.objects)
        if manifest:
            sums = _engine.Copier().checksums([(s, f"{self.bdir}/{rel}") for rel in self.binlogs], "crc32c")
            body = {"version": 1, "backup": name, "id": info.id, "checksum_algo": "crc32c", "objects": {
                rel: {"size": len(self.objects[rel]), "checksum": c} for rel, (c, _, _) in zip(self.binlogs, sums, strict=False)}}
            self.put(MANIFEST, json.dumps(body, indent=0, sort_keys=True).encode())
        self.info = info
        files = meta.write_meta_files(info)
        for fname in [n for n in files if n != meta.BACKUP_META] + [meta.BACKUP_META]:
            self.put(f"meta/{fname}", files[fname])

    def _segment(self, seg_id: int, deltas: int) -> meta.SegmentBackupInfo:
        binlogs, deltalogs = [], [meta.FieldBinlog()]
        for f in FIELDS:
            log_id, data = seg_id * 1000 + f, os.urandom(self.binlog_bytes + 37 * f + seg_id % 7)
            src = f"files/insert_log/{COLL}/{PART}/{seg_id}/{f}/{log_id}"
            self.sources[src] = data
            binlog = meta.Binlog(log_path=src, log_size=len(data), log_id=log_id)
            binlogs.append(meta.FieldBinlog(field_id=f, binlogs=[binlog]))
        for i in range(deltas):
            log_id, data = seg_id * 1000 + 900 + i, os.urandom(300)
            src = f"files/delta_log/{COLL}/{PART}/{seg_id}/{log_id}"
            self.sources[src] = data
            deltalogs[0].binlogs.append(meta.Binlog(log_path=src, log_size=len(data), log_id=log_id))
        size = sum(b.log_size for fb in binlogs + deltalogs for b in fb.binlogs)
        return meta.SegmentBackupInfo(segment_id=seg_id, collection_id=COLL, partition_id=PART, num_of_rows=10,
                                      binlogs=binlogs, deltalogs=deltalogs, size=size, group_id=seg_id)

    def put(self, rel: str, data: bytes) -> None:
        self.store.put(f"{self.bdir}/{rel}", data)
        self.objects[rel] = data

    def delete(self, rel: str) -> None:
        self.store.delete(f"{self.bdir}/{rel}")
        del self.objects[rel]
        self.deleted.add(rel)

    def summary(self, checksums: int | None = None, problems: str = "0 problems") -> str:
        """The last line verify prints: objects checked, the bytes found of them, the count of problems."""
        deep = f", {checksums:,} checksums" if checksums is not None else ""
        counted = {k: v for k, v in self.objects.items() if k not in self.orphans}
        total = sum(len(v) for v in counted.values())
        return f"verified {len(counted) + len(self.deleted)} objects ({format_bytes(total)}){deep}: {problems}"
