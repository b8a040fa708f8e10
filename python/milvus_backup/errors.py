"""Errors mbackup reports to the user, and the exit code each one means.

Every error a user can cause or fix (a bad config, a damaged backup, a bad name) derives
from :class:`MBackupError`. Its message is one line per problem, names the key, file or
object involved and says how to fix it. The CLI prints ``error: <message>`` and exits with
the error's ``exit_code``, which tells a script or a CronJob what to do next:

====  ================================================================================
code  meaning
====  ================================================================================
0     done (also: nothing to do, e.g. ``delete --if-exists`` of a missing backup)
1     partly failed: some objects or steps failed; running it again may finish it
2     usage or config error: fix the command line or the config, then run again
3     Milvus or the object store not reachable, throttled or timed out, or another run holds
      the backup's lock (or took it over mid-run): retry later
4     integrity problem: a damaged backup or a checksum mismatch
130   interrupted by Ctrl-C (SIGINT); 143 stopped by SIGTERM: what finished is printed
====  ================================================================================

Anything that is not an ``MBackupError`` is a bug and gets a traceback.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTEGRITY = 0, 1, 2, 3, 4


# The engine's error codes (rust/src/errors.rs) by what they tell an operator; any other code
# exits 1 (the run failed; running it again may finish it), bytes damaged in transit
# ("corrupt") too: the copy is redone, the backup is not damaged.
_ENGINE_EXIT_CODES = {
    **dict.fromkeys(("unreachable", "timeout", "throttled", "server_error", "transient"), EXIT_UNREACHABLE),
    **dict.fromkeys(("auth", "invalid_access_key", "signature_mismatch", "expired_token", "access_denied",
                     "no_credentials", "tls_untrusted", "no_such_bucket", "config", "protocol"), EXIT_USAGE),
}


def engine_exit_code(code: str | None) -> int:
    """The exit code an engine error (or a failed copy job) with this code means."""
    return _ENGINE_EXIT_CODES.get(code or "", EXIT_FAILED)


class MBackupError(Exception):
    """Base class of the errors mbackup reports to the user as ``error: <message>``."""

    exit_code: ClassVar[int] = EXIT_USAGE


class UnreachableError(MBackupError):
    """Milvus or the object store did not answer, timed out or asked to slow down: retry later."""

    exit_code: ClassVar[int] = EXIT_UNREACHABLE


class IntegrityError(MBackupError):
    """A backup is damaged: an object missing or changed, a checksum that does not match, meta
    that cannot be read."""

    exit_code: ClassVar[int] = EXIT_INTEGRITY


class PartialError(MBackupError):
    """Some of the work failed and some finished; running the same command again may finish it."""

    exit_code: ClassVar[int] = EXIT_FAILED


class ConfigError(MBackupError):
    """The configuration (file, environment or ``--set``) is unusable.

    ``problems`` holds one line per problem; the message is those lines joined by
    newlines, so a broken file is fixed in one round trip instead of one per mistake.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class MetaError(IntegrityError):
    """Backup meta files are missing, damaged or unsafe to follow."""


class BackupNameError(MBackupError, ValueError):
    """A backup name breaks the naming rule shared with the Go tool."""


class PluginError(MBackupError):
    """Two plugins registered one thing (a URL scheme, a Milvus line), or one registered it wrongly."""
