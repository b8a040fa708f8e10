"""The plugin manager: built-ins first, then third-party entry points.

Third-party packages register under the entry-point group ``milvus_backup``. Set
``MBACKUP_PLUGINS=name,name`` to load only those third-party plugins, or
``MBACKUP_PLUGINS=`` (empty) to load none.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cache
from importlib import metadata

import pluggy

from . import hookspecs

GROUP = "milvus_backup"

# Built-ins are plain plugin modules registered through the same hooks third parties use.
DEFAULT_PLUGINS = (
    "milvus_backup.storage.backends.s3",
    "milvus_backup.storage.backends.gcs",
    "milvus_backup.storage.backends.azure",
    "milvus_backup.storage.backends.file",
    "milvus_backup.storage.backends.memory",
    "milvus_backup.milvus.adapters.v2_3",
)


@cache
def manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    allowed = os.environ.get("MBACKUP_PLUGINS")
    if allowed is None:
        pm.load_setuptools_entrypoints(GROUP)
    else:
        for name in filter(None, (n.strip() for n in allowed.split(","))):
            pm.load_setuptools_entrypoints(GROUP, name=name)
    # A misspelled hook in any plugin fails loudly instead of silently never running.
    pm.check_pending()
    return pm


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    hooks: list[str]
    schemes: list[str]
    builtin: bool


def describe() -> list[PluginInfo]:
    pm = manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    own_version = _own_version()
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        schemes = plugin.mbackup_storage_schemes() if hasattr(plugin, "mbackup_storage_schemes") else []
        dist = dists.get(id(plugin))
        out.append(
            PluginInfo(
                name=name,
                version=dist.version if dist else own_version,
                hooks=hooks,
                schemes=list(schemes),
                builtin=name in DEFAULT_PLUGINS,
            )
        )
    return out


def _own_version() -> str:
    try:
        return metadata.version("mbackup")
    except metadata.PackageNotFoundError:
        return "dev"
