"""Every setting mbackup reads, declared once.

A setting is declared here with its type, default, range and unit, what it does, the config
key that sets it (the Go tool's v2 spelling, or mbackup's own under ``mbackup:``), how the Go
tool's v1 schema spells it, the environment variables that set it, and the ``mbackup copy``
flag that sets it for one run. The rest is derived from this table: the defaults of the
resolved model and the environment lookup (settings.py), ``config show``'s rows, the help of
the copy flags, CopySettings' defaults, and the README's settings table (``scripts/readme``).
Tests hold the engine's own defaults (rust/src/py/copier.rs) to it.

A default follows the Go tool (zilliztech/milvus-backup) wherever it has the setting, so a
backup.yaml means the same to both tools: 128 copies in flight (``transfer.concurrency``, which
``mbackup.parallel`` follows), server-side multipart copies above 500 MiB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from ..units import format_size
from . import ranges
from .ranges import MiB, Range
from .secrets import is_secret_name

LOG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")
TLS_MODES = ("disabled", "server", "mutual")
PROVIDERS = ("local", "minio", "s3", "aws", "gcp", "gcpnative", "azure", "aliyun", "tencent", "hwc")
TRANSFER_MODES = ("auto", "direct", "streaming")
CHECKSUMS = ("crc32c", "crc64nvme", "none")
# mbackup create --format, as the Go tool has it: auto = snapshot on Milvus 3.0+, binlog before.
FORMATS = ("auto", "binlog", "snapshot")

# mbackup runs at most this many import jobs at once, whatever restore.concurrency.importJobs
# (the Go tool's 768) says.
MAX_IMPORT_JOBS = 64

_SAME: Any = object()  # a V1 field left as the setting has it
_V1_KINDS = ("str", "int", "bool", "list")  # v1 reads every other kind as a string


@dataclass(frozen=True)
class V1:
    """How the Go tool's v1 schema (a file without ``configVersion: v2``) spells a setting."""

    key: str
    env: tuple[str, ...] = ()
    lookup: tuple[str, ...] = ()  # every spelling, in the order the Go tool tries them
    kind: str = ""  # where v1 types it otherwise: milvus.tlsMode is 0/1/2, minio.useIAM a bool
    default: Any = _SAME  # where v1's differs; None: unset, the Milvus-side value (backup* keys)
    direct: bool = True  # the v1 value is the v2 value; else settings._V1Translation derives it
    advice: str = ""  # what a v2 file writes instead, where the v2 key alone does not say it

    @property
    def keys(self) -> tuple[str, ...]:
        return self.lookup or (self.key,)


@dataclass(frozen=True)
class Setting:
    key: str | None  # config key, v2 spelling; None for a setting only a flag sets
    kind: str  # str | int | bool | list | enum | rate (bytes/s) | rps (requests/s)
    default: Any
    doc: str
    range: Range | None = None
    scale: int = 1  # the key's unit in the range's unit: MiB for a ...MiB key
    choices: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # environment variables of the v2 schema (credentials only)
    v1: V1 | None = None
    flag: str | None = None  # the copy flag, in the range's unit (sizes with units: 64MiB)
    engine: str | None = None  # the engine's Copier argument (and CopySettings field) it sets
    inherits: str | None = None  # the key whose value it takes when not set itself
    used: bool = True  # False: the Go tool's, read and checked, not used by mbackup
    secret: bool = False  # from the key's name (secrets.is_secret_name)
    attr: str = ""  # attribute path on settings.Config, from the key

    def contains(self, value: int | float, scale: int | None = None) -> bool:
        """In range, counted in the key's unit (or in ``scale``)."""
        assert self.range is not None, self.key
        return self.range.contains(value, self.scale if scale is None else scale)

    def expected(self, scale: int | None = None) -> str:
        assert self.range is not None, self.key
        return self.range.expected(self.scale if scale is None else scale)

    def parse(self, text: str) -> int | float:
        """A flag's text -> the value in the range's unit (bytes, not the key's MiB)."""
        assert self.range is not None, self.flag
        return self.range.parse(text)

    def to_engine(self, value: Any) -> Any:
        """A value of the key as the engine's Copier takes it: bytes, 0 for no cap."""
        if self.kind == "enum":
            return value
        if value is None:
            return 0.0 if self.kind == "rps" else 0
        return value * self.scale


