"""What a configuration opens: the Milvus adapter for its line, and the engine's copy
settings. The CLI's commands and the server's jobs both start from here, so neither
imports the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config.params import BY_KEY
from .transfer.copy import CopySettings

if TYPE_CHECKING:
    from .config.settings import Config
    from .milvus.adapters.base import MilvusAdapter


def open_milvus(cfg: Config) -> MilvusAdapter:
    """Connect to the configured Milvus through the adapter of its line (plugins may add lines)."""
    from .milvus.connection import MilvusEndpoint, connect
    from .plugins.manager import milvus_adapters

    m = cfg.milvus
    endpoint = MilvusEndpoint(
        host=m.grpc.address, port=m.grpc.port, user=m.user, password=m.password, tls_mode=m.grpc.tls_mode,
        ca_cert_path=m.grpc.ca_cert_path, server_name=m.grpc.server_name, mtls_cert_path=m.grpc.mtls_cert_path,
        mtls_key_path=m.grpc.mtls_key_path, management_endpoint=m.management.endpoint, rest_endpoint=m.rest.endpoint)
    return connect(endpoint, milvus_adapters(), line=cfg.mbackup.milvus_adapter)


def copy_settings(cfg: Config) -> CopySettings:
    """The engine's settings from the config keys that set them (flags override them)."""
    return CopySettings(**{s.engine: s.to_engine(cfg.get(key)) for key, s in BY_KEY.items() if s.engine})
