"""Reaching a Milvus server: the endpoint settings, the connection, and the adapter for its line.

``connect(endpoint, adapters)`` opens one gRPC channel of its own, set up as pymilvus sets up
its (message sizes, keepalive, TLS, the ``authorization`` header, the ``identifier`` Connect
hands out), reads the server version as the Go tool does (``versions.py``: build tags, then
``GetVersion``; databases by probing ``ListDatabases``) and asks the adapters plugins registered
(``adapters/registry.py``) for the one of that version's line. The messages are mbackup's own
subset of Milvus's (``_proto``, generated from ``proto/``): pymilvus is not needed.
Everything that differs between Milvus lines lives in the adapter; this module only knows how to
reach a server and how to say, in one line, why it could not.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MBackupError, UnreachableError
from .versions import ServerVersion, is_version_like, resolve_version

if TYPE_CHECKING:
    from .adapters.base import MilvusAdapter
    from .adapters.registry import MilvusAdapters

__all__ = ["MilvusConnection", "MilvusEndpoint", "MilvusError", "MilvusUnreachable", "check_grpc_tracing", "connect",
           "parse_version", "unreachable_status"]

TLS_MODES = ("disabled", "server", "mutual")
CONNECT_TIMEOUT_S = 10.0
# Set to 1 to run with gRPC tracing and a password anyway (the trace then shows the password).
GRPC_TRACE_OPT_IN = "MBACKUP_ALLOW_GRPC_TRACE"

_ADDRESS_KEYS = "milvus.address/milvus.port (milvus.grpc.address/milvus.grpc.port in a v2 config)"
_CREDENTIAL_KEYS = "milvus.user/milvus.password"
_CA_KEY, _CERT_KEY, _KEY_KEY = "milvus.grpc.caCertPath", "milvus.grpc.mtlsCertPath", "milvus.grpc.mtlsKeyPath"


class MilvusError(MBackupError):
    """Milvus could not be reached, refused a request, or its version has no adapter."""


class MilvusUnreachable(MilvusError, UnreachableError):
    """Milvus did not answer, timed out or kept rate-limiting: a retry later may succeed."""


def unreachable_status(code: Any) -> bool:
    """Is this gRPC status one a retry later may clear (nothing answered, no answer in time,
    rate-limited)?"""
    import grpc

    return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)


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
    rest_endpoint: str = ""  # Milvus' REST API; empty: the gRPC address (one proxy serves both)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST API's base URL: ``milvus.rest.endpoint``, else the gRPC address (https
        unless TLS is disabled), as the Go tool derives it."""
        if self.rest_endpoint:
            return self.rest_endpoint.rstrip("/")
        return f"{'http' if self.tls_mode == 'disabled' else 'https'}://{self.address}"

    def __repr__(self) -> str:
        # Written out so the password can never leak through a log line or a traceback.
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("host", "port", "user", "tls_mode", "ca_cert_path", "server_name",
                         "mtls_cert_path", "mtls_key_path", "management_endpoint", "rest_endpoint")
        )
        secret = ", password='***'" if self.password else ""
        return f"MilvusEndpoint({shown}{secret})"


@dataclass
class MilvusConnection:
    """One open channel to one server, handed to adapter plugins as ``connection``.

    Adapters send requests with :meth:`call`, naming the database in the request and in
    ``db`` (the ``dbname`` header). ``server`` is what the server said about itself when the
    connection opened; ``build_tags`` what its Connect reply said ("" without Connect).
    """

    endpoint: MilvusEndpoint
    channel: Any  # grpc.Channel
    server: ServerVersion | None = None
    build_tags: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list, repr=False)  # authorization, identifier
    _rpcs: dict[str, Any] = field(default_factory=dict, repr=False)

    def call(self, method: str, request: Any, *, timeout: float, db: str = "") -> Any:
        """Send ``request`` to ``MilvusService/<method>`` and return the reply; a failed call
        raises ``grpc.RpcError``, as gRPC does."""
        if self.channel is None:
            raise MilvusError(f"the connection to Milvus at {self.endpoint.address} is closed")
        if method not in self._rpcs:  # made when first used: a generated stub makes all 38 up front
            desc = service_method(method)
            self._rpcs[method] = self.channel.unary_unary(
                f"/{desc.containing_service.full_name}/{method}",
                request_serializer=_serialize,
                response_deserializer=_message_class(desc.output_type).FromString,
            )
        metadata = [*self.headers, ("dbname", db)] if db else self.headers
        return self._rpcs[method](request, timeout=timeout, metadata=metadata or None)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
            self._rpcs.clear()


