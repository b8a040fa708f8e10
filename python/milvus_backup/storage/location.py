"""Where objects live: a store plus a prefix inside it, opened from a URL by a backend plugin."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from .. import _engine
from ..errors import MBackupError
from ..plugins.manager import manager
from ..config.secrets import display_url, has_password, is_secret_name, url_secret


class StorageError(MBackupError):
    """A store could not be opened or answered with an error."""


@runtime_checkable
class ObjectStore(Protocol):
    """What a Python backend implements when it cannot hand the engine a native store.
    Keys are full keys inside the store; ``head`` returns (size, etag) or None."""

    def list(self, prefix: str = "") -> list[tuple[str, int, str | None]]: ...
    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes) -> str | None: ...
    def head(self, key: str) -> tuple[int, str | None] | None: ...
    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the location's prefix
    size: int
    etag: str | None = None


@dataclass
class Location:
    """``store`` + ``prefix``; ``url`` is for display and never carries secrets. The store is
    the engine's own, or an object a Python backend implements (the engine's slow path)."""

    store: _engine.Store | ObjectStore
    prefix: str
    url: str
    scheme: str = ""
    options: dict[str, str] = field(default_factory=dict, repr=False)

    def key(self, relative: str) -> str:
        # Keys are kept as spelled: stripping a leading "/" would map "a//b" onto "a/b".
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def child(self, relative: str) -> Location:
        return Location(self.store, self.key(relative).rstrip("/"), f"{self.url.rstrip('/')}/{relative}", self.scheme, self.options)

    def list(self) -> Iterator[ObjectInfo]:
        """Every object under the prefix, with keys relative to it."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            listing = self.store.list(self.prefix)  # the engine lists again after a cut-off listing
        except _engine.EngineError as e:
            raise describe_error(self, e) from None
        for key, size, etag in listing:
            if key.startswith(prefix):
                yield ObjectInfo(key[len(prefix):], size, etag)

    def read(self, relative: str) -> bytes:
        try:
            return self.store.get(self.key(relative))
        except _engine.EngineError as e:
            raise describe_error(self, e) from None

    def write(self, relative: str, data: bytes) -> None:
        try:
            self.store.put(self.key(relative), data)
        except _engine.EngineError as e:
            raise describe_error(self, e) from None

    def ensure_bucket(self) -> bool:
        """Create the bucket behind this location if the store has buckets and it is
        missing; True when one was created."""
        try:
            self.store.list(self.prefix + "/" if self.prefix else "")
            return False
        except _engine.EngineError as e:
            if e.code != "no_such_bucket" or not hasattr(self.store, "create_bucket"):
                raise describe_error(self, e) from None
        try:
            self.store.create_bucket()
        except _engine.EngineError as e:
            raise describe_error(self, e) from None
        return True

    def exists(self, relative: str) -> bool:
        try:
            return self.store.head(self.key(relative)) is not None
        except _engine.EngineError as e:
            raise describe_error(self, e) from None


def split_url(url: str) -> tuple[str, str, str, dict[str, str]]:
    """``s3://bucket/a/b?endpoint=x`` -> ("s3", "bucket", "a/b", {"endpoint": "x"})."""
    parts = urlsplit(url)
    if not parts.scheme or "://" not in url:
        raise StorageError(f"invalid location {display_url(url)!r}: use a URL such as s3://bucket/prefix, "
                           "file:///path or memory://name")
    return parts.scheme, parts.netloc, parts.path.strip("/"), dict(parse_qsl(parts.query))


def open_location(url: str, options: dict[str, str] | None = None) -> Location:
    """Open a URL through whichever backend plugin claims its scheme; a plain path is a folder."""
    if "://" not in url:
        url = "file://" + os.path.abspath(os.path.expanduser(url))
    scheme = url.split("://", 1)[0]
    secret = url_secret(url)
    if secret:
        # Whatever the scheme: a URL is echoed in errors, progress and manifests, and kept in
        # shell history and process lists.
        raise StorageError(f"{display_url(url)}: the URL holds {secret} (not shown); give credentials through "
                           "a profile, the config file or environment variables, never in the URL")
    location = manager().hook.mbackup_open_storage(url=url, options=dict(options or {}))
    if location is None:
        known = sorted({s for schemes in manager().hook.mbackup_storage_schemes() for s in schemes})
        raise StorageError(f"no storage backend for {display_url(url)!r} (scheme {scheme!r}); known schemes: {', '.join(known)}")
    return location


