"""What each Milvus line answers, as data: one :class:`Profile` per release the contract
server stands in for.

Hand-written from the Go tool's feature gates (internal/client/milvus/grpc.go), its calls
(core/backup, internal/client/milvus/{manage,restful}.go) and the pymilvus 3.0 protos, NOT
derived from mbackup's own feature table: a test then checks mbackup's reading of a line
against an independent statement of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# The 3.0 snapshot RPCs: no 2.x server answers them.
SNAPSHOT_RPCS = frozenset({
    "CreateSnapshot", "DescribeSnapshot", "DropSnapshot", "ListSnapshots", "ExportSnapshot",
    "GetExportSnapshotState", "RestoreExternalSnapshot", "GetRestoreSnapshotState", "RestoreSnapshot",
})

GC_NONE = "none"  # no management endpoint: 404 (Milvus 2.3)
GC_CLUSTER = "cluster"  # pause/resume the whole cluster, no ticket (2.4 - 2.6.7)
GC_TICKET = "ticket"  # every pause returns a ticket, resume must give it back (2.6.8+)


@dataclass(frozen=True)
class Profile:
    """One Milvus release, as far as backup and restore can tell."""

    name: str
    build_tags: str  # Connect's server_info.build_tags, what the Go tool reads first
    version: str = ""  # GetVersion's answer ("" = the build tags, as on open-source Milvus)
    unimplemented: frozenset[str] = frozenset()  # RPCs answering UNIMPLEMENTED
    gc: str = GC_CLUSTER
    segment_describe: bool = False  # REST POST /v2/vectordb/segments/describe (2.5.8+), 404 before
    flush_all_msgs: bool = False  # FlushAll answers flush_all_msgs + cluster_info (2.6.11+)
    rest_import: bool = True  # REST /v2/vectordb/jobs/import/{create,describe} (2.4+)
    storage_version: int = 0  # of the segments a test seeds without saying
    privilege_groups: bool = False  # BackupRBAC reports privilege groups (2.5+)
    extra: dict[str, str] = field(default_factory=dict)  # anything a test wants to note

    def reported_version(self) -> str:
        return self.version or self.build_tags

    def but(self, **changes) -> Profile:
        """This profile with some answers changed (``but(build_tags="v2.4.2")``)."""
        return replace(self, **changes)


_NO_ADD_FIELD = frozenset({"AddCollectionField"})
# The CDC replicate stream a secondary restore injects into: from 2.6.
REPLICATE_RPCS = frozenset({"CreateReplicateStream", "GetReplicateInfo", "GetReplicateConfiguration"})

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("2.3.5", "v2.3.5", unimplemented=SNAPSHOT_RPCS | _NO_ADD_FIELD | REPLICATE_RPCS | {"DescribeDatabase",
                                                                                               "BackupRBAC"},
            gc=GC_NONE, rest_import=False),
    Profile("2.4.23", "v2.4.23", unimplemented=SNAPSHOT_RPCS | _NO_ADD_FIELD | REPLICATE_RPCS),
    Profile("2.5.8", "v2.5.8", unimplemented=SNAPSHOT_RPCS | _NO_ADD_FIELD | REPLICATE_RPCS, segment_describe=True,
            privilege_groups=True),
    Profile("2.6.5", "v2.6.5", unimplemented=SNAPSHOT_RPCS, segment_describe=True, storage_version=2,
            privilege_groups=True),
    Profile("2.6.11", "v2.6.11", unimplemented=SNAPSHOT_RPCS, gc=GC_TICKET, segment_describe=True,
            flush_all_msgs=True, storage_version=2, privilege_groups=True),
    Profile("3.0.0", "v3.0.0", gc=GC_TICKET, segment_describe=True, flush_all_msgs=True, storage_version=2,
            privilege_groups=True),
)}

#: The profile a test gets unless it picks one.
DEFAULT = PROFILES["2.6.11"]
