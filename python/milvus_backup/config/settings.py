"""Read the Go tool's ``backup.yaml`` (schema v1 or v2) into one resolved model.

Users point mbackup at the file they already have. Both schemas of zilliztech/milvus-backup
are read and normalised into the v2 shape (the richer one); mbackup's own settings live in
the same file under a top-level ``mbackup:`` section.

Precedence, per value: ``--set`` > environment > config file > default. Every resolved value
remembers where it came from (:class:`Origin`), which ``mbackup config show`` prints through
:meth:`Config.rows` with secrets masked.

- v1 (no ``configVersion``, or ``configVersion: v1``): ``milvus.*``, ``minio.*`` with the
  ``backup*`` keys inheriting from their Milvus-side twins, ``backup.parallelism.*`` and so on,
  with the v1 per-key environment variables (``MILVUS_ADDRESS``, ``MINIO_BACKUP_ROOT_PATH``...).
  Unknown v1 keys are ignored with a warning, as the Go tool ignores them.
- v2 (``configVersion: v2``): only v2 keys are accepted; the v2 environment variables are
  credentials (``MILVUS_USER``, ``MILVUS_STORAGE_AUTH_SECRET_ACCESS_KEY``...), and the Go
  tool's v1 variables (``MILVUS_ADDRESS``, ``MINIO_PORT``...) set their settings too
  (:data:`GO_ENV`), as does ``--set`` with their names; a Kubernetes service link in one
  (``MILVUS_PORT=tcp://...``) is ignored with a warning.
- No file at all: defaults, environment and ``--set`` read as v2.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..units import parse_rate
from . import params
from .params import LOG_LEVELS, PROVIDERS, TLS_MODES, Setting, attr_name, format_value
from .secrets import display_url, has_password, is_secret_name, mask, url_secret

__all__ = [
    "Config",
    "ConfigError",
    "Origin",
    "find_config_file",
    "load_config",
    "parse_overrides",
]

DEFAULT_CONFIG_NAME = "backup.yaml"

SOURCE_OVERRIDE = "override"
SOURCE_ENV = "env"
SOURCE_CONFIG = "config"
SOURCE_DEFAULT = "default"

# v1 accepted several spellings of one provider; v2 keeps one name each.
V1_PROVIDER_ALIASES = {"ali": "aliyun", "alibaba": "aliyun", "alicloud": "aliyun", "tc": "tencent"}
V1_TLS_MODES = {0: "disabled", 1: "server", 2: "mutual"}
S3_AUTH_TYPES = ("static", "iam", "default")
AUTH_TYPES = {"azure": ("sharedKey", "default"), "gcpnative": ("serviceAccount", "default")}
# Which auth.* credentials each auth type reads; any other one set explicitly is a mistake.
AUTH_FIELDS = {
    "static": ("accessKeyID", "secretAccessKey", "sessionToken"),
    "sharedKey": ("accountKey",),
    "serviceAccount": ("credentialsFile",),
    "iam": ("endpoint",),
    "default": (),
}
ALL_AUTH_FIELDS = ("accessKeyID", "secretAccessKey", "sessionToken", "accountKey", "credentialsFile", "endpoint")



# ======================================================================================
# The resolved model (v2 shape). Its defaults are the settings table's (params.py).


def _default(key: str) -> Any:
    """A field's default: the setting's (a fresh copy of a list)."""
    value = params.BY_KEY[key].default
    return field(default_factory=lambda: list(value)) if isinstance(value, list) else value


@dataclass
class LogFileConfig:
    path: str = _default("log.file.path")
    max_size_mib: int = _default("log.file.maxSizeMiB")
    max_days: int = _default("log.file.maxDays")
    max_backups: int = _default("log.file.maxBackups")


@dataclass
class LogConfig:
    level: str = _default("log.level")
    console: bool = _default("log.console")
    file: LogFileConfig = field(default_factory=LogFileConfig)


@dataclass
class ServerConfig:
    debug_mode: bool = _default("server.debugMode")
    swagger_base_path: str = _default("server.swaggerBasePath")
    token: str = _default("server.token")
    # As written; server/schedules.py checks them when mbackup server starts (it needs croniter).
    schedules: list[Any] = field(default_factory=list)


@dataclass
class GrpcConfig:
    address: str = _default("milvus.grpc.address")
    port: int = _default("milvus.grpc.port")
    tls_mode: str = _default("milvus.grpc.tlsMode")
    ca_cert_path: str = _default("milvus.grpc.caCertPath")
    server_name: str = _default("milvus.grpc.serverName")
    mtls_cert_path: str = _default("milvus.grpc.mtlsCertPath")
    mtls_key_path: str = _default("milvus.grpc.mtlsKeyPath")


@dataclass
class RestConfig:
    endpoint: str = _default("milvus.rest.endpoint")


@dataclass
class ManagementConfig:
    endpoint: str = _default("milvus.management.endpoint")


@dataclass
class ReplicateConfig:
    rpc_channel_name: str = _default("milvus.replicate.rpcChannelName")


@dataclass
class EtcdConfig:
    endpoints: list[str] = _default("milvus.etcd.endpoints")  # noqa: RUF009 (returns field(default_factory=...))
    root_path: str = _default("milvus.etcd.rootPath")


@dataclass
class StorageAuthConfig:
    type: str = _default("milvus.storage.auth.type")
    access_key_id: str = _default("milvus.storage.auth.accessKeyID")
    secret_access_key: str = _default("milvus.storage.auth.secretAccessKey")
    session_token: str = _default("milvus.storage.auth.sessionToken")
    account_key: str = _default("milvus.storage.auth.accountKey")
    credentials_file: str = _default("milvus.storage.auth.credentialsFile")
    endpoint: str = _default("milvus.storage.auth.endpoint")


@dataclass
class StorageConfig:
    provider: str = _default("milvus.storage.provider")
    address: str = _default("milvus.storage.address")
    port: int = _default("milvus.storage.port")
    region: str = _default("milvus.storage.region")
    use_ssl: bool = _default("milvus.storage.useSSL")
    account_name: str = _default("milvus.storage.accountName")
    source_sas_token: str = _default("milvus.storage.sourceSASToken")
    bucket_name: str = _default("milvus.storage.bucketName")
    root_path: str = _default("milvus.storage.rootPath")
    local_path: str = _default("milvus.storage.localPath")
    milvus_address: str = _default("milvus.storage.milvusAddress")
    milvus_port: int = _default("milvus.storage.milvusPort")
    auth: StorageAuthConfig = field(default_factory=StorageAuthConfig)


@dataclass
class MilvusConfig:
    user: str = _default("milvus.user")
    password: str = _default("milvus.password")
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    rest: RestConfig = field(default_factory=RestConfig)
    management: ManagementConfig = field(default_factory=ManagementConfig)
    replicate: ReplicateConfig = field(default_factory=ReplicateConfig)
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


@dataclass
class BackupConcurrencyConfig:
    collections: int = _default("backup.concurrency.collections")
    segments: int = _default("backup.concurrency.segments")


@dataclass
class BackupConfig:
    # Every other backup.storage default is the Milvus side's (the keys inherit it).
    storage: StorageConfig = field(default_factory=lambda: StorageConfig(root_path=_default("backup.storage.rootPath")))
    concurrency: BackupConcurrencyConfig = field(default_factory=BackupConcurrencyConfig)
    pause_gc: bool = _default("backup.pauseGC")


@dataclass
class RestoreConcurrencyConfig:
    collections: int = _default("restore.concurrency.collections")
    import_jobs: int = _default("restore.concurrency.importJobs")


@dataclass
class RestoreConfig:
    concurrency: RestoreConcurrencyConfig = field(default_factory=RestoreConcurrencyConfig)
    max_segments_per_import_job: int = _default("restore.maxSegmentsPerImportJob")
    keep_temp_files: bool = _default("restore.keepTempFiles")


@dataclass
class TransferConfig:
    mode: str = _default("transfer.mode")
    concurrency: int = _default("transfer.concurrency")
    multipart_copy_threshold_mib: int = _default("transfer.multipartCopyThresholdMiB")


@dataclass
class ZillizCloudConfig:
    endpoint: str = _default("zillizCloud.endpoint")
    api_key: str = _default("zillizCloud.apiKey")


@dataclass
class MBackupConfig:
    """mbackup's own settings (the ``mbackup:`` section)."""

    parallel: int = _default("mbackup.parallel")
    checksum: str = _default("mbackup.checksum")
    batch_imports: bool = _default("mbackup.batchImports")
    max_bandwidth: int | None = _default("mbackup.maxBandwidth")  # bytes per second; None = unlimited
    max_requests_per_second: float | None = _default("mbackup.maxRequestsPerSecond")  # None = unlimited
    part_size_mib: int = _default("mbackup.partSizeMiB")
    multipart_threshold_mib: int = _default("mbackup.multipartThresholdMiB")
    memory_budget_mib: int = _default("mbackup.memoryBudgetMiB")
    milvus_adapter: str = _default("mbackup.milvusAdapter")
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Origin:
    """Where a resolved value came from.

    ``source`` is override, env, config or default; ``source_key`` is the key or variable
    name as written there (empty for defaults). ``inherited_from`` names the key a value
    was copied from (backup storage inheriting Milvus storage), with that key's origin.
    """

    source: str
    source_key: str = ""
    file: str | None = None
    inherited_from: str | None = None

    @property
    def explicit(self) -> bool:
        """Set for this very key (not a default, not inherited)."""
        return self.source != SOURCE_DEFAULT and self.inherited_from is None

    def where(self) -> str:
        if self.source == SOURCE_CONFIG:
            base = f"file {self.file}"
        elif self.source == SOURCE_ENV:
            base = f"env {self.source_key}"
        elif self.source == SOURCE_OVERRIDE:
            base = f"--set {self.source_key}"
        else:
            base = "default"
        return f"inherited from {self.inherited_from}, {base}" if self.inherited_from else base


