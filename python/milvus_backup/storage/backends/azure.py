"""Azure Blob Storage: ``az://container/prefix?account=NAME``; the key from ``account_key`` in
options or ``AZURE_STORAGE_ACCOUNT_KEY``."""

from __future__ import annotations

import os
from typing import Callable

from ...plugins.hookspecs import hookimpl
from ..location import Location, StorageUrl, native_store


@hookimpl
def mbackup_register_storage(register: Callable[..., None]) -> None:
    register("az", open_azure)
    register("azure", open_azure)


def open_azure(url: StorageUrl, options: dict[str, str]) -> Location:
    config = {**options, **url.query}
    if "account" in config:
        config["azure_storage_account_name"] = config.pop("account")
    if "account_key" in config:
        config["azure_storage_account_key"] = config.pop("account_key")
    elif os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"):
        config["azure_storage_account_key"] = os.environ["AZURE_STORAGE_ACCOUNT_KEY"]
    display = f"az://{url.bucket}/{url.prefix}".rstrip("/")
    return Location(native_store(display, f"az://{url.bucket}", config), url.prefix, display, "az", config)
