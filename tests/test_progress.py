"""Live progress as users see it: on a terminal the line is drawn in place and cleared at the
end; --quiet and --json show none of it; stdout is the same either way. (Restore's import
lines are in test_backup_restore.py: they need Milvus.)"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

from conftest import record_written
from sample_backup import Sample, config_yaml
from test_copy import fill, tree

KIB, MIB = 1024, 1024 * 1024
SIZE = r"\d+(?:\.\d)? (?:B|KiB|MiB|GiB)"
# One redraw: back to the line start, clear it, the counters; the last one clears the line.
DRAWN = r"(?:\r\x1b\[K{label}: [\d,]+/{objects} objects, {size}/{size}, {size}/s, ETA \S+)+\r\x1b\[K"


def on_terminal(env, *args: str) -> tuple[int, str, str]:
    """``mbackup <args>`` with stderr on a pseudo-terminal: (exit code, stdout, what the
    terminal received)."""
    parent, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", *args], env=env, stdout=subprocess.PIPE,
                            stderr=child, text=True)
    os.close(child)
    received = b""
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        received += data
    os.close(parent)
    out, _ = proc.communicate(timeout=120)
    record_written(f"terminal of mbackup {' '.join(args)}", received)  # for the secrets scan
    return proc.returncode, out, received.decode()


def drawn(label: str, objects: int) -> str:
    return DRAWN.format(label=re.escape(label), objects=objects, size=SIZE)


def test_copy_draws_progress_in_place_and_quiet_or_json_show_none(seaweedfs, s3env, bucket, tmp_path):
    objects = {f"p/{i:02d}": os.urandom(128 * KIB) for i in range(16)}  # 2 MiB: 2 s at the cap
    fill(seaweedfs.store(bucket), objects)
    src = f"s3://{bucket}/p?endpoint={seaweedfs.endpoint}"
    code, out, terminal = on_terminal(s3env, "copy", src, str(tmp_path / "a"), "--max-bandwidth", "1MiB/s")
    assert code == 0, terminal
    assert out.startswith("copied 16 objects (2.0 MiB) in ")
    assert re.fullmatch(drawn("copy", 16), terminal), repr(terminal)
    assert tree(tmp_path / "a") == {k[len("p/"):]: v for k, v in objects.items()}

    for flag in ("--quiet", "--json"):
        code, out, terminal = on_terminal(s3env, "copy", src, str(tmp_path / flag), "--max-bandwidth", "1MiB/s", flag)
        assert (code, terminal) == (0, ""), terminal
        if flag == "--json":
            assert json.loads(out)["objects_copied"] == 16
        else:
            assert out.startswith("copied 16 objects (2.0 MiB) in ")


def test_verify_deep_draws_progress_in_place(seaweedfs, s3env, bucket, tmp_path):
    sample = Sample(seaweedfs.store(bucket), "nightly", binlog_bytes=256 * KIB)  # 2 MiB: 2 s at the cap
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket))
    args = ["verify", "-n", "nightly", "--deep", "--config", str(cfg), "--set", "mbackup.maxBandwidth=1MiB/s"]
    code, out, terminal = on_terminal(s3env, *args)
    assert (code, out) == (0, sample.summary(checksums=9) + "\n"), terminal
    assert re.fullmatch(drawn("verify", 9), terminal), repr(terminal)

    code, out, terminal = on_terminal(s3env, *args, "--quiet")
    assert (code, out, terminal) == (0, sample.summary(checksums=9) + "\n", "")
