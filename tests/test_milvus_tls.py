"""Milvus over TLS, with a login (issue #4 §6): two embedded Milvus 2.3.5 servers whose proxies
serve gRPC over TLS only, one one-way (``tlsMode: server``), one asking clients for a
certificate (``mutual``), both with authorization on. Certificates come from a private CA made
with openssl (pki.py).

A backup made over one-way TLS restores over mutual TLS with every row equal; each way of
getting TLS wrong says what to fix in one line, exits 2, never shows the password and
leaves the backup storage as it was.
"""

from __future__ import annotations

import subprocess

import pytest
from pymilvus import DataType, MilvusClient

from conftest import MILVUS_PASSWORD
from mbackup_dev.devstack import MilvusCluster, MilvusTLS, backup_config
from milvus_data import mbackup, ok, read_rows
from pki import make_ca, make_pki, needs_openssl, server_cert

pytestmark = [pytest.mark.milvus, needs_openssl]

BACKUPS = "mbk-tls-backups"  # backup bucket shared by both clusters' configs
ROOT = "tls"
COLLECTION = "tls_rows"
BACKUP = "tls_backup"


# The one-way cluster's certificate names this only (not 127.0.0.1, not localhost): every
# client reaching it at 127.0.0.1 must set milvus.grpc.serverName to it.
SERVER_NAME = "milvus-tls.mbackup.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("milvus-pki")
    return make_pki(folder), make_ca(folder, "rogue"), server_cert(folder, "named", f"DNS:{SERVER_NAME}")


@pytest.fixture(scope="module")
def clusters(seaweedfs, pki, tmp_path_factory):
    """(one-way TLS cluster, mutual TLS cluster), root's password MILVUS_PASSWORD on both."""
    certs, _, named = pki
    one_way = MilvusTLS("server", certs.ca, *named, server_name=SERVER_NAME)
    mutual = MilvusTLS("mutual", certs.ca, certs.server_cert, certs.server_key, certs.client_cert, certs.client_key)
    started = []
    seaweedfs.create_bucket(BACKUPS)
    try:
        for name, tls in (("tls-server", one_way), ("tls-mutual", mutual)):
            cluster = MilvusCluster(tmp_path_factory.mktemp(name), seaweedfs, f"milvus-{name}",
                                    tls=tls, authorization=True)
            started.append(cluster.start())
        for cluster in started:
            mc = MilvusClient(**cluster.client_kwargs())
            try:
                mc.update_password("root", cluster.password, MILVUS_PASSWORD)
            finally:
                mc.close()
            cluster.password = MILVUS_PASSWORD
        yield tuple(started)
    finally:
        for cluster in started:
            cluster.stop()
            seaweedfs.delete_bucket(cluster.bucket)
        seaweedfs.delete_bucket(BACKUPS)


@pytest.fixture(scope="module")
def configs(clusters, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls-configs")
    paths = []
    for cluster in clusters:
        path = folder / f"{cluster.bucket}.yaml"
        path.write_text(backup_config(cluster, backup_bucket=BACKUPS, backup_root=ROOT))
        paths.append(path)
    return tuple(paths)


@pytest.fixture(scope="module")
def rows(clusters):
    """A collection of 1,500 rows in two flushed segments on the one-way TLS cluster, by pk."""
    mc = MilvusClient(**clusters[0].client_kwargs())
    try:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=64)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        mc.create_collection(COLLECTION, schema=schema, consistency_level="Strong")
        for start in (0, 1000):
            mc.insert(COLLECTION, [{"id": i, "text": f"row {i}", "vec": [i / 7, -i / 3, 0.5, i % 11]}
                                   for i in range(start, start + (1000 if start == 0 else 500))])
            mc.flush(COLLECTION)
        index = mc.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        mc.create_index(COLLECTION, index)
        mc.load_collection(COLLECTION)
        truth = read_rows(mc, COLLECTION, "id")
        assert len(truth) == 1500
        return truth
    finally:
        mc.close()


def backup_keys(seaweedfs) -> list[str]:
    return sorted(seaweedfs.list_keys(BACKUPS, ""))


def test_backup_over_one_way_tls_restores_over_mutual_tls(clusters, configs, rows, seaweedfs, s3env):
    _one_way, mutual = clusters
    ok(mbackup(configs[0], "create", "-n", BACKUP, "--filter", COLLECTION, env=s3env))
    ok(mbackup(configs[0], "verify", "-n", BACKUP, "--deep", env=s3env))
    ok(mbackup(configs[1], "restore", "-n", BACKUP, env=s3env))

    mc = MilvusClient(**mutual.client_kwargs())
    try:
        index = mc.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="L2")
        mc.create_index(COLLECTION, index)
        mc.load_collection(COLLECTION)
        assert read_rows(mc, COLLECTION, "id") == rows
    finally:
        mc.close()


