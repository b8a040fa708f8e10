"""Kept for plugins written against ``milvus_backup.hookspecs`` (examples/ do): the hooks live
in ``milvus_backup.plugins.hookspecs``."""

from .plugins.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
