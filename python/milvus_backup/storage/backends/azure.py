"""Azure Blob Storage: ``az://container/prefix?account=NAME``; the key from ``account_key`` in
options or ``AZURE_STORAGE_ACCOUNT_KEY``."""

from __future__ import annotations

import os

from ...plugins.hookspecs import hookimpl
from ..location import Location, native_store, split_url


@hookimpl
def mbackup_storage_schemes() -> list[str]:
    return ["az", "azure"]


@hookimpl
def mbackup_open_storage(url: str, options: dict[str, str]) -> Location | None:
    scheme, container, prefix, query = split_url(url)
    if scheme not in ("az", "azure"):
        return None
    config = {**options, **query}
    if "account" in config:
        config["azure_storage_account_name"] = config.pop("account")
    if "account_key" in config:
        config["azure_storage_account_key"] = config.pop("account_key")
    elif os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"):
        config["azure_storage_account_key"] = os.environ["AZURE_STORAGE_ACCOUNT_KEY"]
    display = f"az://{container}/{prefix}".rstrip("/")
    return Location(native_store(display, f"az://{container}", config), prefix, display, "az", config)
