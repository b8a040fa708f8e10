"""Types of the Rust engine (rust/src/py/): parallel object copies and checksums, run with the
GIL released. Sizes are bytes; times are seconds since the epoch."""

import builtins
from collections.abc import Sequence
from typing import Literal, Protocol, TypeAlias, TypedDict, final, type_check_only

__all__ = [
    "ERROR_CODES",
    "AlreadyExistsError",
    "AuthError",
    "CancelledError",
    "Copier",
    "EngineError",
    "NotFoundError",
    "PreconditionError",
    "ProtocolError",
    "Store",
    "TransientError",
    "__version__",
    "checksum",
    "take_events",
    "take_skipped_links",
]

_ErrorCode: TypeAlias = Literal[
    "not_found", "no_such_bucket",
    "auth", "invalid_access_key", "signature_mismatch", "expired_token", "access_denied", "no_credentials",
    "unreachable", "tls_untrusted", "timeout", "throttled", "server_error", "transient",
    "disk_full", "quota_exceeded", "read_only", "permission_denied", "not_permitted", "io",
    "symlink", "bad_key", "key_clash", "corrupt", "changed", "already_exists", "precondition",
    "protocol", "config", "unsupported", "refused", "cancelled", "other",
]
_Strategy: TypeAlias = Literal["server_copy", "server_multipart", "stream", "stream_multipart"]
_Listed: TypeAlias = tuple[str, int, str | None]  # (key, size, etag)

# --- errors -------------------------------------------------------------------------------

class EngineError(Exception):
    """A store operation failed; ``code`` says how (one of ERROR_CODES)."""

    code: _ErrorCode

class NotFoundError(EngineError):
    """The object or bucket does not exist."""

class AuthError(EngineError):
    """The store rejected the credentials, or there were none."""

class TransientError(EngineError):
    """The store failed in a way a retry may fix."""

class CancelledError(EngineError):
    """The operation was cancelled."""

class AlreadyExistsError(EngineError):
    """A conditional write found the key taken."""

class ProtocolError(EngineError):
    """The endpoint answered, but not like the store it should be."""

class PreconditionError(EngineError):
    """A conditional write on a version found another version, or none."""

__version__: str  # Cargo.toml's

# Every error code and the exception class the engine raises for it.
ERROR_CODES: dict[str, type[EngineError]]

# --- stores -------------------------------------------------------------------------------

@type_check_only
class PythonStore(Protocol):
    """What the engine calls on a store a Python backend implements (its slow path)."""

    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes) -> str | None: ...
    def head(self, key: str) -> tuple[int, str | None] | None: ...

@final
class Store:
    """A bucket (or folder, or in-memory namespace) that Python reads and writes through.
    ``url`` is ``s3://bucket``, ``gs://bucket``, ``az://container``, ``file:///root`` or
    ``memory://name``; ``options`` are object_store configuration keys (``aws_endpoint``...)
    plus ``ca_file``. Every call releases the GIL while it waits on the store."""

    def __new__(cls, url: str, options: dict[str, str] | None = None) -> Store: ...
    @property
    def url(self) -> str: ...
    @property
    def kind(self) -> str:
        """``s3``, ``file``, ``gcs``, ``azure`` or ``memory``."""
    def list(self, prefix: str = "") -> builtins.list[_Listed]:
        """Every object under ``prefix`` as (key, size, etag), in key order."""
    def list_meta(self, prefix: str = "") -> builtins.list[tuple[str, int, str | None, float | None]]:
        """Like ``list``, with each object's last-modified time: (key, size, etag, last_modified)."""
    def list_dirs(self, prefix: str = "") -> tuple[builtins.list[str], builtins.list[_Listed]]:
        """One level under ``prefix``: (sub-"directories", objects)."""
    def list_leftovers(self, prefix: str = "") -> builtins.list[tuple[str, str, float | None, int | None]]:
        """What interrupted writes left: (key, handle, started, size)."""
    def remove_leftover(self, key: str, handle: str) -> bool:
        """Remove one leftover; False when it is gone already or a writer holds it again."""
    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str | None:
        """Write ``data`` atomically; returns the ETag when the store gives one. ``if_absent``:
        AlreadyExistsError when ``key`` exists; ``if_match``: PreconditionError unless ``key``
        still holds that ETag."""
    def head(self, key: str) -> tuple[int, str | None] | None:
        """(size, etag) of ``key``, or None when it does not exist."""
    def delete(self, key: str) -> None: ...
    def delete_many(self, keys: Sequence[str], parallel: int = 32) -> builtins.list[tuple[str, str]]:
        """Delete ``keys``, ``parallel`` at a time; returns (key, error message) for each failure."""
    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (S3 only)."""

_AnyStore: TypeAlias = Store | PythonStore

# --- copies -------------------------------------------------------------------------------

@type_check_only
class CopyResult(TypedDict):
    """One job's outcome from ``Copier.run``."""

    src_key: str
    dst_key: str
    size: int | None
    strategy: _Strategy | None
    attempts: int
    bytes: int
    checksum: str | None  # hex
    checksum_algo: Literal["crc32c", "crc64nvme"] | None
    etag: str | None
    verified: bool
    error: str | None
    error_code: _ErrorCode | None

