"""Live progress as users see it: on a terminal the line is drawn in place, fits the width and
is cleared at the end; in a log, timestamped lines; --quiet and --json show none of it; stdout
is the same either way. (Restore's import lines are in test_backup_restore.py: they need
Milvus.)"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from conftest import record_written
from sample_backup import Sample, config_yaml
from test_copy import fill, tree

KIB, MIB = 1024, 1024 * 1024
SIZE = r"\d+(?:\.\d)? (?:B|KiB|MiB|GiB)"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# One redraw: the step, objects done (+ in flight), bytes, the current rate, the ETA, the time spent.
DRAWN = (r"{label}: [\d,]+(?:\+[\d,]+)?/{objects} objects, {size}/{size}(?:, (?:{size}|-)/s)?(?:, ETA [^,]+)?"
         r"(?:, [\dhms.]+)?")
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def on_terminal(env, *args: str, columns: int = 100) -> tuple[int, str, str]:
    """``mbackup <args>`` with stderr on a pseudo-terminal ``columns`` wide: (exit code,
    stdout, what the terminal received)."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
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


def assert_drawn(terminal: str, label: str, objects: int, columns: int = 100) -> None:
    """Every redraw is one line of the counters, in place (no line feed but the live region's
    own), no wider than the terminal, and the last thing written erases it."""
    shown = [line for line in (ANSI.sub("", piece) for piece in re.split(r"[\r\n]", terminal)) if line.strip()]
    assert shown, repr(terminal)
    for line in shown:
        assert len(line) <= columns and re.fullmatch(DRAWN.format(label=re.escape(label), objects=objects, size=SIZE),
                                                      line), (line, terminal)
    assert terminal.count("\n") <= 1 and terminal.endswith("\x1b[2K"), repr(terminal)


def test_copy_draws_progress_in_place_and_quiet_or_json_show_none(seaweedfs, s3env, bucket, tmp_path):
    objects = {f"p/{i:02d}": os.urandom(128 * KIB) for i in range(16)}  # 2 MiB: 2 s at the cap
    fill(seaweedfs.store(bucket), objects)
    src = f"s3://{bucket}/p?endpoint={seaweedfs.endpoint}"
    # 40 columns: the line leaves out the rate and ETA rather than wrap into stale lines.
    code, out, terminal = on_terminal(s3env, "copy", src, str(tmp_path / "a"), "--max-bandwidth", "1MiB/s", columns=40)
    assert code == 0, terminal
    assert out.startswith("copied 16 objects (2.0 MiB) in ")
    assert_drawn(terminal, "copy", 16, columns=40)
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
    assert_drawn(terminal, "verify", 9)

    code, out, terminal = on_terminal(s3env, *args, "--quiet")
    assert (code, out, terminal) == (0, sample.summary(checksums=9) + "\n", "")


def test_in_a_log_lines_are_timestamped_and_bytes_never_run_ahead_of_objects(tmp_path):
    """Not a terminal: a timestamped line every log_every seconds, from the real engine's
    counters. Each line's bytes are at most the bytes of the objects it counts (done plus in
    flight): the engine counts bytes as they stream, before an object is done."""
    from milvus_backup.plugins.manager import storage_backends
    from milvus_backup.transfer.copy import CopySettings, plan_copy, run_plan
    from milvus_backup.transfer.progress import ConsoleReporter
    from milvus_backup.units import parse_size

    size, count = 128 * KIB, 24
    (tmp_path / "src").mkdir()
    for i in range(count):
        (tmp_path / "src" / f"{i:02d}").write_bytes(os.urandom(size))
    src, dst = storage_backends().open(str(tmp_path / "src")), storage_backends().open(str(tmp_path / "dst"))
    log = io.StringIO()
    report = run_plan(plan_copy(src, dst), src, dst, CopySettings(max_bandwidth=MIB, parallel=8),
                      reporter=ConsoleReporter(stream=log, log_every=0.5))
    assert len(report.copied) == count
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3, lines  # 3 MiB at 1 MiB/s, a line every 0.5 s
    for line in lines:
        m = re.fullmatch(rf"{STAMP} (copy: ([\d,]+)(?:\+([\d,]+))?/{count} objects, ({SIZE})/3.0 MiB, .*)", line)
        assert m, line
        counted = int(m[2]) + int(m[3] or 0)
        assert parse_size(m[4].replace(" ", "")) <= counted * size * 1.05, line  # 1 decimal of rounding
