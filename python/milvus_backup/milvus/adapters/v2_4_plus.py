"""The adapters for Milvus 2.4, 2.5, 2.6 and 3.x (a built-in plugin): backups.

Tested against a wire contract (tests/milvus_contract: pymilvus' generated gRPC service and
the Go tool's HTTP endpoints, hand-built), NOT against a live server of these lines: none runs
on the machine this was written on. What the lines do beyond 2.3, each gated by the version
that brings it (``versions.py``), as the Go tool (zilliztech/milvus-backup f81df44) does it:

- segments carry their level (L0: deletes only; collection-level L0 under partition -1) and
  storage version (2 on 2.6);
- ``DescribeDatabase`` (2.4.3) gives database ids and properties;
- GC is paused cluster-wide, or per collection with a ticket from 2.6.8 (``http_api.GcHold``);
- the REST segment describe (2.5.8) names each segment's exact binlogs, so orphans a
  compaction left in storage are not backed up; listing storage otherwise;
- ``FlushAll`` with ``GetFlushAllState`` (2.6.11) seals every collection at once
  (``--strategy bulk_flush``, the default where the server has it).

Restoring into these lines is not done yet: the creating methods refuse before anything is
made, in one line.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from ...format import meta
from ...plugins.hookspecs import hookimpl
from ..connection import MilvusError
from ..versions import Feature
from .base import (
    BinlogDescribeFailed,
    Capabilities,
    FlushAllResult,
    HowTested,
    ImportState,
    SegmentBinlogs,
    SegmentRef,
    SnapshotJob,
)
from .http_api import HttpApi, HttpFailed
from .replicate import ReplicateRpcs
from .restore_v2 import RestoreV2
from .rpc import RpcUnimplemented

SEGMENT_DESCRIBE = "/v2/vectordb/segments/describe"
# Loon: a segment layout a backup-mode import cannot read yet (milvus#52930).
STORAGE_V3 = 3


@hookimpl
def mbackup_register_milvus_adapter(register: Callable[..., None]) -> None:
    register("2.4", Milvus24Adapter)
    register("2.5", Milvus25Adapter)
    register("2.6", Milvus26Adapter)
    register("3.0", Milvus30Adapter)


class Milvus24Adapter(RestoreV2):
    """Milvus 2.4 and, through its subclasses, every later line; the restore side is
    :class:`~.restore_v2.RestoreV2`'s."""

    capabilities = Capabilities.of_line("2.4")

    tested = HowTested("contract", "against a wire contract built from the protos and the Go tool, not a live Milvus")

    def __init__(self, version: str, connection: Any) -> None:
        super().__init__(version, connection)
        endpoint = getattr(connection, "endpoint", None)
        token = f"{endpoint.user}:{endpoint.password}" if endpoint and (endpoint.user or endpoint.password) else ""
        self._rest = HttpApi(endpoint.rest_url, "the Milvus REST API", token=token) if endpoint else None

    # --- consistency of what is read -----------------------------------------------------

    def can_flush_all(self) -> bool:
        return self.server.has(Feature.FLUSH_ALL)

    def flush_all(self) -> FlushAllResult:
        from .._proto import milvus_pb2 as m

        if not self.can_flush_all():
            raise MilvusError(f"{self.server.needs(Feature.FLUSH_ALL)}: use --strategy serial_flush")
        resp = self._call("FlushAll", m.FlushAllRequest(), what="flush all collections")
        # Each channel's flush message carries the time tick to wait for, base 36 ("_tt").
        ticks: dict[str, int] = {}
        for channel, message in resp.flush_all_msgs.items():
            try:
                ticks[channel] = int(message.properties["_tt"], 36)
            except (KeyError, ValueError):
                raise MilvusError(f"Milvus {self._where()} answered FlushAll with a message for {channel} "
                                  "that has no time tick (_tt)") from None
        req = m.GetFlushAllStateRequest(flush_all_tss=ticks)
        self._wait(lambda: self._call("GetFlushAllState", req, what="read the flush-all state").flushed,
                   "flushing all collections")
        return FlushAllResult(
            control_channel=resp.cluster_info.cchannel,
            physical_channels=tuple(resp.cluster_info.pchannels),
            messages_base64={ch: base64.b64encode(msg.SerializeToString()).decode()
                             for ch, msg in sorted(resp.flush_all_msgs.items())},
        )

    def list_segments(self, db: str, collection: str) -> list[SegmentRef]:
        segments = super().list_segments(db, collection)
        loon = [s for s in segments if s.storage_version >= STORAGE_V3]
        if loon:
            raise MilvusError(
                f"{len(loon)} segment(s) of {db}.{collection} (first: {loon[0].segment_id}) are in storage format "
                f"v{loon[0].storage_version} (Loon), which Milvus cannot import back from a binlog backup "
                "(milvus#52930): turn storage v3 off in Milvus and let it compact them, then back up again")
        return segments

    def segment_binlogs(self, db: str, collection_id: int, segments: Sequence[SegmentRef]) -> dict[int, SegmentBinlogs]:
        if not self.server.has(Feature.SEGMENT_DESCRIBE) or self._rest is None:
            return {}
        # One segment per request, as the Go tool asks.
        return {seg.segment_id: self._describe_segment(db, collection_id, seg.segment_id) for seg in segments}

    def _describe_segment(self, db: str, collection_id: int, segment_id: int) -> SegmentBinlogs:
        assert self._rest is not None
        try:
            answer = self._rest.request("POST", SEGMENT_DESCRIBE, body={
                "dbName": db, "collectionId": collection_id, "segmentIds": [segment_id]})
        except HttpFailed as e:
            raise BinlogDescribeFailed(str(e)) from None
        where = f"the Milvus REST API at {self._rest.base}"
        infos = answer.get("data", {}).get("segmentInfos") if isinstance(answer.get("data"), dict) else None
        if answer.get("code") or not infos:
            why = answer.get("message") or "no segment info"
            raise BinlogDescribeFailed(f"{where} did not describe segment {segment_id}: {why}")
        try:
            info = infos[0]
            inserts = {int(b["fieldID"]): tuple(int(log) for log in b.get("logIDs") or ())
                       for b in info.get("insertLogs") or ()}
            deltas = tuple(int(log) for b in info.get("deltaLogs") or () for log in b.get("logIDs") or ())
            return SegmentBinlogs(inserts, deltas, str(info.get("vChannel") or ""))
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            raise BinlogDescribeFailed(f"{where} described segment {segment_id} in a shape mbackup cannot read") from None


