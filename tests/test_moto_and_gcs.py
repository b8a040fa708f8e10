"""mbackup end to end on servers other than SeaweedFS (issue #15): moto's S3 server as backup
storage and as a copy source and destination, and fake-gcs-server as GCS backup storage that
is only read (it has no XML-API writes, so object_store cannot write to it: GCS writes stay
untested here). Each is reached with the settings a user sets for that service, through the
``mbackup`` command line; restores stage into the target Milvus's SeaweedFS bucket and every
row is compared.

One create of ``default.e2e_int`` onto moto; its objects are then laid into fake-gcs-server
through the server's JSON upload API, as a user would upload a backup with gsutil.
"""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest

from mbackup_dev.devstack import backup_config
from milvus_backup.format import meta
from milvus_data import INT, assert_same_rows, build, client, mbackup, ok, read_back

NAME = "on_moto"
ROOT = "second"
MOTO_KEYS = ("AKIAMOTO", "moto-secret")  # moto takes any keys; given as a user gives them


def drop(uri: str, name: str) -> None:
    mc = client(uri)
    try:
        if mc.has_collection(name):
            mc.drop_collection(name)
    finally:
        mc.close()


def with_backup_storage(cluster, section: str) -> str:
    """``backup_config(cluster)`` with its ``backup.storage`` section replaced by ``section``."""
    text = backup_config(cluster)
    return text[:text.index("backup:\n")] + "backup:\n  storage:\n" + section


@pytest.fixture(scope="module")
def stack(milvus_clusters):
    yield milvus_clusters
    drop(milvus_clusters.source.uri, INT[1])
    for name in ("e2e_int_moto", "e2e_int_gcs"):
        drop(milvus_clusters.target.uri, name)


@pytest.fixture(scope="module")
def truth(stack):
    return build(stack.source.uri, only=(INT,))[INT]


@pytest.fixture(scope="module")
def moto_bucket(moto):
    name = f"backups-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(name)
    return name


def moto_section(moto, bucket: str) -> str:
    return (f"    provider: minio\n    address: 127.0.0.1\n    port: {moto.port}\n    useSSL: false\n"
            f"    bucketName: {bucket}\n    rootPath: {ROOT}\n"
            f"    auth:\n      accessKeyID: {MOTO_KEYS[0]}\n      secretAccessKey: {MOTO_KEYS[1]}\n")


@pytest.fixture(scope="module")
def on_moto(stack, truth, moto, moto_bucket, tmp_path_factory):
    """``mbackup create`` of default.e2e_int with backup storage on moto: config files for the
    source and the target cluster, and the backup's objects as moto holds them."""
    d = tmp_path_factory.mktemp("moto-config")
    src, dst = d / "src.yaml", d / "dst.yaml"
    src.write_text(with_backup_storage(stack.source, moto_section(moto, moto_bucket)))
    dst.write_text(with_backup_storage(stack.target, moto_section(moto, moto_bucket)))
    out = ok(mbackup(src, "create", "-n", NAME, "--filter", "default.e2e_int")).stdout
    assert out.startswith(f"create backup success: {NAME}: 1 collections, "), out
    return {"src": src, "dst": dst, "objects": moto.objects(moto_bucket)}


def staged_leftovers(cluster) -> list[str]:
    s = cluster.s3.store(cluster.bucket)
    return [k for k, _, _ in s.list("") if k.startswith(("mbackup-restore-", "mbackup-restore-journal/"))]


# --------------------------------------------------------------------------------------
# moto: create, verify and restore through staging


@pytest.mark.milvus
def test_create_writes_the_whole_backup_to_moto(on_moto, truth):
    keys = list(on_moto["objects"])
    bdir = f"{ROOT}/{NAME}"
    assert f"{bdir}/meta/{meta.FULL_META}" in keys and f"{bdir}/meta/mbackup_manifest.json" in keys
    assert any(k.startswith(f"{bdir}/binlogs/insert_log/") for k in keys)
    assert any(k.startswith(f"{bdir}/binlogs/delta_log/") for k in keys)  # the deletes went too
    info = meta.loads(meta.BackupInfo, on_moto["objects"][f"{bdir}/meta/{meta.FULL_META}"])
    assert [(c.db_name, c.collection_name) for c in info.collection_backups] == [INT]


