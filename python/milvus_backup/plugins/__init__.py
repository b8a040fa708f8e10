"""Plugins: the hook specifications (what can be extended) and the manager that loads the
built-in plugins and third-party ones from the ``milvus_backup`` entry-point group."""

from .hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