def service_method(method: str) -> Any:
    """MilvusService's ``method`` as mbackup declares it (a protobuf MethodDescriptor)."""
    from ._proto import milvus_pb2

    return milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"].methods_by_name[method]


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


@functools.cache
def _message_class(desc: Any) -> Any:
    from google.protobuf import message_factory  # type: ignore[import-untyped]  # protobuf ships no stubs here

    return message_factory.GetMessageClass(desc)


def connect(endpoint: MilvusEndpoint, adapters: MilvusAdapters, timeout: float = CONNECT_TIMEOUT_S, *,
            line: str = "") -> MilvusAdapter:
    """Open a connection to ``endpoint`` and return the adapter ``adapters`` has for the
    server's version (or for ``line``, the ``mbackup.milvusAdapter`` setting, when set).

    Raises :class:`MilvusError` with one line naming what to check when the address does not
    answer within ``timeout`` seconds, the credentials are refused, or no installed plugin
    handles the version.
    """
    check_grpc_tracing(endpoint)
    connection = _open(endpoint, timeout)
    try:
        connection.server = _server_version(connection, timeout)
        return adapters.adapter_for(connection.server.reported, connection, line=line)
    except BaseException:
        connection.close()
        raise


_trace_warned = False


def check_grpc_tracing(endpoint: MilvusEndpoint, env: dict[str, str] | None = None) -> None:
    """Refuse to connect with a password while gRPC traces: tracers print request headers,
    and the authorization header is base64 of ``user:password``. With
    ``MBACKUP_ALLOW_GRPC_TRACE=1`` warn (once) instead.

    Seen with grpcio 1.85: ``GRPC_TRACE=api`` (and ``all``) print the header in hex and base64,
    ``http`` redacts it; other versions differ, so any tracer counts."""
    global _trace_warned
    env = dict(os.environ) if env is None else env
    tracing = [f"{name}={env[name]}" for name in ("GRPC_TRACE", "GRPC_VERBOSITY")
               if env.get(name, "").strip() and (name == "GRPC_TRACE" or env[name].strip().lower() == "debug")]
    if not endpoint.password or not tracing:
        return
    names = " and ".join(tracing)
    if env.get(GRPC_TRACE_OPT_IN, "").strip() != "1":
        raise MilvusError(f"{names} would make gRPC print the Milvus password (base64, in the authorization header "
                          f"it traces): unset {'them' if len(tracing) > 1 else 'it'}, or set {GRPC_TRACE_OPT_IN}=1 to trace anyway")
    if not _trace_warned:
        _trace_warned = True
        print(f"warning: {names} with {GRPC_TRACE_OPT_IN}=1: the gRPC trace shows the Milvus password "
              "(base64, in the authorization header); do not share it", file=sys.stderr)


def parse_version(version: str) -> tuple[int, int, int]:
    """``"v2.3.5"`` -> (2, 3, 5), as the Go tool reads a version (``versions.resolve_version``:
    dev tags such as ``"2.3-20240101-abc"`` give patch 9999, no version at all 99.0.0)."""
    return resolve_version(version)


# --------------------------------------------------------------------------------------


def _open(endpoint: MilvusEndpoint, timeout: float) -> MilvusConnection:
    """A channel set up as pymilvus' ``GrpcHandler`` sets up its, opened by a ``Connect``
    within ``timeout`` seconds (which also checks the credentials)."""
    import grpc

    from ._proto import common_pb2, milvus_pb2

    if endpoint.tls_mode not in TLS_MODES:
        raise MilvusError(f"milvus.grpc.tlsMode is {endpoint.tls_mode!r}: use one of {', '.join(TLS_MODES)}")
    if endpoint.tls_mode != "disabled":
        _tls_context(endpoint)  # a missing or malformed file, named by its setting, before connecting
    connection = MilvusConnection(endpoint=endpoint, channel=_channel(endpoint))
    if endpoint.user and endpoint.password:
        login = base64.b64encode(f"{endpoint.user}:{endpoint.password}".encode()).decode()
        connection.headers.append(("authorization", login))
    hello = milvus_pb2.ConnectRequest(client_info=common_pb2.ClientInfo(
        sdk_type="mbackup", user=endpoint.user, host=socket.gethostname()))
    try:
        reply = connection.call("Connect", hello, timeout=timeout)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNIMPLEMENTED:  # a Milvus before Connect (2.2.9) still answers
            connection.close()
            raise _connect_error(endpoint, e.code(), e.details() or "", timeout) from None
        return connection
    except BaseException:
        connection.close()
        raise
    if reply.status.code or reply.status.error_code:
        connection.close()
        raise _connect_error(endpoint, None, reply.status.reason, timeout)
    # The server ties later calls to this client by it, as it does pymilvus'.
    connection.headers.append(("identifier", str(reply.identifier)))
    connection.build_tags = reply.server_info.build_tags
    return connection


