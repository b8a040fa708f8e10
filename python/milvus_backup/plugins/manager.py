"""The plugin manager: built-ins first, then third-party entry points, and what they register.

Third-party packages register under the entry-point group ``milvus_backup``. Set
``MBACKUP_PLUGINS=name,name`` to load only those third-party plugins, or
``MBACKUP_PLUGINS=`` (empty) to load none.

Storage backends and Milvus adapters are looked up in the registries built here from the
``mbackup_register_*`` hooks: :func:`storage_backends` by URL scheme or config provider,
:func:`milvus_adapters` by Milvus line. Both are built each time they are asked for (it costs
a few calls), so a plugin registered later, as tests do, is seen.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass
from functools import cache
from importlib.machinery import PathFinder
from typing import TYPE_CHECKING, TypeVar

import pluggy

from ..errors import PluginError
from ..storage.registry import StorageBackends
from . import hookspecs

if TYPE_CHECKING:
    from ..milvus.adapters.registry import MilvusAdapters

GROUP = "milvus_backup"
_R = TypeVar("_R", StorageBackends, "MilvusAdapters")

# Built-ins are plain plugin modules registered through the same hooks third parties use.
STORAGE_PLUGINS = (
    "milvus_backup.storage.backends.s3",
    "milvus_backup.storage.backends.gcs",
    "milvus_backup.storage.backends.azure",
    "milvus_backup.storage.backends.file",
    "milvus_backup.storage.backends.memory",
)
# Registered when an adapter is first asked for: a command that talks to no Milvus (copy,
# list, verify) does not import them and the backup format they pull in (issue #14).
ADAPTER_PLUGINS = (
    "milvus_backup.milvus.adapters.v2_3",
    "milvus_backup.milvus.adapters.v2_4_plus",
)
DEFAULT_PLUGINS = STORAGE_PLUGINS + ADAPTER_PLUGINS
_ADAPTERS_LOADING = threading.Lock()  # the server's jobs may ask for their first adapter at once


def _builtin_rank(name: str) -> int:
    """Built-ins first, in DEFAULT_PLUGINS' order, however late they were loaded; then the rest."""
    return DEFAULT_PLUGINS.index(name) if name in DEFAULT_PLUGINS else len(DEFAULT_PLUGINS)


@cache
def manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for name in STORAGE_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    try:
        allowed = os.environ.get("MBACKUP_PLUGINS")
        if allowed is None:
            if _may_declare(GROUP):
                pm.load_setuptools_entrypoints(GROUP)
        else:
            wanted = [n for n in (n.strip() for n in allowed.split(",")) if n]
            for name in wanted:
                pm.load_setuptools_entrypoints(GROUP, name=name)
            if missing := [n for n in wanted if not pm.has_plugin(n)]:
                # A misspelled name would otherwise load nothing, silently: no webhook, no backend.
                raise PluginError(f"MBACKUP_PLUGINS names {', '.join(missing)}, which no installed plugin is called "
                                  f"(installed: {', '.join(_installed()) or 'none'}): correct it, or install the plugin")
        # A misspelled hook in any plugin fails loudly instead of silently never running.
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        culprit = pm.get_name(e.plugin) or getattr(e.plugin, "__name__", repr(e.plugin))
        detail = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        raise PluginError(f"plugin {culprit} does not fit mbackup's hooks ({detail}): fix it, uninstall it, "
                          "or leave it out with MBACKUP_PLUGINS") from None
    # A scheme two plugins register is an error now, not at first use (a Milvus line: once
    # an adapter is asked for).
    storage_backends(pm)
    return pm


