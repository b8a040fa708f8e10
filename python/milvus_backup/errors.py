"""Errors mbackup reports to the user.

Every error a user can cause or fix (a bad config, a damaged backup, a bad name) derives
from :class:`MBackupError`. Its message is one line per problem, names the key, file or
object involved and says how to fix it. The CLI prints ``error: <message>`` and exits 2;
anything that is not an ``MBackupError`` is a bug and gets a traceback.
"""

from __future__ import annotations


class MBackupError(Exception):
    """Base class of the errors mbackup reports to the user as ``error: <message>``."""


class ConfigError(MBackupError):
    """The configuration (file, environment or ``--set``) is unusable.

    ``problems`` holds one line per problem; the message is those lines joined by
    newlines, so a broken file is fixed in one round trip instead of one per mistake.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class MetaError(MBackupError):
    """Backup meta files are missing, damaged or unsafe to follow."""


class BackupNameError(MBackupError, ValueError):
    """A backup name breaks the naming rule shared with the Go tool."""


class PluginError(MBackupError):
    """Two plugins registered one thing (a URL scheme, a Milvus line), or one registered it wrongly."""
