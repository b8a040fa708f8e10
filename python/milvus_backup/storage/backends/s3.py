"""S3 and S3-compatible stores (AWS, MinIO, SeaweedFS, Ceph, OSS/COS/OBS in S3 mode).

URL: ``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&virtual_hosted=false``.
Credentials come from options (a profile or the config file), else the standard
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` variables, else the
instance/container role that object_store discovers. Never put secrets in the URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...config.secrets import display_url
from ...plugins.hookspecs import hookimpl
from ..location import Location, StorageError, StorageUrl, native_store
from ..registry import StorageTarget
from .section import bucket_url, host_port, is_local_host, root_of

if TYPE_CHECKING:
    from ...config.settings import StorageConfig

# Friendly names accepted in URL queries and profiles, mapped to object_store keys.
ALIASES = {
    "endpoint": "aws_endpoint",
    "region": "aws_region",
    "access_key_id": "aws_access_key_id",
    "accesskeyid": "aws_access_key_id",
    "secret_access_key": "aws_secret_access_key",
    "secretaccesskey": "aws_secret_access_key",
    "session_token": "aws_session_token",
    "virtual_hosted": "aws_virtual_hosted_style_request",
    "ca_file": "ca_file",
}
ENV = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "aws_region": "AWS_REGION",
    "aws_endpoint": "AWS_ENDPOINT_URL",
}
# The config file's providers that speak S3, and those whose public endpoints want
# virtual-hosted-style requests (the bucket in the host name).
PROVIDERS = ("minio", "s3", "aws", "gcp", "aliyun", "tencent", "hwc")
VIRTUAL_HOST_PROVIDERS = ("s3", "aws", "aliyun", "tencent", "hwc")


@hookimpl
def mbackup_register_storage(register: Callable[..., None]) -> None:
    register("s3", open_s3, providers=PROVIDERS, target=target)
    register("s3a", open_s3)


def open_s3(url: StorageUrl, options: dict[str, str]) -> Location:
    if not url.bucket:
        raise StorageError(f"invalid location {display_url(url.text)!r}: name a bucket, e.g. s3://my-bucket/backups")
    config = {ALIASES.get(k.lower(), k.lower()): v for k, v in options.items()}
    for key, value in url.query.items():  # the registry has refused secrets in the URL
        config[ALIASES.get(key.lower(), key.lower())] = value
    for key, var in ENV.items():
        if key not in config and os.environ.get(var):
            config[key] = os.environ[var]
    endpoint = config.get("aws_endpoint", "")
    if endpoint.startswith("http://"):
        config.setdefault("aws_allow_http", "true")
    config.setdefault("aws_region", "us-east-1")
    if "ca_file" in config:  # TLS with a private CA (MinIO with its own certificates)
        config["ca_file"] = os.path.abspath(os.path.expanduser(config["ca_file"]))
    display = f"s3://{url.bucket}/{url.prefix}".rstrip("/")
    store = native_store(display, f"s3://{url.bucket}", config)
    return Location(store=store, prefix=url.prefix, url=display, scheme="s3", options=config,
                    bucket_id=f"s3://{url.bucket} at {endpoint or 'AWS'}")


def target(st: StorageConfig) -> StorageTarget:
    """A config file's storage section of an S3-speaking provider as a URL and options."""
    scheme = "https" if st.use_ssl else "http"
    opts = {"aws_region": _aws_region(st)}
    virtual = st.provider in VIRTUAL_HOST_PROVIDERS and not is_local_host(st.address)
    is_aws_host = st.address.endswith(".amazonaws.com") or st.address.endswith(".amazonaws.com.cn")
    if virtual:
        if not (is_aws_host and st.use_ssl and st.port in (0, 443)):
            # object_store wants the bucket in a virtual-hosted endpoint.
            opts["aws_endpoint"] = f"{scheme}://{st.bucket_name}.{host_port(st)}"
    else:
        opts["aws_endpoint"] = f"{scheme}://{host_port(st)}"
    opts["aws_virtual_hosted_style_request"] = "true" if virtual else "false"
    if not st.use_ssl:
        opts["aws_allow_http"] = "true"
    auth = st.auth
    if auth.type == "static":
        opts["aws_access_key_id"] = auth.access_key_id
        opts["aws_secret_access_key"] = auth.secret_access_key
        if auth.session_token:
            opts["aws_session_token"] = auth.session_token
    elif auth.type == "iam" and auth.endpoint:
        opts["aws_metadata_endpoint"] = auth.endpoint
    return StorageTarget(bucket_url("s3", st), opts, st.bucket_name, root_of(st.root_path), st.provider)


def _aws_region(st: StorageConfig) -> str:
    if st.region:
        return st.region
    m = re.fullmatch(r"s3[.-]([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?", st.address)
    if m and m.group(1) not in ("external-1", "accelerate", "dualstack"):
        return m.group(1)
    return "us-east-1"
