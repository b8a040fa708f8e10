"""Storage backends by URL scheme, as plugins register them (the ``mbackup_register_storage``
hook): a URL is split once and handed to the one backend registered for its scheme, and a
config file's storage section goes to the backend registered for its provider."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.secrets import display_url, url_secret
from ..errors import PluginError
from .location import Location, StorageError, StorageUrl, split_url

if TYPE_CHECKING:
    from ..config.settings import StorageConfig

#: ``open(url, options)``: a Location for a split URL and options (a profile's, the config file's).
Opener = Callable[[StorageUrl, dict[str, str]], Location]


@dataclass(frozen=True)
class StorageTarget:
    """How mbackup reaches the storage a config file's section describes: an object_store URL
    plus its config options.

    ``url`` already includes the root path: keys handed to the store are relative to it.
    ``options`` uses object_store's config keys (``aws_endpoint``, ``google_service_account``,
    ``azure_storage_account_key``...), all values strings.
    """

    url: str
    options: dict[str, str]
    bucket: str
    root_path: str
    provider: str


@dataclass(frozen=True)
class StorageBackend:
    """What one plugin registered for one URL scheme.

    ``providers``: the ``storage.provider`` names of a config file it serves, with ``target``
    turning such a section into a :class:`StorageTarget`. ``open_root`` opens a target at its
    bucket and returns the root path inside it; without it, the bucket is opened by URL.
    """

    scheme: str
    open: Opener
    plugin: str
    providers: tuple[str, ...] = ()
    target: Callable[[StorageConfig], StorageTarget] | None = None
    open_root: Callable[[StorageTarget], tuple[Location, str]] | None = None


class StorageBackends:
    """Every registered scheme and provider, each served by exactly one plugin.

    A scheme ending in ``+`` (``"fsspec+"``) serves a family: every ``fsspec+<protocol>`` URL.
    """

    def __init__(self) -> None:
        self._schemes: dict[str, StorageBackend] = {}
        self._providers: dict[str, StorageBackend] = {}
        # Plugins still implementing the deprecated mbackup_open_storage hook: asked in turn
        # for a URL no registered scheme serves.
        self.legacy: list[Callable[..., Location | None]] = []
        self.legacy_schemes: list[str] = []

    def registrar(self, plugin: str) -> Callable[..., None]:
        """The ``register`` function handed to one plugin's ``mbackup_register_storage``."""

        def register(scheme: str, open: Opener, *, providers: Iterable[str] = (),
                     target: Callable[[StorageConfig], StorageTarget] | None = None,
                     open_root: Callable[[StorageTarget], tuple[Location, str]] | None = None) -> None:
            self.add(StorageBackend(scheme.lower(), open, plugin, tuple(providers), target, open_root))

        return register

    def add(self, backend: StorageBackend) -> None:
        taken = self._schemes.get(backend.scheme)
        if taken is not None:
            raise PluginError(f"storage scheme {backend.scheme!r} is registered by two plugins, {taken.plugin} and "
                              f"{backend.plugin}: uninstall one, or leave it out with MBACKUP_PLUGINS")
        if backend.providers and backend.target is None:
            raise PluginError(f"plugin {backend.plugin} registers providers for {backend.scheme!r} without a target "
                              "function to turn a storage section into a URL and options")
        for provider in backend.providers:
            taken = self._providers.get(provider)
            if taken is not None:
                raise PluginError(f"storage provider {provider!r} is registered by two plugins, {taken.plugin} and "
                                  f"{backend.plugin}: uninstall one, or leave it out with MBACKUP_PLUGINS")
        self._schemes[backend.scheme] = backend
        self._providers.update((provider, backend) for provider in backend.providers)

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

    def target(self, storage: StorageConfig) -> StorageTarget:
        """The URL and options for a config file's storage section (``milvus.storage``...)."""
        # add() refuses a backend with providers but no target: ours has one.
        return self._for_provider(storage.provider).target(storage)  # type: ignore[misc]

    def open_root(self, storage: StorageConfig) -> tuple[Location, str]:
        """A config file's storage section, opened at its bucket (keys are whole bucket keys),
        and the root path inside that bucket."""
        backend = self._for_provider(storage.provider)
        target = backend.target(storage)  # type: ignore[misc]  # as in target(): there is one
        if backend.open_root is not None:
            return backend.open_root(target)
        url = f"{backend.scheme}://{target.bucket}"
        return backend.open(split_url(url), dict(target.options)), target.root_path

    def _for_provider(self, provider: str) -> StorageBackend:
        backend = self._providers.get(provider)
        if backend is None:
            raise StorageError(f"no storage backend serves provider {provider!r} (providers: "
                               f"{', '.join(sorted(self._providers)) or 'none'}): install its plugin")
        return backend

