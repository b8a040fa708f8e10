"""Reading the Go tool's backup.yaml (v1 and v2) plus mbackup's own section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from milvus_backup import _engine
from milvus_backup.config.settings import (
    Config,
    ConfigError,
    StorageConfig,
    find_config_file,
    load_config,
    parse_overrides,
)
from milvus_backup.errors import MBackupError
from milvus_backup.plugins.manager import storage_backends
from milvus_backup.storage.location import StorageError
from milvus_backup.storage.registry import StorageTarget

# A v1 file as users of milvus-backup <= 0.5.16 have them (configs/backup.yaml of that era).
V1_FILE = """\
log:
  level: info
  console: true
  file:
    rootPath: "logs/backup.log"
http:
  simpleResponse: true
milvus:
  address: milvus.prod
  port: 19531
  user: "root"
  password: "Milvus"
  tlsMode: 0
  etcd:
    endpoints: "etcd-0:2379,etcd-1:2379"
    rootPath: "by-dev"
minio:
  storageType: "minio"
  address: minio.prod
  port: 9000
  accessKeyID: ak
  secretAccessKey: sk
  useSSL: false
  useIAM: false
  bucketName: "milvus-bucket"
  rootPath: "file"
  backupBucketName: "backup-bucket"
  backupRootPath: "backup"
  crossStorage: "false"
backup:
  maxSegmentGroupSize: 2G
  parallelism:
    backupCollection: 8
    copydata: 64
    restoreCollection: 3
  keepTempFiles: false
  gcPause:
    enable: true
    address: http://datacoord:9091
"""

# A v2 file (configs/backup.yaml at the Go tool's HEAD).
V2_FILE = """\
configVersion: v2
log:
  level: debug
  file:
    path: /var/log/backup.log
    maxSizeMiB: 100
server:
  debugMode: true
milvus:
  user: root
  password: Milvus
  grpc:
    address: milvus-proxy
    port: 19531
    tlsMode: server
    caCertPath: /certs/ca.pem
  rest:
    endpoint: https://milvus-rest.example.com
  management:
    endpoint: http://milvus-datacoord:9091
  etcd:
    endpoints:
      - etcd-0:2379
      - etcd-1:2379
  storage:
    provider: s3
    address: s3.us-west-2.amazonaws.com
    port: 443
    region: us-west-2
    useSSL: true
    bucketName: milvus-bucket
    rootPath: files
    auth:
      type: static
      accessKeyID: milvus-ak
      secretAccessKey: milvus-sk
      sessionToken: milvus-token
backup:
  storage:
    bucketName: backup-bucket
  concurrency:
    collections: 8
    segments: 512
  pauseGC: false
restore:
  concurrency:
    collections: 3
    importJobs: 64
  keepTempFiles: true
transfer:
  mode: streaming
  concurrency: 64
  multipartCopyThresholdMiB: 128
zillizCloud:
  apiKey: an-api-key
