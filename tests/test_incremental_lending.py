"""Lent references on a real Milvus 2.3.5 and SeaweedFS (issue #12 point 2, with a first
increment on a full base as cheap as later ones): the increment borrows the full base's
binlogs where they are, and they move into the pool only when the base goes.

Each test makes its own full backup and increment, in a backup root of its own, of one
collection that grows as the module goes on; the truth of each increment is the collection
as it was when the increment was taken.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymilvus import DataType

from faultproxy import FaultProxy
from mbackup_dev.devstack import backup_config
from milvus_backup.backup.catalog import collection_segments
from milvus_backup.backup.pool import POOL_DIR, parse_pool_key
from milvus_backup.format import meta
from milvus_data import Truth, _truth, assert_same_rows, client, error_line, mbackup, ok, read_back
from test_incremental import _create_collection, _rows

pytestmark = pytest.mark.milvus

BUCKET = "mbk-lend"
COLL = "lend_c"
# Never changed after its one flush: a single segment without deletes, which Milvus does not
# compact, so every backup holds its binlogs and every increment borrows them. (lend_c's
# segments are small and many: a flush makes Milvus compact them in the background, and a
# compacted segment is new, not borrowed.)
STABLE = "lend_s"
BOTH = f"{COLL},{STABLE}"


class Scene:
    """The collection, its configs per backup root, and what it held at each backup."""

    def __init__(self, clusters, seaweedfs, folder: Path) -> None:
        self.clusters, self.seaweedfs, self.folder = clusters, seaweedfs, folder
        self.mc = client(clusters.source.uri)
        self.next_id, self.deleted = 0, []
        self.restored: list[str] = []

    def grow(self, rows: int = 400, deletes: int = 20) -> Truth:
        """Insert ``rows`` rows (a new segment) and delete some old ones; the state after."""
        self.mc.insert(COLL, _rows(self.next_id, rows))
        gone = list(range(self.next_id - 1, max(self.next_id - 1 - deletes * 7, -1), -7))[:deletes]
        if gone:
            self.mc.delete(COLL, ids=gone)
            self.deleted += gone
        self.next_id += rows
        self.mc.flush(COLL)
        return _truth(self.mc, "default", COLL, "id", "vec", DataType.FLOAT_VECTOR, list(self.deleted), ["_default"])

    def collection_id(self, name: str) -> int:
        return self.mc.describe_collection(name)["collection_id"]

    def config(self, root: str, role: str = "src", port: int | None = None) -> Path:
        """backup.yaml for ``root``; ``port``: the S3 server reached through a proxy there (the
        backup storage follows Milvus's)."""
        cluster = self.clusters.source if role == "src" else self.clusters.target
        text = backup_config(cluster, backup_bucket=BUCKET, backup_root=root)
        if port is not None:
            text = text.replace(f"port: {cluster.s3.s3_port}\n", f"port: {port}\n")
        path = self.folder / f"{root}-{role}-{port or 0}.yaml"
        path.write_text(text)
        return path

    def pair(self, root: str) -> tuple[Path, Truth]:
        """Rows added and some deleted, then a full backup ``full`` of both collections and an
        increment ``inc`` on it, under ``root``; the config and lend_c's truth. Nothing changes
        in between, so the increment borrows every binlog (lend_s's for certain)."""
        config = self.config(root)
        truth = self.grow()
        ok(mbackup(config, "create", "-n", "full", "--filter", BOTH))
        ok(mbackup(config, "create", "-n", "inc", "--filter", BOTH, "--incremental", "--base", "full"))
        assert lent(self, root)
        return config, truth

    def restores(self, root: str, name: str, truth: Truth) -> None:
        """Backup ``name`` of ``root`` restores (into the target) exactly the rows of ``truth``."""
        suffix = f"_{root}_{name}"
        self.restored += [COLL + suffix, STABLE + suffix]
        ok(mbackup(self.config(root, "dst"), "restore", "-n", name, "--suffix", suffix))
        assert_same_rows(read_back(self.clusters.target.uri, "default", COLL + suffix, truth), truth)


@pytest.fixture(scope="module")
def scene(milvus_clusters, seaweedfs, tmp_path_factory):
    seaweedfs.create_bucket(BUCKET)
    s = Scene(milvus_clusters, seaweedfs, tmp_path_factory.mktemp("lend"))
    _create_collection(s.mc, COLL)
    _create_collection(s.mc, STABLE)
    s.mc.insert(STABLE, _rows(0, 1500))
    s.mc.flush(STABLE)
    try:
        for _ in range(3):
            s.grow(800, 0)
        yield s
    finally:
        s.mc.drop_collection(COLL)
        s.mc.drop_collection(STABLE)
        s.mc.close()
        other = client(milvus_clusters.target.uri)
        for name in s.restored:
            if other.has_collection(name):
                other.drop_collection(name)
        other.close()
        seaweedfs.delete_bucket(BUCKET)


def store(scene: Scene):
    return scene.seaweedfs.store(BUCKET)


def manifest(scene: Scene, root: str, name: str) -> dict:
    return json.loads(store(scene).get(f"{root}/{name}/meta/mbackup_manifest.json"))


def binlogs(scene: Scene, root: str, name: str) -> dict[str, int]:
    """rel -> size of every binlog the backup's meta lists."""
    info = meta.loads(meta.BackupInfo, store(scene).get(f"{root}/{name}/meta/{meta.FULL_META}"))
    bdir = f"{root}/{name}"
    return {dst[len(bdir) + 1:]: size for c in info.collection_backups for seg in collection_segments(c)
            for _, dst, size in meta.segment_files(bdir, seg)}


def pool(scene: Scene, root: str) -> dict[str, int]:
    """rel -> size of every object in the root's pool."""
    return {parse_pool_key(k[len(root) + 1:])[0]: size for k, size, _ in store(scene).list(f"{root}/{POOL_DIR}/")}


def lent(scene: Scene, root: str, name: str = "inc") -> dict[str, int]:
    """rel -> size of what backup ``name`` borrows from ``full``."""
    return {rel: e["size"] for rel, e in manifest(scene, root, name)["objects"].items() if e.get("lent") == "full"}


def verifies_deep(scene: Scene, root: str, name: str) -> None:
    ok(mbackup(scene.config(root), "verify", "-n", name, "--deep"))


def whole(scene: Scene, root: str, name: str, truth: Truth) -> None:
    """Backup ``name`` passes verify --deep and restores exactly the rows of ``truth``."""
    verifies_deep(scene, root, name)
    scene.restores(root, name, truth)


def test_the_first_increment_on_a_full_base_copies_no_binlog_into_the_pool(scene):
    root = "first"
    config = scene.config(root)
    ok(mbackup(config, "create", "-n", "full", "--filter", BOTH))
    scene.grow()
    before = pool(scene, root)
    result = ok(mbackup(config, "create", "-n", "inc", "--filter", BOTH, "--incremental", "--json"))
    written = {rel: size for rel, size in pool(scene, root).items() if rel not in before}
    mine, base = binlogs(scene, root, "inc"), binlogs(scene, root, "full")
    new = {rel: size for rel, size in mine.items() if base.get(rel) != size}
    # Into the pool went exactly the new binlogs, and nothing the full base holds.
    assert before == {} and written == new and new
    borrowed = lent(scene, root)
    stable = {rel for rel in base if rel.split("/")[2] == str(scene.collection_id(STABLE))}
    assert stable and stable <= borrowed.keys()
    assert borrowed == {rel: size for rel, size in mine.items() if rel not in new}
    summary = json.loads(result.stdout)
    assert summary["increment"]["bytes_copied_into_pool"] == sum(new.values()), summary
    # list: what the increment borrows is shared by both, and the increment holds the new alone.
    rows = {r["name"]: (r["own_bytes"], r["shared_bytes"]) for r in json.loads(ok(mbackup(config, "list", "--json")).stdout)}
    assert rows["inc"] == (sum(new.values()), sum(borrowed.values()))
    assert rows["full"][1] == sum(borrowed.values())
    verifies_deep(scene, root, "inc")


def test_delete_of_the_full_base_moves_what_the_increment_borrows_and_it_still_restores(scene):
    root = "del"
    config, truth = scene.pair(root)
    borrowed = lent(scene, root)
    assert not borrowed.keys() & pool(scene, root).keys()
    n = len(store(scene).list(f"{root}/full/"))
    assert ok(mbackup(config, "delete", "-n", "full", "--dry-run")).stdout == (
        f"would delete backup full: {n:,} objects, after copying {len(borrowed):,} that other backups borrow into "
        "the pool\n")
    assert json.loads(ok(mbackup(config, "delete", "-n", "full", "--dry-run", "--json")).stdout) == {
        "dry_run": True, "name": "full", "objects_to_delete": n, "objects_to_move_into_pool": len(borrowed)}
    assert not borrowed.keys() & pool(scene, root).keys()  # a dry run moves nothing
    ok(mbackup(config, "delete", "-n", "full"))
    assert not store(scene).list(f"{root}/full/")
    assert {rel: size for rel, size in pool(scene, root).items() if rel in borrowed} == borrowed
    whole(scene, root, "inc", truth)


def test_forget_and_prune_of_the_full_base_keep_the_increment_whole(scene):
    root = "forget"
    config, truth = scene.pair(root)
    borrowed = lent(scene, root)
    out = ok(mbackup(config, "forget", "--keep-name", "inc")).stdout
    assert "forgot 1 of 2 backups" in out, out
    time.sleep(2.5)  # the moved objects older than prune's grace period: twice the 1 s lease below
    out = ok(mbackup(config, "prune", env=dict(os.environ, MBACKUP_LOCK_LEASE="1"))).stdout
    assert out.startswith("prune: deleted 0 pool objects"), out
    assert {rel: size for rel, size in pool(scene, root).items() if rel in borrowed} == borrowed
    whole(scene, root, "inc", truth)


def _run(config: Path, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "milvus_backup", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


def _until(done, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"waited {seconds:.0f} s for {what}"
        time.sleep(0.1)


def _stalled_delete(scene: Scene, root: str, proxy: FaultProxy) -> subprocess.Popen:
    """``delete -n full`` of ``root`` through ``proxy``, held at its first copy into the pool."""
    proxy.stall(600, methods="PUT", paths=f"/{BUCKET}/{root}/{POOL_DIR}/", then="pass")
    run = _run(scene.config(root, port=proxy.port), "delete", "-n", "full")
    _until(lambda: proxy.stats["stalled"] or run.poll() is not None, 90, "the delete's first copy into the pool")
    assert run.poll() is None, run.communicate()
    return run


def test_a_delete_killed_while_it_moves_leaves_every_backup_whole_and_run_again_finishes(scene):
    root = "kill"
    config, truth = scene.pair(root)
    borrowed = lent(scene, root)
    with FaultProxy(scene.seaweedfs.endpoint, max_lifetime=300) as proxy:
        run = _stalled_delete(scene, root, proxy)
        run.kill()
        run.communicate(timeout=30)
    s = store(scene)
    assert s.head(f"{root}/full/meta/{meta.BACKUP_META}") is not None  # nothing deleted before the move is done
    verifies_deep(scene, root, "full")
    verifies_deep(scene, root, "inc")
    ok(mbackup(config, "delete", "-n", "full"))
    assert not s.list(f"{root}/full/")
    assert {rel: size for rel, size in pool(scene, root).items() if rel in borrowed} == borrowed
    whole(scene, root, "inc", truth)


def test_a_create_borrowing_from_a_base_being_deleted_waits_and_both_finish(scene, tmp_path):
    """The delete read who borrows before the create listed it: the create waits for the
    delete, then finds in the pool (or copies again from Milvus) what it borrows."""
    root = "race_a"
    config, truth = scene.pair(root)
    said = tmp_path / "create.stderr"
    with FaultProxy(scene.seaweedfs.endpoint, max_lifetime=300) as proxy:
        delete = _stalled_delete(scene, root, proxy)
        with said.open("w") as err:
            create = _run(config, "create", "-n", "inc2", "--filter", BOTH, "--incremental", "--base", "full",
                          stderr=err)
        _until(lambda: create.poll() is not None or "waiting for a delete of backup 'full'" in said.read_text(),
               120, "the create to wait for the delete")
        proxy.passthrough()
        proxy.release()
        deleted = delete.communicate(timeout=120)
        create.communicate(timeout=300)
    assert delete.returncode == 0, deleted
    assert create.returncode == 0, said.read_text()
    text = said.read_text()
    assert re.search(r"objects \(.*?\) new, to copy from Milvus; [1-9][\d,]* objects \(.*?\) shared", text), text
    assert "waiting for a delete of backup 'full'" in text
    assert not store(scene).list(f"{root}/full/")
    assert not lent(scene, root, "inc2")  # its lender is gone: it names the pool only
    for name in ("inc", "inc2"):
        verifies_deep(scene, root, name)
    scene.restores(root, "inc2", truth)


def test_a_delete_of_the_base_while_a_create_borrows_from_it_moves_what_the_create_listed(scene, tmp_path):
    """The create listed what it borrows before the delete read who borrows (it is held as
    it looks at the lender's lock): the delete moves those objects too."""
    root = "race_b"
    config = scene.config(root)
    truth = scene.grow()
    ok(mbackup(config, "create", "-n", "full", "--filter", BOTH))
    with FaultProxy(scene.seaweedfs.endpoint, max_lifetime=300) as proxy:
        proxy.stall(600, methods="HEAD", paths=f"/{BUCKET}/{root}/full/mbackup.lock", then="pass")
        create = _run(scene.config(root, port=proxy.port), "create", "-n", "inc", "--filter", BOTH, "--incremental",
                      "--base", "full")
        _until(lambda: proxy.stats["stalled"] or create.poll() is not None, 120, "the create to look at the lock")
        assert create.poll() is None, create.communicate()
        marker = json.loads(store(scene).get(f"{root}/inc/mbackup_in_progress.json"))
        borrowed = {parse_pool_key(k)[0] for k in marker["lent_refs"]["full"]}
        assert borrowed and not borrowed & pool(scene, root).keys()
        ok(mbackup(config, "delete", "-n", "full"))
        assert borrowed <= pool(scene, root).keys()
        proxy.passthrough()
        proxy.release()
        out = create.communicate(timeout=300)
    assert create.returncode == 0, out
    assert "vanished" not in out[1]  # nothing copied again from Milvus: the delete moved it
    assert not lent(scene, root)
    whole(scene, root, "inc", truth)


def test_export_of_a_lending_increment_is_self_contained_and_verify_names_a_lender_deleted_by_another_tool(scene):
    root = "export"
    config, truth = scene.pair(root)
    borrowed = lent(scene, root)
    ok(mbackup(config, "export", "-n", "inc", "--to-root", "export_out"))
    s = store(scene)
    exported = {k[len("export_out/inc/"):]: size for k, size, _ in s.list("export_out/inc/binlogs/")}
    assert exported == binlogs(scene, root, "inc")
    # The Go tool's delete removes every object under the backup, moving nothing.
    assert not s.delete_many([k for k, _, _ in s.list(f"{root}/full/")])
    result = mbackup(config, "verify", "-n", "inc")
    assert result.returncode == 4, result.stdout + result.stderr
    rel = sorted(borrowed)[0]
    line = next(x for x in (result.stdout + result.stderr).splitlines() if rel in x)
    assert "lent by backup 'full', which no longer holds it, and not in the pool" in line, line
    assert "mbackup delete" in line
    # The export holds its own copies: it verifies and restores all the same.
    whole(scene, "export_out", "inc", truth)


def test_a_damaged_borrowed_binlog_fails_both_backups_and_the_delete_of_its_lender_deletes_nothing(scene):
    root = "damaged"
    config, truth = scene.pair(root)
    rel = sorted(lent(scene, root))[0]
    s, key = store(scene), f"{root}/full/{rel}"
    original = s.get(key)
    s.put(key, bytes(b ^ 0xFF for b in original[:1]) + original[1:])
    try:
        for name in ("full", "inc"):
            result = mbackup(config, "verify", "-n", name, "--deep")
            assert result.returncode == 4, result.stdout + result.stderr
        assert f"(the shared object {key}, lent by backup 'full')" in result.stdout + result.stderr
        before = {k for k, _, _ in s.list(f"{root}/full/")}
        result = mbackup(config, "delete", "-n", "full")
        line = error_line(result, 4)
        assert "do not match the checksums recorded for them" in line and "nothing was deleted" in line, line
        assert {k for k, _, _ in s.list(f"{root}/full/")} == before
    finally:
        s.put(key, original)
    ok(mbackup(config, "delete", "-n", "full"))
    whole(scene, root, "inc", truth)