# What pymilvus (3.0) sets on its channels: no message size limit, keepalive pings every 10 s.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", True),
)


def _channel(endpoint: MilvusEndpoint) -> Any:
    import grpc

    options: list[tuple[str, Any]] = list(_CHANNEL_OPTIONS)
    if endpoint.tls_mode == "disabled":
        return grpc.insecure_channel(endpoint.address, options=options)
    if endpoint.server_name:
        options.append(("grpc.ssl_target_name_override", endpoint.server_name))
    # No CA file: the system's trusted roots. Mutual TLS presents the client certificate.
    root = _read(endpoint.ca_cert_path) if endpoint.ca_cert_path else None
    key, chain = ((_read(endpoint.mtls_key_path), _read(endpoint.mtls_cert_path)) if endpoint.tls_mode == "mutual"
                  else (None, None))
    credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
    return grpc.secure_channel(endpoint.address, credentials, options=options)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:  # checked readable by _tls_context
        return f.read()


def _connect_error(endpoint: MilvusEndpoint, code: Any, detail: str, timeout: float) -> MilvusError:
    """Why the channel did not open: the credentials and TLS are the config's to fix (exit 2);
    anything else is a server not answering (exit 3)."""
    import grpc

    text = detail.lower()
    # By status code only: a failed TLS name check also says "UNAUTHENTICATED" in its text.
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        who = f"user {endpoint.user!r}" if endpoint.user else "no user"
        return MilvusError(f"Milvus at {endpoint.address} refused the credentials ({who}): check {_CREDENTIAL_KEYS}")
    tls_problem = _tls_diagnosis(endpoint, timeout)
    if tls_problem:
        return MilvusError(tls_problem)
    if "refused" in text:
        why = "connection refused"
    elif "dns" in text or "resolv" in text:
        why = f"cannot resolve {endpoint.host!r}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED or "deadline" in text or "timeout" in text:
        why = f"no answer within {timeout:g} s"
    else:
        why = (detail.strip().splitlines() or ["unavailable"])[0][:200]
    return MilvusUnreachable(f"cannot reach Milvus at {endpoint.address} ({why}): check {_ADDRESS_KEYS} and that the server is up")


def _server_version(connection: MilvusConnection, timeout: float) -> ServerVersion:
    """As the Go tool asks: the build tags ``Connect`` reported, ``GetVersion`` only when they
    are not a version, and whether ``ListDatabases`` is there at all."""
    import grpc

    from ._proto import milvus_pb2

    where = f"Milvus at {connection.endpoint.address}"
    build_tags = connection.build_tags
    try:
        connection.call("ListDatabases", milvus_pb2.ListDatabasesRequest(), timeout=timeout)
        multi_database = True
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNIMPLEMENTED:
            error = MilvusUnreachable if unreachable_status(e.code()) else MilvusError
            raise error(f"{where} did not list its databases: {e.details() or e.code().name}") from None
        multi_database = False
    if is_version_like(build_tags):
        return ServerVersion.of(build_tags, multi_database=multi_database)
    try:
        reply = connection.call("GetVersion", milvus_pb2.GetVersionRequest(), timeout=timeout)
    except grpc.RpcError as e:
        error = MilvusUnreachable if unreachable_status(e.code()) else MilvusError
        raise error(f"{where} did not report its version: {e.details() or e.code().name}") from None
    if reply.status.code or reply.status.error_code:
        raise MilvusError(f"{where} did not report its version: {reply.status.reason}")
    version = reply.version
    # Recorded as the Go tool records it: GetVersion's answer once the build tags are no version.
    return ServerVersion(version or build_tags or "unknown", resolve_version(build_tags, version), multi_database)


