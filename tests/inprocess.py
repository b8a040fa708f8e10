"""Run the ``mbackup`` command line in this process, for tests that run it many times or hook
into it: the same output and exit code as the process, through ``cli.main``."""

from __future__ import annotations

import contextlib
import io
import sys
from unittest import mock

import secretscan
from milvus_backup.cli import commands as cli


def run(*args: str) -> tuple[int, str, str]:
    """``mbackup <args>``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.object(sys, "argv", ["mbackup", *args]):
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    secretscan.RUNS.append((f"mbackup {' '.join(args)} (in process)", out.getvalue(), err.getvalue()))
    secretscan.note_log_files(args)
    return code, out.getvalue(), err.getvalue()