DEFAULT_ORIGIN = Origin(SOURCE_DEFAULT)


@dataclass
class Config:
    """The resolved configuration. Build it with :func:`load_config`."""

    version: str = "v2"  # schema the file was read as
    path: str | None = None  # the config file read, if any
    log: LogConfig = field(default_factory=LogConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    milvus: MilvusConfig = field(default_factory=MilvusConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    zilliz_cloud: ZillizCloudConfig = field(default_factory=ZillizCloudConfig)
    mbackup: MBackupConfig = field(default_factory=MBackupConfig)
    origins: dict[str, Origin] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str) -> Any:
        """Value of a config key such as ``milvus.grpc.port`` (case-insensitive)."""
        param = _PARAM_BY_LOWER.get(key.lower())
        if param is None:
            raise KeyError(key)
        return _get_path(self, param.attr)

    def origin(self, key: str) -> Origin:
        param = _PARAM_BY_LOWER.get(key.lower())
        if param is None:
            raise KeyError(key)
        return self.origins.get(param.key, DEFAULT_ORIGIN)

    def where(self, key: str) -> str:
        """Where a row's value came from, as ``config show`` says it: ``default``, ``file
        PATH`` (with the key as spelled there when it differs), ``env NAME``, ``--set KEY``."""
        origin = self.origins.get(key, DEFAULT_ORIGIN)
        shown = origin.where()
        if origin.source == SOURCE_CONFIG and not origin.inherited_from and origin.source_key.lower() != key.lower():
            shown += f" ({origin.source_key})"
        return shown

    def rows(self) -> Iterator[tuple[str, str, str, str]]:
        """(key, value as shown, source, source key) for every setting; secrets masked."""
        for param in ALL_PARAMS:
            origin = self.origins.get(param.key, DEFAULT_ORIGIN)
            value = _get_path(self, param.attr)
            shown = mask(value) if param.secret else format_value(value, param.kind)
            yield param.key, shown, origin.source, origin.source_key
        for name in sorted(self.mbackup.profiles):
            for k, v in self.mbackup.profiles[name].items():
                key = f"mbackup.profiles.{name}.{k}"
                origin = self.origins.get(key, DEFAULT_ORIGIN)
                yield key, mask(v) if is_secret_name(k) else v, origin.source, origin.source_key


# ======================================================================================
# Parameter tables, from the settings declared in params.py

if TYPE_CHECKING:
    class _Keyed(Setting):
        """A setting with a config key: the tables below hold only these."""

        key: str
else:
    _Keyed = Setting


def _keyed(s: Setting) -> TypeGuard[_Keyed]:
    return bool(s.key)


V2_PARAMS: tuple[_Keyed, ...] = tuple(s for s in params.SETTINGS if _keyed(s) and not s.key.startswith("mbackup."))
MBACKUP_PARAMS: tuple[_Keyed, ...] = tuple(s for s in params.SETTINGS if _keyed(s) and s.key.startswith("mbackup."))
ALL_PARAMS = V2_PARAMS + MBACKUP_PARAMS
_PORT = params.BY_KEY["milvus.grpc.port"]
_PARAM_BY_LOWER = {p.key.lower(): p for p in ALL_PARAMS}
_V2_ENV_NAMES = {e: p for p in V2_PARAMS for e in p.env}

# The Go tool's own environment variables (its v1 names: MILVUS_ADDRESS, MINIO_PORT...) set
# their settings in a v2 file and with no file too, after the v2 names: the Kubernetes pattern
# of scripts written for it. Not where v1 means more than the value (GCP_KEY_JSON also picks
# the auth type; crossStorage is no variable).
_GO_ENV_SKIPPED = {"GCP_KEY_JSON", "BACKUP_GCP_KEY_JSON"}
GO_ENV: dict[str, tuple[str, ...]] = {
    p.key: names for p in V2_PARAMS if p.v1
    if (names := tuple(e for e in p.v1.env if e not in p.env and e not in _GO_ENV_SKIPPED))}
_GO_ENV_NAMES = {e for names in GO_ENV.values() for e in names}
_GO_ENV_BY_V1_KEY = {k.lower(): GO_ENV[p.key][0] for p in V2_PARAMS if p.v1 and p.key in GO_ENV for k in p.v1.keys}
# Kubernetes sets <SERVICE>_PORT=tcp://ip:port for every service, e.g. MILVUS_PORT for one
# named milvus: never a value meant for mbackup.
_SERVICE_LINK = re.compile(r"(tcp|udp|sctp)://")


def _go_env_value(key: str, raw: str) -> str:
    """A Go-tool variable's value as the v2 setting takes it, where v1 typed it otherwise."""
    text = raw.strip()
    if key == "milvus.grpc.tlsMode" and text.isdigit() and int(text) in V1_TLS_MODES:
        return V1_TLS_MODES[int(text)]
    if key.endswith(".auth.type"):  # v1's useIAM
        try:
            return "iam" if _as_bool(text) else "static"
        except _Bad:
            return raw  # the auth type's own check names it
    return raw


# The v1 schema (internal/cfg/cfg.go of the Go tool): each key with its type, default and
# environment variables. Backup-side keys default to None: "not set, inherit".
V1_PARAMS: tuple[params.V1, ...] = tuple(s.v1 for s in params.SETTINGS if s.v1) + params.V1_DROPPED
_V1_ENV_NAMES = {e for p in V1_PARAMS for e in p.env}
_V1_KEYS_LOWER = {k.lower() for p in V1_PARAMS for k in p.keys}
_LEAF_KEYS = _V1_KEYS_LOWER | set(_PARAM_BY_LOWER)  # keys that take one value, in either schema

# v1 keys and what replaced them, to turn "unknown key" in a v2 file into advice.
V1_TO_V2 = {k.lower(): s.v1.advice or s.key for s in params.SETTINGS if s.v1 for k in s.v1.keys if k != s.key}
V1_TO_V2.update((k.lower(), p.advice) for p in params.V1_DROPPED for k in p.keys)


# ======================================================================================
# Loading


def find_config_file(name: str, *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> str | None:
    """Locate a config file like the Go tool.

    The literal path if it exists; else ``$MILVUSCONF/<basename>``; else
    ``./configs/<basename>``. Returns the path as it should be shown, or None.
    """
    env = os.environ if env is None else env
    base_dir = Path.cwd() if cwd is None else Path(cwd)

    def exists(p: str) -> bool:
        q = Path(p)
        return (q if q.is_absolute() else base_dir / q).exists()

    if exists(name):
        return name
    base = os.path.basename(name)
    conf_dir = env.get("MILVUSCONF", "")
    if conf_dir and exists(os.path.join(conf_dir, base)):
        return os.path.join(conf_dir, base)
    candidate = os.path.join("configs", base)
    if exists(candidate):
        return candidate
    return None


_KEY_SYNTAX = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def parse_overrides(items: Iterable[str]) -> list[tuple[str, str]]:
    """Split ``--set`` arguments into (key, value) pairs.

    Each argument may hold several comma-separated ``KEY=VALUE`` pairs (the Go tool's flag
    is a string slice). A comma-separated piece that is not ``KEY=VALUE`` continues the
    previous value, so ``milvus.etcd.endpoints=a:2379,b:2379`` keeps both endpoints.
    """
    pairs: list[tuple[str, str]] = []
    for item in items:
        started = False
        for piece in item.split(","):
            key, sep, value = piece.partition("=")
            if sep and _KEY_SYNTAX.fullmatch(key.strip()):
                pairs.append((key.strip(), value))
                started = True
            elif started:
                k, v = pairs[-1]
                pairs[-1] = (k, f"{v},{piece}")
            else:
                shown = f"{key}=..." if sep else item  # not the value: it may be a secret
                raise ConfigError(f"--set {shown!r}: expected KEY=VALUE, e.g. --set milvus.grpc.port=19530")
    return pairs


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Config:
    """Resolve the configuration.

    ``path`` is the ``--config`` value, None when the flag was not given: then
    ``backup.yaml`` is looked up and, if missing, defaults (plus env and ``--set``) apply.
    A named file that cannot be found is an error. ``overrides`` are the raw ``--set``
    arguments. Raises ConfigError with one line per problem.
    """
    env = dict(os.environ if env is None else env)
    base_dir = Path.cwd() if cwd is None else Path(cwd)
    pairs = parse_overrides(overrides)
    name = DEFAULT_CONFIG_NAME if path is None else os.fspath(path)
    found = find_config_file(name, env=env, cwd=base_dir)
    if found is None and path is not None:
        base = os.path.basename(name)
        raise ConfigError(
            f"config file {name!r} not found (looked for {name}, $MILVUSCONF/{base} and configs/{base}); "
            "check --config"
        )
    tree: dict[str, Any] = {}
    if found is not None:
        # Imported here: a run without a config file (most copies) skips YAML's ~0.02 CPU s.
        from .yamlfile import read_config_file

        document = read_config_file(found, base_dir)
        if document is not None and not isinstance(document, dict):
            raise ConfigError(f"{found}: expected a mapping of settings at the top level, got {_yaml_type(document)}")
        tree = document or {}
    return _Resolver(tree, found, env, pairs, base_dir).resolve()


def _yaml_type(value: Any) -> str:
    return _show(value) if isinstance(value, _CONTAINER_TYPES) else f"the value {_show(value)}"


# ======================================================================================
# Value parsing


class _Bad(Exception):
    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


# What YAML can give where one value belongs, as a message names it.
_CONTAINERS = ((dict, "a mapping"), (list, "a list"), (tuple, "a list"), (set, "a set"), (bytes, "binary data"))
_CONTAINER_TYPES = tuple(kind for kind, _ in _CONTAINERS)


def _show(value: Any) -> str:
    """A value as quoted in a message; a container by its type only (it may be huge, or hold
    a secret written where a single value belongs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value)
    return next((name for kind, name in _CONTAINERS if isinstance(value, kind)), str(value))


_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}


def _as_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        s = raw.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise _Bad("true or false")


def _as_int(raw: Any, expected: str = "an integer") -> int:
    if isinstance(raw, bool):
        raise _Bad(expected)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"\s*[-+]?[0-9]{1,4000}\s*", raw):
        return int(raw)  # up to int()'s own limit of digits; the range check refuses big ones
    raise _Bad(expected)


def _as_str(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, (str, int, float)):
        return str(raw)
    if isinstance(raw, _CONTAINER_TYPES):
        raise _Bad("a single value")
    return str(raw)  # dates and the like, as YAML wrote them


def _as_list(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [_as_str(v).strip() for v in raw if v is not None and _as_str(v).strip()]
    return [s.strip() for s in _as_str(raw).split(",") if s.strip()]


_UNLIMITED = {"", "0", "off", "none", "unlimited"}
_RATE_EXPECTED = "a rate such as 200MiB/s or 1GB/s (or unlimited)"


def _as_rate(raw: Any) -> int | None:
    """Bytes per second, parsed like the CLI's --max-bandwidth; 0 or unlimited mean None."""
    if raw is None:
        return None
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise _Bad(_RATE_EXPECTED)
    text = str(raw).strip()
    if text.lower() in _UNLIMITED:
        return None
    try:
        value = parse_rate(text)
    except ValueError:
        raise _Bad(_RATE_EXPECTED) from None
    return value or None


def _as_rps(raw: Any, expected: str) -> float | None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in _UNLIMITED):
        return None
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise _Bad(expected)
    try:
        return float(raw)  # NaN and inf are refused by the range check
    except (TypeError, ValueError, OverflowError):
        raise _Bad(expected) from None


def _parse(param: Setting, raw: Any) -> Any:
    kind = param.kind
    if param.range is not None:
        expected = param.expected()
        value: int | float | None
        if kind == "int":
            value = _as_int(raw, expected)
        elif kind == "rate":
            value = _as_rate(raw)
        else:
            value = _as_rps(raw, expected)
        if value is not None and not param.contains(value):
            raise _Bad(expected)
        return (value or None) if kind in ("rate", "rps") else value
    if kind == "str":
        return _as_str(raw)
    if kind == "bool":
        return _as_bool(raw)
    if kind == "int":
        return _as_int(raw)
    if kind == "list":
        return _as_list(raw)
    if kind == "enum":
        text = _as_str(raw).strip()
        for choice in param.choices:
            if text.lower() == choice.lower():
                return choice
        raise _Bad(f"one of {', '.join(param.choices)}")
    raise AssertionError(kind)


def _parse_v1(param: params.V1, raw: Any) -> Any:
    if param.kind == "bool":
        return _as_bool(raw)
    if param.kind == "int":
        return _as_int(raw)
    if param.kind == "list":
        return _as_list(raw)
    return _as_str(raw)


# ======================================================================================
# Paths on the model


def _get_path(obj: Any, attr: str) -> Any:
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _set_path(obj: Any, attr: str, value: Any) -> None:
    *parents, last = attr.split(".")
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)