# (src_store, src_key, dst_store, dst_key, size), optionally with the source's listed ETag.
_CopyJob: TypeAlias = (
    tuple[_AnyStore, str, _AnyStore, str, int | None]
    | tuple[_AnyStore, str, _AnyStore, str, int | None, str | None]
)

@final
class Copier:
    """Runs copy jobs. Create one per copy; read ``progress()`` and call ``cancel()`` from any
    thread while ``run()`` works. Numeric arguments out of range are a ValueError naming them;
    None takes the default."""

    def __new__(
        cls,
        *,
        parallel: int | None = None,
        checksum: str = "crc32c",
        verify: bool = False,
        multipart_threshold: int | None = None,
        part_size: int | None = None,
        multipart_copy_threshold: int | None = None,
        copy_part_size: int | None = None,
        part_parallel: int | None = None,
        memory_budget: int | None = None,
        max_bandwidth: int | None = None,
        max_requests_per_sec: float | None = None,
        max_attempts: int | None = None,
    ) -> Copier: ...
    @staticmethod
    def defaults() -> dict[str, int | float]:
        """What each numeric argument left out (or None) becomes: ``{name: default}``
        (``max_requests_per_sec`` a float, the others ints)."""
    def progress(self) -> dict[str, int]:
        """Counters so far: objects_total, bytes_total, objects_done, bytes_done,
        objects_skipped, failures, retries, in_flight."""
    def cancel(self) -> None:
        """Stop starting jobs, abort multipart uploads in flight; ``run()`` returns soon after."""
    @property
    def cancelled(self) -> bool: ...
    def note_skipped(self, objects: int, bytes: int) -> None:
        """Count objects the caller decided not to copy, so progress totals stay whole."""
    def checksums(
        self, items: Sequence[tuple[_AnyStore, str]], algo: str = "crc32c"
    ) -> list[tuple[str | None, int | None, str | None]]:
        """Read each (store, key) and checksum it: (checksum hex, size, error message)."""
    def run(self, jobs: Sequence[_CopyJob]) -> list[CopyResult]:
        """Copy ``jobs``; one result per job, in order. Blocks until done."""

# --- functions ----------------------------------------------------------------------------

def checksum(algo: str, data: bytes) -> int:
    """Checksum of ``data`` with ``algo`` ("crc32c" or "crc64nvme")."""

def take_skipped_links() -> list[tuple[str, str]]:
    """Every (store root, key) folder listings skipped since the last call."""

def take_events() -> list[tuple[float, str, str]]:
    """The engine's events since the last call, oldest first: (time, level "info"/"warn",
    message). Each retry the engine or object_store makes, with what, why, the attempt and
    the wait."""
