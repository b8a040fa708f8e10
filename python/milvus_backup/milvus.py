"""Reaching a Milvus server: the endpoint settings, the connection, and the adapter for its line.

``connect(endpoint)`` opens one gRPC channel of its own (a dedicated pymilvus ``GrpcHandler``,
never the process-wide default alias), reads the server version and asks the
``mbackup_milvus_adapter`` hook for the adapter of that version. Everything that differs between
Milvus lines lives in the adapter; this module only knows how to reach a server and how to say,
in one line, why it could not.

Adapter plugin modules may declare ``MILVUS_LINES = ("2.3",)``: the lines they handle, listed in
the "not supported" message so users know what is installed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from .adapters.base import MilvusAdapter
from .errors import MBackupError

__all__ = ["MilvusConnection", "MilvusEndpoint", "MilvusError", "adapter_for", "connect", "parse_version"]

TLS_MODES = ("disabled", "server", "mutual")
CONNECT_TIMEOUT_S = 10.0

_ADDRESS_KEYS = "milvus.address/milvus.port (milvus.grpc.address/milvus.grpc.port in a v2 config)"
_CREDENTIAL_KEYS = "milvus.user/milvus.password"


class MilvusError(MBackupError):
    """Milvus could not be reached, refused a request, or its version has no adapter."""


@dataclass
class MilvusEndpoint:
    """Where and how to reach one Milvus server (the ``milvus.*`` settings)."""

    host: str = "localhost"
    port: int = 19530
    user: str = ""
    password: str = field(default="", repr=False)
    tls_mode: str = "disabled"  # disabled | server | mutual
    ca_cert_path: str = ""
    server_name: str = ""
    mtls_cert_path: str = ""
    mtls_key_path: str = ""
    management_endpoint: str = ""  # e.g. http://127.0.0.1:9091, for the GC pause

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        # Written out so the password can never leak through a log line or a traceback.
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("host", "port", "user", "tls_mode", "ca_cert_path", "server_name",
                         "mtls_cert_path", "mtls_key_path", "management_endpoint")
        )
        secret = ", password='***'" if self.password else ""
        return f"MilvusEndpoint({shown}{secret})"


@dataclass
class MilvusConnection:
    """One open channel to one server, handed to adapter plugins as ``connection``.

    ``handler`` is a pymilvus ``GrpcHandler`` owned by this connection alone; adapters call its
    ``_stub`` with requests that carry the database name themselves.
    """

    endpoint: MilvusEndpoint
    handler: Any
    alias: str

    def close(self) -> None:
        if self.handler is not None:
            self.handler.close()
            self.handler = None


_aliases = itertools.count(1)


def connect(endpoint: MilvusEndpoint, timeout: float = CONNECT_TIMEOUT_S) -> MilvusAdapter:
    """Open a connection to ``endpoint`` and return the adapter for the server's version.

    Raises :class:`MilvusError` with one line naming what to check when the address does not
    answer within ``timeout`` seconds, the credentials are refused, or no installed plugin
    handles the version.
    """
    connection = _open(endpoint, timeout)
    try:
        version = _server_version(connection, timeout)
        return adapter_for(version, connection)
    except BaseException:
        connection.close()
        raise


def adapter_for(version: str, connection: Any) -> MilvusAdapter:
    """Ask the plugins for the adapter of ``version``; a clear error when none answers."""
    from .plugins import manager  # plugins import adapter modules, which import this one

    pm = manager()
    found = pm.hook.mbackup_milvus_adapter(version=version, connection=connection)
    if found is not None and not isinstance(found, MilvusAdapter) and callable(found):
        found = found()  # a factory (``AdapterFactory``) keeps a plugin's heavy imports lazy
    if found is None:
        lines = sorted({line for _, plugin in pm.list_name_plugin() for line in getattr(plugin, "MILVUS_LINES", ())})
        supported = ", ".join(f"{line}.x" for line in lines) or "none"
        raise MilvusError(f"Milvus {version} is not supported: install an adapter plugin (supported lines: {supported})")
    if not isinstance(found, MilvusAdapter):
        raise MilvusError(f"the adapter plugin for Milvus {version} returned {type(found).__name__}, not a MilvusAdapter")
    return found


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(version: str) -> tuple[int, int, int] | None:
    """``"v2.3.5"`` -> (2, 3, 5); dev tags such as ``"2.3-20240101-abc"`` give patch 9999."""
    m = _VERSION.match(version.strip())
    if not m:
        return None
    patch = int(m.group(3)) if m.group(3) is not None else 9999
    return int(m.group(1)), int(m.group(2)), patch


# --------------------------------------------------------------------------------------


def _open(endpoint: MilvusEndpoint, timeout: float) -> MilvusConnection:
    import grpc
    from pymilvus.client.grpc_handler import GrpcHandler
    from pymilvus.exceptions import MilvusException

    if endpoint.tls_mode not in TLS_MODES:
        raise MilvusError(f"milvus.grpc.tlsMode is {endpoint.tls_mode!r}: use one of {', '.join(TLS_MODES)}")
    kwargs: dict[str, Any] = {"address": endpoint.address, "user": endpoint.user, "password": endpoint.password}
    if endpoint.tls_mode != "disabled":
        kwargs["secure"] = True
        kwargs["server_name"] = endpoint.server_name
    if endpoint.tls_mode == "server" and endpoint.ca_cert_path:
        kwargs["server_pem_path"] = endpoint.ca_cert_path  # pymilvus' name for the CA of one-way TLS
    if endpoint.tls_mode == "mutual":
        kwargs.update(
            ca_pem_path=endpoint.ca_cert_path,
            client_pem_path=endpoint.mtls_cert_path,
            client_key_path=endpoint.mtls_key_path,
        )
    # A dedicated handler: the ORM's ``connections.connect`` is deprecated in pymilvus 3 (it
    # warns) and shares one registry per process; each adapter keeps its own channel instead.
    try:
        handler = GrpcHandler(**kwargs)
    except OSError as e:
        raise MilvusError(f"cannot read a TLS file for Milvus at {endpoint.address}: {e}") from e
    try:
        handler._wait_for_channel_ready(timeout=timeout)
    except MilvusException as e:
        cause = e.__cause__
        code = cause.code() if isinstance(cause, grpc.RpcError) else None
        detail = cause.details() if isinstance(cause, grpc.RpcError) else e.message
        raise _connect_error(endpoint, code, detail or "", timeout) from None
    except grpc.RpcError as e:  # pragma: no cover - pymilvus wraps these, kept for safety
        raise _connect_error(endpoint, e.code(), e.details() or "", timeout) from None
    return MilvusConnection(endpoint=endpoint, handler=handler, alias=f"mbackup-{next(_aliases)}")


def _connect_error(endpoint: MilvusEndpoint, code: Any, detail: str, timeout: float) -> MilvusError:
    import grpc

    text = detail.lower()
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or "auth" in text or "password" in text:
        who = f"user {endpoint.user!r}" if endpoint.user else "no user"
        return MilvusError(f"Milvus at {endpoint.address} refused the credentials ({who}): check {_CREDENTIAL_KEYS}")
    if endpoint.tls_mode == "disabled" and ("ssl" in text or "tls" in text or "handshake" in text):
        return MilvusError(f"Milvus at {endpoint.address} expects TLS: set milvus.grpc.tlsMode (and its certificate paths)")
    if endpoint.tls_mode != "disabled" and ("ssl" in text or "handshake" in text or "certificate" in text):
        return MilvusError(f"TLS handshake with Milvus at {endpoint.address} failed ({detail.strip()}): check the certificate paths and milvus.grpc.serverName")
    if "refused" in text:
        why = "connection refused"
    elif "dns" in text or "resolv" in text:
        why = f"cannot resolve {endpoint.host!r}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED or "deadline" in text or "timeout" in text:
        why = f"no answer within {timeout:g} s"
    else:
        why = (detail.strip().splitlines() or ["unavailable"])[0][:200]
    return MilvusError(f"cannot reach Milvus at {endpoint.address} ({why}): check {_ADDRESS_KEYS} and that the server is up")


def _server_version(connection: MilvusConnection, timeout: float) -> str:
    import grpc
    from pymilvus.exceptions import MilvusException

    try:
        version = connection.handler.get_server_version(timeout=timeout)
    except MilvusException as e:
        raise MilvusError(f"Milvus at {connection.endpoint.address} did not report its version: {e.message}") from None
    except grpc.RpcError as e:
        raise MilvusError(f"Milvus at {connection.endpoint.address} did not report its version: {e.details()}") from None
    return version or "unknown"
