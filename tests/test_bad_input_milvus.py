"""Bad input against real Milvus 2.3.5 clusters (issue #3 §9): each case prints one clear line
on stderr, exits with the code cli.py gives it (2: every refusal and every failure mbackup
explains, i.e. each MBackupError), names the setting or file to fix, never shows a secret, and
leaves nothing half-made: no collection created, no backup directory (complete or not) left
behind, the backup storage unchanged.
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from pymilvus import DataType, MilvusClient

from mbackup_dev.devstack import backup_config
from milvus_backup import _engine
from milvus_data import client, error_line, mbackup, ok

pytestmark = pytest.mark.milvus

BUCKET = "mbk-bad-backups"
ROOT = "bad"
GOOD = "bad_ok"  # a backup of bad_a and bad_b
FAKE_SECRET = "mbk-fake-secret-7e21ab"
WHERE = "milvus.address/milvus.port (milvus.grpc.address/milvus.grpc.port in a v2 config)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(milvus_clusters, seaweedfs):
    yield milvus_clusters
    seaweedfs.delete_bucket(BUCKET)
    mc = client(milvus_clusters.source.uri)
    try:
        for name in ("bad_a", "bad_b"):
            mc.drop_collection(name)
    finally:
        mc.close()


@pytest.fixture(scope="module")
def configs(stack, tmp_path_factory):
    """The good config and its broken variants, each one setting wrong."""
    d = tmp_path_factory.mktemp("bad-config")
    src = stack.source
    good = backup_config(src, backup_bucket=BUCKET, backup_root=ROOT)
    storage = f"bucketName: {src.bucket}\n    rootPath: {src.root_path}\n"
    assert storage in good and f"    port: {src.port}\n" in good
    texts = {
        "good": good,
        "port": good.replace(f"    port: {src.port}\n", f"    port: {free_port()}\n", 1),
        "root": good.replace(storage, f"bucketName: {src.bucket}\n    rootPath: wrongroot\n"),
        "bucket": good.replace(storage, f"bucketName: {stack.target.bucket}\n    rootPath: {src.root_path}\n"),
        "nobucket": good.replace(storage, f"bucketName: no-such-bucket-e2e\n    rootPath: {src.root_path}\n"),
        "secret": good.replace(f"secretAccessKey: {src.s3.secret_key}", f"secretAccessKey: {FAKE_SECRET}"),
    }
    assert len(set(texts.values())) == len(texts)
    out = {}
    for name, text in texts.items():
        out[name] = d / f"{name}.yaml"
        out[name].write_text(text)
    return out


@pytest.fixture(scope="module")
def good(stack, configs):
    """Two small flushed collections on the source and a backup of both."""
    mc = client(stack.source.uri)
    try:
        for name in ("bad_a", "bad_b"):
            if mc.has_collection(name):
                mc.drop_collection(name)
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vec", DataType.FLOAT_VECTOR, dim=8)
            mc.create_collection(name, schema=schema, num_shards=1)
            mc.insert(name, [{"id": i, "vec": [i / 200] * 8, "note": f"n{i}"} for i in range(200)])
    finally:
        mc.close()
    ok(mbackup(configs["good"], "create", "-n", GOOD, "--filter", "bad_a,bad_b"))  # flushes both
    return GOOD


@pytest.fixture
def unchanged(stack, seaweedfs, good):
    """Asserts, after the test, that the backup storage, the collections of both clusters and
    the Milvus buckets' non-binlog objects (staging, journals) are as they were before."""
    backups = seaweedfs.store(BUCKET)

    def snapshot():
        objects = {k: size for k, size, _ in backups.list(f"{ROOT}/")}
        collections = {}
        for role, cluster in (("source", stack.source), ("target", stack.target)):
            for db in ("default",):
                mc = client(cluster.uri, db)
                try:
                    collections[role, db] = sorted(mc.list_collections())
                finally:
                    mc.close()
        extra = {cluster.bucket: sorted(k for k, _, _ in seaweedfs.store(cluster.bucket).list("")
                                        if not k.startswith(f"{cluster.root_path}/"))
                 for cluster in (stack.source, stack.target)}
        return objects, collections, extra

    before = snapshot()
    yield
    after = snapshot()
    assert after[0] == before[0], "the backup storage changed"
    assert after[1] == before[1], "collections were created or dropped"
    assert after[2] == before[2], "staged copies or a journal were left in a Milvus bucket"