# --- TLS ------------------------------------------------------------------------------------
# gRPC reports a failed handshake vaguely, and differently from one version to the next. So the
# files are checked with Python's ssl module before connecting, and a connection that fails is
# explained by one handshake of our own, made as configured, whose errors are precise.

def _tls_context(endpoint: MilvusEndpoint) -> ssl.SSLContext:
    """The client side of a handshake as configured; :class:`MilvusError` names a bad file."""
    ctx = ssl.create_default_context()  # checks the chain and the server's name
    if endpoint.ca_cert_path:
        _readable(_CA_KEY, endpoint.ca_cert_path)
        try:
            ctx.load_verify_locations(cafile=endpoint.ca_cert_path)
        except ssl.SSLError:
            raise MilvusError(f"{_CA_KEY}: {endpoint.ca_cert_path} holds no PEM certificate: give the CA certificate that signed Milvus's") from None
    if endpoint.tls_mode == "mutual":
        _readable(_CERT_KEY, endpoint.mtls_cert_path)
        _readable(_KEY_KEY, endpoint.mtls_key_path)
        try:
            ctx.load_cert_chain(endpoint.mtls_cert_path, endpoint.mtls_key_path)
        except ssl.SSLError:
            raise MilvusError(f"{_CERT_KEY}/{_KEY_KEY}: {endpoint.mtls_cert_path} and {endpoint.mtls_key_path} "
                              f"are not a certificate and its matching private key (PEM)") from None
    return ctx


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise MilvusError(f"{key}: cannot read {path} ({e.strerror or e})") from None


def _tls_diagnosis(endpoint: MilvusEndpoint, timeout: float) -> str | None:
    """Why TLS, as configured, keeps the client from talking to the server; None if it does not."""
    address = endpoint.address
    try:
        raw = socket.create_connection((endpoint.host, endpoint.port), timeout=min(timeout, 5.0))
    except OSError:
        return None  # nothing listens: not a TLS problem
    with raw:
        if endpoint.tls_mode == "disabled":
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
            try:
                probe.wrap_socket(raw, server_hostname=endpoint.host).close()
            except (OSError, ValueError):
                return None  # no TLS there either
            return (f"Milvus at {address} accepts TLS connections only: set milvus.grpc.tlsMode to server "
                    f"(or mutual) and {_CA_KEY}")
        name = endpoint.server_name or endpoint.host
        try:
            with _tls_context(endpoint).wrap_socket(raw, server_hostname=name) as tls:
                # With TLS 1.3 a server turns a client certificate down after the handshake.
                tls.settimeout(1.0)
                try:
                    tls.recv(1)
                except TimeoutError:
                    pass
        except ssl.SSLCertVerificationError as e:
            why = (e.verify_message or e.reason or "not verified").rstrip(".")
            if "hostname" in why.lower() or "ip address mismatch" in why.lower():
                return (f"the certificate of Milvus at {address} is not valid for {name!r} ({why}): "
                        f"set milvus.grpc.serverName to a name it is issued for")
            return (f"the certificate of Milvus at {address} is not trusted ({why}): "
                    f"set {_CA_KEY} to the CA certificate that signed it")
        except ssl.SSLError as e:
            reason = (e.reason or "").upper()
            if "ALERT" in reason and ("CERTIFICATE" in reason or "HANDSHAKE_FAILURE" in reason or "UNKNOWN_CA" in reason):
                if endpoint.tls_mode != "mutual":
                    return (f"Milvus at {address} asks for a client certificate: set milvus.grpc.tlsMode to mutual "
                            f"with {_CERT_KEY} and {_KEY_KEY}")
                alert = re.sub(r"^(SSLV3|TLSV1|TLSV13)_ALERT_", "", reason).replace("_", " ").lower()
                return (f"Milvus at {address} turned down the client certificate {endpoint.mtls_cert_path} "
                        f"({alert}): use one for client authentication, signed by the CA Milvus trusts")
            if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"):
                return f"Milvus at {address} does not speak TLS: set milvus.grpc.tlsMode to disabled, or check the port"
            return None
        except (OSError, ValueError):
            return None
    return None
