"""Storage backends by URL scheme, as plugins register them (the ``mbackup_register_storage``
hook): a URL is split once and handed to the one backend registered for its scheme."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..config.secrets import display_url, url_secret
from ..errors import PluginError
from .location import Location, StorageError, StorageUrl, split_url

#: ``open(url, options)``: a Location for a split URL and options (a profile's, the config file's).
Opener = Callable[[StorageUrl, dict[str, str]], Location]


@dataclass(frozen=True)
class StorageBackend:
    """What one plugin registered for one URL scheme."""

    scheme: str
    open: Opener
    plugin: str


class StorageBackends:
    """Every registered scheme, each served by exactly one plugin.

    A scheme ending in ``+`` (``"fsspec+"``) serves a family: every ``fsspec+<protocol>`` URL.
    """

    def __init__(self) -> None:
        self._schemes: dict[str, StorageBackend] = {}
        # Plugins still implementing the deprecated mbackup_open_storage hook: asked in turn
        # for a URL no registered scheme serves.
        self.legacy: list[Callable[..., Location | None]] = []
        self.legacy_schemes: list[str] = []

    def registrar(self, plugin: str) -> Callable[..., None]:
        """The ``register`` function handed to one plugin's ``mbackup_register_storage``."""

        def register(scheme: str, open: Opener) -> None:
            self.add(StorageBackend(scheme.lower(), open, plugin))

        return register

    def add(self, backend: StorageBackend) -> None:
        taken = self._schemes.get(backend.scheme)
        if taken is not None:
            raise PluginError(f"storage scheme {backend.scheme!r} is registered by two plugins, {taken.plugin} and "
                              f"{backend.plugin}: uninstall one, or leave it out with MBACKUP_PLUGINS")
        self._schemes[backend.scheme] = backend

    def schemes(self, plugin: str | None = None) -> list[str]:
        """The registered schemes (of one plugin), in registration order, a family as ``fsspec+*``."""
        return [s + "*" if s.endswith("+") else s for s, b in self._schemes.items() if plugin is None or b.plugin == plugin]

    def open(self, url: str, options: dict[str, str] | None = None) -> Location:
        """Open a URL with the backend registered for its scheme; a plain path is a folder."""
        if "://" not in url:
            url = "file://" + os.path.abspath(os.path.expanduser(url))
        secret = url_secret(url)
        if secret:
            # Whatever the scheme: a URL is echoed in errors, progress and manifests, and kept in
            # shell history and process lists.
            raise StorageError(f"{display_url(url)}: the URL holds {secret} (not shown); give credentials through "
                               "a profile, the config file or environment variables, never in the URL")
        options = dict(options or {})
        scheme = url.split("://", 1)[0]
        backend = self._schemes.get(scheme.lower())
        if backend is None and "+" in scheme:
            backend = self._schemes.get(scheme.lower().split("+", 1)[0] + "+")
        if backend is not None:
            return backend.open(split_url(url), options)
        for open_legacy in self.legacy:
            location = open_legacy(url=url, options=options)
            if location is not None:
                return location
        known = sorted({*self.schemes(), *self.legacy_schemes})
        raise StorageError(f"no storage backend for {display_url(url)!r} (scheme {scheme!r}); "
                           f"known schemes: {', '.join(known)}")
