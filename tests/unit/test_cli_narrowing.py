"""`mbackup` builds only the commands a run names (cli/commands.py `_app_for`): what a user
sees must be what the whole command tree gives: the same help, the same errors, the same
command run, whatever the order of the words."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from milvus_backup.cli import commands

FULL = commands.app
NAMES = sorted({commands._command_name(c) for c in FULL.registered_commands} | {g.name for g in FULL.registered_groups})


def _mbackup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "100", **(env or {})})


def test_there_are_commands_to_leave_out() -> None:
    assert len(NAMES) > 10 and "copy" in NAMES and "config" in NAMES


@pytest.mark.parametrize("args", [
    [], ["--help"], ["-h"], ["crate", "-n", "x"], ["--help", "copy"], ["-v", "-h", "create"], ["--version"],
])
def test_no_command_named_or_help_first_gets_the_whole_tree(args: list[str]) -> None:
    assert commands._app_for(args) is FULL


@pytest.mark.parametrize(("args", "kept"), [
    (["copy", "a", "b"], {"copy"}),
    (["-q", "create", "-n", "x"], {"create"}),
    (["--config", "copy", "version"], {"copy", "version"}),  # a value that is a name keeps it too
    (["config", "show"], {"config"}),
    (["restore", "secondary", "-n", "x"], {"restore"}),
    (["create", "--help"], {"create"}),
])
def test_the_command_click_will_pick_is_always_kept(args: list[str], kept: set[str]) -> None:
    narrowed = commands._app_for(args)
    got = {commands._command_name(c) for c in narrowed.registered_commands} | {g.name for g in narrowed.registered_groups}
    assert got == kept
    assert FULL.registered_commands and len(FULL.registered_commands) > len(narrowed.registered_commands)


@pytest.mark.parametrize("name", NAMES)
def test_each_commands_help_is_the_same_as_from_the_whole_tree(name: str) -> None:
    from typer.testing import CliRunner

    args = [name, "--help"]
    narrowed = CliRunner().invoke(commands._app_for(args), args, prog_name="mbackup", terminal_width=100)
    whole = CliRunner().invoke(FULL, args, prog_name="mbackup", terminal_width=100)
    assert narrowed.exit_code == whole.exit_code == 0, narrowed.output
    assert f"mbackup {name}" in narrowed.output
    assert narrowed.output == whole.output


def test_a_mistyped_command_is_refused_with_suggestions_and_exit_2() -> None:
    run = _mbackup("crate", "-n", "x")
    assert run.returncode == 2
    assert "No such command 'crate'" in run.stderr and "create" in run.stderr


def test_an_option_value_that_names_a_command_still_runs_the_command_given() -> None:
    run = _mbackup("--config", "copy", "version")
    assert run.returncode == 0 and run.stdout.startswith("mbackup ")
