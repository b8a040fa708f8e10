"""Google Cloud Storage: ``gs://bucket/prefix?endpoint=https://host:port``. Credentials from
``service_account`` (a JSON key file path) in options, or ``GOOGLE_APPLICATION_CREDENTIALS``.
The endpoint defaults to Google's, or to the key file's ``gcs_base_url`` (object_store reads it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...config.params import BY_KEY
from ...plugins.hookspecs import hookimpl
from ..location import Location, StorageUrl, native_store
from ..registry import StorageTarget
from .section import bucket_url, host_port, root_of

if TYPE_CHECKING:
    from ...config.settings import StorageConfig


@hookimpl
def mbackup_register_storage(register: Callable[..., None]) -> None:
    register("gs", open_gcs, providers=("gcpnative",), target=target)


def open_gcs(url: StorageUrl, options: dict[str, str]) -> Location:
    config = {**options, **url.query}
    if "endpoint" in config:  # spelled as for s3:// locations
        config["google_base_url"] = config.pop("endpoint").rstrip("/")
    if "service_account" not in config and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        config["google_service_account"] = os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
    elif "service_account" in config:
        config["google_service_account"] = config.pop("service_account")
    display = f"gs://{url.bucket}/{url.prefix}".rstrip("/")
    # A bucket is named on one endpoint; a key file can name its own (gcs_base_url).
    where = config.get("google_base_url") or config.get("google_service_account") or "Google"
    return Location(native_store(display, f"gs://{url.bucket}", config), url.prefix, display, "gs", config,
                    bucket_id=f"gs://{url.bucket} at {where}")


# The section's default address and port (MinIO's): left as they are, they name no GCS endpoint.
_UNSET_ENDPOINT = (BY_KEY["milvus.storage.address"].default, BY_KEY["milvus.storage.port"].default)


def target(st: StorageConfig) -> StorageTarget:
    """A config file's ``gcpnative`` storage section (GCS's own API) as a URL and options.
    ``address``/``port``/``useSSL`` name the endpoint, as in the Go tool (an emulator, a
    private gateway); left at their defaults, Google's (or the key file's ``gcs_base_url``)."""
    opts: dict[str, str] = {}
    if (st.address, st.port) != _UNSET_ENDPOINT:
        opts["google_base_url"] = f"{'https' if st.use_ssl else 'http'}://{host_port(st)}"
    if st.auth.type == "serviceAccount":
        opts["google_service_account"] = st.auth.credentials_file
    return StorageTarget(bucket_url("gs", st), opts, st.bucket_name, root_of(st.root_path), st.provider)
