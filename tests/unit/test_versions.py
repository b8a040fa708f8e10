"""A server's version read as the Go tool reads it, over the Go tool's own test cases
(internal/client/milvus/grpc_test.go at f81df44): the cases are copied below, and when the
Go tool's source is on this machine a test checks the copy is still what it says."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from milvus_backup.milvus.versions import (
    SINCE,
    Feature,
    ServerVersion,
    embedded_version,
    is_version_like,
    resolve_version,
)

GO_REPO = os.environ.get("MBACKUP_GO_TOOL_REPO", "/work/.mirror/zilliztech+milvus-backup/repo")
CLOUD_DESC = "Zilliz Cloud Vector Database(Compatible with Milvus 2.6)"
CLOUD_TAG = "unknown-20260608-7ea6e3526"

# TestGrpcClient_parseVersionForFeature: (name, reported strings, constraint, passes)
PARSE_CASES = [
    ("Release2.6.0_NoMultiL0", ["2.6.0"], ">= 2.6.5-0", False),
    ("Release2.6.5_HasMultiL0", ["2.6.5"], ">= 2.6.5-0", True),
    ("Release2.6.11_HasFlushAll", ["2.6.11"], ">= 2.6.11-0", True),
    ("Release2.6.10_NoFlushAll", ["2.6.10"], ">= 2.6.11-0", False),
    ("VPrefixV2.2.16_NoDescribeDatabase", ["v2.2.16"], ">= 2.4.3-0", False),
    ("VPrefixV2.3.22_NoDescribeDatabase", ["v2.3.22"], ">= 2.4.3-0", False),
    ("VPrefixV2.4.23_HasDescribeDatabase", ["v2.4.23"], ">= 2.4.3-0", True),
    ("VPrefixV2.5.20_NoMultiL0", ["v2.5.20"], ">= 2.6.5-0", False),
    ("VPrefixV2.6.5_HasMultiL0", ["v2.6.5"], ">= 2.6.5-0", True),
    ("VPrefixV2.5.20_HasReplicateMessage", ["v2.5.20"], ">= 2.5.0-0, < 2.6.0-0", True),
    ("FourPartV2.4.0.1GpuBeta_NoMultiL0", ["v2.4.0.1-gpu-beta"], ">= 2.6.5-0", False),
    ("FourPartV2.4.0.1GpuBeta_NoDescribeDatabase", ["v2.4.0.1-gpu-beta"], ">= 2.4.3-0", False),
    ("FourPartV2.3.22.6_NoMultiL0", ["v2.3.22.6"], ">= 2.6.5-0", False),
    ("FourPartV2.6.5.3_HasMultiL0", ["v2.6.5.3"], ">= 2.6.5-0", True),
    ("DevTag2.6_HasMultiL0", ["2.6-20260404-31fb3fc"], ">= 2.6.5-0", True),
    ("DevTag2.6_HasFlushAll", ["2.6-20260404-31fb3fc"], ">= 2.6.11-0", True),
    ("DevTag2.6_HasGC", ["2.6-20260404-31fb3fc"], ">= 2.6.8-0", True),
    ("DevTag2.6_NoReplicateMessage", ["2.6-20260404-31fb3fc"], ">= 2.5.0-0, < 2.6.0-0", False),
    ("DevTag2.5_HasReplicateMessage", ["2.5-20260404-31fb3fc"], ">= 2.5.0-0, < 2.6.0-0", True),
    ("DevTag2.5_NoFlushAll", ["2.5-20260404-31fb3fc"], ">= 2.6.11-0", False),
    ("CloudDesc_HasFlushAll", [CLOUD_DESC, CLOUD_TAG], ">= 2.6.11-0", True),
    ("CloudDesc_HasDescribeDatabase", [CLOUD_DESC, CLOUD_TAG], ">= 2.4.3-0", True),
    ("CloudDesc_NoReplicateMessage", [CLOUD_DESC, CLOUD_TAG], ">= 2.5.0-0, < 2.6.0-0", False),
    ("CloudDesc_DoesNotLeakPastTheLine", [CLOUD_DESC, CLOUD_TAG], ">= 2.7.0-0", False),
    ("CloudDescWithProductVersion_NoReplicateMessage",
     ["Zilliz Cloud 3.0 Vector Database(Compatible with Milvus 2.5)"], ">= 2.5.0-0, < 2.6.0-0", True),
    ("ReleaseBeatsDescription", [CLOUD_DESC, "2.6.10"], ">= 2.6.11-0", False),
    ("ReleaseBeatsDescriptionReversed", ["2.6.10", CLOUD_DESC], ">= 2.6.11-0", False),
    ("UnknownBranchTag_HasFlushAll", [CLOUD_TAG], ">= 2.6.11-0", True),
    ("MasterTag_HasFlushAll", ["master-20260226-abcdef"], ">= 2.6.11-0", True),
    ("Empty_HasFlushAll", [""], ">= 2.6.11-0", True),
    ("AllEmpty_HasFlushAll", ["", ""], ">= 2.6.11-0", True),
]

# TestEmbeddedVersion
EMBEDDED_CASES = [
    ("MinorOnlyResolvesToHeadOfLine", "2.6-20260404-31fb3fc", (2, 6, 9999)),
    ("DescriptionMinorOnly", CLOUD_DESC, (2, 6, 9999)),
    ("DescriptionWithPatchKeepsPatch", "Zilliz Cloud Vector Database(Compatible with Milvus 2.5.8)", (2, 5, 8)),
    ("NoSeparatorBeforeVersion", "milvus2.6", (2, 6, 9999)),
]
NO_VERSION_AT_ALL = [CLOUD_TAG, "master-20260226-abcdef", ""]

# TestSnapshotConstraint: (name, version, has snapshots)
SNAPSHOT_CASES = [("Milvus2.6.20", "2.6.20", False), ("Milvus2.7.0", "2.7.0", False), ("Milvus3.0.0", "3.0.0", True),
                  ("Milvus3.0.0RC", "3.0.0-rc1", True), ("Milvus3.1.0", "3.1.0", True)]


def satisfies(version: tuple[int, int, int], constraint: str) -> bool:
    """A Go semver constraint such as ">= 2.5.0-0, < 2.6.0-0" (every bound a "-0" prerelease,
    so any prerelease of X counts as X)."""
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b}
    for part in constraint.split(","):
        op, bound = part.split()
        if not ops[op](version, tuple(int(n) for n in bound.removesuffix("-0").split("."))):
            return False
    return True


@pytest.mark.parametrize("reported,constraint,passes", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_features_are_checked_against_the_version_the_go_tool_resolves(reported, constraint, passes):
    assert satisfies(resolve_version(*reported), constraint) is passes


@pytest.mark.parametrize("text,expected", [c[1:] for c in EMBEDDED_CASES], ids=[c[0] for c in EMBEDDED_CASES])
def test_a_version_inside_a_dev_tag_or_a_description(text, expected):
    assert embedded_version(text) == expected


@pytest.mark.parametrize("text", NO_VERSION_AT_ALL)
def test_strings_without_a_version_read_as_the_newest_dev_build(text):
    assert embedded_version(text) is None
    assert resolve_version(text) == (99, 0, 0)


@pytest.mark.parametrize("version,has", [c[1:] for c in SNAPSHOT_CASES], ids=[c[0] for c in SNAPSHOT_CASES])
def test_snapshots_arrive_with_3_0(version, has):
    assert ServerVersion.of(version).has(Feature.SNAPSHOT) is has


def test_each_gate_is_the_go_tools():
    """The feature table (milvus-lines.md, grpc.go's _featureTuples and the RBAC docs); the GC
    pause endpoint and privilege groups from milvus-lines.md's table per line (the Go tool needs
    2.4 at least, and sends privilege groups to 2.4 all the same). The replicate stream (restore
    secondary) from milvus-lines.md's 2.6 column ("new CDC"): the Go tool checks no version for
    it; mbackup refuses an older target in one line instead of failing on an unknown method."""
    assert {f.name: ".".join(map(str, v)) for f, v in SINCE.items()} == {
        "DESCRIBE_DATABASE": "2.4.3", "RBAC": "2.4.10", "SEGMENT_DESCRIBE": "2.5.8", "MULTI_L0_IN_ONE_JOB": "2.6.5",
        "COLLECTION_GC_TICKET": "2.6.8", "FUNC_RUNTIME_CHECK": "2.6.8", "FLUSH_ALL": "2.6.11", "SNAPSHOT": "3.0.0",
        "GC_PAUSE": "2.4.0", "PRIVILEGE_GROUPS": "2.5.0", "REPLICATE_STREAM": "2.6.0"}
    assert [f for f in Feature if ServerVersion.of("v2.6.8").has(f)] == [
        Feature.DESCRIBE_DATABASE, Feature.GC_PAUSE, Feature.RBAC, Feature.PRIVILEGE_GROUPS, Feature.SEGMENT_DESCRIBE,
        Feature.MULTI_L0_IN_ONE_JOB, Feature.COLLECTION_GC_TICKET, Feature.FUNC_RUNTIME_CHECK, Feature.REPLICATE_STREAM]
    assert ServerVersion.of("v2.6.5").needs(Feature.FLUSH_ALL) == (
        "FlushAll with GetFlushAllState needs Milvus 2.6.11 or newer (this server is v2.6.5)")


@pytest.mark.parametrize("tags,recorded", [("v2.6.11", True), ("2.6-20260404-31fb3fc", True), ("v2.4.0.1-gpu-beta", False),
                                           ("master-20260226-abcdef", False), (CLOUD_DESC, False), ("", False)])
def test_build_tags_the_go_tool_takes_as_the_version_without_asking_get_version(tags, recorded):
    assert is_version_like(tags) is recorded


def _go_test_source() -> str:
    try:
        return subprocess.run(["git", "--git-dir", GO_REPO, "show", "HEAD:internal/client/milvus/grpc_test.go"],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"the Go tool's source is not at {GO_REPO} (set MBACKUP_GO_TOOL_REPO)")


def test_the_cases_above_are_the_go_tools_own():
    source = _go_test_source().replace("_cloudDesc", repr(CLOUD_DESC).replace("'", '"')).replace(
        "_cloudBuildTag", f'"{CLOUD_TAG}"')
    body = source[source.index("func TestGrpcClient_parseVersionForFeature"):source.index("func TestEmbeddedVersion")]
    found = [(name, re.findall(r'"([^"]*)"', strings), constraint, passes == "true") for name, strings, constraint, passes
             in re.findall(r'\{"([\w.]+)", \[\]string\{([^}]*)\}, "([^"]+)", (true|false)\}', body)]
    assert found == PARSE_CASES
    body = source[source.index("func TestEmbeddedVersion"):source.index("func TestGrpcClient_GetVersion")]
    assert [(n, t, tuple(int(x) for x in v.split("."))) for n, t, v in
            re.findall(r'\{"([\w.]+)", "?([^,"]*)"?, "([\d.]+)"\}', body)] == EMBEDDED_CASES
    body = source[source.index("func TestSnapshotConstraint"):]
    assert [(n, v, h == "true") for n, v, h in re.findall(r'\{"([\w.]+)", "([^"]+)", (true|false)\}', body)] == SNAPSHOT_CASES
