"""Milvus adapters by line (``"2.3"``), as plugins register them (the
``mbackup_register_milvus_adapter`` hook): a server's version picks the adapter of its line,
unless the ``mbackup.milvusAdapter`` setting names one."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import PluginError
from ..versions import LATEST_DEV

if TYPE_CHECKING:
    from .base import MilvusAdapter

#: ``factory(version, connection)``: the adapter for a server of ``version`` ("v2.3.5").
AdapterFactory = Callable[[str, Any], "MilvusAdapter"]

_LINE = re.compile(r"\d+\.\d+")


@dataclass(frozen=True)
class AdapterEntry:
    line: str
    factory: AdapterFactory
    plugin: str


class MilvusAdapters:
    """Every registered Milvus line, each served by exactly one plugin."""

    def __init__(self) -> None:
        self._lines: dict[str, AdapterEntry] = {}

    def registrar(self, plugin: str) -> Callable[[str, AdapterFactory], None]:
        """The ``register`` function handed to one plugin's ``mbackup_register_milvus_adapter``."""

        def register(line: str, factory: AdapterFactory) -> None:
            self.add(AdapterEntry(line, factory, plugin))

        return register

    def add(self, entry: AdapterEntry) -> None:
        if not _LINE.fullmatch(entry.line):
            raise PluginError(f"plugin {entry.plugin} registers an adapter for Milvus {entry.line!r}: "
                              "name a line as major.minor, e.g. 2.3")
        taken = self._lines.get(entry.line)
        if taken is not None:
            raise PluginError(f"Milvus {entry.line} adapter is registered by two plugins, {taken.plugin} and "
                              f"{entry.plugin}: uninstall one, or leave it out with MBACKUP_PLUGINS")
        self._lines[entry.line] = entry

    def lines(self, plugin: str | None = None) -> list[str]:
        """The registered lines (of one plugin), oldest first."""
        found = [e.line for e in self._lines.values() if plugin is None or e.plugin == plugin]
        return sorted(found, key=lambda line: tuple(int(n) for n in line.split(".")))

    def entry(self, line: str) -> AdapterEntry:
        """The registered adapter of ``line`` (one of :meth:`lines`)."""
        return self._lines[line]

    def adapter_for(self, version: str, connection: Any, *, line: str = "") -> MilvusAdapter:
        """The adapter of the line ``version`` belongs to, or of ``line`` when given (the
        ``mbackup.milvusAdapter`` setting); a clear error when none is registered."""
        from ..connection import MilvusError, parse_version
        from .base import MilvusAdapter

        supported = ", ".join(self.lines()) or "none"
        if line:
            entry = self._lines.get(line.strip())
            if entry is None:
                raise MilvusError(f"mbackup.milvusAdapter is {line!r}, and no adapter serves that Milvus line "
                                  f"(lines: {supported}): set it to one of them, or leave it empty to pick the "
                                  "server's own")
        else:
            server = getattr(connection, "server", None)
            number = server.number if server is not None else parse_version(version)
            entry = self._lines.get(f"{number[0]}.{number[1]}")
            if entry is None:
                raise MilvusError(self._no_adapter(version, number, supported))
        adapter = entry.factory(version, connection)
        if not isinstance(adapter, MilvusAdapter):
            raise MilvusError(f"the adapter plugin for Milvus {version} ({entry.plugin}) returned "
                              f"{type(adapter).__name__}, not a MilvusAdapter")
        adapter.served_by = f"{entry.line} from plugin {entry.plugin}" + (
            " (forced by mbackup.milvusAdapter)" if line else "")
        return adapter

    def _no_adapter(self, version: str, number: tuple[int, int, int], supported: str) -> str:
        """Names the nearest line and how to use it anyway: the newest line below the
        server's, else the oldest one."""
        lines = [tuple(int(n) for n in line.split(".")) for line in self.lines()]
        if not lines:
            return f"Milvus {version} is not supported: install an adapter plugin (no Milvus line has one)"
        near = max((ln for ln in lines if ln <= number[:2]), default=min(lines))
        near_line = f"{near[0]}.{near[1]}"
        line = "a development build of no known line" if number == LATEST_DEV else f"Milvus {number[0]}.{number[1]}"
        return (f"Milvus {version} is not supported: no adapter for {line} (lines: {supported}); to try the "
                f"nearest, {near_line}, set mbackup.milvusAdapter: {near_line} (or --set "
                f"mbackup.milvusAdapter={near_line}), or install an adapter plugin for {line}")