def only_line(r: subprocess.CompletedProcess) -> str:
    """The whole of stderr: one ``error:`` line (no gRPC log lines, no traceback), exit 2."""
    assert r.returncode == 2, f"exit {r.returncode}:\n{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# (id, cluster 0 = one-way / 1 = mutual, --set overrides, what the line must say)
BAD_TLS = [
    ("plaintext-to-tls", 0, ["milvus.grpc.tlsMode=disabled"],
     "accepts TLS connections only: set milvus.grpc.tlsMode to server (or mutual) and milvus.grpc.caCertPath"),
    ("no-ca", 0, ["milvus.grpc.caCertPath="],
     "is not trusted (unable to get local issuer certificate): set milvus.grpc.caCertPath to the CA certificate"),
    ("other-ca", 0, ["milvus.grpc.caCertPath={rogue}"],
     "is not trusted (unable to get local issuer certificate): set milvus.grpc.caCertPath to the CA certificate"),
    ("missing-ca-file", 0, ["milvus.grpc.caCertPath={missing}"],
     "error: milvus.grpc.caCertPath: cannot read {missing} (No such file or directory)"),
    ("ca-not-pem", 0, ["milvus.grpc.caCertPath={garbage}"],
     "error: milvus.grpc.caCertPath: {garbage} holds no PEM certificate"),
    ("wrong-server-name", 0, ["milvus.grpc.serverName=backup.example.com"],
     "is not valid for 'backup.example.com' (Hostname mismatch, certificate is not valid for 'backup.example.com'): "
     "set milvus.grpc.serverName"),
    ("wrong-password", 0, ["milvus.password=not-the-password"],
     "refused the credentials (user 'root'): check milvus.user/milvus.password"),
    ("one-way-to-mutual", 1, ["milvus.grpc.tlsMode=server"],
     "asks for a client certificate: set milvus.grpc.tlsMode to mutual with milvus.grpc.mtlsCertPath and "
     "milvus.grpc.mtlsKeyPath"),
    ("server-cert-as-client-cert", 1,
     ["milvus.grpc.mtlsCertPath={server_cert}", "milvus.grpc.mtlsKeyPath={server_key}"],
     "turned down the client certificate {server_cert} (bad certificate): use one for client authentication"),
    ("key-of-another-cert", 1, ["milvus.grpc.mtlsKeyPath={server_key}"],
     "error: milvus.grpc.mtlsCertPath/milvus.grpc.mtlsKeyPath: {client_cert} and {server_key} are not a "
     "certificate and its matching private key"),
    ("mutual-without-ca", 1, ["milvus.grpc.caCertPath="],
     "error: milvus.grpc.tlsMode: mutual TLS needs milvus.grpc.caCertPath too"),
]


@pytest.mark.parametrize("case, cluster, sets, expected", BAD_TLS, ids=[c[0] for c in BAD_TLS])
def test_tls_mistakes_say_what_to_fix_and_create_nothing(case, cluster, sets, expected, clusters, configs,
                                                         rows, pki, seaweedfs, s3env, tmp_path):
    certs, rogue, _ = pki
    garbage = tmp_path / "not-a-cert.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    names = {"rogue": rogue, "missing": tmp_path / "no-such-ca.pem", "garbage": garbage,
             "server_cert": certs.server_cert, "server_key": certs.server_key, "client_cert": certs.client_cert}
    before = backup_keys(seaweedfs)
    args = [arg for s in sets for arg in ("--set", s.format(**names))]
    r = mbackup(configs[cluster], *args, "create", "-n", f"tls_bad_{case.replace('-', '_')}", "--filter", COLLECTION,
                env=s3env, timeout=120)
    line = only_line(r)
    assert expected.format(**names) in line, line
    for secret in (MILVUS_PASSWORD, "not-the-password"):
        assert secret not in r.stderr + r.stdout
    assert backup_keys(seaweedfs) == before


def test_server_name_override_reaches_the_server(configs, s3env):
    # The certificate names SERVER_NAME only: reaching Milvus at 127.0.0.1 works because the
    # config's serverName is applied, and fails the moment it is not.
    assert f"serverName: {SERVER_NAME}" in configs[0].read_text()
    r = ok(mbackup(configs[0], "check", env=s3env))
    assert "Milvus version: v2.3.5" in r.stdout
    line = only_line(mbackup(configs[0], "--set", "milvus.grpc.serverName=", "check", env=s3env))
    assert "is not valid for '127.0.0.1'" in line and "set milvus.grpc.serverName" in line, line
