"""Where objects live: a store plus a prefix inside it, opened from a URL by a backend plugin
(``registry.py`` finds the backend). Every call on a store goes through a :class:`Location`
method, which turns the engine's errors into one line a user can act on, once."""

from __future__ import annotations

import builtins
import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from .. import _engine
from ..config.secrets import display_url, has_password, is_secret_name
from ..errors import EXIT_UNREACHABLE, MBackupError, UnreachableError, engine_exit_code

if TYPE_CHECKING:
    import ssl


class StorageError(MBackupError):
    """A store could not be opened or answered with an error."""


class StoreUnreachable(StorageError, UnreachableError):
    """The store did not answer, timed out, failed (HTTP 5xx) or asked to slow down."""


class NotFound(StorageError):
    """The object, or the bucket holding it, does not exist."""


class BucketNotFound(NotFound):
    """The bucket does not exist."""


class AlreadyExists(StorageError):
    """A write with ``if_absent`` found the key taken."""


class VersionChanged(StorageError):
    """A write with ``if_match`` found another version of the object, or none."""


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
    the engine's own, or an object a Python backend implements (the engine's slow path). Keys
    given to the methods are relative to the prefix. ``bucket_id`` names the bucket and the
    server holding it (the backend sets it; "" when it does not say)."""

    store: _engine.Store | ObjectStore
    prefix: str
    url: str
    scheme: str = ""
    options: dict[str, str] = field(default_factory=dict, repr=False)
    bucket_id: str = ""

    def key(self, relative: str) -> str:
        # Keys are kept as spelled: stripping a leading "/" would map "a//b" onto "a/b".
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def list(self, under: str = "") -> list[ObjectInfo]:
        """Every object under the prefix (or under ``under`` inside it), keys relative to the prefix."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        with self._errors():
            listing = self.store.list(self.key(under) if under else self.prefix)  # the engine lists again after a cut-off listing
        return [ObjectInfo(key[len(prefix):], size, etag) for key, size, etag in listing if key.startswith(prefix)]

    # Below here `list` is the method above: annotations name the type as builtins.list.
    def list_dirs(self, under: str = "") -> tuple[builtins.list[str], builtins.list[ObjectInfo]]:
        """One level under ``under``: (sub-"directories", objects), keys relative to the prefix."""
        cut = len(self.prefix) + 1 if self.prefix else 0
        where = self.key(under) if under else self.prefix
        with self._errors():
            if hasattr(self.store, "list_dirs"):
                dirs, objects = self.store.list_dirs(where)
            else:  # a store a plugin implements in Python may only list everything: one level is cut from it
                dirs, objects = _one_level(self.store.list(where), where)
        return [d[cut:] for d in dirs], [ObjectInfo(key[cut:], size, etag) for key, size, etag in objects]

    def read(self, relative: str) -> bytes:
        with self._errors():
            return self.store.get(self.key(relative))

    def write(self, relative: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str | None:
        """Write ``data``; returns the version (ETag) when the store gives one. With ``if_absent``
        only if nothing is there (:class:`AlreadyExists`), with ``if_match`` only over that
        version (:class:`VersionChanged`)."""
        conditions: dict[str, Any] = {"if_absent": True} if if_absent else {}
        if if_match is not None:
            conditions["if_match"] = if_match
        with self._errors():
            # No condition, no keyword: stores a plugin implements in Python take put(key, data).
            return self.store.put(self.key(relative), data, **conditions)

    def read_many(self, relatives: Iterable[str]) -> dict[str, bytes]:
        """Read small objects (meta files) at once, not one round trip after another."""
        keys = builtins.list(relatives)
        return dict(zip(keys, in_parallel(self.read, keys), strict=True))

    def write_many(self, items: dict[str, bytes]) -> None:
        """Write small objects (meta files) at once; the first failure is raised once all ended."""
        in_parallel(lambda rel: self.write(rel, items[rel]), builtins.list(items))

    def head(self, relative: str) -> tuple[int, str | None] | None:
        """(size, version) of an object, or None when there is none."""
        with self._errors():
            return self.store.head(self.key(relative))

    def exists(self, relative: str) -> bool:
        return self.head(relative) is not None

    def modified(self, relative: str) -> float | None:
        """When an object was last written (seconds since the epoch); None when it is gone or
        the store does not say (a store a plugin implements in Python)."""
        if not hasattr(self.store, "list_meta"):
            return None
        key = self.key(relative)
        with self._errors():  # stores list by folder: the object's own
            return next((t for k, _, _, t in self.store.list_meta(key.rpartition("/")[0]) if k == key), None)

    def delete(self, relative: str) -> None:
        """Delete an object; one already gone counts as deleted."""
        with self._errors():
            self.store.delete(self.key(relative))

    def delete_many(self, relatives: builtins.list[str], parallel: int = 32) -> builtins.list[tuple[str, str]]:
        """Delete objects ``parallel`` at a time; (key, error) for each that failed."""
        cut = len(self.prefix) + 1 if self.prefix else 0
        keys = [self.key(r) for r in relatives]
        with self._errors():
            if hasattr(self.store, "delete_many"):
                failed = self.store.delete_many(keys, parallel)
            else:
                failed = _delete_each(self.store, keys)
        return [(key[cut:], error) for key, error in failed]

    def has_bucket(self) -> bool:
        """Does the bucket behind this location exist? (One level listed, not every object
        under it; stores without buckets always have theirs.) Asks only: what read-only
        commands and dry runs call."""
        try:
            self.list_dirs()
            return True
        except BucketNotFound:
            if not hasattr(self.store, "create_bucket"):
                raise
            return False

    def list_if_bucket(self, under: str = "") -> builtins.list[ObjectInfo] | None:
        """:meth:`list`, or None when the bucket behind this location does not exist: a
        command that lists its destination anyway learns both from one request."""
        try:
            return self.list(under)
        except BucketNotFound:
            if not hasattr(self.store, "create_bucket"):
                raise
            return None

    def ensure_bucket(self) -> bool:
        """Create the bucket behind this location if the store has buckets and it is
        missing; True when one was created. Only commands that write call this."""
        if self.has_bucket():
            return False
        self.make_bucket()
        return True

    def make_bucket(self) -> None:
        """Create the bucket a listing found missing (:meth:`list_if_bucket` None, or
        :meth:`has_bucket` False). One another run made meanwhile is taken as made."""
        assert hasattr(self.store, "create_bucket")  # only a store with buckets finds one missing
        with self._errors():
            self.store.create_bucket()

    def same_bucket(self, other: Location) -> bool:
        """Are both in one bucket of one server, so that a key of one is a key of the other?"""
        return bool(self.bucket_id) and self.bucket_id == other.bucket_id

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except _engine.EngineError as e:
            raise storage_error(self, e) from None


def in_parallel(call: Callable[[Any], Any], items: builtins.list[Any], most: int = 16) -> builtins.list[Any]:
    """``call`` on each item, ``most`` at a time, results in order: for round trips to a store
    (the engine releases the GIL while it waits). The first failure is raised once all ended."""
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(min(most, len(items)), thread_name_prefix="mbackup-io") as pool:
        return builtins.list(pool.map(call, items))


def alongside(side: Callable[[], Any], main: Callable[[], Any]) -> tuple[Any, Any]:
    """``main()`` in this thread while ``side()`` runs in another: round trips that need not
    wait for it. Both end before this returns; side's failure is raised first (it stands for
    the step that came first), then main's."""
    with ThreadPoolExecutor(1, thread_name_prefix="mbackup-io") as pool:
        future = pool.submit(contextvars.copy_context().run, side)
        try:
            out = main()
        finally:
            first = future.result()
        return first, out


def _one_level(listing: list[tuple[str, int, str | None]], prefix: str
               ) -> tuple[list[str], list[tuple[str, int, str | None]]]:
    """What the engine's ``list_dirs`` answers, cut from a whole listing: the sub-"directories"
    one level under ``prefix`` and the objects right in it, full keys in key order."""
    base = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
    dirs: set[str] = set()
    objects = []
    for key, size, etag in listing:
        if key.startswith(base):
            head, sep, _ = key[len(base):].partition("/")
            if sep:
                dirs.add(base + head)
            else:
                objects.append((key, size, etag))
    return sorted(dirs), sorted(objects)


def _delete_each(store: ObjectStore, keys: list[str]) -> list[tuple[str, str]]:
    """The engine's ``delete_many`` for a store a plugin implements in Python: one key at a
    time, and (key, error) for each that failed."""
    failed = []
    for key in keys:
        try:
            store.delete(key)
        except Exception as e:  # whatever the plugin's library raises: reported as the engine reports
            failed.append((key, str(e) or type(e).__name__))
    return failed


@dataclass(frozen=True)
class StorageUrl:
    """A location URL split once, for the backend registered for its scheme:
    ``s3://bucket/a/b?endpoint=x`` -> scheme "s3", bucket "bucket", prefix "a/b", query
    {"endpoint": "x"}. ``text`` is the URL as given (shown through ``display_url`` only)."""

    scheme: str
    bucket: str
    prefix: str
    query: dict[str, str]
    text: str

    @property
    def rest(self) -> str:
        """Everything after ``scheme://`` as written: a file URL's path, "#" and "?" included."""
        return self.text.split("://", 1)[1]

    def __iter__(self) -> Iterator[Any]:
        # Unpacks as the (scheme, bucket, prefix, query) tuple split_url returned before.
        return iter((self.scheme, self.bucket, self.prefix, self.query))


def split_url(url: str) -> StorageUrl:
    """``s3://bucket/a/b?endpoint=x`` -> StorageUrl("s3", "bucket", "a/b", {"endpoint": "x"})."""
    invalid = StorageError(f"invalid location {display_url(url)!r}: use a URL such as s3://bucket/prefix, "
                           "file:///path or memory://name")
    try:
        parts = urlsplit(url, allow_fragments=False)  # no store has fragments: a '#' is part of a key
    except ValueError:  # a malformed host part, e.g. "s3://[bucket"
        raise invalid from None
    if not parts.scheme or "://" not in url:
        raise invalid
    return StorageUrl(parts.scheme, parts.netloc, parts.path.strip("/"), dict(parse_qsl(parts.query)), url)


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
        return StoreUnreachable(f"{location.url}: cannot reach the endpoint ({text.split(' - ')[-1]}); "
                                "check the address and port")
    if engine_exit_code(code) == EXIT_UNREACHABLE:
        return StoreUnreachable(f"{location.url}: {text}")
    return StorageError(f"{location.url}: {text}")


def storage_error(location: Location, error: _engine.EngineError) -> StorageError:
    """An engine error as callers catch it: describe_error's line, in the class of what went
    wrong. The one place that maps engine errors for Location's methods."""
    described = describe_error(location, error)
    line = str(described)
    if bucket_missing(error):
        return BucketNotFound(line)
    for engine_class, cls in ((_engine.NotFoundError, NotFound), (_engine.AlreadyExistsError, AlreadyExists),
                              (_engine.PreconditionError, VersionChanged)):
        if isinstance(error, engine_class):
            return cls(line)
    return described


def bucket_missing(error: Exception) -> bool:
    """Did the store say the bucket itself does not exist?"""
    return isinstance(error, _engine.EngineError) and error.code == "no_such_bucket"


# OpenSSL's verify codes for a certificate issued to another host name, e-mail or IP address.
_NAME_MISMATCH = {62, 63, 64}


def _certificate_problem(location: Location) -> ssl.SSLCertVerificationError | None:
    """Why the endpoint's TLS certificate fails verification, in OpenSSL's words, or None:
    one TLS handshake with the same trust as the engine's (system roots plus ca_file)."""
    import socket  # only here: every run would load them for the rare certificate failure
    import ssl

    endpoint = location.options.get("aws_endpoint", "")
    if not endpoint.startswith("https://"):
        return None
    try:
        parts = urlsplit(endpoint)
        context = ssl.create_default_context(cafile=location.options.get("ca_file"))
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=5) as sock, \
                context.wrap_socket(sock, server_hostname=parts.hostname):
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