def rows(uri: str, name: str) -> int:
    mc = client(uri)
    try:
        return mc.get_collection_stats(name)["row_count"]
    finally:
        mc.close()


# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("filter_, message", [
    ("nope_coll", "error: collection 'nope_coll' does not exist in database 'default' (collections: "),
    ("default.bad_a,nodb.*", "error: database 'nodb' does not exist (databases: "),
], ids=["collection", "database"])
def test_unknown_collection_or_database_in_filter(configs, unchanged, filter_, message):
    line = error_line(mbackup(configs["good"], "create", "-n", "bad_new", "--filter", filter_))
    assert line.startswith(message), line
    if "database 'nodb'" in message:
        # Other modules' databases may exist on the shared cluster: the list is sorted, default is in it.
        names = line[len(message):].rstrip(")").split(", ")
        assert "default" in names and names == sorted(names), line


def test_a_taken_backup_name_is_refused(configs, unchanged):
    line = error_line(mbackup(configs["good"], "create", "-n", GOOD, "--filter", "bad_a"))
    assert line == (f"error: backup '{GOOD}' already exists at s3://{BUCKET}/{ROOT}/{GOOD}: choose another name "
                    f"or delete it with mbackup delete -n {GOOD}")


def test_invalid_backup_names(configs, unchanged):
    for name in ("a/b", "..", "has space"):
        for args in (["create", "--filter", "bad_a"], ["restore"], ["get"], ["delete"]):
            line = error_line(mbackup(configs["good"], *args, "-n", name))
            assert line == (f"error: invalid backup name {name!r}: use letters, digits and _ (max 128), "
                            "starting with a letter or _"), (args, line)


def test_unknown_backup(configs, unchanged):
    for command in ("restore", "get", "delete"):
        line = error_line(mbackup(configs["good"], command, "-n", "nothere"))
        assert line == (f"error: no backup named 'nothere' at s3://{BUCKET}/{ROOT}/nothere "
                        "(mbackup list shows the backups there)"), (command, line)


