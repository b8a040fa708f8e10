"""What the backends' ``target`` functions share when they read a config file's storage
section (``milvus.storage``, ``backup.storage``)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...config.settings import StorageConfig


def is_local_host(host: str) -> bool:
    """A name or address that is no public cloud endpoint (localhost, a bare name, an IP)."""
    if host in ("localhost",) or host.endswith(".localhost") or "." not in host:
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_port(st: StorageConfig) -> str:
    default_port = 443 if st.use_ssl else 80
    return st.address if st.port in (0, default_port) else f"{st.address}:{st.port}"


def root_of(path: str) -> str:
    """A rootPath as a key prefix: no empty segments, no "/" at either end."""
    return "/".join(p for p in path.split("/") if p)


def bucket_url(scheme: str, st: StorageConfig) -> str:
    """``s3://bucket/root``: the section's bucket and root path as a URL."""
    root = root_of(st.root_path)
    return f"{scheme}://{st.bucket_name}/{root}" if root else f"{scheme}://{st.bucket_name}"