# ======================================================================================
# Resolution


class _Resolver:
    def __init__(
        self, tree: dict[str, Any], path: str | None, env: dict[str, str], pairs: list[tuple[str, str]], base_dir: Path
    ) -> None:
        self.path = path
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.reported: set[str] = set()  # keys with a problem line
        self.warnings: list[str] = []
        mbackup_tree: Any = {}
        rest: dict[str, Any] = {}
        for k, v in tree.items():
            if isinstance(k, str) and k.lower() == "mbackup":
                mbackup_tree = v
            else:
                rest[k] = v
        self.file: dict[str, tuple[str, Any]] = {}
        self._flatten(rest, "", self.file)
        self.mbackup_tree = mbackup_tree
        # --set: last one wins for a key; matched case-insensitively.
        self.over: dict[str, tuple[str, str]] = {}
        for key, value in pairs:
            self.over[key.lower()] = (key, value)
        self.used_file: set[str] = set()
        self.used_over: set[str] = set()
        self.cfg = Config(path=path)
        self.origins: dict[str, Origin] = {}
        self.version = self._version()

    # --- file plumbing ---------------------------------------------------------------

    def _flatten(self, node: dict[Any, Any], prefix: str, out: dict[str, tuple[str, Any]]) -> None:
        for k, v in node.items():
            if not isinstance(k, str):
                where = f" under {prefix}" if prefix else ""
                self.problems.append(f"key {k!r}{where} is not a string; quote it ({self._file_note()})")
                continue
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict) and key.lower() in _LEAF_KEYS:
                # password: {x} is YAML for a mapping: never silently an empty password.
                self.problems.append(f"{key}: expected a single value, got a mapping; quote the value ({self._file_note()})")
            elif isinstance(v, dict):
                self._flatten(v, key, out)
            elif v is None:
                continue  # an empty leaf sets nothing, as in the Go tool
            else:
                low = key.lower()
                if low in out:
                    self.problems.append(f"{key}: set twice (also as {out[low][0]}); keep one ({self._file_note()})")
                out[low] = (key, v)

    def _file_note(self) -> str:
        return f"file {self.path}"

    def _version(self) -> str:
        hit = self.file.get("configversion")
        if hit is None:
            return "v1" if self.path is not None else "v2"
        self.used_file.add("configversion")
        text = _as_str(hit[1]).strip().lower()
        if text in ("v1", "v2"):
            return text
        self.problems.append(f"configVersion: unknown version {_show(hit[1])}, expected v1 or v2 ({self._file_note()})")
        return "v2"

    def _lookup(self, keys: Iterable[str], envs: Iterable[str]) -> tuple[Any, Origin] | None:
        keys, envs = list(keys), list(envs)
        for k in keys:
            if k.lower() in self.file:  # known even when env or --set wins
                self.used_file.add(k.lower())
        for k in keys + envs:
            hit = self.over.get(k.lower())
            if hit is not None:
                self.used_over.add(k.lower())
                return hit[1], Origin(SOURCE_OVERRIDE, hit[0])
        for e in envs:
            if e not in self.env:
                continue
            if self.version == "v2" and e in _GO_ENV_NAMES and _SERVICE_LINK.match(self.env[e]):
                self.warnings.append(f"env {e} ignored: it holds a Kubernetes service link, not a setting "
                                     "(set enableServiceLinks: false, or use --set)")
                continue
            return self.env[e], Origin(SOURCE_ENV, e)
        for k in keys:
            hit = self.file.get(k.lower())
            if hit is not None:
                return hit[1], Origin(SOURCE_CONFIG, hit[0], file=self.path)
        return None

    # --- messages ----------------------------------------------------------------------

    def _shown_key(self, key: str, origin: Origin) -> str:
        if origin.inherited_from is None and origin.source == SOURCE_CONFIG:
            return origin.source_key
        if origin.inherited_from is None and origin.source == SOURCE_OVERRIDE and "." in origin.source_key:
            return origin.source_key
        return key

    def _problem(self, key: str, text: str, origin: Origin | None = None) -> None:
        origin = origin or self.origins.get(key, DEFAULT_ORIGIN)
        if origin.inherited_from in self.reported:
            return  # the value it was copied from is already reported: one line per problem
        self.reported.add(key)
        self.problems.append(f"{self._shown_key(key, origin)}: {text} ({origin.where()})")

    def _bad_value(self, key: str, expected: str, raw: Any, origin: Origin) -> None:
        hint = ""
        if isinstance(raw, str) and raw.startswith("tcp://") and origin.source == SOURCE_ENV:
            hint = "; this looks like a Kubernetes service link: set enableServiceLinks: false or use --set"
        # A secret is named by its type only (_show never quotes what a container holds).
        shown = "a value (not shown)" if is_secret_name(key) and isinstance(raw, (str, int, float)) else _show(raw)
        self._problem(key, f"expected {expected}, got {shown}{hint}", origin)

    # --- setting values -------------------------------------------------------------------

    def _set(self, key: str, value: Any, origin: Origin) -> None:
        _set_path(self.cfg, _PARAM_BY_LOWER[key.lower()].attr, value)
        self.origins[key] = origin

    def _value(self, key: str) -> Any:
        return _get_path(self.cfg, _PARAM_BY_LOWER[key.lower()].attr)

    def _resolve_param(self, param: _Keyed, hit: tuple[Any, Origin] | None) -> bool:
        """Parse and set a looked-up value; returns False if nothing was set."""
        if hit is None:
            return False
        raw, origin = hit
        try:
            value = _parse(param, raw)
        except _Bad as bad:
            self._bad_value(param.key, bad.expected, raw, origin)
            return False
        self._set(param.key, value, origin)
        return True

    # --- entry point -------------------------------------------------------------------

    def resolve(self) -> Config:
        self.cfg.version = self.version
        if self.version == "v1":
            if self.path is not None and "configversion" not in self.file:
                self.warnings.append(
                    f"{self.path} has no configVersion: read as a v1 file; `milvus-backup config migrate` converts it to v2"
                )
            self._resolve_v1()
        else:
            self._resolve_v2()
        self._resolve_mbackup()
        self._take_schedules()
        self._check_unknown()
        self._validate()
        if self.problems:
            raise ConfigError("\n".join(self.problems), self.problems)
        self.cfg.origins = self.origins
        self.cfg.warnings = self.warnings
        return self.cfg

    # --- v2 ------------------------------------------------------------------------------

    def _resolve_v2(self) -> None:
        for param in V2_PARAMS:
            go = GO_ENV.get(param.key, ())
            hit = self._lookup([param.key], (*param.env, *go))
            if hit is not None and hit[1].source_key.upper() in go:
                hit = (_go_env_value(param.key, hit[0]), hit[1])
            if self._resolve_param(param, hit):
                continue
            if param.inherits:
                self._inherit(param.key, param.inherits)
            else:
                self.origins[param.key] = DEFAULT_ORIGIN

    def _inherit(self, key: str, parent: str) -> None:
        parent_origin = self.origins.get(parent, DEFAULT_ORIGIN)
        value = self._value(parent)
        self._set(key, list(value) if isinstance(value, list) else value, dataclasses.replace(parent_origin, inherited_from=parent))

    # --- v1 ------------------------------------------------------------------------------

    def _resolve_v1(self) -> None:
        v1: dict[str, tuple[Any, Origin]] = {}
        for v1_param in V1_PARAMS:
            hit = self._lookup(v1_param.keys, v1_param.env)
            value, origin = v1_param.default, DEFAULT_ORIGIN
            if hit is not None:
                raw, hit_origin = hit
                try:
                    value, origin = _parse_v1(v1_param, raw), hit_origin
                except _Bad as bad:
                    self._bad_value(v1_param.key, bad.expected, raw, hit_origin)
            v1[v1_param.key] = (value, origin)
        _V1Translation(self, v1).apply()
        # --set with v2 keys still works on a v1 file: applied last, on the v2 model.
        consumed = set(self.used_over)
        for param in V2_PARAMS:
            over = self.over.get(param.key.lower())
            if over is not None and param.key.lower() not in consumed:
                self.used_over.add(param.key.lower())
                self._resolve_param(param, (over[1], Origin(SOURCE_OVERRIDE, over[0])))
        for param in V2_PARAMS:
            self.origins.setdefault(param.key, DEFAULT_ORIGIN)

    # --- mbackup ---------------------------------------------------------------------------

    def _resolve_mbackup(self) -> None:
        section: dict[str, tuple[str, Any]] = {}
        profiles_tree: Any = {}
        if self.mbackup_tree is not None and not isinstance(self.mbackup_tree, dict):
            self.problems.append(f"mbackup: expected a mapping of settings, got {_yaml_type(self.mbackup_tree)} ({self._file_note()})")
        elif self.mbackup_tree:
            rest = {}
            for k, v in self.mbackup_tree.items():
                if isinstance(k, str) and k.lower() == "profiles":
                    profiles_tree = v
                else:
                    rest[k] = v
            self._flatten(rest, "mbackup", section)
        used: set[str] = set()
        for param in MBACKUP_PARAMS:
            hit: tuple[Any, Origin] | None = None
            over = self.over.get(param.key.lower())
            if over is not None:
                self.used_over.add(param.key.lower())
                hit = (over[1], Origin(SOURCE_OVERRIDE, over[0]))
            elif param.key.lower() in section:
                used.add(param.key.lower())
                orig, raw = section[param.key.lower()]
                hit = (raw, Origin(SOURCE_CONFIG, orig, file=self.path))
            if self._resolve_param(param, hit):
                continue
            if param.inherits:
                self._inherit(param.key, param.inherits)
            else:
                self.origins[param.key] = DEFAULT_ORIGIN
        for low, (orig, _) in section.items():
            if low not in used:
                self._unknown_key(orig, [p.key for p in MBACKUP_PARAMS] + ["mbackup.profiles"], self._file_note())
        self._resolve_profiles(profiles_tree)

    def _resolve_profiles(self, tree: Any) -> None:
        profiles: dict[str, dict[str, str]] = {}
        if tree is not None and not isinstance(tree, dict):
            self.problems.append(f"mbackup.profiles: expected a mapping of profile names, got {_yaml_type(tree)} ({self._file_note()})")
            tree = {}
        for name, body in (tree or {}).items():
            where = f"mbackup.profiles.{name}"
            if not isinstance(body, dict):
                self.problems.append(f"{where}: expected a mapping such as {{url: s3://bucket/prefix}}, got {_yaml_type(body)} ({self._file_note()})")
                continue
            prof: dict[str, str] = {}
            for k, v in body.items():
                if v is None:
                    continue
                try:
                    prof[str(k)] = _as_str(v)
                except _Bad:
                    self.problems.append(f"{where}.{k}: expected a single value, got {_show(v)} ({self._file_note()})")
                    continue
                self.origins[f"{where}.{k}"] = Origin(SOURCE_CONFIG, f"{where}.{k}", file=self.path)
            profiles[str(name)] = prof
        prefix = "mbackup.profiles."
        for low, (orig, value) in self.over.items():
            if not low.startswith(prefix):
                continue
            self.used_over.add(low)
            name, dot, key = orig[len(prefix):].rpartition(".")
            if not dot or not name or not key:
                self.problems.append(f"--set {orig}: expected mbackup.profiles.<name>.<key>=VALUE, e.g. mbackup.profiles.prod.url=s3://bucket/prefix")
                continue
            prof = profiles.setdefault(name, {})
            existing = next((k for k in prof if k.lower() == key.lower()), key)
            prof[existing] = value
            self.origins[f"{prefix}{name}.{existing}"] = Origin(SOURCE_OVERRIDE, orig)
        for name, prof in profiles.items():
            origin = next((self.origins[f"{prefix}{name}.{k}"] for k in prof), Origin(SOURCE_CONFIG, f"{prefix}{name}", file=self.path))
            for k, v in prof.items():
                # config show prints these: a secret belongs in a key of its own, where it is masked.
                leak = url_secret(v) if k.lower() == "url" else "a user:password@ part" if has_password(v) else None
                if leak and not is_secret_name(k):
                    where = self.origins[f"{prefix}{name}.{k}"].where()
                    self.problems.append(f"{prefix}{name}.{k}: holds {leak} (not shown); give credentials as keys "
                                         f"of the profile, e.g. secret_access_key: ... ({where})")
            url = next((v for k, v in prof.items() if k.lower() == "url"), "")
            if not url:
                self.problems.append(f"{prefix}{name}: url is required, e.g. url: s3://bucket/prefix ({origin.where()})")
            elif "://" not in url:
                self.problems.append(f"{prefix}{name}.url: expected a URL such as s3://bucket/prefix, got {display_url(url)!r} ({origin.where()})")
        self.cfg.mbackup.profiles = profiles

    def _take_schedules(self) -> None:
        """server.schedules: a list of mappings, kept as written for mbackup server."""
        hit = self.file.get("server.schedules")
        if hit is None or self.version != "v2":
            return
        self.used_file.add("server.schedules")
        if not isinstance(hit[1], list):
            self.problems.append(f"{hit[0]}: expected a list of schedules such as [{{name: nightly, cron: '0 2 * * *', "
                                 f"backupName: 'nightly_{{date}}'}}], got {_yaml_type(hit[1])} ({self._file_note()})")
            return
        self.cfg.server.schedules = hit[1]

    # --- unknown keys ------------------------------------------------------------------

    def _known_override_keys(self) -> list[str]:
        keys = [p.key for p in ALL_PARAMS]
        if self.version == "v1":
            keys += [k for p in V1_PARAMS for k in p.keys] + sorted(_V1_ENV_NAMES)
        else:
            keys += sorted({*_V2_ENV_NAMES, *_GO_ENV_NAMES})
        return keys

    def _unknown_key(self, key: str, known: list[str], where: str) -> None:
        legacy = V1_TO_V2.get(key.lower())
        if legacy is not None and self.version == "v2":
            context = "in a configVersion: v2 config" if self.path else "with no config file (read as v2)"
            go = _GO_ENV_BY_V1_KEY.get(key.lower())
            also = f" (or {go}, the Go tool's variable)" if go and where.startswith("--set") else ""
            self.problems.append(f"{key}: a v1 key {context}; write {legacy}{also} instead ({where})")
            return
        lowered = {k.lower(): k for k in known}
        close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.75)
        hint = f"did you mean {lowered[close[0]]}?" if close else "run mbackup config show to list the keys"
        self.problems.append(f"{key}: unknown key; {hint} ({where})")

    def _check_unknown(self) -> None:
        known = self._known_override_keys()
        for low, (orig, _) in self.over.items():
            if low in self.used_over:
                continue
            self._unknown_key(orig, known, f"--set {orig}")  # not the value: it may be a secret
        if self.version == "v2":
            for low, (orig, _) in self.file.items():
                if low not in self.used_file:
                    self._unknown_key(orig, [p.key for p in V2_PARAMS] + ["configVersion", "mbackup"], self._file_note())
        else:
            for low, (orig, _) in self.file.items():
                if low in self.used_file:
                    continue
                if low in _V1_KEYS_LOWER:
                    self.warnings.append(f"{orig}: ignored, another spelling of the same setting is set ({self._file_note()})")
                elif low in _PARAM_BY_LOWER and low not in _V1_KEYS_LOWER:
                    # Silently dropping it would run with a value the user did not choose.
                    self.problems.append(
                        f"{orig}: a v2 key in a file read as v1; add configVersion: v2 at the top "
                        f"(and move every key to v2) or use the v1 spelling ({self._file_note()})"
                    )
                else:
                    self.warnings.append(f"{orig}: unknown v1 key, ignored ({self._file_note()})")

    # --- validation --------------------------------------------------------------------

    def _validate(self) -> None:
        c = self.cfg
        self._validate_no_password_in_addresses()
        self._validate_tls()
        for key in ("milvus.rest.endpoint", "milvus.management.endpoint"):
            self._validate_endpoint(key)
        if not c.milvus.etcd.endpoints:
            self._problem("milvus.etcd.endpoints", "at least one endpoint is required, e.g. localhost:2379")
        self._validate_storage("milvus.storage")
        self._validate_storage("backup.storage")
        m = c.mbackup
        if m.memory_budget_mib < m.part_size_mib and "mbackup.partSizeMiB" not in self.reported:
            self._problem(
                "mbackup.memoryBudgetMiB",
                f"{m.memory_budget_mib} is smaller than mbackup.partSizeMiB ({m.part_size_mib}); raise it or lower partSizeMiB",
            )

    def _validate_tls(self) -> None:
        key = "milvus.grpc.tlsMode"
        grpc = self.cfg.milvus.grpc
        text = str(grpc.tls_mode).strip()
        canonical = next((m for m in TLS_MODES if m == text.lower()), None)
        if canonical is None:
            if self.version == "v2" and text in ("0", "1", "2"):
                self._problem(key, f"{text!r} is the v1 spelling; in a v2 config write {V1_TLS_MODES[int(text)]}")
            else:
                self._problem(key, f"expected one of {', '.join(TLS_MODES)}, got {text!r}")
            return
        grpc.tls_mode = canonical
        if canonical == "mutual" and not (grpc.mtls_cert_path and grpc.mtls_key_path):
            self._problem(
                key,
                "mutual TLS needs milvus.grpc.mtlsCertPath and milvus.grpc.mtlsKeyPath; set both or use tlsMode: server",
            )
        elif canonical == "mutual" and not grpc.ca_cert_path:
            # pymilvus presents the client certificate only together with a CA file.
            self._problem(key, "mutual TLS needs milvus.grpc.caCertPath too: the CA certificate that signed Milvus's")

    def _validate_no_password_in_addresses(self) -> None:
        """A host or URL setting with ``user:password@`` would print the password wherever the
        address is shown (errors, config show); credentials have settings of their own."""
        for param in ALL_PARAMS:
            if not param.key.lower().endswith(("address", "endpoint", "endpoints")):
                continue
            value = self._value(param.key)
            if any(has_password(v) for v in (value if isinstance(value, list) else [value]) if v):
                self._problem(param.key, "holds a user:password@ part (not shown); remove it and put the "
                                         "credentials in their own settings, where they are masked")

    def _validate_endpoint(self, key: str) -> None:
        value = self._value(key)
        if not value or key in self.reported:
            return
        try:
            u = urlsplit(value)
        except ValueError:  # a malformed host part, e.g. "http://[x"
            u = None
        if u is None or u.scheme not in ("http", "https") or not u.netloc:
            self._problem(key, f"expected an absolute http(s) URL such as http://localhost:9091, got {value!r}")

    def _validate_storage(self, prefix: str) -> None:
        st = self.cfg.milvus.storage if prefix == "milvus.storage" else self.cfg.backup.storage
        pkey = f"{prefix}.provider"
        provider = st.provider.strip().lower()
        if provider not in PROVIDERS:
            origin = self.origins.get(pkey, DEFAULT_ORIGIN)
            alias = V1_PROVIDER_ALIASES.get(provider)
            if alias:
                hint = f"{st.provider!r} is the v1 spelling; write {alias}"
            else:
                close = difflib.get_close_matches(provider, PROVIDERS, n=1)
                hint = f"unknown provider {st.provider!r}; use one of {', '.join(PROVIDERS)}"
                if close:
                    hint += f" (did you mean {close[0]}?)"
            self._problem(pkey, hint, origin)
            return
        st.provider = provider

        def explicit(sub: str) -> bool:
            return self.origins.get(f"{prefix}.{sub}", DEFAULT_ORIGIN).explicit

        if provider == "local":
            if st.milvus_address and explicit("milvusAddress"):
                self._problem(f"{prefix}.milvusAddress", "does not apply to the local provider; remove it")
            if not st.root_path:
                self._problem(f"{prefix}.rootPath", "the local provider needs the directory to read and write; set rootPath")
            return
        if not _PORT.contains(st.port):  # v1 ports are not range-checked when read
            self._problem(f"{prefix}.port", f"expected {_PORT.expected()}, got {st.port}")
        if not st.address:
            self._problem(f"{prefix}.address", f"is required for provider {provider}; set the storage host")
        elif f"{prefix}.address" in self.reported:
            pass
        elif "://" in st.address:
            self._problem(f"{prefix}.address", f"expected a host name without scheme, got {st.address!r}; use useSSL to choose https")
        if not st.bucket_name:
            self._problem(f"{prefix}.bucketName", f"is required for provider {provider}")
        if "://" in st.milvus_address and f"{prefix}.milvusAddress" not in self.reported:
            self._problem(f"{prefix}.milvusAddress", f"expected a host, not a URL, got {st.milvus_address!r}")
        if st.milvus_port and not st.milvus_address:
            self._problem(f"{prefix}.milvusPort", f"needs {prefix}.milvusAddress; set both or neither")
        if provider == "azure" and not st.account_name:
            self._problem(f"{prefix}.accountName", "is required for the azure provider; set the storage account name")
        elif provider != "azure" and st.account_name and explicit("accountName"):
            self._problem(f"{prefix}.accountName", f"only applies to the azure provider, but {pkey} is {provider!r}; remove it")
        if st.local_path and explicit("localPath"):
            self._problem(f"{prefix}.localPath", f"only applies to the local provider, but {pkey} is {provider!r}; remove it")
        self._validate_auth(prefix, provider, st.auth)

    def _validate_auth(self, prefix: str, provider: str, auth: StorageAuthConfig) -> None:
        tkey = f"{prefix}.auth.type"
        allowed = AUTH_TYPES.get(provider, S3_AUTH_TYPES)
        canonical = next((a for a in allowed if a.lower() == str(auth.type).strip().lower()), None)
        if canonical is None:
            origin = self.origins.get(tkey, DEFAULT_ORIGIN)
            fix = f"; set {tkey}" if not origin.explicit else ""
            self._problem(tkey, f"{auth.type!r} is not valid for provider {provider}, use one of {', '.join(allowed)}{fix}", origin)
            return
        auth.type = canonical
        applies = AUTH_FIELDS[canonical]
        for sub in ALL_AUTH_FIELDS:
            key = f"{prefix}.auth.{sub}"
            origin = self.origins.get(key, DEFAULT_ORIGIN)
            if sub not in applies and origin.explicit and _get_path(auth, attr_name(sub)):
                self._problem(key, f"does not apply when {tkey} is {canonical!r}; remove it or change auth.type", origin)
        required = {"static": ("accessKeyID", "secretAccessKey"), "sharedKey": ("accountKey",), "serviceAccount": ("credentialsFile",)}
        env_prefix = prefix.replace(".", "_").upper()
        for sub in required.get(canonical, ()):
            if not _get_path(auth, attr_name(sub)):
                env_hint = f" (or {env_prefix}_AUTH_{attr_name(sub).upper()})" if self.version == "v2" else ""
                self._problem(
                    f"{prefix}.auth.{sub}",
                    f"is required when {tkey} is {canonical!r}; set it{env_hint} or choose another auth.type",
                )