@pytest.mark.milvus
def test_restore_from_moto_stages_into_milvus_bucket_and_every_row_matches(on_moto, truth, stack):
    ok(mbackup(on_moto["dst"], "verify", "-n", NAME, "--deep"))
    out = ok(mbackup(on_moto["dst"], "restore", "-n", NAME, "--suffix", "_moto")).stdout
    assert f"restored default.e2e_int as default.e2e_int_moto: {len(truth.rows) + len(truth.deleted):,} rows" in out
    assert_same_rows(read_back(stack.target.uri, "default", "e2e_int_moto", truth, release=True), truth)
    assert staged_leftovers(stack.target) == []


# --------------------------------------------------------------------------------------
# GCS on fake-gcs-server: the backup read through GCS's own API (provider gcpnative)


@pytest.fixture(scope="module")
def on_gcs(on_moto, fake_gcs, stack, tmp_path_factory):
    """The moto backup laid into a fake-gcs-server bucket, and a target config reaching it as
    a user of the Go tool reaches GCS: provider gcpnative, the endpoint in
    address/port/useSSL, a service-account credentials file. The file's key is empty and says
    ``disable_oauth`` (the emulator checks no token); ``gs://`` URLs use the same file, with
    the endpoint in ``?endpoint=``. (The key file's own ``gcs_base_url`` is tested live in
    tests/test_config.py.)"""
    bucket = f"gcs-{uuid.uuid4().hex[:8]}"
    fake_gcs.create_bucket(bucket)
    for key, data in on_moto["objects"].items():
        fake_gcs.upload(bucket, key, data)
    d = tmp_path_factory.mktemp("gcs-config")
    credentials = d / "service-account.json"
    credentials.write_text('{"disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}')
    config = d / "gcs.yaml"
    config.write_text(with_backup_storage(stack.target, (
        f"    provider: gcpnative\n    address: 127.0.0.1\n    port: {fake_gcs.port}\n    useSSL: false\n"
        f"    bucketName: {bucket}\n    rootPath: {ROOT}\n"
        f"    auth:\n      type: serviceAccount\n      credentialsFile: {credentials}\n")))
    return {"config": config, "bucket": bucket, "credentials": credentials, "objects": on_moto["objects"]}


@pytest.mark.milvus
def test_list_get_and_deep_verify_read_the_backup_from_gcs(on_gcs):
    listed = ok(mbackup(on_gcs["config"], "list")).stdout.splitlines()
    assert listed[0] == ">> Backups:" and [line.split()[0] for line in listed[2:]] == [NAME] and listed[1].split()[0] == "NAME"
    assert "v2.3.5" in listed[2] and listed[2].endswith("default.e2e_int") and "complete" in listed[2]

    got = json.loads(ok(mbackup(on_gcs["config"], "get", "-n", NAME, "--json")).stdout)
    assert got["name"] == NAME
    assert [(c["db_name"], c["collection_name"]) for c in got["collection_backups"]] == [INT]

    binlogs = sum("/binlogs/" in k for k in on_gcs["objects"])
    last = ok(mbackup(on_gcs["config"], "verify", "-n", NAME, "--deep")).stdout.splitlines()[-1]
    assert re.fullmatch(rf"verified \d+ objects \(.+\), {binlogs} checksums: 0 problems", last), last


@pytest.mark.milvus
def test_restore_from_gcs_stages_into_milvus_bucket_and_every_row_matches(on_gcs, truth, stack):
    out = ok(mbackup(on_gcs["config"], "restore", "-n", NAME, "--suffix", "_gcs")).stdout
    assert f"restored default.e2e_int as default.e2e_int_gcs: {len(truth.rows) + len(truth.deleted):,} rows" in out
    assert_same_rows(read_back(stack.target.uri, "default", "e2e_int_gcs", truth, release=True), truth)
    assert staged_leftovers(stack.target) == []


def gcs_env(on_gcs) -> dict[str, str]:
    """The credentials as a user gives them to a ``gs://`` URL: GOOGLE_APPLICATION_CREDENTIALS."""
    return dict(os.environ, GOOGLE_APPLICATION_CREDENTIALS=str(on_gcs["credentials"]))