def _may_declare(group: str) -> bool:
    """Whether any installed distribution may have entry points in ``group``: False only when
    every place importlib.metadata would look is a folder whose distributions' entry point
    files were read and none names the group. Importing importlib.metadata and reading every
    distribution's metadata is ~0.035 CPU s of each run (issue #14), spent for nothing where
    no plugin is installed; a layout this does not read (a zip on sys.path, a finder of its
    own) answers True, and the full scan decides."""
    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        return True
    header = f"[{group}]"
    for entry in sys.path:
        folder = entry or "."
        if not os.path.isdir(folder):
            if os.path.exists(folder):  # a zip, which importlib.metadata reads and this does not
                return True
            continue
        if folder.lower().endswith(".egg") and _names(os.path.join(folder, "EGG-INFO", "entry_points.txt"), header):
            return True
        try:
            names = os.listdir(folder)
        except OSError:
            return True
        for name in names:
            low = name.lower()  # as importlib.metadata matches them
            if low.endswith((".dist-info", ".egg-info", ".egg")):
                inner = "EGG-INFO" if low.endswith(".egg") else ""
                if _names(os.path.join(folder, name, inner, "entry_points.txt"), header):
                    return True
    return False


def _names(path: str, header: str) -> bool:
    """Whether the entry point file at ``path`` has an entry under ``header`` (mbackup's own
    declares the group empty); True when it exists but cannot be read (the full scan will
    say why)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f]
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    inside = False
    for line in lines:
        if line.startswith("["):
            inside = line == header
        elif inside and line and not line.startswith("#"):  # what importlib.metadata skips
            return True
    return False


def _installed() -> list[str]:
    """The names of the third-party plugins installed (entry points of GROUP), sorted."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=GROUP)})


def storage_backends(pm: pluggy.PluginManager | None = None) -> StorageBackends:
    """Every storage backend the loaded plugins register, by scheme and by config provider."""
    pm = pm or manager()
    backends = _registered(pm.hook.mbackup_register_storage, StorageBackends())
    # Plugins still implementing the deprecated first-result hook serve what no scheme does.
    for impl in reversed(pm.hook.mbackup_open_storage.get_hookimpls()):
        # pluggy types a hook's function as returning object; the hookspec says Location | None.
        backends.legacy.append(impl.function)  # type: ignore[arg-type]
    backends.legacy_schemes = [s for schemes in pm.hook.mbackup_storage_schemes() for s in schemes]
    return backends


def milvus_adapters(pm: pluggy.PluginManager | None = None) -> MilvusAdapters:
    """Every Milvus adapter the loaded plugins register, by Milvus line (mbackup's own
    plugin manager loads the built-in adapters the first time)."""
    from ..milvus.adapters.registry import MilvusAdapters

    return _registered((pm or _with_adapters(manager())).hook.mbackup_register_milvus_adapter, MilvusAdapters())


def _with_adapters(pm: pluggy.PluginManager) -> pluggy.PluginManager:
    with _ADAPTERS_LOADING:
        for name in ADAPTER_PLUGINS:
            if not pm.has_plugin(name):
                pm.register(importlib.import_module(name), name=name)
    return pm


def _registered(hook: pluggy.HookCaller, registry: _R) -> _R:
    """``registry`` filled by every implementation of a ``mbackup_register_*`` hook, each
    handed a ``register`` that knows which plugin is registering (to name it in conflicts)."""
    # A conflict names the built-in first.
    for impl in sorted(hook.get_hookimpls(), key=lambda impl: _builtin_rank(impl.plugin_name)):
        impl.function(register=registry.registrar(impl.plugin_name))
    return registry


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    hooks: list[str]
    schemes: list[str]
    builtin: bool
    milvus_lines: list[str]


def describe() -> list[PluginInfo]:
    pm = _with_adapters(manager())
    backends, adapters = storage_backends(pm), milvus_adapters(pm)
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    from .. import __version__ as own_version
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np: _builtin_rank(np[0])):
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        schemes = backends.schemes(name)
        if hasattr(plugin, "mbackup_storage_schemes"):  # a plugin on the deprecated hooks
            schemes += plugin.mbackup_storage_schemes()
        dist = dists.get(id(plugin))
        out.append(
            PluginInfo(
                name=name,
                version=dist.version if dist else own_version,
                hooks=hooks,
                schemes=list(schemes),
                builtin=name in DEFAULT_PLUGINS,
                milvus_lines=adapters.lines(name),
            )
        )
    return out