"""


def write(tmp_path: Path, text: str, name: str = "backup.yaml") -> str:
    (tmp_path / name).write_text(textwrap.dedent(text))
    return name


def load(tmp_path: Path, text: str | None = None, *, env: dict[str, str] | None = None, sets: tuple[str, ...] = ()) -> Config:
    path = write(tmp_path, text) if text is not None else None
    return load_config(path, overrides=sets, env=env or {}, cwd=tmp_path)


def problems(tmp_path: Path, text: str | None = None, **kw) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text, **kw)
    assert isinstance(e.value, MBackupError)
    assert str(e.value) == "\n".join(e.value.problems)
    return e.value.problems


def row(cfg: Config, key: str) -> tuple[str, str, str, str]:
    return next(r for r in cfg.rows() if r[0] == key)


# --------------------------------------------------------------------------------------
# Files


def test_v1_file_maps_onto_the_v2_model(tmp_path):
    cfg = load(tmp_path, V1_FILE)
    assert cfg.version == "v1"
    assert cfg.milvus.grpc.address == "milvus.prod" and cfg.milvus.grpc.port == 19531
    assert cfg.milvus.grpc.tls_mode == "disabled"
    assert cfg.milvus.etcd.endpoints == ["etcd-0:2379", "etcd-1:2379"]
    st = cfg.milvus.storage
    assert (st.provider, st.address, st.port, st.bucket_name, st.root_path) == ("minio", "minio.prod", 9000, "milvus-bucket", "file")
    assert (st.auth.type, st.auth.access_key_id, st.auth.secret_access_key) == ("static", "ak", "sk")
    b = cfg.backup.storage
    assert (b.address, b.bucket_name, b.root_path, b.auth.access_key_id) == ("minio.prod", "backup-bucket", "backup", "ak")
    assert cfg.transfer.concurrency == 64 and cfg.transfer.mode == "auto"
    assert cfg.backup.concurrency.collections == 8 and cfg.restore.concurrency.collections == 3
    assert cfg.backup.pause_gc is True and cfg.milvus.management.endpoint == "http://datacoord:9091"
    assert cfg.mbackup.parallel == 64  # defaults to transfer.concurrency
    # Provenance names the v1 key the value came from.
    assert row(cfg, "milvus.grpc.address") == ("milvus.grpc.address", "milvus.prod", "config", "milvus.address")
    assert row(cfg, "transfer.concurrency")[2:] == ("config", "backup.parallelism.copydata")
    assert row(cfg, "backup.storage.address")[2:] == ("config", "minio.address")
    assert any("no configVersion" in w for w in cfg.warnings)
    assert any(w.startswith("backup.maxSegmentGroupSize: unknown v1 key") for w in cfg.warnings)


def test_v2_file(tmp_path):
    cfg = load(tmp_path, V2_FILE)
    assert cfg.version == "v2" and cfg.warnings == []
    assert (cfg.log.level, cfg.log.file.path, cfg.log.file.max_size_mib) == ("debug", "/var/log/backup.log", 100)
    assert cfg.server.debug_mode is True
    assert (cfg.milvus.grpc.address, cfg.milvus.grpc.port, cfg.milvus.grpc.tls_mode) == ("milvus-proxy", 19531, "server")
    assert cfg.milvus.etcd.endpoints == ["etcd-0:2379", "etcd-1:2379"]
    assert cfg.backup.concurrency.segments == 512 and cfg.backup.pause_gc is False
    assert cfg.restore.concurrency.import_jobs == 64 and cfg.restore.keep_temp_files is True
    assert cfg.restore.max_segments_per_import_job == 256
    assert (cfg.transfer.mode, cfg.transfer.concurrency, cfg.transfer.multipart_copy_threshold_mib) == ("streaming", 64, 128)
    assert cfg.zilliz_cloud.api_key == "an-api-key"
    assert cfg.get("Milvus.GRPC.Port") == 19531
    assert row(cfg, "milvus.grpc.port") == ("milvus.grpc.port", "19531", "config", "milvus.grpc.port")


def test_v2_backup_storage_inherits_everything_but_the_root_path(tmp_path):
    cfg = load(tmp_path, V2_FILE)
    b = cfg.backup.storage
    assert (b.provider, b.address, b.port, b.region, b.use_ssl) == ("s3", "s3.us-west-2.amazonaws.com", 443, "us-west-2", True)
    assert (b.auth.type, b.auth.access_key_id, b.auth.secret_access_key, b.auth.session_token) == ("static", "milvus-ak", "milvus-sk", "milvus-token")
    assert b.bucket_name == "backup-bucket"  # set for itself
    assert b.root_path == "backup"  # never inherited
    origin = cfg.origin("backup.storage.address")
    assert (origin.source, origin.source_key, origin.inherited_from) == ("config", "milvus.storage.address", "milvus.storage.address")
    assert not origin.explicit
    assert cfg.origin("backup.storage.bucketName").explicit


def test_no_file_means_defaults_and_v2(tmp_path):
    cfg = load(tmp_path)
    assert cfg.version == "v2" and cfg.path is None
    assert cfg.milvus.grpc.port == 19530 and cfg.backup.storage.root_path == "backup"
    assert all(r[2] == "default" for r in cfg.rows())


def test_explicitly_named_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config("nope.yaml", env={}, cwd=tmp_path)
    assert str(e.value) == (
        "config file 'nope.yaml' not found (looked for nope.yaml, $MILVUSCONF/nope.yaml and configs/nope.yaml); check --config"
    )


def test_config_file_lookup_order(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "backup.yaml").write_text("milvus:\n  port: 1\n")
    assert find_config_file("backup.yaml", env={}, cwd=tmp_path) == "configs/backup.yaml"
    (conf / "backup.yaml").write_text("milvus:\n  port: 2\n")
    assert find_config_file("some/dir/backup.yaml", env={"MILVUSCONF": str(conf)}, cwd=tmp_path) == str(conf / "backup.yaml")
    (tmp_path / "backup.yaml").write_text("milvus:\n  port: 3\n")
    assert find_config_file("backup.yaml", env={"MILVUSCONF": str(conf)}, cwd=tmp_path) == "backup.yaml"
    assert load_config(None, env={"MILVUSCONF": str(conf)}, cwd=tmp_path).milvus.grpc.port == 3
    (tmp_path / "backup.yaml").unlink()
    assert load_config(None, env={"MILVUSCONF": str(conf)}, cwd=tmp_path).milvus.grpc.port == 2
    assert load_config(None, env={}, cwd=tmp_path).milvus.grpc.port == 1


# --------------------------------------------------------------------------------------
# Environment, --set and precedence


def test_v1_env_vars(tmp_path):
    env = {"MINIO_ADDRESS": "env-minio", "MILVUS_PORT": "19999", "MINIO_BACKUP_ROOT_PATH": "env-root", "BACKUP_PARALLELISM_COPYDATA": "7"}
    cfg = load(tmp_path, V1_FILE, env=env)
    assert cfg.milvus.storage.address == "env-minio"
    assert cfg.backup.storage.address == "env-minio"  # inherits the resolved value
    assert cfg.milvus.grpc.port == 19999
    assert cfg.backup.storage.root_path == "env-root"
    assert cfg.transfer.concurrency == 7
    assert row(cfg, "milvus.grpc.port")[2:] == ("env", "MILVUS_PORT")


def test_v2_env_vars_and_the_go_tools_names(tmp_path):
    env = {
        "MILVUS_USER": "env-user",
        "MILVUS_STORAGE_AUTH_SECRET_ACCESS_KEY": "env-sk",
        "MINIO_SECRET_KEY": "loses",  # the v2 name of the same setting wins
        "BACKUP_STORAGE_AUTH_ACCESS_KEY_ID": "backup-ak",
        "MILVUS_PORT": "tcp://10.0.0.1:19530",  # k8s service link: ignored, with a warning
        "MINIO_ADDRESS": "env-minio",  # the Go tool's (v1) name, read in a v2 file too
    }
    cfg = load(tmp_path, V2_FILE, env=env)
    assert cfg.milvus.user == "env-user"
    assert cfg.milvus.storage.auth.secret_access_key == "env-sk"
    assert cfg.backup.storage.auth.secret_access_key == "env-sk"  # inherited
    assert cfg.backup.storage.auth.access_key_id == "backup-ak"
    assert cfg.milvus.grpc.port == 19531 and cfg.milvus.storage.address == "env-minio"
    assert cfg.warnings == ["env MILVUS_PORT ignored: it holds a Kubernetes service link, not a setting "
                            "(set enableServiceLinks: false, or use --set)"]
    assert row(cfg, "milvus.user")[2:] == ("env", "MILVUS_USER")
    assert row(cfg, "milvus.storage.address")[2:] == ("env", "MINIO_ADDRESS")


def test_set_overrides(tmp_path):
    cfg = load(
        tmp_path,
        V2_FILE,
        sets=("milvus.grpc.port=1234", "MILVUS.GRPC.ADDRESS=upper", "MILVUS_USER=Marco,transfer.mode=auto", "milvus.etcd.endpoints=a:1,b:2"),
    )
    assert cfg.milvus.grpc.port == 1234 and cfg.milvus.grpc.address == "upper"
    assert cfg.milvus.user == "Marco" and cfg.transfer.mode == "auto"
    assert cfg.milvus.etcd.endpoints == ["a:1", "b:2"]
    assert row(cfg, "milvus.grpc.address")[2:] == ("override", "MILVUS.GRPC.ADDRESS")
    assert row(cfg, "milvus.user")[2:] == ("override", "MILVUS_USER")


def test_set_overrides_on_a_v1_file(tmp_path):
    cfg = load(tmp_path, V1_FILE, sets=("minio.address=set-minio", "MILVUS_ADDRESS=set-milvus", "milvus.grpc.port=4321", "minio.backupRootPath="))
    assert cfg.milvus.storage.address == "set-minio" and cfg.backup.storage.address == "set-minio"
    assert cfg.milvus.grpc.address == "set-milvus"
    assert cfg.milvus.grpc.port == 4321  # a v2 key works on a v1 file too
    assert cfg.backup.storage.root_path == "file"  # emptied: the quirk applies again


@pytest.mark.parametrize(
    ("in_file", "env", "sets", "expected", "source", "source_key"),
    [
        (False, False, False, "", "default", ""),
        (True, False, False, "file-user", "config", "milvus.user"),
        (True, True, False, "env-user", "env", "MILVUS_USER"),
        (False, True, False, "env-user", "env", "MILVUS_USER"),
        (True, True, True, "set-user", "override", "milvus.user"),
        (False, False, True, "set-user", "override", "milvus.user"),
    ],
)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_precedence_set_then_env_then_file_then_default(tmp_path, version, in_file, env, sets, expected, source, source_key):
    text = ("configVersion: v2\n" if version == "v2" else "configVersion: v1\n") + ("milvus:\n  user: file-user\n" if in_file else "")
    cfg = load(tmp_path, text, env={"MILVUS_USER": "env-user"} if env else {}, sets=("milvus.user=set-user",) if sets else ())
    assert cfg.milvus.user == expected
    assert row(cfg, "milvus.user") == ("milvus.user", expected, source, source_key)


# --------------------------------------------------------------------------------------
# v1 inheritance of the backup storage


def test_v1_backup_keys_inherit_and_explicit_values_win(tmp_path):
    cfg = load(
        tmp_path,
        """\
        minio:
          address: main
          port: 9000
          accessKeyID: ak
          secretAccessKey: sk
          useSSL: true
          useIAM: true
          iamEndpoint: http://iam
          gcpCredentialJSON: /sa.json
          backupAddress: other
          backupUseIAM: false
          backupAccessKeyID: bak
          backupSecretAccessKey: bsk
        """,
    )
    m, b = cfg.milvus.storage, cfg.backup.storage
    assert (m.auth.type, m.auth.endpoint, m.auth.access_key_id) == ("iam", "http://iam", "")
    assert (b.address, b.port, b.use_ssl) == ("other", 9000, True)
    assert (b.auth.type, b.auth.access_key_id, b.auth.secret_access_key) == ("static", "bak", "bsk")  # opted out of IAM
    assert cfg.origin("backup.storage.port").inherited_from == "milvus.storage.port"


def test_v1_backup_gcp_credentials_are_not_inherited(tmp_path):
    cfg = load(
        tmp_path,
        """\
        minio:
          storageType: gcpnative
          gcpCredentialJSON: /milvus-sa.json
        """,
    )
    assert (cfg.milvus.storage.auth.type, cfg.milvus.storage.auth.credentials_file) == ("serviceAccount", "/milvus-sa.json")
    assert (cfg.backup.storage.auth.type, cfg.backup.storage.auth.credentials_file) == ("default", "")


def test_v1_azure_maps_the_key_pair_to_account_name_and_key(tmp_path):
    cfg = load(
        tmp_path,
        """\
        minio:
          cloudProvider: azure
          address: core.windows.net
          port: 443
          useSSL: true
          accessKeyID: myaccount
          secretAccessKey: mykey
          backupUseIAM: true
        """,
    )
    m, b = cfg.milvus.storage, cfg.backup.storage
    assert (m.provider, m.account_name, m.auth.type, m.auth.account_key, m.auth.access_key_id) == ("azure", "myaccount", "sharedKey", "mykey", "")
    assert (b.account_name, b.auth.type, b.auth.account_key) == ("myaccount", "default", "")


@pytest.mark.parametrize(
    ("minio_lines", "expected"),
    [
        ("", "files"),  # neither set: backups land under the Milvus default root "files"
        ("rootPath: file", "file"),
        ('rootPath: ""', "backup"),  # only an empty Milvus root falls back to "backup"
        ("rootPath: file\n  backupRootPath: bk", "bk"),
        ('rootPath: file\n  backupRootPath: ""', "file"),  # empty means unset in v1
    ],
)
def test_v1_backup_root_path_quirk(tmp_path, minio_lines, expected):
    cfg = load(tmp_path, f"minio:\n  {minio_lines}\n" if minio_lines else "milvus:\n  port: 19530\n")
    assert cfg.backup.storage.root_path == expected


def test_v2_backup_root_path_never_follows_the_milvus_root(tmp_path):
    cfg = load(tmp_path, "configVersion: v2\nmilvus:\n  storage:\n    rootPath: file\n")
    assert cfg.backup.storage.root_path == "backup"


def test_v1_tls_and_cross_storage(tmp_path):
    cfg = load(tmp_path, "milvus:\n  tlsMode: 2\n  caCertPath: /ca\n  mtlsCertPath: /c\n  mtlsKeyPath: /k\nminio:\n  crossStorage: true\n")
    assert cfg.milvus.grpc.tls_mode == "mutual" and cfg.transfer.mode == "streaming"
    cfg = load(tmp_path, "milvus:\n  tlsMode: 2\n")
    assert cfg.milvus.grpc.tls_mode == "server"
    assert any("one-way TLS" in w for w in cfg.warnings)


def test_v1_provider_aliases(tmp_path):
    assert load(tmp_path, "minio:\n  storageType: ali\n").milvus.storage.provider == "aliyun"
    assert load(tmp_path, "storage:\n  storageType: tc\n").backup.storage.provider == "tencent"


# --------------------------------------------------------------------------------------
# Masking

SECRET = "S3cr3t-Do-Not-Print"


def test_secrets_are_masked_everywhere(tmp_path):
    text = f"""\
    configVersion: v2
    milvus:
      password: {SECRET}p
      storage:
        auth:
          secretAccessKey: {SECRET}a
          sessionToken: {SECRET}b
    backup:
      storage:
        provider: azure
        accountName: acct
        sourceSASToken: {SECRET}s
        auth:
          type: sharedKey
          accountKey: {SECRET}c
    zillizCloud:
      apiKey: {SECRET}d
    mbackup:
      profiles:
        prod:
          url: s3://bucket/prefix
          accessKeyID: AKIA
          secretAccessKey: {SECRET}e
          session_token: {SECRET}f
    """
    cfg = load(tmp_path, text)
    rows = list(cfg.rows())
    assert not any(SECRET in cell for r in rows for cell in r)
    shown = {r[0]: r[1] for r in rows}
    for key in (
        "milvus.password",
        "milvus.storage.auth.secretAccessKey",
        "milvus.storage.auth.sessionToken",
        "backup.storage.auth.accountKey",
        "backup.storage.sourceSASToken",
        "zillizCloud.apiKey",
        "mbackup.profiles.prod.secretAccessKey",
        "mbackup.profiles.prod.session_token",
    ):
        assert shown[key] == "****", key
    assert shown["backup.storage.auth.sessionToken"] == "****"  # inherited, still masked
    assert shown["mbackup.profiles.prod.accessKeyID"] == "AKIA"
    assert shown["milvus.user"] == ""  # empty stays empty
    assert cfg.milvus.password == f"{SECRET}p"  # the model itself holds the value


# --------------------------------------------------------------------------------------
# mbackup section


def test_mbackup_defaults(tmp_path):
    m = load(tmp_path).mbackup
    assert (m.parallel, m.checksum, m.max_bandwidth, m.max_requests_per_second) == (128, "crc32c", None, None)
    assert (m.part_size_mib, m.multipart_threshold_mib, m.memory_budget_mib, m.profiles) == (8, 16, 128, {})


def test_mbackup_section(tmp_path):
    cfg = load(
        tmp_path,
        """\
        configVersion: v2
        mbackup:
          parallel: 32
          checksum: CRC64NVME
          maxBandwidth: 200MiB/s
          maxRequestsPerSecond: 500
          partSizeMiB: 16
          multipartThresholdMiB: 64
          memoryBudgetMiB: 256
          profiles:
            Prod:
              url: s3://bucket/prefix
              endpoint: https://s3.example.com
              region: eu-west-1
        """,
        sets=("mbackup.profiles.Prod.region=us-east-2", "mbackup.profiles.dev.url=file:///tmp/b"),
    )
    m = cfg.mbackup
    assert (m.parallel, m.checksum, m.max_bandwidth, m.max_requests_per_second) == (32, "crc64nvme", 200 * 2**20, 500.0)
    assert (m.part_size_mib, m.multipart_threshold_mib, m.memory_budget_mib) == (16, 64, 256)
    assert m.profiles == {
        "Prod": {"url": "s3://bucket/prefix", "endpoint": "https://s3.example.com", "region": "us-east-2"},
        "dev": {"url": "file:///tmp/b"},
    }
    assert row(cfg, "mbackup.maxBandwidth") == ("mbackup.maxBandwidth", "200MiB/s", "config", "mbackup.maxBandwidth")
    assert row(cfg, "mbackup.profiles.Prod.region")[2:] == ("override", "mbackup.profiles.Prod.region")
    assert row(cfg, "mbackup.profiles.Prod.url")[2:] == ("config", "mbackup.profiles.Prod.url")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("200MiB/s", 200 * 2**20),
        ("1GB/s", 10**9),
        ("1.5GiB/s", 3 * 2**29),
        ("50M", 50 * 10**6),  # same meaning as the CLI's --max-bandwidth
        ("100kB/s", 100_000),
        (" 64 KiB/s ", 64 * 2**10),
        ("1048576", 2**20),
        ("unlimited", None),
        ("0", None),
        ("off", None),
    ],
)
def test_max_bandwidth_units(tmp_path, raw, expected):
    assert load(tmp_path, sets=(f"mbackup.maxBandwidth={raw}",)).mbackup.max_bandwidth == expected


# --------------------------------------------------------------------------------------
# Validation: one line per problem, naming the key and the fix


@pytest.mark.parametrize(
    ("text", "env", "sets", "expected"),
    [
        pytest.param(
            "configVersion: v2\nmilvus:\n  grpc:\n    port: abc\n", {}, (),
            "milvus.grpc.port: expected a port number 1-65535, got 'abc' (file backup.yaml)",
            id="bad-port",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  grpc:\n    port: 70000\n", {}, (),
            "milvus.grpc.port: expected a port number 1-65535, got 70000 (file backup.yaml)",
            id="port-out-of-range",
        ),
        pytest.param(
            "milvus:\n  port: 0\n", {}, (),
            "milvus.port: expected a port number 1-65535, got 0 (file backup.yaml)",
            id="v1-port-names-the-v1-key",
        ),
        pytest.param(
            "milvus:\n  port: 19530\n", {"MILVUS_PORT": "tcp://10.0.0.1:19530"}, (),
            "milvus.port: expected an integer, got 'tcp://10.0.0.1:19530'; this looks like a Kubernetes service link: "
            "set enableServiceLinks: false or use --set (env MILVUS_PORT)",
            id="k8s-service-link",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    port: 0\n", {}, (),
            "milvus.storage.port: expected a port number 1-65535, got 0 (file backup.yaml)",
            id="storage-port",
        ),
        pytest.param(
            "configVersion: v3\n", {}, (),
            "configVersion: unknown version 'v3', expected v1 or v2 (file backup.yaml)",
            id="unknown-config-version",
        ),
        pytest.param(
            "configVersion: v2\nbackup:\n  concurrency:\n    collections: 0\n", {}, (),
            "backup.concurrency.collections: expected an integer 1-100000, got 0 (file backup.yaml)",
            id="non-positive-concurrency",
        ),
        pytest.param(
            None, {}, ("transfer.concurrency=-3",),
            "transfer.concurrency: expected an integer 1-4096, got '-3' (--set transfer.concurrency)",
            id="non-positive-concurrency-set",
        ),
        pytest.param(
            "backup:\n  parallelism:\n    copydata: 0\n", {}, (),
            "backup.parallelism.copydata: expected an integer 1-4096, got 0 (file backup.yaml)",
            id="v1-non-positive-concurrency",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    provider: minoi\n", {}, (),
            "milvus.storage.provider: unknown provider 'minoi'; use one of local, minio, s3, aws, gcp, gcpnative, azure, "
            "aliyun, tencent, hwc (did you mean minio?) (file backup.yaml)",
            id="unknown-provider",
        ),
        pytest.param(
            "configVersion: v2\nbackup:\n  storage:\n    provider: tc\n", {}, (),
            "backup.storage.provider: 'tc' is the v1 spelling; write tencent (file backup.yaml)",
            id="v1-provider-alias-in-v2",
        ),
        pytest.param(
            "minio:\n  storageType: floppy\n", {}, (),
            "minio.storageType: unknown provider 'floppy'; use one of local, minio, s3, aws, gcp, gcpnative, azure, "
            "aliyun, tencent, hwc (file backup.yaml)",
            id="v1-unknown-provider",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  grpc:\n    tlsMode: 1\n", {}, (),
            "milvus.grpc.tlsMode: '1' is the v1 spelling; in a v2 config write server (file backup.yaml)",
            id="tls-v1-number-in-v2",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  grpc:\n    tlsMode: on\n", {}, (),
            "milvus.grpc.tlsMode: expected one of disabled, server, mutual, got 'true' (file backup.yaml)",
            id="tls-yaml-bool",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  grpc:\n    tlsMode: mutual\n", {}, (),
            "milvus.grpc.tlsMode: mutual TLS needs milvus.grpc.mtlsCertPath and milvus.grpc.mtlsKeyPath; "
            "set both or use tlsMode: server (file backup.yaml)",
            id="tls-mutual-without-certs",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  grpc:\n    tlsMode: mutual\n    mtlsCertPath: /c\n    mtlsKeyPath: /k\n", {}, (),
            "milvus.grpc.tlsMode: mutual TLS needs milvus.grpc.caCertPath too: the CA certificate that signed "
            "Milvus's (file backup.yaml)",
            id="tls-mutual-without-ca",
        ),
        pytest.param(
            "milvus:\n  tlsMode: 5\n", {}, (),
            "milvus.tlsMode: expected 0 (off), 1 (one-way) or 2 (mutual), got 5 (file backup.yaml)",
            id="v1-tls-mode",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    auth:\n      type: iam\n      accessKeyID: AKIA\n", {}, (),
            "milvus.storage.auth.accessKeyID: does not apply when milvus.storage.auth.type is 'iam'; "
            "remove it or change auth.type (file backup.yaml)",
            id="credential-for-wrong-auth-type",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    auth:\n      type: default\n", {"MILVUS_STORAGE_AUTH_SESSION_TOKEN": "t"}, (),
            "milvus.storage.auth.sessionToken: does not apply when milvus.storage.auth.type is 'default'; "
            "remove it or change auth.type (env MILVUS_STORAGE_AUTH_SESSION_TOKEN)",
            id="credential-from-env-for-wrong-auth-type",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    auth:\n      accountKey: k\n", {}, (),
            "milvus.storage.auth.accountKey: does not apply when milvus.storage.auth.type is 'static'; "
            "remove it or change auth.type (file backup.yaml)",
            id="account-key-with-static",
        ),
        pytest.param(
            "configVersion: v2\nbackup:\n  storage:\n    provider: azure\n    accountName: acct\n", {}, (),
            "backup.storage.auth.type: 'static' is not valid for provider azure, use one of sharedKey, default; "
            "set backup.storage.auth.type (inherited from milvus.storage.auth.type, default)",
            id="inherited-auth-type-invalid-for-azure",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    provider: azure\n    auth:\n      type: sharedKey\n      accountKey: k\n", {}, (),
            "milvus.storage.accountName: is required for the azure provider; set the storage account name (default)",
            id="azure-needs-account",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    accountName: acct\n", {}, (),
            "milvus.storage.accountName: only applies to the azure provider, but milvus.storage.provider is 'minio'; "
            "remove it (file backup.yaml)",
            id="account-name-for-minio",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    auth:\n      secretAccessKey: ''\n", {}, (),
            "milvus.storage.auth.secretAccessKey: is required when milvus.storage.auth.type is 'static'; "
            "set it (or MILVUS_STORAGE_AUTH_SECRET_ACCESS_KEY) or choose another auth.type (file backup.yaml)",
            id="static-needs-secret",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    address: http://minio:9000\n", {}, (),
            "milvus.storage.address: expected a host name without scheme, got 'http://minio:9000'; "
            "use useSSL to choose https (file backup.yaml)",
            id="address-with-scheme",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  management:\n    endpoint: datacoord:9091\n", {}, (),
            "milvus.management.endpoint: expected an absolute http(s) URL such as http://localhost:9091, "
            "got 'datacoord:9091' (file backup.yaml)",
            id="endpoint-url",
        ),
        pytest.param(
            "configVersion: v2\nminio:\n  address: x\n", {}, (),
            "minio.address: a v1 key in a configVersion: v2 config; write milvus.storage.address instead (file backup.yaml)",
            id="v1-key-in-v2-file",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  grpc:\n    adress: x\n", {}, (),
            "milvus.grpc.adress: unknown key; did you mean milvus.grpc.address? (file backup.yaml)",
            id="unknown-file-key",
        ),
        pytest.param(
            "milvus:\n  grpc:\n    port: 1\n", {}, (),
            "milvus.grpc.port: a v2 key in a file read as v1; add configVersion: v2 at the top "
            "(and move every key to v2) or use the v1 spelling (file backup.yaml)",
            id="v2-key-in-v1-file",
        ),
        pytest.param(
            None, {}, ("milvus.grpc.prot=1",),
            "milvus.grpc.prot: unknown key; did you mean milvus.grpc.port? (--set milvus.grpc.prot)",
            id="unknown-set-key",
        ),
        pytest.param(
            None, {}, ("zzz=1",),
            "zzz: unknown key; run mbackup config show to list the keys (--set zzz)",
            id="unknown-set-key-no-suggestion",
        ),
        pytest.param(
            "configVersion: v2\n", {}, ("minio.bucketName=b",),
            "minio.bucketName: a v1 key in a configVersion: v2 config; write milvus.storage.bucketName (or MINIO_BUCKET_NAME, "
            "the Go tool's variable) instead (--set minio.bucketName)",
            id="v1-set-key-on-v2",
        ),
        pytest.param(
            None, {}, ("milvus.port=19531",),
            "milvus.port: a v1 key with no config file (read as v2); write milvus.grpc.port (or MILVUS_PORT, the Go "
            "tool's variable) instead (--set milvus.port)",
            id="v1-set-key-without-a-file",
        ),
        pytest.param(
            "configVersion: v2\n", {}, ("MINIO_ADRESS=x",),
            "MINIO_ADRESS: unknown key; did you mean MINIO_ADDRESS? (--set MINIO_ADRESS)",
            id="v1-env-name-misspelt-set-on-v2",
        ),
        pytest.param(
            "mbackup:\n  checksum: md5\n", {}, (),
            "mbackup.checksum: expected one of crc32c, crc64nvme, none, got 'md5' (file backup.yaml)",
            id="checksum",
        ),
        pytest.param(
            "mbackup:\n  maxBandwidth: fast\n", {}, (),
            "mbackup.maxBandwidth: expected a rate such as 200MiB/s or 1GB/s (or unlimited), got 'fast' (file backup.yaml)",
            id="bandwidth",
        ),
        pytest.param(
            "mbackup:\n  partSizeMiB: 1\n", {}, (),
            "mbackup.partSizeMiB: expected an integer 5-5120 MiB (S3 part size limits), got 1 (file backup.yaml)",
            id="part-size",
        ),
        pytest.param(
            "mbackup:\n  memoryBudgetMiB: 6\n", {}, (),
            "mbackup.memoryBudgetMiB: 6 is smaller than mbackup.partSizeMiB (8); raise it or lower partSizeMiB (file backup.yaml)",
            id="memory-budget",
        ),
        pytest.param(
            "mbackup:\n  paralel: 4\n", {}, (),
            "mbackup.paralel: unknown key; did you mean mbackup.parallel? (file backup.yaml)",
            id="mbackup-typo",
        ),
        pytest.param(
            "mbackup:\n  profiles:\n    prod:\n      endpoint: x\n", {}, (),
            "mbackup.profiles.prod: url is required, e.g. url: s3://bucket/prefix (file backup.yaml)",
            id="profile-without-url",
        ),
        pytest.param(
            "configVersion: v2\nmilvus:\n  storage:\n    rootPath: a\n    rootpath: b\n", {}, (),
            "milvus.storage.rootpath: set twice (also as milvus.storage.rootPath); keep one (file backup.yaml)",
            id="duplicate-key",
        ),
    ],
)
def test_validation_messages(tmp_path, text, env, sets, expected):
    assert problems(tmp_path, text, env=env, sets=sets) == [expected]


def test_unparsable_yaml_names_the_line(tmp_path):
    [line] = problems(tmp_path, "configVersion: v2\nmilvus:\n  grpc: [unclosed\n  port: 1\n")
    assert line.startswith("backup.yaml: not valid YAML at line ")
    assert "; fix the file or point --config at another one" in line
    [line] = problems(tmp_path, "milvus:\n  port: 1\n address: x\n")
    assert line.startswith("backup.yaml: not valid YAML at line 3, column 2:")


def test_top_level_must_be_a_mapping(tmp_path):
    assert problems(tmp_path, "- a\n- b\n") == ["backup.yaml: expected a mapping of settings at the top level, got a list"]


def test_every_problem_is_reported_at_once(tmp_path):
    found = problems(
        tmp_path,
        "configVersion: v2\nmilvus:\n  grpc:\n    port: abc\ntransfer:\n  concurrency: 0\n",
        sets=("nope=1",),
    )
    assert len(found) == 3
    assert found[0].startswith("milvus.grpc.port:") and found[1].startswith("transfer.concurrency:")
    assert found[2].startswith("nope: unknown key")


@pytest.mark.parametrize(("bad", "shown"), [("milvusport", "milvusport"), ("=5", "=..."), ("a b=1", "a b=..."), ("", "")])
def test_set_without_key_value(bad, shown):
    with pytest.raises(ConfigError) as e:
        parse_overrides([bad])
    # The value is never repeated: it may be a secret given to a mistyped key.
    assert str(e.value) == f"--set {shown!r}: expected KEY=VALUE, e.g. --set milvus.grpc.port=19530"


def test_parse_overrides():
    assert parse_overrides(["a=1,b=2", "c=x=y", "milvus.etcd.endpoints=h1:2379,h2:2379", "d="]) == [
        ("a", "1"),
        ("b", "2"),
        ("c", "x=y"),
        ("milvus.etcd.endpoints", "h1:2379,h2:2379"),
        ("d", ""),
    ]


# --------------------------------------------------------------------------------------
# Storage URLs


def target(tmp_path: Path, storage_yaml: str) -> StorageTarget:
    text = "configVersion: v2\nmilvus:\n  storage:\n" + textwrap.indent(textwrap.dedent(storage_yaml), "    ")
    return storage_backends().target(load(tmp_path, text).milvus.storage)


def test_storage_url_minio_is_path_style_over_http(tmp_path):
    t = target(tmp_path, "provider: minio\naddress: minio\nport: 9000\nbucketName: milvus-bucket\nrootPath: /file/\n")
    assert t == StorageTarget(
        "s3://milvus-bucket/file",
        {
            "aws_region": "us-east-1",
            "aws_endpoint": "http://minio:9000",
            "aws_virtual_hosted_style_request": "false",
            "aws_allow_http": "true",
            "aws_access_key_id": "minioadmin",
            "aws_secret_access_key": "minioadmin",
        },
        "milvus-bucket",
        "file",
        "minio",
    )


def test_storage_url_aws_uses_the_region_and_virtual_hosts(tmp_path):
    t = storage_backends().target(load(tmp_path, V2_FILE).backup.storage)
    assert t.url == "s3://backup-bucket/backup"
    assert t.options == {
        "aws_region": "us-west-2",
        "aws_virtual_hosted_style_request": "true",
        "aws_access_key_id": "milvus-ak",
        "aws_secret_access_key": "milvus-sk",
        "aws_session_token": "milvus-token",
    }


def test_storage_url_virtual_host_providers_put_the_bucket_in_the_endpoint(tmp_path):
    t = target(tmp_path, "provider: aliyun\naddress: oss-cn-hangzhou.aliyuncs.com\nport: 443\nuseSSL: true\nbucketName: b\nrootPath: ''\n")
    assert t.url == "s3://b"
    assert t.options["aws_endpoint"] == "https://b.oss-cn-hangzhou.aliyuncs.com"
    assert t.options["aws_virtual_hosted_style_request"] == "true"
    assert "aws_allow_http" not in t.options


def test_storage_url_s3_provider_on_a_local_server_is_path_style(tmp_path):
    t = target(tmp_path, "provider: s3\naddress: 127.0.0.1\nport: 8333\n")
    assert t.options["aws_endpoint"] == "http://127.0.0.1:8333"
    assert t.options["aws_virtual_hosted_style_request"] == "false"


def _sample_objects(name: str) -> dict[str, bytes]:
    """Every object of a small backup, as mbackup writes one (built in memory)."""
    from sample_backup import Sample

    staging = _engine.Store(f"memory://sample-{uuid.uuid4().hex}")
    Sample(staging, name)
    return {k: staging.get(k) for k, _, _ in staging.list("")}


def _cli(cfg: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = dict(os.environ, **(env or {}))
    base.pop("MBACKUP_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args, "--config", str(cfg)], env=base,
                          capture_output=True, text=True, timeout=120)


def test_storage_url_virtual_hosted_opens_a_real_store(tmp_path, moto):
    """A virtual-hosted provider, live on moto: the bucket travels in the host name. No DNS
    resolves it here, so requests go through an HTTP proxy to moto, Host header intact."""
    from faultproxy import FaultProxy
    from sample_backup import ROOT

    bucket = f"vhost-{uuid.uuid4().hex[:8]}"
    moto.request("PUT", f"/{bucket}")
    objects = _sample_objects("sample")
    path_style = _engine.Store(f"s3://{bucket}", {"aws_endpoint": moto.endpoint, "aws_allow_http": "true",
                                                  "aws_access_key_id": "k", "aws_secret_access_key": "s"})
    for k, v in objects.items():
        path_style.put(k, v)
    storage = (f"provider: aliyun\naddress: s3.mbackup.test\nport: {moto.port}\nbucketName: {bucket}\n"
               "auth:\n  accessKeyID: k\n  secretAccessKey: s\n")
    t = target(tmp_path, storage)
    assert t.options["aws_endpoint"] == f"http://{bucket}.s3.mbackup.test:{moto.port}"
    assert t.options["aws_virtual_hosted_style_request"] == "true"
    cfg = tmp_path / "vhost.yaml"
    cfg.write_text("configVersion: v2\nmilvus:\n  storage:\n" + textwrap.indent(storage, "    ")
                   + f"backup:\n  storage:\n    rootPath: {ROOT}\n")
    with FaultProxy(moto.endpoint, max_lifetime=120) as proxy:
        env = {"HTTP_PROXY": proxy.endpoint, "http_proxy": proxy.endpoint, "NO_PROXY": "127.0.0.1,localhost"}
        r = _cli(cfg, "verify", "-n", "sample", "--deep", env=env)
        assert r.returncode == 0 and r.stdout.splitlines()[-1].endswith(": 0 problems"), r.stdout + r.stderr
        r = _cli(cfg, "delete", "-n", "sample", env=env)
        assert r.returncode == 0, r.stderr
        assert proxy.stats["requests"] > len(objects)  # every read and delete went by the virtual host
    assert moto.keys(bucket) == []


def test_storage_url_gcp_native_opens_a_real_store(tmp_path, fake_gcs):
    """gcpnative, live on fake-gcs-server (reads only: it has no XML-API writes)."""
    from sample_backup import ROOT

    bucket = f"gcs-{uuid.uuid4().hex[:8]}"
    fake_gcs.create_bucket(bucket)
    objects = _sample_objects("sample")
    for k, v in objects.items():
        fake_gcs.upload(bucket, k, v)
    account = fake_gcs.service_account(tmp_path)
    storage = f"provider: gcpnative\nbucketName: {bucket}\nauth:\n  type: serviceAccount\n  credentialsFile: {account}\n"
    assert target(tmp_path, storage).options == {"google_service_account": str(account)}
    cfg = tmp_path / "gcs.yaml"
    cfg.write_text("configVersion: v2\nmilvus:\n  storage:\n" + textwrap.indent(storage, "    ")
                   + f"backup:\n  storage:\n    rootPath: {ROOT}\n")
    r = _cli(cfg, "verify", "-n", "sample", "--deep")
    assert r.returncode == 0 and r.stdout.splitlines()[-1].endswith(": 0 problems"), r.stdout + r.stderr
    r = _cli(cfg, "get", "-n", "sample", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "sample", r.stderr


# Option dicts only: no Azure emulator installs here, and IAM needs a cloud's metadata service.


def test_storage_url_iam(tmp_path):
    t = target(tmp_path, "provider: aws\naddress: s3.amazonaws.com\nport: 443\nuseSSL: true\nauth:\n  type: iam\n  endpoint: http://169.254.169.254\n")
    assert t.options == {"aws_region": "us-east-1", "aws_virtual_hosted_style_request": "true", "aws_metadata_endpoint": "http://169.254.169.254"}


def test_storage_url_local(tmp_path):
    data = tmp_path / "milvus-data"
    t = target(tmp_path, f"provider: local\nrootPath: {data}\nlocalPath: /var/lib/milvus/data\n")
    assert t == StorageTarget(data.as_uri(), {}, "", str(data), "local")


def test_storage_url_gcp_native(tmp_path):
    t = target(tmp_path, "provider: gcpnative\nbucketName: g\nauth:\n  type: serviceAccount\n  credentialsFile: /sa.json\n")
    assert (t.url, t.options) == ("gs://g/files", {"google_service_account": "/sa.json"})


@pytest.mark.parametrize(("endpoint", "base_url"), [
    ("", None),  # address and port left at their defaults: Google's endpoint, or the key file's
    ("address: storage.googleapis.com\nport: 443\nuseSSL: true\n", "https://storage.googleapis.com"),
    ("address: 127.0.0.1\nport: 4443\n", "http://127.0.0.1:4443"),
    ("address: gcs.internal\nport: 8443\nuseSSL: true\n", "https://gcs.internal:8443"),
    ("address: localhost\nport: 4443\n", "http://localhost:4443"),
])
def test_storage_url_gcp_native_endpoint_is_address_and_port_as_in_the_go_tool(tmp_path, endpoint, base_url):
    t = target(tmp_path, f"provider: gcpnative\n{endpoint}bucketName: g\nauth:\n  type: default\n")
    assert t.options.get("google_base_url") == base_url


def test_storage_url_azure(tmp_path):
    t = target(
        tmp_path,
        "provider: azure\naddress: core.windows.net\nport: 443\nuseSSL: true\naccountName: acct\nbucketName: c\n"
        "auth:\n  type: sharedKey\n  accountKey: key\n",
    )
    assert (t.url, t.options) == ("az://c/files", {"azure_storage_account_name": "acct", "azure_storage_account_key": "key"})
    t = target(tmp_path, "provider: azure\naddress: 127.0.0.1\nport: 10000\naccountName: devstoreaccount1\nbucketName: c\nauth:\n  type: default\n")
    assert t.options == {
        "azure_storage_account_name": "devstoreaccount1",
        "azure_endpoint": "http://127.0.0.1:10000/devstoreaccount1",
        "azure_allow_http": "true",
    }


def test_storage_url_of_a_provider_no_plugin_serves_is_refused():
    with pytest.raises(StorageError, match=r"^no storage backend serves provider 'ftp' \(providers: aliyun, aws, "):
        storage_backends().target(StorageConfig(provider="ftp"))


# --------------------------------------------------------------------------------------
# config migrate: a v1 file as a complete v2 file


def _migrate(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS", "MINIO", "BACKUP"))} | (env or {})
    return subprocess.run([sys.executable, "-m", "milvus_backup", "config", "migrate", "--config", "v1.yaml", *args],
                          cwd=tmp_path, env=e, capture_output=True, text=True, timeout=60)


def test_config_migrate_writes_a_v2_file_that_resolves_to_every_value_of_the_v1_file(tmp_path):
    (tmp_path / "v1.yaml").write_text(V1_FILE)
    r = _migrate(tmp_path, "-o", "v2.yaml")
    assert (r.returncode, r.stdout, r.stderr.splitlines()[-1]) == (0, "", "wrote v2 config to v2.yaml")
    assert (tmp_path / "v2.yaml").stat().st_mode & 0o777 == 0o600  # it holds the secrets
    v1, v2 = load(tmp_path, V1_FILE, env={}), load_config(tmp_path / "v2.yaml", env={})
    assert v2.version == "v2" and v2.warnings == []
    assert [(k, v) for k, v, _, _ in v2.rows()] == [(k, v) for k, v, _, _ in v1.rows()]
    assert v2.get("milvus.storage.auth.secretAccessKey") == "sk" and v2.get("milvus.password") == "Milvus"

    again = _migrate(tmp_path, "-o", "v2.yaml")
    assert (again.returncode, again.stderr.splitlines()[-1]) == (
        2, "error: output file v2.yaml already exists, use --force to overwrite")
    assert _migrate(tmp_path, "-o", "v2.yaml", "--force").returncode == 0


def test_config_migrate_prints_no_secret_and_leaves_env_secrets_in_the_environment(tmp_path):
    (tmp_path / "v1.yaml").write_text(V1_FILE.replace("  password: \"Milvus\"\n", ""))
    r = _migrate(tmp_path, env={"MILVUS_PASSWORD": "from-env-pw"})
    assert r.returncode == 0, r.stderr
    assert "sk" not in r.stdout.split() and "from-env-pw" not in r.stdout + r.stderr
    assert "config migrate: milvus.password: from $MILVUS_PASSWORD, left out of the file: set $MILVUS_PASSWORD" \
        in r.stderr.splitlines()
    assert any(line.startswith("config migrate: milvus.storage.auth.secretAccessKey: a secret, not printed: write the "
                               "file with -o FILE") for line in r.stderr.splitlines()), r.stderr
    out = tmp_path / "printed.yaml"
    out.write_text(r.stdout)
    assert load_config(out, env={}).get("milvus.storage.address") == "minio.prod"
    (tmp_path / "v2.yaml").write_text(V2_FILE)
    bad = _migrate(tmp_path, "--config", "v2.yaml")
    assert (bad.returncode, bad.stderr) == (2, "error: v2.yaml is already a v2 config: nothing to migrate\n")