@pytest.mark.milvus
def test_copy_from_gcs_to_a_folder_and_to_moto_keeps_every_byte(on_gcs, fake_gcs, moto, tmp_path):
    env = gcs_env(on_gcs)
    source = f"gs://{on_gcs['bucket']}/{ROOT}/{NAME}?endpoint={fake_gcs.endpoint}"
    expected = {k[len(f"{ROOT}/{NAME}/"):]: v for k, v in on_gcs["objects"].items()}

    folder = tmp_path / "from-gcs"
    out = ok(mbackup(None, "copy", source, str(folder), "--verify", "--quiet", env=env)).stdout
    assert out.startswith(f"copied {len(expected)} objects")
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == expected

    bucket = f"from-gcs-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(bucket)
    env.update(AWS_ACCESS_KEY_ID=MOTO_KEYS[0], AWS_SECRET_ACCESS_KEY=MOTO_KEYS[1])
    out = ok(mbackup(None, "copy", source, f"s3://{bucket}/copy?endpoint={moto.endpoint}", "--verify", "--quiet",
                     env=env)).stdout
    assert out.startswith(f"copied {len(expected)} objects")
    assert moto.objects(bucket, "copy/") == expected


@pytest.mark.milvus
def test_deep_verify_on_gcs_names_an_object_whose_bytes_changed(on_gcs, fake_gcs):
    """Deep verify re-reads bytes from GCS: a binlog replaced by one of the same size fails it."""
    key = next(k for k in on_gcs["objects"] if "/binlogs/insert_log/" in k)
    data = on_gcs["objects"][key]
    fake_gcs.upload(on_gcs["bucket"], key, bytes([data[0] ^ 0xFF]) + data[1:])
    try:
        quick = mbackup(on_gcs["config"], "verify", "-n", NAME)
        assert quick.returncode == 0, quick.stdout + quick.stderr  # same size: a LIST cannot tell
        deep = mbackup(on_gcs["config"], "verify", "-n", NAME, "--deep")
        assert deep.returncode == 4  # an integrity problem (damaged backup)
        rel = key[len(f"{ROOT}/{NAME}/"):]
        assert deep.stdout.splitlines()[0].startswith(f"corrupted: {rel}: crc32c expected ")
    finally:
        fake_gcs.upload(on_gcs["bucket"], key, data)


# --------------------------------------------------------------------------------------
# moto as a copy source and destination (no Milvus needed)


def test_copy_to_moto_server_side_on_moto_and_back_to_a_folder(seaweedfs, moto, tmp_path, bucket):
    """A Milvus-shaped tree from SeaweedFS to moto (two servers, two sets of keys: profiles;
    streamed), then moto to moto (one endpoint: server-side, the large object in ranged
    UploadPartCopy parts above --multipart-copy-threshold), then moto to a folder: every byte
    as written, at every step."""
    tree = {f"files/insert_log/1/2/3/{f}/{n}": os.urandom(1000 + 37 * n) for f in (0, 1, 100) for n in (1, 2)}
    tree["files/insert_log/1/2/3/101/9"] = os.urandom(6 << 20)
    s = seaweedfs.store(bucket)
    for k, v in tree.items():
        s.put(k, v)
    first, second = (f"copy-{uuid.uuid4().hex[:8]}" for _ in range(2))
    moto.create_bucket(first)
    moto.create_bucket(second)
    config = tmp_path / "profiles.yaml"
    # moto2 names its endpoint in the URL's query, the others as an option: both are a user's.
    config.write_text(f"""configVersion: v2
mbackup:
  profiles:
    sea:
      url: s3://{bucket}
      endpoint: {seaweedfs.endpoint}
      access_key_id: {seaweedfs.access_key}
      secret_access_key: {seaweedfs.secret_key}
    moto:
      url: s3://{first}
      endpoint: {moto.endpoint}
      access_key_id: {MOTO_KEYS[0]}
      secret_access_key: {MOTO_KEYS[1]}
    moto2:
      url: s3://{second}?endpoint={moto.endpoint}
      access_key_id: {MOTO_KEYS[0]}
      secret_access_key: {MOTO_KEYS[1]}
""")
    copied = f"copied {len(tree)} objects"
    assert ok(mbackup(config, "copy", "@sea/files", "@moto/files", "--verify", "--quiet")).stdout.startswith(copied)
    assert moto.objects(first) == tree
    assert ok(mbackup(config, "copy", "@moto/files", "@moto2/files", "--verify", "--quiet",
                      "--multipart-copy-threshold", "5MiB", "--copy-part-size", "5MiB")).stdout.startswith(copied)
    assert moto.objects(second) == tree
    back = tmp_path / "back"
    assert ok(mbackup(config, "copy", "@moto2/files", str(back), "--quiet")).stdout.startswith(copied)
    assert {str(p.relative_to(back)): p.read_bytes() for p in back.rglob("*") if p.is_file()} == {
        k[len("files/"):]: v for k, v in tree.items()}