@pytest.fixture
def damaged(seaweedfs, good, request):
    """A copy of the good backup whose full_meta.json is corrupted or cut short."""
    s = seaweedfs.store(BUCKET)
    name = f"bad_{request.param}_{uuid.uuid4().hex[:6]}"
    src, dst = f"{ROOT}/{GOOD}/", f"{ROOT}/{name}/"
    results = _engine.Copier().run([(s, k, s, dst + k[len(src):], size) for k, size, _ in s.list(src)])
    assert not [r for r in results if r["error"]]
    full = s.get(f"{dst}meta/full_meta.json")
    if request.param == "corrupted":
        broken = full.replace(b'"name":', b'"name"=', 1)
        detail = "not valid JSON (expecting ':' delimiter at byte "
    else:
        broken = full[: len(full) // 2]
        detail = f"not valid JSON (truncated at byte {len(broken)})"
    s.put(f"{dst}meta/full_meta.json", broken)
    yield name, detail
    s.delete_many([k for k, _, _ in s.list(dst)], 8)


@pytest.mark.parametrize("damaged", ["corrupted", "truncated"], indirect=True)
def test_a_damaged_full_meta_is_refused_naming_the_file(configs, stack, damaged):
    name, detail = damaged
    line = error_line(mbackup(configs["good"], "restore", "-n", name, "--suffix", "_dmg"), 4)
    assert line.startswith(f"error: backup '{name}' failed the quick check: damaged: meta/full_meta.json: {detail}")
    assert line.endswith(f"; see them all with mbackup verify -n {name}, or restore anyway with --force")
    # Forced past the quick check, the restore still refuses to read it.
    for args in (["restore", "--suffix", "_dmg", "--force"], ["get"]):
        line = error_line(mbackup(configs["good"], *args, "-n", name), 4)
        assert line.startswith(f"error: meta/full_meta.json is {detail}"), line
        assert line.endswith(": the backup is damaged; run mbackup verify"), line
    mc = client(stack.source.uri)
    try:
        assert not [c for c in mc.list_collections() if c.endswith("_dmg")]
    finally:
        mc.close()


def test_a_restore_target_that_exists_is_refused_before_anything_is_made(configs, stack, unchanged):
    before = rows(stack.source.uri, "bad_b")
    # bad_a would be made as bad_a_new; bad_b exists: both are checked before either is touched.
    line = error_line(mbackup(configs["good"], "restore", "-n", GOOD, "--rename", "bad_a:bad_a_new"))
    assert line == ("error: collection default.bad_b already exists: restore with --suffix, --rename, "
                    "or --drop-exist-collection to replace it")
    assert rows(stack.source.uri, "bad_b") == before


@pytest.mark.parametrize("args", [["create", "-n", "bad_port", "--filter", "bad_a"],
                                  ["restore", "-n", GOOD, "--suffix", "_p"]], ids=["create", "restore"])
def test_a_wrong_milvus_port_fails_fast_naming_the_address_and_the_keys(configs, unchanged, args):
    port = int(next(line for line in configs["port"].read_text().splitlines() if line.startswith("    port: "))
               .split(": ")[1])
    started = time.monotonic()
    line = error_line(mbackup(configs["port"], *args), 3)  # retry later
    assert time.monotonic() - started < 15
    assert line == (f"error: cannot reach Milvus at 127.0.0.1:{port} (connection refused): check {WHERE} "
                    "and that the server is up")


@pytest.mark.parametrize("config", ["root", "bucket"])
def test_create_with_a_wrong_milvus_root_or_bucket_names_the_settings(configs, unchanged, config):
    result = mbackup(configs[config], "create", "-n", "bad_root", "--filter", "bad_a")
    line = error_line(result)
    assert line.startswith("error: segment ") and " of default.bad_a has no insert logs under insert_log/" in line
    assert line.endswith("in the Milvus bucket: check that milvus.storage.bucketName and rootPath "
                         "(minio.bucketName, minio.rootPath) name the bucket and root path Milvus itself writes to")
    listed = ok(mbackup(configs["good"], "list")).stdout
    assert "bad_root" not in listed


def test_create_with_a_milvus_bucket_that_does_not_exist(configs, unchanged):
    line = error_line(mbackup(configs["nobucket"], "create", "-n", "bad_nobucket", "--filter", "bad_a"))
    assert line == ("error: the Milvus bucket s3://no-such-bucket-e2e does not exist: check milvus.storage.bucketName "
                    "(minio.bucketName in a v1 config) names the bucket Milvus itself writes to")


def test_restore_with_a_wrong_milvus_bucket_leaves_no_empty_collection(configs, unchanged):
    # The binlogs are staged into the configured (wrong) bucket, where Milvus finds nothing.
    line = error_line(mbackup(configs["bucket"], "restore", "-n", GOOD, "--suffix", "_wb", "--filter", "bad_a_wb"))
    assert line.startswith("error: import of default.bad_a_wb partition '_default' completed without rows: Milvus "
                           "found no binlogs under mbackup-restore-")
    assert line.endswith("; check that milvus.storage.bucketName and rootPath name Milvus's own bucket")


def test_secrets_from_the_config_never_appear(configs, unchanged):
    runs = [["list"], ["get", "-n", GOOD], ["create", "-n", "bad_secret", "--filter", "bad_a"],
            ["restore", "-n", GOOD, "--suffix", "_s"], ["delete", "-n", GOOD]]
    for args in runs:
        result = mbackup(configs["secret"], *args)
        line = error_line(result)
        assert line.startswith(f"error: s3://{BUCKET}: the server rejected the credentials ("), (args, line)
        assert line.endswith("); check the access key and secret (or the profile/config they come from)")
        assert FAKE_SECRET not in result.stdout + result.stderr
    shown = ok(mbackup(configs["secret"], "config", "show"))
    assert FAKE_SECRET not in shown.stdout + shown.stderr and "****" in shown.stdout
    # The backup is still there.
    assert ok(mbackup(configs["good"], "get", "-n", GOOD)).stdout.startswith(f"backup {GOOD} (")
