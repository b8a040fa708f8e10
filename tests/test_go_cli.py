"""A drop-in for scripts written for the Go tool: every command and flag it has is accepted
(tests/compat/go_cli_flags.json, copied from the notes on the Go tool), the deprecated ones
warn and still work, -h and --version answer; and `list` shows when each backup was taken."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from milvus_backup import __version__
from milvus_backup.cli.commands import app
from milvus_backup.format import meta
from sample_backup import Sample, config_yaml

GO = json.loads((Path(__file__).parent / "compat" / "go_cli_flags.json").read_text())
ENV = {**os.environ, "COLUMNS": "250"}  # help rows are not wrapped


def run(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=ENV, capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def _known(command: str):
    marks = [pytest.mark.xfail(strict=True, reason=GO["missing"][command])] if command in GO["missing"] else []
    return pytest.param(command, marks=marks, id=command or "global")


@pytest.mark.parametrize("command", [_known(c) for c in GO["commands"]])
def test_every_go_flag_is_in_the_help_and_parses(command):
    words = command.split()
    r = run(*words, "-h")
    assert r.returncode == 0, r.stderr
    shown = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", r.stdout))
    assert [f for f in GO["commands"][command] if f not in shown] == []
    # Each flag given (with a value where it takes one) parses: the command line is accepted.
    cmd = typer.main.get_command(app)
    for w in words:
        cmd = cmd.commands[w]
    required = ["-n", "x"] if any("-n" in p.opts for p in cmd.params) else []
    for flag in GO["commands"][command]:
        param = next(p for p in cmd.params if flag in p.opts)
        args = [flag] if getattr(param, "is_flag", False) else [flag, "x=1" if flag == "--set" else "x"]
        cmd.make_context(command or "mbackup", [*required, *args, *([] if words else ["version"])])


def test_version_and_dash_dash_version_print_the_same_line_on_stdout():
    a, b = run("version"), run("--version")
    assert a.returncode == b.returncode == 0 and a.stderr == b.stderr == ""
    assert a.stdout == b.stdout and a.stdout.startswith(f"mbackup {__version__} (") and a.stdout.count("\n") == 1


def test_shell_completion_completes_commands_and_the_go_tools_flags():
    def complete(*words: str) -> list[str]:
        env = {**ENV, "_MBACKUP_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(["mbackup", *words]),
               "COMP_CWORD": str(len(words))}
        r = subprocess.run([sys.executable, "-m", "milvus_backup"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("cre") == ["create"]
    assert complete("restore", "--use_v") == ["--use_v2_restore"]
    assert "--install-completion" in run("-h").stdout


def test_help_has_no_type_names_and_shows_defaults():
    out = run("copy", "-h").stdout
    assert "<bool>" not in out and "{src}" not in out and "<list[str]>" not in out
    assert "Usage: mbackup copy [OPTIONS] SRC DST" in out
    assert "default 128" in out and "Example: mbackup copy" in out
    assert "default off (config mbackup.batchImports)" in " ".join(run("restore", "-h").stdout.split())


@pytest.mark.parametrize("args, says", [
    (["create", "-f", "--strategy", "bulk_flush"],
     ["warning: -f/--force is deprecated, use --strategy=skip_flush instead",
      "error: -f/--force stands for --strategy skip_flush, but --strategy bulk_flush is given too: keep one"]),
    (["create", "--meta_only", "--strategy", "skip_flush"],
     ["warning: --meta_only is deprecated, use --strategy=meta_only instead",
      "error: --meta_only stands for --strategy meta_only, but --strategy skip_flush is given too: keep one"]),
    (["create", "-a", "[1]"],
     ["warning: -a/--database_collections is deprecated, use --filter instead",
      "error: -a/--database_collections: not an object of lists of names: use JSON such as "
      '\'{"db1":["c1","c2"],"db2":[]}\' (or --filter db1.c1,db1.c2,db2.*)']),
    (["restore", "-n", "b", "-c", "c1", "--filter", "c2"],
     ["warning: -c/--collections is deprecated, use --filter instead",
      "error: --filter and -c/-d/-a cannot be used together: use --filter"]),
    (["create", "--backup_index_extra", "--strategy", "fast"],
     ["warning: --backup_index_extra: mbackup reads no etcd, so the extra index meta the Go tool reads there is not "
      "backed up; indexes are backed up as without the flag",
      "error: unknown strategy 'fast': use auto, serial_flush, bulk_flush, skip_flush, meta_only"]),
    (["restore", "-n", "b", "--restore_index", "-s", "_x", "-r", "a:b"],
     ["warning: --restore_index is deprecated, use --rebuild_index instead",
      "error: --suffix and --rename cannot be used together"]),
    (["check", "nonsense"],
     ["error: check takes no argument 'nonsense' (check config is the old spelling of config show)"]),
])
def test_deprecated_flags_warn_and_are_checked_before_anything_runs(args, says, tmp_path):
    r = run(*args, cwd=tmp_path)  # no config file: the defaults
    assert (r.returncode, r.stdout, r.stderr.splitlines()) == (2, "", says)


def test_legacy_selections_become_filters():
    from milvus_backup.gocompat import legacy_filters

    assert legacy_filters(["a,b"], ["db1"], None) == ["db1.a", "db1.b"]
    assert legacy_filters(["db2.c1,c2"], None, None) == ["db2.c1", "default.c2"]
    assert legacy_filters(None, ["db1,db2"], None) == ["db1.*", "db2.*"]
    assert legacy_filters(["a"], None, '{"db1":["c1","c2"],"db2":[]}') == ["default.a", "db1.c1", "db1.c2", "db2.*"]


def test_check_config_is_config_show_with_a_warning(tmp_path):
    r = run("check", "config", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "warning: check config is deprecated, use config show instead\n"
    assert r.stdout == run("config", "show", cwd=tmp_path).stdout


# --------------------------------------------------------------------------------------
# Times: list shows when each backup was taken, also the Go tool's


def _rewrite(sample: Sample, info: meta.BackupInfo) -> None:
    for fname, data in meta.write_meta_files(info).items():
        sample.put(f"meta/{fname}", data)


def test_list_shows_each_backups_time_sorted_newest_first(seaweedfs, bucket, tmp_path):
    s = seaweedfs.store(bucket)
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket))
    # The Go tool up to 0.4 and mbackup: backup_timestamp in ms.
    old = Sample(s, "a_go_04")
    _rewrite(old, dataclasses.replace(old.info, backup_timestamp=1704164645123))  # 2024-01-02 03:04:05.123
    # The Go tool's serial_flush: the collections' flush time in seconds.
    serial = Sample(s, "b_serial")
    colls = [dataclasses.replace(c, backup_physical_timestamp=1735700000) for c in serial.info.collection_backups]
    _rewrite(serial, dataclasses.replace(serial.info, collection_backups=colls))  # 2025-01-01 02:53:20
    # The Go tool 0.5+ with bulk_flush records no time: when its meta was written.
    before = time.time()
    Sample(s, "c_bulk")
    after = time.time()

    r = run("list", "--json", "--config", str(cfg))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    rows = json.loads(r.stdout)
    assert [x["name"] for x in rows] == ["c_bulk", "b_serial", "a_go_04"]
    by = {x["name"]: x for x in rows}
    assert (by["a_go_04"]["time"], by["a_go_04"]["backup_timestamp"]) == ("2024-01-02 03:04:05 UTC", 1704164645123)
    assert (by["b_serial"]["time"], by["b_serial"]["backup_timestamp"]) == ("2025-01-01 02:53:20 UTC", 1735700000000)
    assert before - 5 <= by["c_bulk"]["backup_timestamp"] / 1000 <= after + 5  # the store's clock
    assert all(x["state"] == "complete" and x["complete"] and x["collections"] == ["default.products"] for x in rows)

    text = run("list", "--config", str(cfg)).stdout.splitlines()
    assert text[0] == ">> Backups:" and text[1].split() == ["NAME", "TIME", "SIZE", "SHARED", "STATE", "MILVUS",
                                                          "COLLECTIONS"]
    assert [line.split()[0] for line in text[2:]] == ["c_bulk", "b_serial", "a_go_04"]
    assert text[4].split()[:4] == ["a_go_04", "2024-01-02", "03:04:05", "UTC"] and text[4].endswith("default.products")
    assert len({line.index("UTC") for line in text[2:]}) == 1  # a table: the columns line up

    names = [x["name"] for x in json.loads(run("list", "--json", "--sort", "name", "--reverse", "--config", str(cfg)).stdout)]
    assert names == ["c_bulk", "b_serial", "a_go_04"]  # names Z to A
    oldest = [x["name"] for x in json.loads(run("list", "--json", "--reverse", "--config", str(cfg)).stdout)]
    assert oldest == ["a_go_04", "b_serial", "c_bulk"]
    got = run("get", "-n", "a_go_04", "-d", "--config", str(cfg))
    assert got.returncode == 0 and got.stderr == "warning: -d/--detail is deprecated, get always describes the whole backup\n"
    assert got.stdout.startswith(f"backup a_go_04 ({old.info.id}): ")
    assert got.stdout.splitlines()[0].endswith(", Milvus v2.3.5, taken 2024-01-02 03:04:05 UTC")
    only = run("list", "-c", "products", "--json", "--config", str(cfg))
    assert only.stderr == "warning: -c/--collection is deprecated, list shows every backup's collections\n"
    assert len(json.loads(only.stdout)) == 3
    bad = run("list", "--sort", "date", "--config", str(cfg))
    assert (bad.returncode, bad.stderr) == (2, "error: --sort: unknown order 'date': use time, name or size\n")


def test_a_time_recorded_in_seconds_by_the_first_go_releases_is_read_as_seconds():
    from milvus_backup.backup.catalog import taken_at

    info = meta.BackupInfo(backup_timestamp=1_700_000_000)
    assert dt.datetime.fromtimestamp(taken_at(info), dt.UTC).year == 2023
    assert taken_at(meta.BackupInfo(backup_timestamp=1_700_000_000_000)) == 1_700_000_000.0
    assert taken_at(meta.BackupInfo()) is None
