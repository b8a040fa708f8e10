"""Storage knowledge lives in storage/ (issue #9, part A): every call on a store goes through a
Location method, so a store's error is said once, in one line, whichever command met it; the
backends turn a config file's storage section into their own options and open it at its
bucket; and whether two locations are one bucket is theirs to say. Real SeaweedFS, real
folders."""

from __future__ import annotations

import os
import subprocess
import sys


def mbackup(cfg, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MBACKUP_PLUGINS", None)
    extra = ["--config", str(cfg)] if cfg else []
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args, *extra], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_malformed_endpoint_url_in_the_config_is_a_problem_line(tmp_path):
    cfg = tmp_path / "backup.yaml"
    cfg.write_text("configVersion: v2\n")
    r = mbackup(cfg, "config", "show", "--set", "milvus.management.endpoint=http://[x")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", (
        "error: milvus.management.endpoint: expected an absolute http(s) URL such as http://localhost:9091, got "
        "'http://[x' (--set milvus.management.endpoint)\n"))
