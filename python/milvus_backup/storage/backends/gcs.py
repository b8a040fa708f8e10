"""Google Cloud Storage: ``gs://bucket/prefix``. Credentials from ``service_account`` (a JSON
key file path) in options, or ``GOOGLE_APPLICATION_CREDENTIALS``."""

from __future__ import annotations

import os

from ...plugins.hookspecs import hookimpl
from ..location import Location, native_store, split_url


@hookimpl
def mbackup_storage_schemes() -> list[str]:
    return ["gs"]


@hookimpl
def mbackup_open_storage(url: str, options: dict[str, str]) -> Location | None:
    scheme, bucket, prefix, query = split_url(url)
    if scheme != "gs":
        return None
    config = {**options, **query}
    if "service_account" not in config and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        config["google_service_account"] = os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
    elif "service_account" in config:
        config["google_service_account"] = config.pop("service_account")
    display = f"gs://{bucket}/{prefix}".rstrip("/")
    return Location(native_store(display, f"gs://{bucket}", config), prefix, display, "gs", config)