def native_store(location_url: str, store_url: str, options: dict[str, str]) -> _engine.Store:
    """Build an engine store, turning its errors into one-line StorageErrors."""
    for key, value in options.items():
        # An endpoint from a profile or AWS_ENDPOINT_URL: the engine may quote it in errors.
        if not is_secret_name(key) and has_password(value):
            raise StorageError(f"{location_url}: {key} holds a user:password@ part (not shown); "
                               "give credentials in their own settings")
    try:
        return _engine.Store(store_url, options)
    except _engine.EngineError as e:
        raise StorageError(f"{location_url}: {e}") from None


# The store's own name for why it rejected the credentials, by engine error code.
_REJECTED = {"invalid_access_key": "InvalidAccessKeyId", "signature_mismatch": "SignatureDoesNotMatch",
             "expired_token": "ExpiredToken", "access_denied": "AccessDenied"}


def describe_error(location: Location, error: _engine.EngineError) -> StorageError:
    """One line a user can act on, for an error from the store behind ``location``: decided on
    the error's code, never on its words (they are the store's and change with it)."""
    code, text = error.code, str(error)
    if code == "no_credentials":
        # object_store fell back to the instance metadata service: nothing configured.
        return StorageError(f"{location.url}: no credentials found; set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or use a profile or the config file")
    if isinstance(error, _engine.AuthError):
        hint = "check the access key and secret (or the profile/config they come from)"
        return StorageError(f"{location.url}: the server rejected the credentials "
                            f"({_REJECTED.get(code, 'access denied')}); {hint}")
    if code == "no_such_bucket":
        return StorageError(f"{location.url}: the bucket does not exist; create it or fix the bucket name")
    if code == "tls_untrusted":
        problem = _certificate_problem(location)
        reason = problem.verify_message if problem and problem.verify_message else "certificate verify failed"
        hint = ("use the host name the certificate was issued for"
                if problem and problem.verify_code in _NAME_MISMATCH else
                "if a private CA signed it, pass that CA's PEM file as ca_file=/path/to/ca.pem (URL query or profile)")
        return StorageError(f"{location.url}: the server's TLS certificate is not trusted ({reason}); {hint}")
    if code == "unreachable":
        return StorageError(f"{location.url}: cannot reach the endpoint ({text.split(' - ')[-1]}); check the address and port")
    return StorageError(f"{location.url}: {text}")


# OpenSSL's verify codes for a certificate issued to another host name, e-mail or IP address.
_NAME_MISMATCH = {62, 63, 64}


def _certificate_problem(location: Location) -> ssl.SSLCertVerificationError | None:
    """Why the endpoint's TLS certificate fails verification, in OpenSSL's words, or None:
    one TLS handshake with the same trust as the engine's (system roots plus ca_file)."""
    endpoint = location.options.get("aws_endpoint", "")
    if not endpoint.startswith("https://"):
        return None
    try:
        parts = urlsplit(endpoint)
        context = ssl.create_default_context(cafile=location.options.get("ca_file"))
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname=parts.hostname):
                return None
    except ssl.SSLCertVerificationError as e:
        return e
    except (OSError, ValueError):  # unreachable, not TLS...: nothing more to say
        return None


def skipped_links() -> list[str]:
    """One line per folder whose listings left out symbolic links or special files since the
    last call (mbackup never follows a link, so what they point to was not read, written or
    deleted)."""
    by_root: dict[str, list[str]] = {}
    for root, key in _engine.take_skipped_links():
        by_root.setdefault(root, []).append(key)
    lines = []
    for root, keys in sorted(by_root.items()):
        shown = ", ".join(shown_key(k) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
        lines.append(f"{root}: skipped {len(keys):,} symbolic link{'s' if len(keys) > 1 else ''} or special "
                     f"file{'s' if len(keys) > 1 else ''} ({shown}): mbackup never follows links; copy what they "
                     "point to by naming it directly")
    return lines


def shown_key(key: str) -> str:
    """A key as one printable token: quoted with escapes when it holds control characters."""
    return key if key.isprintable() else repr(key)