def attr_name(segment: str) -> str:
    """A key's segment as an attribute name: ``maxSizeMiB`` -> ``max_size_mib``."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", segment.replace("MiB", "Mib"))
    return "_".join(w.lower() for w in words)


def _s(key: str | None, kind: str, default: Any, doc: str, *, env: tuple[str, ...] | str = (),
       v1: V1 | str | None = None, choices: tuple[str, ...] = (), **kw: Any) -> Setting:
    env = (env,) if isinstance(env, str) else env
    if isinstance(v1, str):
        v1 = V1(v1)
    if v1 is not None:
        v1 = replace(v1, kind=v1.kind or (kind if kind in _V1_KINDS else "str"),
                     default=default if v1.default is _SAME else v1.default)
    attr = ".".join(attr_name(p) for p in key.split(".")) if key else ""
    return Setting(key, kind, default, doc, choices=choices, env=env, v1=v1, secret=is_secret_name(key) if key else False,
                   attr=attr, **kw)


def _storage(side: str) -> list[Setting]:
    """``milvus.storage`` (Milvus's bucket) or ``backup.storage`` (where backups go). In v2 the
    backup side takes each Milvus-side value it does not set (``inherit``), except where the
    data is; in v1 its ``minio.backup*`` keys do (settings._V1Translation)."""
    p = f"{side}.storage"
    env = f"{side.upper()}_STORAGE_"
    backup = side == "backup"

    def v1(name: str, env_name: str = "", **kw: Any) -> V1:
        kw.setdefault("direct", False)
        if not backup:
            return V1(f"minio.{name}", (f"MINIO_{env_name}",) if env_name else (), **kw)
        kw.setdefault("default", None)  # unset: the Milvus side's
        return V1(f"minio.backup{name[0].upper()}{name[1:]}", (f"MINIO_BACKUP_{env_name}",) if env_name else (), **kw)

    def s(sub: str, kind: str, default: Any, doc: str, inherit: bool = False, **kw: Any) -> Setting:
        if backup and inherit:
            kw["inherits"], default = f"milvus.storage.{sub}", _SAME
        return _s(f"{p}.{sub}", kind, default, doc, **kw)

    provider_v1 = (V1("minio.backupStorageType", lookup=("storage.backupStorageType", "minio.backupStorageType"),
                      default=None, direct=False) if backup else
                   V1("minio.storageType", lookup=("storage.storageType", "minio.storageType", "minio.cloudProvider"),
                      direct=False))
    # Never inherited in v1: unset is "", not None.
    credentials_v1 = V1(f"minio.{'backupG' if backup else 'g'}cpCredentialJSON",
                        (f"{'BACKUP_' if backup else ''}GCP_KEY_JSON",), default="", direct=False,
                        advice=f"{p}.auth.credentialsFile with auth.type: serviceAccount")
    return [
        s("provider", "str", "minio", "Storage service", inherit=True, choices=PROVIDERS, v1=provider_v1),
        s("address", "str", "localhost", "Host name of the endpoint, without scheme", inherit=True,
          v1=v1("address", "ADDRESS")),
        s("port", "int", 9000, "Port of the endpoint", inherit=True, range=ranges.PORT, v1=v1("port", "PORT")),
        s("region", "str", "", "Region", inherit=True, v1=v1("region", "REGION")),
        s("useSSL", "bool", False, "Reach the endpoint over https", inherit=True, v1=v1("useSSL", "USE_SSL")),
        s("accountName", "str", "", "Azure storage account (azure only)", inherit=True, env=f"{env}ACCOUNT_NAME"),
        s("sourceSASToken", "str", "", "Azure SAS token to read this storage from another account", used=False),
        s("bucketName", "str", "a-bucket", "Bucket (Azure: container) " + ("for backups" if backup else "Milvus writes to"),
          inherit=True, v1=v1("bucketName", "BUCKET_NAME")),
        s("rootPath", "str", "backup" if backup else "files",
          "Prefix the backups go under" if backup else "Milvus's root path in its bucket", v1=v1("rootPath", "ROOT_PATH")),
        s("localPath", "str", "", "The path the Milvus process sees (local provider only)", used=False),
        s("milvusAddress", "str", "", "Host Milvus itself reaches this storage by (snapshot format)"),
        s("milvusPort", "int", 0, "Port Milvus itself reaches this storage by (snapshot format)",
          range=ranges.OPTIONAL_PORT),
        s("auth.type", "str", "static", "static, iam or default; azure: sharedKey or default; gcpnative: "
          "serviceAccount or default", inherit=True,
          v1=v1("useIAM", "USE_IAM", kind="bool", default=None if backup else False, advice=f"{p}.auth.type: iam")),
        s("auth.accessKeyID", "str", "minioadmin", "Access key (auth.type static)", inherit=True,
          env=f"{env}AUTH_ACCESS_KEY_ID",
          v1=v1("accessKeyID", "ACCESS_KEY", advice=f"{p}.auth.accessKeyID ({p}.accountName for azure)")),
        s("auth.secretAccessKey", "str", "minioadmin", "Secret key (auth.type static)", inherit=True,
          env=f"{env}AUTH_SECRET_ACCESS_KEY",
          v1=v1("secretAccessKey", "SECRET_KEY", advice=f"{p}.auth.secretAccessKey ({p}.auth.accountKey for azure)")),
        s("auth.sessionToken", "str", "", "Session token (auth.type static)", inherit=True,
          env=f"{env}AUTH_SESSION_TOKEN", v1=v1("token", "TOKEN")),
        s("auth.accountKey", "str", "", "Azure account key (auth.type sharedKey)", inherit=True,
          env=f"{env}AUTH_ACCOUNT_KEY"),
        s("auth.credentialsFile", "str", "", "Service-account JSON file (gcpnative, auth.type serviceAccount)",
          inherit=True, env=f"{env}AUTH_CREDENTIALS_FILE", v1=credentials_v1),
        s("auth.endpoint", "str", "", "IAM endpoint (auth.type iam)", inherit=True, v1=v1("iamEndpoint", "IAM_ENDPOINT")),
    ]


_TABLE: tuple[Setting, ...] = (
    _s("log.level", "enum", "info", "Log level (the log file's; stderr's too when set here; --log-level, -v)",
       choices=LOG_LEVELS, v1="log.level"),
    _s("log.console", "bool", True, "Log lines on stderr at log.level when the config sets log.level",
       v1="log.console"),
    # Go releases up to v0.5.8 read the log file's path from log.file.rootPath (v1 files still say so).
    _s("log.file.path", "str", "logs/backup.log", "Log file; written only when this key is set",
       v1=V1("log.file.filename", lookup=("log.file.filename", "log.file.rootPath"))),
    _s("log.file.maxSizeMiB", "int", 300, "Rotate the log file at this size", range=ranges.LOG_SIZE, scale=MiB,
       v1="log.file.maxSize"),
    _s("log.file.maxDays", "int", 0, "Days to keep rotated log files (0: all)", range=ranges.LOG_DAYS,
       v1="log.file.maxDays"),
    _s("log.file.maxBackups", "int", 0, "Rotated log files to keep (0: all)", range=ranges.LOG_FILES,
       v1="log.file.maxBackups"),
    _s("server.debugMode", "bool", False, "REST server debug mode",
       v1=V1("http.debugMode", lookup=("http.debugMode", "http.debug_mode")), used=False),
    _s("server.swaggerBasePath", "str", "", "REST server Swagger base path", v1="http.swaggerBasePath", used=False),
    _s("server.token", "str", "", "Bearer token mbackup server requires on every route but / and /api/v1/hello "
       "(empty: none)", env="MBACKUP_SERVER_TOKEN"),
    _s("milvus.user", "str", "", "Milvus user", env="MILVUS_USER", v1=V1("milvus.user", ("MILVUS_USER",))),
    _s("milvus.password", "str", "", "Milvus password", env="MILVUS_PASSWORD",
       v1=V1("milvus.password", ("MILVUS_PASSWORD",))),
    _s("milvus.grpc.address", "str", "localhost", "Milvus host", v1=V1("milvus.address", ("MILVUS_ADDRESS",))),
    _s("milvus.grpc.port", "int", 19530, "Milvus gRPC port", range=ranges.PORT,
       v1=V1("milvus.port", ("MILVUS_PORT",), direct=False)),
    _s("milvus.grpc.tlsMode", "str", "disabled", "TLS to Milvus (server: one-way)", choices=TLS_MODES,
       v1=V1("milvus.tlsMode", ("MILVUS_TLS_MODE",), kind="int", default=0, direct=False,
             advice="milvus.grpc.tlsMode (0, 1, 2 written as disabled, server, mutual)")),
    _s("milvus.grpc.caCertPath", "str", "", "CA certificate that signed Milvus's",
       v1=V1("milvus.caCertPath", ("MILVUS_CA_CERT_PATH",))),
    _s("milvus.grpc.serverName", "str", "", "Name to check Milvus's certificate against",
       v1=V1("milvus.serverName", ("MILVUS_SERVER_NAME",))),
    _s("milvus.grpc.mtlsCertPath", "str", "", "Client certificate (tlsMode mutual)",
       v1=V1("milvus.mtlsCertPath", ("MILVUS_MTLS_CERT_PATH",))),
    _s("milvus.grpc.mtlsKeyPath", "str", "", "Client key (tlsMode mutual)",
       v1=V1("milvus.mtlsKeyPath", ("MILVUS_MTLS_KEY_PATH",))),
    _s("milvus.rest.endpoint", "str", "", "Milvus REST endpoint (empty: from the gRPC address)"),
    _s("milvus.management.endpoint", "str", "http://localhost:9091", "Milvus management endpoint, to pause GC",
       v1=V1("backup.gcPause.address", ("BACKUP_GC_PAUSE_ADDRESS",))),
    _s("milvus.replicate.rpcChannelName", "str", "by-dev-replicate-msg", "Milvus 2.5 CDC replicate channel",
       v1=V1("milvus.rpcChannelName", ("MILVUS_RPC_CHANNEL_NAME",)), used=False),
    _s("milvus.etcd.endpoints", "list", ["localhost:2379"], "Milvus's etcd", v1="milvus.etcd.endpoints", used=False),
    _s("milvus.etcd.rootPath", "str", "by-dev", "Milvus's root in etcd", v1="milvus.etcd.rootPath", used=False),
    *_storage("milvus"),
    *_storage("backup"),
    _s("backup.concurrency.collections", "int", 4, "Collections backed up at once", range=ranges.CONCURRENCY,
       v1=V1("backup.parallelism.backupCollection", ("BACKUP_PARALLELISM_BACKUP_COLLECTION",)), used=False),
    _s("backup.concurrency.segments", "int", 1024, "Segments backed up at once", range=ranges.CONCURRENCY,
       v1="backup.parallelism.backupSegment", used=False),
    _s("backup.pauseGC", "bool", True, "Pause Milvus's garbage collection while backing up",
       v1=V1("backup.gcPause.enable", ("BACKUP_GC_PAUSE_ENABLE",))),
    _s("restore.concurrency.collections", "int", 2, "Collections restored at once", range=ranges.CONCURRENCY,
       v1=V1("backup.parallelism.restoreCollection", ("BACKUP_PARALLELISM_RESTORE_COLLECTION",)), used=False),
    _s("restore.concurrency.importJobs", "int", 768, f"Import jobs at once (mbackup runs at most {MAX_IMPORT_JOBS})",
       range=ranges.CONCURRENCY, v1="backup.parallelism.importJob"),
    _s("restore.maxSegmentsPerImportJob", "int", 256, "Segments per import job, with mbackup.batchImports",
       range=ranges.CONCURRENCY),
    _s("restore.keepTempFiles", "bool", False, "Keep the staged copies a restore imported from",
       v1=V1("backup.keepTempFiles", ("BACKUP_KEEP_TEMP_FILES",))),
    _s("transfer.mode", "enum", "auto", "Copy server-side or stream through the tool", choices=TRANSFER_MODES,
       v1=V1("minio.crossStorage", kind="bool", default=False, direct=False,
             advice="transfer.mode (true: streaming, false: auto)"), used=False),
    _s("transfer.concurrency", "int", 128, "Objects copied at once", range=ranges.PARALLEL,
       v1=V1("backup.parallelism.copydata", ("BACKUP_PARALLELISM_COPYDATA",))),
    _s("transfer.multipartCopyThresholdMiB", "int", 500, "Server-side copies above this size use UploadPartCopy",
       range=ranges.THRESHOLD, scale=MiB, v1="minio.multipartCopyThresholdMiB", flag="--multipart-copy-threshold",
       engine="multipart_copy_threshold"),
    _s("zillizCloud.endpoint", "str", "https://api.cloud.zilliz.com", "Zilliz Cloud API", v1="cloud.address",
       used=False),
    _s("zillizCloud.apiKey", "str", "", "Zilliz Cloud API key", env="ZILLIZ_CLOUD_API_KEY", v1="cloud.apikey",
       used=False),
    _s("mbackup.parallel", "int", _SAME, "Objects copied or checksummed at once", range=ranges.PARALLEL,
       inherits="transfer.concurrency", flag="--parallel", engine="parallel"),
    _s("mbackup.checksum", "enum", "crc32c", "Checksum computed while bytes stream", choices=CHECKSUMS,
       flag="--checksum", engine="checksum"),
    _s("mbackup.maxBandwidth", "rate", None, "Cap on bytes streamed per second, shared by every copy, e.g. 200MiB/s",
       range=ranges.BANDWIDTH, flag="--max-bandwidth", engine="max_bandwidth"),
    _s("mbackup.maxRequestsPerSecond", "rps", None, "Cap on requests per second, shared by every copy",
       range=ranges.REQUEST_RATE, flag="--max-requests", engine="max_requests_per_sec"),
    _s("mbackup.partSizeMiB", "int", 8,
       "Part size for multipart streaming (from S3 into a folder, and from a local file to an S3 server that checks "
       "CRC32C: the least length of a ranged read or part; longer ones up to 64 MiB)",
       range=ranges.PART_SIZE, scale=MiB, flag="--part-size", engine="part_size"),
    _s("mbackup.multipartThresholdMiB", "int", 16, "Stream objects above this size in parts", range=ranges.THRESHOLD,
       scale=MiB, flag="--multipart-threshold", engine="multipart_threshold"),
    _s("mbackup.milvusAdapter", "str", "", "Milvus line whose adapter to use, e.g. 3.0 (empty: the server's own)"),
    _s("mbackup.memoryBudgetMiB", "int", 128, "Memory the parts in flight may hold", range=ranges.MEMORY, scale=MiB,
       engine="memory_budget"),
    _s("mbackup.batchImports", "bool", False, "Restore into Milvus 2.4+ with REST import jobs of many segments "
       "(the Go tool's --use_v2_restore) instead of one gRPC import per segment"),
    _s(None, "int", 64 * MiB, "Part size for server-side multipart copies", range=ranges.PART_SIZE,
       flag="--copy-part-size", engine="copy_part_size"),
)


def _with_inherited_defaults(table: tuple[Setting, ...]) -> tuple[Setting, ...]:
    keyed = {s.key: s for s in table if s.key}
    return tuple(replace(s, default=keyed[s.inherits].default) if s.inherits else s for s in table)


SETTINGS = _with_inherited_defaults(_TABLE)

# v1 keys with no v2 setting: read (and type-checked) as the Go tool reads them, then dropped.
V1_DROPPED = (V1("http.enabled", kind="bool", default=True, advice="nothing (removed)"),)

BY_KEY = {s.key: s for s in SETTINGS if s.key}
BY_FLAG = {s.flag: s for s in SETTINGS if s.flag}
BY_ENGINE = {s.engine: s for s in SETTINGS if s.engine}
NUMBER_KEYS = {k: s for k, s in BY_KEY.items() if s.range}
NUMBER_FLAGS = {f: s for f, s in BY_FLAG.items() if s.range}


def engine_default(arg: str) -> Any:
    """The default of the engine's Copier argument ``arg``, as the Copier takes it."""
    s = BY_ENGINE[arg]
    return s.to_engine(s.default)


def format_value(value: Any, kind: str) -> str:
    """A value as ``config show`` prints it."""
    if value is None:
        return "unlimited" if kind in ("rate", "rps") else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    if kind == "rate":
        return f"{format_size(value)}/s"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flag_default(flag: str) -> str:
    """A flag's default as the flag is written: ``128``, ``500MiB``, ``unlimited``."""
    s = BY_FLAG[flag]
    value = s.to_engine(s.default)
    if s.range is not None and s.range.unit == "B":
        return format_size(value)
    return format_value(s.default, s.kind)


def one_of(choices: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else "".join(choices)


def flag_help(flag: str) -> str:
    """The help of a copy flag: what it does, its default and the config key it overrides."""
    s = BY_FLAG[flag]
    choices = f": {one_of(s.choices)}" if s.choices else ""
    where = ""
    if s.key:
        follows = f", which follows {s.inherits}" if s.inherits else ""
        where = f" (config {s.key}{follows})"
    return f"{s.doc}{choices}; default {flag_default(flag)}{where}."