class Milvus25Adapter(Milvus24Adapter):
    """Milvus 2.5: nullable fields, default values, functions (BM25); the REST segment
    describe from 2.5.8."""

    capabilities = Capabilities.of_line("2.5")


class Milvus26Adapter(ReplicateRpcs, Milvus25Adapter):
    """Milvus 2.6: storage v2 (column groups under insert_log), int8 vectors, struct arrays,
    geometry, timestamptz; GC tickets from 2.6.8, FlushAll from 2.6.11; the CDC replicate
    stream a secondary restore injects into (``replicate.py``)."""

    capabilities = Capabilities.of_line("2.6")

    def can_restore_secondary(self) -> bool:
        return self.server.has(Feature.REPLICATE_STREAM)


class ExternalCollection(MilvusError):
    """A 3.x collection whose data lives outside Milvus: nothing a backup could restore."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


class Milvus30Adapter(Milvus26Adapter):
    """Milvus 3.x in the binlog format (storage v3 off): external collections, whose data
    Milvus does not hold, cannot be backed up. And the snapshot format, where Milvus exports
    and restores a collection itself (backup/snapshot.py orders the calls)."""

    capabilities = Capabilities.of_line("3.0")

    def describe_collection(self, db: str, collection: str) -> meta.CollectionBackupInfo:
        from .._proto import milvus_pb2 as m

        req = m.DescribeCollectionRequest(db_name=db, collection_name=collection)
        resp = self._call("DescribeCollection", req, db, f"describe collection {db}.{collection}")
        if resp.schema.external_source:
            raise ExternalCollection(f"{db}.{collection} is an external collection: its data lives outside Milvus "
                              f"({resp.schema.external_source}), so a backup could not restore it: leave it out "
                              "with --filter", resp.schema.external_source)
        return super().describe_collection(db, collection)

    # --- snapshots ------------------------------------------------------------------------
    # The requests the Go tool sends (internal/client/milvus/grpc.go): the database in the
    # dbname header as well as the request; no compaction protection (the snapshot itself
    # holds its files against GC for as long as it exists).

    def can_snapshot(self) -> bool:
        return self.server.has(Feature.SNAPSHOT)

    def _snapshot_call(self, method: str, request: Any, db: str, what: str) -> Any:
        if not self.can_snapshot():
            raise MilvusError(f"{self.server.needs(Feature.SNAPSHOT)}: use --format binlog")
        try:
            return self._call(method, request, db, what)
        except RpcUnimplemented as e:
            # A build of a snapshot line without them (the Go tool notes master lacked ExportSnapshot).
            raise MilvusError(f"{e} (this build has no {method}): use --format binlog") from None

    def create_snapshot(self, db: str, collection: str, name: str) -> None:
        from .._proto import milvus_pb2 as m

        self._snapshot_call("CreateSnapshot", m.CreateSnapshotRequest(db_name=db, collection_name=collection, name=name),
                            db, f"create snapshot {name} of {db}.{collection}")

    def snapshot_timestamp(self, db: str, collection: str, name: str) -> int:
        from .._proto import milvus_pb2 as m

        desc = self._snapshot_call("DescribeSnapshot", m.DescribeSnapshotRequest(
            db_name=db, collection_name=collection, name=name), db, f"describe snapshot {name} of {db}.{collection}")
        return int(desc.create_ts)

    def export_snapshot(self, db: str, collection: str, name: str, target_uri: str, external_spec: str = "") -> int:
        from .._proto import milvus_pb2 as m

        req = m.ExportSnapshotRequest(db_name=db, collection_name=collection, name=name, target_s3_path=target_uri,
                                      external_spec=external_spec)
        return int(self._snapshot_call("ExportSnapshot", req, db, f"export snapshot {name} of {db}.{collection}").job_id)

    def export_snapshot_state(self, job_id: int) -> SnapshotJob:
        from .._proto import milvus_pb2 as m

        info = self._snapshot_call("GetExportSnapshotState", m.GetExportSnapshotStateRequest(job_id=job_id), "",
                                   f"read the state of snapshot export job {job_id}").info
        return SnapshotJob(_SNAPSHOT_STATES.get(info.state, ImportState.PENDING), info.progress, info.reason,
                           info.snapshot_metadata_uri, info.total_files, info.total_bytes)

    def drop_snapshot(self, db: str, collection: str, name: str) -> None:
        from .._proto import milvus_pb2 as m

        self._snapshot_call("DropSnapshot", m.DropSnapshotRequest(db_name=db, collection_name=collection, name=name),
                            db, f"drop snapshot {name} of {db}.{collection}")

    def restore_external_snapshot(self, db: str, collection: str, metadata_uri: str, external_spec: str = "") -> int:
        from .._proto import milvus_pb2 as m

        req = m.RestoreExternalSnapshotRequest(db_name=db, target_collection_name=collection,
                                               snapshot_metadata_uri=metadata_uri, external_spec=external_spec)
        return int(self._snapshot_call("RestoreExternalSnapshot", req, db, f"restore {db}.{collection} from a "
                                       "snapshot").job_id)

    def restore_snapshot_state(self, job_id: int) -> SnapshotJob:
        from .._proto import milvus_pb2 as m

        info = self._snapshot_call("GetRestoreSnapshotState", m.GetRestoreSnapshotStateRequest(job_id=job_id), "",
                                   f"read the state of snapshot restore job {job_id}").info
        return SnapshotJob(_SNAPSHOT_STATES.get(info.state, ImportState.PENDING), info.progress, info.reason,
                           target=(info.db_name, info.collection_name))


# ExportSnapshotState and RestoreSnapshotState share their numbers: None, Pending, Executing,
# Completed, Failed.
_SNAPSHOT_STATES = {0: ImportState.PENDING, 1: ImportState.PENDING, 2: ImportState.RUNNING, 3: ImportState.COMPLETED,
                    4: ImportState.FAILED}


__all__ = ["Milvus24Adapter", "Milvus25Adapter", "Milvus26Adapter", "Milvus30Adapter",
           "mbackup_register_milvus_adapter"]
