"""Logging as an operator meets it: the Go tool's log.* keys, -v/--log-level/--log-format, the
log file's lines. Copies between local folders: the engine and the command line are real,
and no server is needed. (Create and restore phases in the log: test_backup_restore.py;
secrets in log files: test_secrets.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def mbackup(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MBACKUP_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(5):
        (tmp_path / "src" / f"o{i}").write_bytes(os.urandom(1000))
    return tmp_path


def test_the_log_file_named_by_log_file_path_holds_the_phase_with_its_duration(folder):
    r = mbackup("--set", "log.file.path=logs/run.log", "copy", "src", "dst", cwd=folder)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # the file only: stderr shows what it always did
    lines = (folder / "logs" / "run.log").read_text().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        rf"{STAMP} INFO  copy: done in \d+\.\d{{3}}s: 5/5 objects, 4.9 KiB \[phase=copy\]", lines[0]), lines
    # Appended to by the next run, like the Go tool's.
    assert mbackup("--set", "log.file.path=logs/run.log", "copy", "src", "dst", cwd=folder).returncode == 0
    assert len((folder / "logs" / "run.log").read_text().splitlines()) == 2


def test_log_format_json_writes_one_object_per_line(folder):
    r = mbackup("--log-format", "json", "-vv", "--set", "log.file.path=run.log", "copy", "src", "dst", cwd=folder)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in (folder / "run.log").read_text().splitlines()]
    assert [(d["level"], d["phase"]) for d in records] == [("debug", "copy"), ("info", "copy")]
    assert records[0]["message"] == "copy: started"
    assert re.fullmatch(r"copy: done in \d+\.\d{3}s: 5/5 objects, 4.9 KiB", records[1]["message"])
    assert all(re.fullmatch(STAMP, d["time"]) for d in records) and records[1]["seconds"] >= 0
    # stderr carries the same records, one JSON object a line too.
    assert [json.loads(line)["message"] for line in r.stderr.splitlines()] == [d["message"] for d in records]


def test_v_shows_info_and_vv_debug_on_stderr(folder):
    for flags, levels in (([], set()), (["-v"], {"INFO"}), (["-vv"], {"INFO", "DEBUG"}),
                          (["--log-level", "debug"], {"INFO", "DEBUG"}), (["-vv", "--log-level", "warn"], set())):
        r = mbackup(*flags, "copy", "src", "dst", "--force", cwd=folder)
        assert r.returncode == 0, r.stderr
        shown = {m[1] for m in re.finditer(rf"^{STAMP} (\w+) ", r.stderr, re.M)}
        assert shown == levels, (flags, r.stderr)
        assert r.stdout.startswith("copied 5 objects")  # stdout is the same either way


@pytest.mark.parametrize(("level", "console", "in_file", "on_stderr"), [
    ("debug", "true", {"DEBUG", "INFO"}, {"DEBUG", "INFO"}),
    ("warn", "true", set(), set()),
    ("info", "false", {"INFO"}, set()),
])
def test_log_level_and_log_console_from_the_config_are_honoured(folder, level, console, in_file, on_stderr):
    (folder / "backup.yaml").write_text(f"configVersion: v2\nlog:\n  level: {level}\n  console: {console}\n"
                                        "  file:\n    path: logs/backup.log\n")
    r = mbackup("copy", "src", "dst", "--force", cwd=folder)
    assert r.returncode == 0, r.stderr
    logged = (folder / "logs" / "backup.log").read_text()
    assert {m[1] for m in re.finditer(rf"^{STAMP} (\w+) ", logged, re.M)} == in_file, logged
    assert {m[1] for m in re.finditer(rf"^{STAMP} (\w+) ", r.stderr, re.M)} == on_stderr, r.stderr


def test_without_log_file_path_no_log_file_is_written(folder):
    assert mbackup("-vv", "copy", "src", "dst", cwd=folder).returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["dst", "src"]


@pytest.mark.parametrize(("flags", "line"), [
    (["--log-level", "loud"], "error: --log-level: unknown log level 'loud': use one of debug, info, warn, error, "
                              "panic, fatal"),
    (["--log-format", "xml"], "error: --log-format: unknown log format 'xml': use text or json"),
])
def test_a_bad_log_option_is_one_line_and_exit_2(folder, flags, line):
    r = mbackup(*flags, "copy", "src", "dst", cwd=folder)
    assert (r.returncode, r.stderr, r.stdout) == (2, line + "\n", "")
    assert not (folder / "dst").exists()


# The Go tool's own backup.yaml logs at info to the console; an unknown v1 key is a warning.
GO_STYLE_CONFIG = "log:\n  level: info\n  console: true\n  file:\n    filename: logs/backup.log\nmystery: 1\n"


def test_q_shows_only_warnings_errors_and_the_result_and_the_log_file_keeps_the_phases(folder):
    (folder / "backup.yaml").write_text(GO_STYLE_CONFIG)
    loud = mbackup("copy", "src", "dst", cwd=folder)
    assert loud.returncode == 0, loud.stderr
    assert re.search(rf"^{STAMP} INFO  copy: done in ", loud.stderr, re.M), loud.stderr

    quiet = mbackup("-q", "copy", "src", "dst2", cwd=folder)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ("warning: backup.yaml has no configVersion: read as a v1 file; `milvus-backup config "
                            "migrate` converts it to v2\nwarning: mystery: unknown v1 key, ignored (file backup.yaml)\n")
    assert quiet.stdout.startswith("copied 5 objects (4.9 KiB) in ")
    # The log file still gets the phase of both runs.
    assert len(re.findall(r"INFO  copy: done in ", (folder / "logs" / "backup.log").read_text())) == 2


def test_q_with_v_is_one_line_and_exit_2(folder):
    r = mbackup("-q", "-v", "copy", "src", "dst", cwd=folder)
    assert (r.returncode, r.stderr, r.stdout) == (
        2, "error: -q/--quiet and -v/--verbose contradict each other: give one of them\n", "")
    assert not (folder / "dst").exists()


def test_log_file_rootpath_of_a_v1_config_names_the_log_file_as_go_releases_read_it(folder):
    # The Go tool's releases up to v0.5.8 shipped `file: rootPath: "logs/backup.log"`: the file itself.
    (folder / "backup.yaml").write_text("log:\n  level: info\n  console: false\n  file:\n    rootPath: old/run.log\n")
    shown = mbackup("config", "show", cwd=folder)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("log.file.path "))
    assert line.split()[1] == "old/run.log" and "log.file.rootPath" in line, line
    assert mbackup("copy", "src", "dst", cwd=folder).returncode == 0
    assert re.search(r"INFO  copy: done in ", (folder / "old" / "run.log").read_text())
    # With log.file.filename too, filename wins, as in the Go tool today (it reads only filename).
    (folder / "backup.yaml").write_text("log:\n  file:\n    rootPath: old/other.log\n    filename: new/run.log\n")
    assert mbackup("copy", "src", "dst", "--force", cwd=folder).returncode == 0
    assert (folder / "new" / "run.log").exists() and not (folder / "old" / "other.log").exists()

