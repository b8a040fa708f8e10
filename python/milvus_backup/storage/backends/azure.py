"""Azure Blob Storage: ``az://container/prefix?account=NAME``; the key from ``account_key`` in
options or ``AZURE_STORAGE_ACCOUNT_KEY``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...plugins.hookspecs import hookimpl
from ..location import Location, StorageUrl, native_store
from ..registry import StorageTarget
from .section import bucket_url, host_port, is_local_host, root_of

if TYPE_CHECKING:
    from ...config.settings import StorageConfig


@hookimpl
def mbackup_register_storage(register: Callable[..., None]) -> None:
    register("az", open_azure, providers=("azure",), target=target)
    register("azure", open_azure)


def open_azure(url: StorageUrl, options: dict[str, str]) -> Location:
    config = {**options, **url.query}
    if "endpoint" in config:  # spelled as for s3:// locations; object_store takes it too
        config["azure_endpoint"] = config.pop("endpoint")
    if "account" in config:
        config["azure_storage_account_name"] = config.pop("account")
    if "account_key" in config:
        config["azure_storage_account_key"] = config.pop("account_key")
    elif os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"):
        config["azure_storage_account_key"] = os.environ["AZURE_STORAGE_ACCOUNT_KEY"]
    display = f"az://{url.bucket}/{url.prefix}".rstrip("/")
    # A container is named within its account, on one endpoint.
    where = config.get("azure_endpoint") or config.get("azure_storage_account_name", "")
    return Location(native_store(display, f"az://{url.bucket}", config), url.prefix, display, "az", config,
                    bucket_id=f"az://{url.bucket} at {where}")


def target(st: StorageConfig) -> StorageTarget:
    """A config file's ``azure`` storage section as a URL and options."""
    scheme = "https" if st.use_ssl else "http"
    opts = {"azure_storage_account_name": st.account_name}
    if st.auth.type == "sharedKey":
        opts["azure_storage_account_key"] = st.auth.account_key
    if is_local_host(st.address):  # Azurite and friends: path-style account URL
        opts["azure_endpoint"] = f"{scheme}://{host_port(st)}/{st.account_name}"
    elif st.address != "core.windows.net" or not st.use_ssl:
        opts["azure_endpoint"] = f"{scheme}://{st.account_name}.blob.{st.address}"
    if not st.use_ssl:
        opts["azure_allow_http"] = "true"
    return StorageTarget(bucket_url("az", st), opts, st.bucket_name, root_of(st.root_path), st.provider)
