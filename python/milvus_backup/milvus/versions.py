"""Which Milvus a server is, and what that version can do: the feature table, in one home.

A server's version is read as the Go tool reads it (internal/client/milvus/grpc.go): the build
tags ``Connect`` reports, then ``GetVersion``; a leading ``v`` dropped; four-part hotfix
versions (``v2.3.22.6``) cut to three; an exact release anywhere wins over a version embedded
in a dev tag (``2.6-20260404-31fb3fc``, the head of its line: patch 9999) or in a vendor
description (``Compatible with Milvus 2.6``); nothing at all (``master-...``,
``unknown-...``) reads as 99.0.0, the newest dev build. Whether the server has databases is
not a version question: ``ListDatabases`` answering UNIMPLEMENTED says it has not.

Adapters ask :meth:`ServerVersion.has` rather than compare numbers, so each gate is written
once, here, with the version that brings it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

Version = tuple[int, int, int]

#: A server reporting no version at all: newer than anything, as the Go tool assumes.
LATEST_DEV: Version = (99, 0, 0)
#: The patch of a version known only to MAJOR.MINOR (a dev build of that line).
HEAD_OF_LINE = 9999

_NUM = r"(0|[1-9]\d*)"
_IDENT = r"[0-9A-Za-z-]+"
_RELEASE = re.compile(rf"{_NUM}\.{_NUM}\.{_NUM}(?:-{_IDENT}(?:\.{_IDENT})*)?(?:\+{_IDENT}(?:\.{_IDENT})*)?")
# A version inside a string that is not one: at its start (dev tags) or right after "Milvus"
# (vendor descriptions), so that a product's own version number is not taken for Milvus'.
_EMBEDDED = re.compile(r"(?:^|milvus[ _-]*)v?(\d+)\.(\d+)(?:\.(\d+))?", re.IGNORECASE)
# What the Go tool's lenient semver parser accepts: such a build tag is recorded as the version.
_LENIENT = re.compile(rf"v?\d+(?:\.\d+)?(?:\.\d+)?(?:-{_IDENT}(?:\.{_IDENT})*)?(?:\+{_IDENT}(?:\.{_IDENT})*)?")


def release_version(text: str) -> Version | None:
    """``"v2.6.11"`` -> (2, 6, 11); ``"v2.3.22.6"`` -> (2, 3, 22); None for anything that is
    not an exact MAJOR.MINOR.PATCH release (a prerelease suffix is allowed and ignored: the
    feature gates count 3.0.0-rc1 as 3.0.0)."""
    v = text.removeprefix("v")
    parts = v.split(".", 3)
    if len(parts) == 4:
        v = ".".join(parts[:3])
    m = _RELEASE.fullmatch(v)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def embedded_version(text: str) -> Version | None:
    """The version inside a dev tag or a vendor description; MAJOR.MINOR alone is the head of
    that line."""
    m = _EMBEDDED.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) is not None else HEAD_OF_LINE


def resolve_version(*reported: str) -> Version:
    """The version to check features against, out of every string the server reports about
    itself: an exact release wins over an embedded version whichever call reported it."""
    for text in reported:
        found = release_version(text)
        if found:
            return found
    for text in reported:
        found = embedded_version(text)
        if found:
            return found
    return LATEST_DEV


def is_version_like(text: str) -> bool:
    """Whether the Go tool takes build tags as the server's version without asking
    ``GetVersion`` (its lenient parse: ``v2.6.11``, ``2.6-20260404-31fb3fc``)."""
    return bool(_LENIENT.fullmatch(text))


class Feature(enum.Enum):
    """What some versions of Milvus have and others lack; the value says what it is."""

    DESCRIBE_DATABASE = "DescribeDatabase (database id and properties)"
    GC_PAUSE = "the management endpoint that pauses garbage collection"
    RBAC = "BackupRBAC and RestoreRBAC"
    PRIVILEGE_GROUPS = "privilege groups"
    SEGMENT_DESCRIBE = "the REST segment describe (exact binlog ids)"
    MULTI_L0_IN_ONE_JOB = "several L0 segments in one import job"
    COLLECTION_GC_TICKET = "per-collection GC pause tickets"
    FUNC_RUNTIME_CHECK = "creating collections with disable_func_runtime_check"
    FLUSH_ALL = "FlushAll with GetFlushAllState"
    REPLICATE_STREAM = "secondary restore (into a CDC secondary, through the replicate stream)"
    SNAPSHOT = "collection snapshots (CreateSnapshot, ExportSnapshot, RestoreExternalSnapshot)"


#: The version each feature arrived with (the Go tool's gates).
SINCE: dict[Feature, Version] = {
    Feature.GC_PAUSE: (2, 4, 0),
    Feature.DESCRIBE_DATABASE: (2, 4, 3),
    Feature.RBAC: (2, 4, 10),
    Feature.PRIVILEGE_GROUPS: (2, 5, 0),
    Feature.SEGMENT_DESCRIBE: (2, 5, 8),
    Feature.MULTI_L0_IN_ONE_JOB: (2, 6, 5),
    Feature.COLLECTION_GC_TICKET: (2, 6, 8),
    Feature.FUNC_RUNTIME_CHECK: (2, 6, 8),
    Feature.REPLICATE_STREAM: (2, 6, 0),
    Feature.FLUSH_ALL: (2, 6, 11),
    Feature.SNAPSHOT: (3, 0, 0),
}


def format_version(version: Version) -> str:
    if version == LATEST_DEV:
        return "a development build"
    if version[2] == HEAD_OF_LINE:
        return f"{version[0]}.{version[1]} (a development build)"
    return ".".join(str(n) for n in version)


@dataclass(frozen=True)
class ServerVersion:
    """What a connected server said about itself."""

    reported: str  # recorded as the backup's milvus_version: the build tags, e.g. "v2.6.11"
    number: Version  # what the feature gates are checked against
    multi_database: bool = True  # False when ListDatabases answers UNIMPLEMENTED

    @classmethod
    def of(cls, *reported: str, multi_database: bool = True) -> ServerVersion:
        """From the build tags and GetVersion's answer, in that order."""
        shown = next((r for r in reported if r), "unknown")
        return cls(shown, resolve_version(*reported), multi_database)

    @property
    def line(self) -> str:
        return f"{self.number[0]}.{self.number[1]}"

    def has(self, feature: Feature) -> bool:
        return self.number >= SINCE[feature]

    def needs(self, feature: Feature) -> str:
        """``FlushAll with GetFlushAllState needs Milvus 2.6.11 or newer (this server is
        v2.6.5)``: why a request is refused."""
        return (f"{feature.value} needs Milvus {format_version(SINCE[feature])} or newer "
                f"(this server is {self.reported})")


__all__ = ["HEAD_OF_LINE", "LATEST_DEV", "SINCE", "Feature", "ServerVersion", "Version", "embedded_version",
           "format_version", "is_version_like", "release_version", "resolve_version"]