class _V1Translation:
    """Map resolved v1 values onto the v2 model (the Go tool's legacy.go/migrate.go rules)."""

    def __init__(self, r: _Resolver, v1: dict[str, tuple[Any, Origin]]) -> None:
        self.r = r
        self.v1 = v1

    def val(self, key: str) -> Any:
        return self.v1[key][0]

    def org(self, key: str) -> Origin:
        return self.v1[key][1]

    def put(self, v2_key: str, v1_key: str) -> None:
        value, origin = self.v1[v1_key]
        self.r._set(v2_key, value, origin)

    def apply(self) -> None:
        # Settings whose v1 value is the v2 value; the others are translated below.
        simple = [(s, s.v1) for s in V2_PARAMS if s.v1 is not None and s.v1.direct]
        for s, v1 in simple:
            self.put(s.key, v1.key)
        # Ranges v2 checks at parse time must be checked here too.
        for s, _ in simple:
            if s.range is not None and not s.contains(self.r._value(s.key)):
                self.r._bad_value(s.key, s.expected(), self.r._value(s.key), self.r.origins[s.key])
        level = str(self.val("log.level")).lower()
        if level not in LOG_LEVELS:
            self.r._bad_value("log.level", f"one of {', '.join(LOG_LEVELS)}", self.val("log.level"), self.org("log.level"))
        else:
            self.r._set("log.level", level, self.org("log.level"))
        self._grpc()
        cross = self.org("minio.crossStorage")
        self.r._set("transfer.mode", "streaming" if self.val("minio.crossStorage") else "auto", cross)
        self._storage("milvus.storage", self._milvus_side())
        self._storage("backup.storage", self._backup_side())

    def _grpc(self) -> None:
        port, porg = self.v1["milvus.port"]
        if not _PORT.contains(port):
            self.r._bad_value("milvus.grpc.port", _PORT.expected(), port, porg)
        else:
            self.r._set("milvus.grpc.port", port, porg)
        mode, morg = self.v1["milvus.tlsMode"]
        if mode not in V1_TLS_MODES:
            self.r._bad_value("milvus.grpc.tlsMode", "0 (off), 1 (one-way) or 2 (mutual)", mode, morg)
            return
        name = V1_TLS_MODES[mode]
        if name == "mutual" and not (self.val("milvus.mtlsCertPath") and self.val("milvus.mtlsKeyPath")):
            # v1 quietly fell back to one-way TLS without a client key pair.
            name = "server"
            self.r.warnings.append(
                "milvus.tlsMode is 2 but milvus.mtlsCertPath/mtlsKeyPath are not both set: using one-way TLS, as v1 did"
            )
        self.r._set("milvus.grpc.tlsMode", name, morg)

    def _milvus_side(self) -> dict[str, tuple[Any, Origin]]:
        v = self.v1
        return {
            "provider": v["minio.storageType"],
            "address": v["minio.address"],
            "port": v["minio.port"],
            "region": v["minio.region"],
            "useSSL": v["minio.useSSL"],
            "bucketName": v["minio.bucketName"],
            "rootPath": v["minio.rootPath"],
            "accessKeyID": v["minio.accessKeyID"],
            "secretAccessKey": v["minio.secretAccessKey"],
            "token": v["minio.token"],
            "gcpCredentialJSON": v["minio.gcpCredentialJSON"],
            "useIAM": v["minio.useIAM"],
            "iamEndpoint": v["minio.iamEndpoint"],
        }

    def _backup_side(self) -> dict[str, tuple[Any, Origin]]:
        """v1 backup* keys: an unset or empty value inherits the Milvus-side one."""
        m = self._milvus_side()

        def pick(own: str, twin: str) -> tuple[Any, Origin]:
            value, origin = self.v1[own]
            if value is None or value == "" or (value == 0 and not isinstance(value, bool)):
                parent_value, parent_origin = m[twin]
                return parent_value, dataclasses.replace(parent_origin, inherited_from=f"milvus.storage.{_V1_TWIN_V2[twin]}")
            return value, origin

        side = {
            "provider": pick("minio.backupStorageType", "provider"),
            "address": pick("minio.backupAddress", "address"),
            "port": pick("minio.backupPort", "port"),
            "region": pick("minio.backupRegion", "region"),
            "useSSL": pick("minio.backupUseSSL", "useSSL"),
            "bucketName": pick("minio.backupBucketName", "bucketName"),
            "accessKeyID": pick("minio.backupAccessKeyID", "accessKeyID"),
            "secretAccessKey": pick("minio.backupSecretAccessKey", "secretAccessKey"),
            "token": pick("minio.backupToken", "token"),
            "gcpCredentialJSON": self.v1["minio.backupGcpCredentialJSON"],  # never inherited
            "useIAM": pick("minio.backupUseIAM", "useIAM"),
            "iamEndpoint": pick("minio.backupIamEndpoint", "iamEndpoint"),
        }
        # The quirk: an unset backupRootPath means the Milvus rootPath (backups land next to
        # the Milvus data), and only an empty Milvus rootPath falls back to "backup".
        own, own_origin = self.v1["minio.backupRootPath"]
        if own:
            side["rootPath"] = (own, own_origin)
        elif m["rootPath"][0]:
            side["rootPath"] = (m["rootPath"][0], dataclasses.replace(m["rootPath"][1], inherited_from="milvus.storage.rootPath"))
        else:
            side["rootPath"] = ("backup", DEFAULT_ORIGIN)
        return side

    def _storage(self, prefix: str, s: dict[str, tuple[Any, Origin]]) -> None:
        r = self.r
        raw_provider, porg = s["provider"]
        provider = str(raw_provider).strip().lower()
        provider = V1_PROVIDER_ALIASES.get(provider, provider)
        r._set(f"{prefix}.provider", provider, porg)
        for sub in ("address", "region", "useSSL", "bucketName", "rootPath"):
            r._set(f"{prefix}.{sub}", *s[sub])
        port, port_origin = s["port"]
        r._set(f"{prefix}.port", port, port_origin)
        use_iam, iam_origin = s["useIAM"]
        if provider == "azure":
            # v1 spelled the Azure account name and key as the access key pair.
            r._set(f"{prefix}.accountName", *s["accessKeyID"])
            if use_iam:
                r._set(f"{prefix}.auth.type", "default", iam_origin)
            else:
                r._set(f"{prefix}.auth.type", "sharedKey", s["secretAccessKey"][1])
                r._set(f"{prefix}.auth.accountKey", *s["secretAccessKey"])
        elif provider == "gcpnative":
            cred, cred_origin = s["gcpCredentialJSON"]
            if cred and not use_iam:
                r._set(f"{prefix}.auth.type", "serviceAccount", cred_origin)
                r._set(f"{prefix}.auth.credentialsFile", cred, cred_origin)
            else:
                r._set(f"{prefix}.auth.type", "default", iam_origin if use_iam else DEFAULT_ORIGIN)
        elif use_iam:
            r._set(f"{prefix}.auth.type", "iam", iam_origin)
            r._set(f"{prefix}.auth.endpoint", *s["iamEndpoint"])
        else:
            r._set(f"{prefix}.auth.type", "static", DEFAULT_ORIGIN if not iam_origin.explicit else iam_origin)
            r._set(f"{prefix}.auth.accessKeyID", *s["accessKeyID"])
            r._set(f"{prefix}.auth.secretAccessKey", *s["secretAccessKey"])
            r._set(f"{prefix}.auth.sessionToken", *s["token"])
        for sub in ("accountName", *(f"auth.{f}" for f in ALL_AUTH_FIELDS), "auth.type"):
            key = f"{prefix}.{sub}"
            if key not in r.origins:
                # Not carried over from v1 for this provider: the v2 value is "unset".
                _set_path(r.cfg, _PARAM_BY_LOWER[key.lower()].attr, "")
                r.origins[key] = DEFAULT_ORIGIN


# v1 storage field -> v2 storage key, for the "inherited from" note.
_V1_TWIN_V2 = {
    "provider": "provider",
    "address": "address",
    "port": "port",
    "region": "region",
    "useSSL": "useSSL",
    "bucketName": "bucketName",
    "rootPath": "rootPath",
    "accessKeyID": "auth.accessKeyID",
    "secretAccessKey": "auth.secretAccessKey",
    "token": "auth.sessionToken",
    "gcpCredentialJSON": "auth.credentialsFile",
    "useIAM": "auth.type",
    "iamEndpoint": "auth.endpoint",
}
