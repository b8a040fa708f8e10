"""Backup meta files and key layout, byte-compatible with zilliztech/milvus-backup.

The Go tool writes its meta with ``encoding/json`` over protobuf-generated structs, so the
bytes follow Go's rules, not protobuf's JSON mapping: compact, struct fields in declaration
order, ``omitempty`` on every field except a few (``size``, ``log_size``, ``has_index``,
``state_code``, ...), maps sorted by key, enums as integers, ``<``, ``>`` and ``&`` escaped
as ``\\u003c`` and friends. The dataclasses below declare their fields in the Go order;
:func:`dumps_compact` applies those rules and the readers accept what Go accepts (unknown
keys ignored, missing keys and ``null`` read as zero values, keys matched
case-insensitively when no exact match exists).

Layout of a backup (binlog format)::

    <root>/<name>/meta/{backup,collection,partition,segment,full}_meta.json
    <root>/<name>/binlogs/insert_log/<coll>/<part>/<group>/<seg>/<field>/<log>
    <root>/<name>/binlogs/delta_log/<coll>/<part>/<group>/<seg>/<log>    (part != -1)
    <root>/<name>/binlogs/delta_log/<coll>/-1/<seg>/<log>                (collection-level L0)

``group`` is the segment id: each segment gets its own "virtual partition" directory so
restore can import any chosen set of segments.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import BackupNameError, MetaError
from . import untrusted

__all__ = [
    "BACKUP_META",
    "COLLECTION_META",
    "FULL_META",
    "META_FILES",
    "PARTITION_META",
    "SEGMENT_META",
    "BackupInfo",
    "BackupInfoBrief",
    "BackupSummary",
    "Binlog",
    "CollectionBackupInfo",
    "CollectionBackupInfoBrief",
    "CollectionLevelBackupInfo",
    "CollectionSchema",
    "ConsistencyLevel",
    "DataType",
    "DatabaseBackupInfo",
    "FieldBinlog",
    "FieldSchema",
    "FieldState",
    "FunctionSchema",
    "FunctionType",
    "ImportDirs",
    "IndexInfo",
    "KeyValuePair",
    "PartitionBackupInfo",
    "PartitionLevelBackupInfo",
    "RPCChannelInfo",
    "RestoreBackupTaskResponse",
    "RestoreCollectionTaskResponse",
    "SegmentBackupInfo",
    "SegmentLevelBackupInfo",
    "SnapshotBackup",
    "StructArrayFieldSchema",
    "backup_dir",
    "backup_info_brief",
    "check",
    "delta_log_key",
    "dumps_compact",
    "dumps_indent",
    "insert_log_key",
    "level_to_tree",
    "load_file",
    "loads",
    "meta_key",
    "partition_import_dirs",
    "read_meta_files",
    "segment_files",
    "segment_import_dirs",
    "validate_backup_name",
    "write_meta_files",
]

# --------------------------------------------------------------------------------------
# File names

META_DIR = "meta"
BACKUP_META = "backup_meta.json"
COLLECTION_META = "collection_meta.json"
PARTITION_META = "partition_meta.json"
SEGMENT_META = "segment_meta.json"
FULL_META = "full_meta.json"
# The Go tool's write order. backup_meta.json is what marks "a backup exists", full_meta.json
# is what readers prefer.
META_FILES = (BACKUP_META, COLLECTION_META, PARTITION_META, SEGMENT_META, FULL_META)

FORMAT_BINLOG = ""  # absent in the JSON
FORMAT_SNAPSHOT = "snapshot"

LOAD_STATE_NOT_LOAD = "NotLoad"
LOAD_STATE_LOADING = "Loading"
LOAD_STATE_LOADED = "Loaded"

_DAMAGED = "the backup is damaged; run mbackup verify"


# --------------------------------------------------------------------------------------
# Enums (written as integers; fields are typed int so unknown future values survive)


class DataType(enum.IntEnum):
    None_ = 0
    Bool = 1
    Int8 = 2
    Int16 = 3
    Int32 = 4
    Int64 = 5
    Float = 10
    Double = 11
    String = 20
    VarChar = 21
    Array = 22
    JSON = 23
    Geometry = 24
    Text = 25
    Timestamptz = 26
    BinaryVector = 100
    FloatVector = 101
    Float16Vector = 102
    BFloat16Vector = 103
    SparseFloatVector = 104
    Int8Vector = 105
    ArrayOfVector = 106
    ArrayOfStruct = 200
    Struct = 201


class ConsistencyLevel(enum.IntEnum):
    Strong = 0
    Session = 1
    Bounded = 2
    Eventually = 3
    Customized = 4


class FunctionType(enum.IntEnum):
    Unknown = 0
    BM25 = 1
    TextEmbedding = 2


class FieldState(enum.IntEnum):
    FieldCreated = 0
    FieldCreating = 1
    FieldDropping = 2
    FieldDropped = 3


# --------------------------------------------------------------------------------------
# Messages. Field order is the Go struct order, which is the JSON order.

# Fields Go writes even when zero (the tool's gen_proto.sh strips their omitempty).
_ALWAYS = {"always": True}
# Fields the Go tool's messages lack, written only when set (omitempty), so a backup without
# them is byte-identical to the Go tool's; its encoding/json reader ignores unknown keys.
_MBACKUP_ONLY = {"mbackup_only": True}


def _named(json_name: str, default: Any = 0) -> Any:
    return field(default=default, metadata={"json": json_name})


class _Message:
    """Marker base class of the meta messages."""


@dataclass
class KeyValuePair(_Message):
    key: str = ""
    value: str = ""


@dataclass
class Binlog(_Message):
    entries_num: int = 0  # deprecated, never filled
    timestamp_from: int = 0  # deprecated, never filled
    timestamp_to: int = 0  # deprecated, never filled
    log_path: str = ""  # source key in the Milvus bucket, not the backup key
    log_size: int = field(default=0, metadata=_ALWAYS)
    log_id: int = 0


@dataclass
class FieldBinlog(_Message):
    field_id: int = _named("fieldID")
    binlogs: list[Binlog] = field(default_factory=list)


@dataclass
class SegmentBackupInfo(_Message):
    segment_id: int = 0
    collection_id: int = 0
    partition_id: int = 0
    num_of_rows: int = 0
    binlogs: list[FieldBinlog] = field(default_factory=list)
    statslogs: list[FieldBinlog] = field(default_factory=list)  # deprecated
    deltalogs: list[FieldBinlog] = field(default_factory=list)
    size: int = field(default=0, metadata=_ALWAYS)  # insert + delta bytes
    group_id: int = 0
    backuped: bool = False  # deprecated
    is_l0: bool = False
    v_channel: str = ""
    storage_version: int = 0


@dataclass
class PartitionBackupInfo(_Message):
    partition_id: int = 0
    partition_name: str = ""
    collection_id: int = 0
    segment_backups: list[SegmentBackupInfo] = field(default_factory=list)
    size: int = field(default=0, metadata=_ALWAYS)
    load_state: str = ""


@dataclass
class FieldSchema(_Message):
    field_id: int = _named("fieldID")
    name: str = ""
    is_primary_key: bool = False
    description: str = ""
    data_type: int = 0
    type_params: list[KeyValuePair] = field(default_factory=list)
    index_params: list[KeyValuePair] = field(default_factory=list)
    auto_id: bool = _named("autoID", False)
    state: int = 0
    element_type: int = 0
    # A proto oneof the Go writer never sets; kept opaque so a file carrying it survives.
    default_value: Any = None
    is_dynamic: bool = False
    is_partition_key: bool = False
    nullable: bool = False
    default_value_proto: str = ""  # legacy, read for compatibility
    is_function_output: bool = False
    default_value_base64: str = ""  # base64(proto schemapb.ValueField)
    # Milvus' clustering key (2.4+), which the Go tool neither records nor restores.
    is_clustering_key: bool = field(default=False, metadata=_MBACKUP_ONLY)


@dataclass
class FunctionSchema(_Message):
    name: str = ""
    id: int = 0
    description: str = ""
    type: int = 0
    input_field_names: list[str] = field(default_factory=list)
    input_field_ids: list[int] = field(default_factory=list)
    output_field_names: list[str] = field(default_factory=list)
    output_field_ids: list[int] = field(default_factory=list)
    params: list[KeyValuePair] = field(default_factory=list)


@dataclass
class StructArrayFieldSchema(_Message):
    field_id: int = _named("fieldID")
    name: str = ""
    description: str = ""
    fields: list[FieldSchema] = field(default_factory=list)
    # The struct's own params (max_capacity) and nullability (2.6+), which the Go tool drops.
    type_params: list[KeyValuePair] = field(default_factory=list, metadata=_MBACKUP_ONLY)
    nullable: bool = field(default=False, metadata=_MBACKUP_ONLY)


@dataclass
class CollectionSchema(_Message):
    name: str = ""
    description: str = ""
    auto_id: bool = _named("autoID", False)
    fields: list[FieldSchema] = field(default_factory=list)
    enable_dynamic_field: bool = False
    properties: list[KeyValuePair] = field(default_factory=list)
    functions: list[FunctionSchema] = field(default_factory=list)
    struct_array_fields: list[StructArrayFieldSchema] = field(default_factory=list)


@dataclass
class IndexInfo(_Message):
    field_name: str = ""
    index_name: str = ""
    index_type: str = ""
    params: dict[str, str] = field(default_factory=dict)
    index_id: int = 0
    # Only with --backup_index_extra (read from etcd):
    field_id: int = 0
    create_time: int = 0
    type_params: list[KeyValuePair] = field(default_factory=list)
    index_params: list[KeyValuePair] = field(default_factory=list)
    user_index_params: list[KeyValuePair] = field(default_factory=list)
    is_auto_index: bool = False
    min_index_version: int = 0
    max_index_version: int = 0


@dataclass
class SnapshotBackup(_Message):
    metadata_path: str = ""
    total_files: int = 0
    total_bytes: int = 0


@dataclass
class CollectionBackupInfo(_Message):
    id: str = ""
    collection_id: int = 0
    db_name: str = ""
    collection_name: str = ""
    schema: CollectionSchema | None = None
    shards_num: int = 0
    consistency_level: int = 0
    partition_backups: list[PartitionBackupInfo] = field(default_factory=list)
    backup_timestamp: int = 0
    size: int = field(default=0, metadata=_ALWAYS)
    has_index: bool = field(default=False, metadata=_ALWAYS)
    index_infos: list[IndexInfo] = field(default_factory=list)
    load_state: str = ""
    backup_physical_timestamp: int = 0
    channel_checkpoints: dict[str, str] = field(default_factory=dict)
    l0_segments: list[SegmentBackupInfo] = field(default_factory=list)
    properties: list[KeyValuePair] = field(default_factory=list)
    db_id: int = 0
    created_timestamp: int = 0
    virtual_channel_names: list[str] = field(default_factory=list)
    physical_channel_names: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    snapshot_backup: SnapshotBackup | None = None


@dataclass
class RPCChannelInfo(_Message):
    name: str = ""
    position: str = ""


@dataclass
class DatabaseBackupInfo(_Message):
    db_name: str = ""
    db_id: int = 0
    properties: list[KeyValuePair] = field(default_factory=list)
    ezk: str = ""


@dataclass
class BackupInfo(_Message):
    id: str = ""
    state_code: int = field(default=0, metadata=_ALWAYS)  # deprecated, always 0
    name: str = ""
    backup_timestamp: int = 0
    collection_backups: list[CollectionBackupInfo] = field(default_factory=list)
    size: int = field(default=0, metadata=_ALWAYS)
    milvus_version: str = ""
    # users/roles/grants/privilege_groups as the Go tool wrote them; key order is kept.
    rbac_meta: Any = None
    rpc_channel_info: RPCChannelInfo | None = None
    database_backups: list[DatabaseBackupInfo] = field(default_factory=list)
    flush_all_msgs_base64: dict[str, str] = field(default_factory=dict)
    control_channel_name: str = ""
    physical_channel_names: list[str] = field(default_factory=list)
    format: str = ""  # "" = binlog, "snapshot"


# The collection fields `get` shows: the Go message CollectionBackupInfoBrief is exactly these
# fields of CollectionBackupInfo, in the same order, with the same JSON rules.
_COLLECTION_BRIEF = (
    "id", "collection_id", "db_name", "collection_name", "schema", "shards_num", "backup_timestamp", "size",
    "has_index", "index_infos", "load_state", "backup_physical_timestamp", "channel_checkpoints", "properties",
)
if TYPE_CHECKING:  # built at run time: what a type checker sees of it
    class CollectionBackupInfoBrief(_Message):
        def __init__(self, **fields: Any) -> None: ...
else:
    CollectionBackupInfoBrief = dataclasses.make_dataclass(
        "CollectionBackupInfoBrief",
        [(f.name, f.type, field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
         for f in dataclasses.fields(CollectionBackupInfo) if f.name in _COLLECTION_BRIEF],
        bases=(_Message,),
    )
    CollectionBackupInfoBrief.__module__ = __name__  # so its type hints resolve here


@dataclass
class BackupInfoBrief(_Message):
    """What the Go tool's ``get`` prints: a backup without its partitions and segments."""

    id: str = ""  # the task's; empty outside the server
    state_code: int = field(default=0, metadata=_ALWAYS)
    error_message: str = _named("errorMessage", "")
    start_time: int = 0
    end_time: int = 0
    progress: int = field(default=0, metadata=_ALWAYS)
    name: str = ""
    backup_timestamp: int = 0
    collection_backups: list[CollectionBackupInfoBrief] = field(default_factory=list)
    size: int = field(default=0, metadata=_ALWAYS)
    milvus_version: str = ""
    rpc_channel_info: RPCChannelInfo | None = None
    database_backups: list[DatabaseBackupInfo] = field(default_factory=list)
    meta_size: int = field(default=0, metadata=_ALWAYS)  # bytes under meta/
    format: str = ""


def backup_info_brief(info: BackupInfo, meta_size: int) -> BackupInfoBrief:
    """The brief the Go tool's ``get`` builds from a backup (pbconv.NewBackupInfoBrief, no task)."""
    colls = [CollectionBackupInfoBrief(**{name: getattr(c, name) for name in _COLLECTION_BRIEF})
             for c in info.collection_backups]
    return BackupInfoBrief(
        name=info.name, backup_timestamp=info.backup_timestamp, collection_backups=colls, size=info.size,
        milvus_version=info.milvus_version, rpc_channel_info=info.rpc_channel_info,
        database_backups=info.database_backups, meta_size=meta_size, format=info.format,
    )


# The REST server's answers (backup.proto), as the Go tool's server writes them.
@dataclass
class BackupSummary(_Message):
    """One backup in the server's ``list``."""

    id: str = ""
    name: str = ""
    size: int = field(default=0, metadata=_ALWAYS)
    milvus_version: str = ""


@dataclass
class _TaskView(_Message):
    """The fields a restore task and each of its collections share, first in both."""

    id: str = ""
    state_code: int = field(default=0, metadata=_ALWAYS)
    error_message: str = _named("errorMessage", "")
    start_time: int = 0
    end_time: int = 0
    progress: int = field(default=0, metadata=_ALWAYS)


@dataclass
class RestoreCollectionTaskResponse(_TaskView):
    target_db_name: str = ""
    target_collection_name: str = ""


@dataclass
class RestoreBackupTaskResponse(_TaskView):
    collection_restore_tasks: list[RestoreCollectionTaskResponse] = field(default_factory=list)


@dataclass
class CollectionLevelBackupInfo(_Message):
    infos: list[CollectionBackupInfo] = field(default_factory=list)


@dataclass
class PartitionLevelBackupInfo(_Message):
    infos: list[PartitionBackupInfo] = field(default_factory=list)


@dataclass
class SegmentLevelBackupInfo(_Message):
    infos: list[SegmentBackupInfo] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Field specs derived from the dataclasses


@dataclass(frozen=True)
class _Spec:
    attr: str
    key: str
    kind: str  # int | bool | str | msg | list | map | any
    item: Any  # message class for msg; item kind or class for list
    always: bool
    mbackup_only: bool = False  # not a field of the Go tool's message


@functools.cache
def _specs(cls: type) -> tuple[_Spec, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, item = _kind_of(hints[f.name])
        out.append(_Spec(f.name, f.metadata.get("json", f.name), kind, item, bool(f.metadata.get("always")),
                         bool(f.metadata.get("mbackup_only"))))
    return tuple(out)


@functools.cache
def _spec_index(cls: type) -> tuple[dict[str, _Spec], dict[str, _Spec]]:
    exact = {s.key: s for s in _specs(cls)}
    folded = {s.key.lower(): s for s in _specs(cls)}
    return exact, folded


def _kind_of(hint: Any) -> tuple[str, Any]:
    if hint is Any:
        return "any", None
    if hint in (bool, int, str):
        return hint.__name__, None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list:
        (item,) = args
        return "list", item
    if origin is dict:
        return "map", None
    # `Message | None`
    members = [a for a in args if a is not type(None)]
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], _Message):
        return "msg", members[0]
    raise TypeError(f"unsupported meta field type {hint!r}")


# --------------------------------------------------------------------------------------
# Writing: Go encoding/json rules

_SURROGATES = re.compile("[\ud800-\udfff]")
_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _go_string(s: str) -> str:
    # Go replaces invalid UTF-16 halves with U+FFFD; escapes <, >, & and U+2028/9 by default.
    if _SURROGATES.search(s):
        s = _SURROGATES.sub("\ufffd", s)
    return json.dumps(s, ensure_ascii=False).translate(_HTML_ESCAPES)


def _go_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {f!r}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    a = abs(f)
    if 1e-6 <= a < 1e21:
        fixed = format(Decimal(repr(f)), "f")  # shortest digits, no exponent
        return fixed.rstrip("0").rstrip(".") if "." in fixed else fixed
    text = repr(f)  # shortest repr with an exponent, like Go's 'e' format
    mantissa, _, exponent = text.partition("e")
    sign = exponent[0]
    digits = exponent[1:].lstrip("0") or "0"
    if sign == "-" and len(digits) == 1:  # Go cleans e-07 to e-7 but keeps e+21
        return f"{mantissa}e-{digits}"
    return f"{mantissa}e{sign}{digits.zfill(2)}"


def _omit(spec: _Spec, value: Any) -> bool:
    if spec.always:
        return False
    if spec.kind in ("msg", "any"):
        return value is None  # a non-nil empty struct is still written as {}
    return not value  # 0, False, "", empty list or map


def _encode_message(msg: _Message, out: list[str]) -> None:
    out.append("{")
    first = True
    for spec in _specs(type(msg)):  # type: ignore[arg-type]  # a class is hashable (mypy issue 11470)
        value = getattr(msg, spec.attr)
        if _omit(spec, value):
            continue
        if not first:
            out.append(",")
        first = False
        out.append(_go_string(spec.key))
        out.append(":")
        _encode_field(spec, value, out, type(msg).__name__)
    out.append("}")


def _encode_scalar(kind: str, value: Any, where: str) -> str:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an int, got {value!r}")
        return str(int(value))
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected a bool, got {value!r}")
        return "true" if value else "false"
    if not isinstance(value, str):
        raise TypeError(f"{where}: expected a str, got {value!r}")
    return _go_string(value)


def _encode_field(spec: _Spec, value: Any, out: list[str], owner: str) -> None:
    where = f"{owner}.{spec.attr}"
    if spec.kind in ("int", "bool", "str"):
        out.append(_encode_scalar(spec.kind, value, where))
    elif spec.kind == "msg":
        if not isinstance(value, spec.item):
            raise TypeError(f"{where}: expected {spec.item.__name__}, got {value!r}")
        _encode_message(value, out)
    elif spec.kind == "list":
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            if isinstance(spec.item, type) and issubclass(spec.item, _Message):
                if item is None:
                    out.append("null")
                elif isinstance(item, spec.item):
                    _encode_message(item, out)
                else:
                    raise TypeError(f"{where}[{i}]: expected {spec.item.__name__}, got {item!r}")
            else:
                out.append(_encode_scalar(spec.item.__name__, item, f"{where}[{i}]"))
        out.append("]")
    elif spec.kind == "map":
        out.append("{")
        for i, key in enumerate(sorted(value)):  # Go sorts map keys
            if i:
                out.append(",")
            out.append(_encode_scalar("str", key, where))
            out.append(":")
            out.append(_encode_scalar("str", value[key], f"{where}[{key!r}]"))
        out.append("}")
    else:
        _encode_any(value, out)


def _encode_any(value: Any, out: list[str]) -> None:
    """Opaque JSON values (structs we do not model): key order is kept as read."""
    if value is None:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(_go_float(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, _Message):
        _encode_message(value, out)
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_go_string(str(k)))
            out.append(":")
            _encode_any(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode_any(v, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON: {value!r}")


def dumps_compact(obj: Any) -> bytes:
    """Serialize a meta message (or plain JSON value) exactly as Go's json.Marshal would."""
    out: list[str] = []
    if isinstance(obj, _Message):
        _encode_message(obj, out)
    else:
        _encode_any(obj, out)
    return "".join(out).encode("utf-8")


def dumps_indent(obj: Any, indent: str = "    ") -> bytes:
    """``obj`` as Go's json.MarshalIndent(obj, "", indent) writes it (what ``get`` prints)."""
    src = dumps_compact(obj).decode("utf-8")
    out: list[str] = []
    depth, i, pending = 0, 0, False  # pending: an opened { or [ not yet followed by a newline
    while i < len(src):
        c = src[i]
        if c == '"':  # copy the string as it is, escapes included
            j = i + 1
            while src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            c = src[i : j + 1]
            i = j
        if pending and c not in "]}":
            out.append("\n" + indent * depth)
        if c in "[{":
            out.append(c)
            depth += 1
            pending = True
        elif c in "]}":
            depth -= 1
            if not pending:  # Go writes an empty object or array as {} or []
                out.append("\n" + indent * depth)
            out.append(c)
            pending = False
        else:
            pending = False
            out.append(c + ("\n" + indent * depth if c == "," else " " if c == ":" else ""))
        i += 1
    return "".join(out).encode("utf-8")


# --------------------------------------------------------------------------------------
# Reading


class _Bad(Exception):
    """A JSON value of the wrong shape at ``path``; turned into a MetaError by the caller."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return repr(value)


def _decode_scalar(kind: str, value: Any, path: str) -> Any:
    if kind == "int":
        if isinstance(value, bool):
            raise _Bad(path, f"expected an integer, got {_describe(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Bad(path, f"expected an integer, got {_describe(value)}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _Bad(path, f"expected true or false, got {_describe(value)}")
    if isinstance(value, str):
        return value
    raise _Bad(path, f"expected a string, got {_describe(value)}")


def _decode_message(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise _Bad(path, f"expected an object, got {_describe(data)}")
    exact, folded = _spec_index(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        spec = exact.get(key) or folded.get(key.lower())
        if spec is None or value is None:  # unknown keys ignored; null reads as zero
            continue
        kwargs[spec.attr] = _decode_field(spec, value, f"{path}.{key}" if path else key)
    return cls(**kwargs)


def _decode_field(spec: _Spec, value: Any, path: str) -> Any:
    if spec.kind in ("int", "bool", "str"):
        return _decode_scalar(spec.kind, value, path)
    if spec.kind == "msg":
        return _decode_message(spec.item, value, path)
    if spec.kind == "list":
        if not isinstance(value, list):
            raise _Bad(path, f"expected an array, got {_describe(value)}")
        if isinstance(spec.item, type) and issubclass(spec.item, _Message):
            return [None if v is None else _decode_message(spec.item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        zero = spec.item()
        return [zero if v is None else _decode_scalar(spec.item.__name__, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if spec.kind == "map":
        if not isinstance(value, dict):
            raise _Bad(path, f"expected an object, got {_describe(value)}")
        return {k: "" if v is None else _decode_scalar("str", v, f"{path}.{k}") for k, v in value.items()}
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_NUMBER_PREFIX = re.compile(r"-?[0-9]*\.?[0-9]*(?:[eE][-+]?[0-9]*)?")


def _cut_short(text: str, e: json.JSONDecodeError) -> bool:
    """True when the parser failed only because the text ends early (a cut-off file)."""
    if e.msg.startswith("Unterminated string"):
        return True
    rest = text[e.pos :].strip()
    if not rest:
        return True
    if e.msg.startswith("Invalid \\uXXXX escape") and len(text) - e.pos <= 6:
        return True
    return any(lit.startswith(rest) for lit in ("true", "false", "null")) or bool(_NUMBER_PREFIX.fullmatch(rest))


def _parse_json(data: bytes, name: str) -> Any:
    label = f"{META_DIR}/{name}"
    if not data.strip():
        raise MetaError(f"{label} is empty: {_DAMAGED}")
    text = data.decode("utf-8", errors="replace")  # Go also replaces invalid UTF-8
    deep = f"{label} nests more than {untrusted.MAX_DEPTH} levels deep: {_DAMAGED}"
    try:
        tree = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise MetaError(deep) from None
    except json.JSONDecodeError as e:
        if _cut_short(text, e):
            raise MetaError(f"{label} is not valid JSON (truncated at byte {len(data)}): {_DAMAGED}") from None
        byte = len(text[: e.pos].encode("utf-8"))
        raise MetaError(
            f"{label} is not valid JSON ({e.msg.lower()} at byte {byte}, line {e.lineno} column {e.colno}): {_DAMAGED}"
        ) from None
    except ValueError as e:
        raise MetaError(f"{label} is not valid JSON ({e}): {_DAMAGED}") from None
    if untrusted.too_deep(tree):  # whatever walks it next (the writer, say) must not run out of stack
        raise MetaError(deep)
    return tree


def loads(cls: type, data: bytes, name: str = FULL_META) -> Any:
    """Parse one meta file into ``cls``; a damaged file raises MetaError naming ``name``."""
    tree = _parse_json(data, name)
    try:
        return _decode_message(cls, tree, "")
    except _Bad as e:
        raise MetaError(f"{META_DIR}/{name}: {e}: {_DAMAGED}") from None


def _by_file_name(files: Mapping[str, bytes]) -> dict[str, bytes]:
    # Accept "full_meta.json", "meta/full_meta.json" or a whole key.
    return {key.rsplit("/", 1)[-1]: value for key, value in files.items()}


def read_meta_files(files: Mapping[str, bytes]) -> BackupInfo:
    """Read a backup's meta: full_meta.json if present, else rebuild from the level files;
    each file read is checked (:func:`check`)."""
    by_name = _by_file_name(files)
    if FULL_META in by_name:
        return load_file(BackupInfo, by_name[FULL_META], FULL_META)
    if BACKUP_META not in by_name:
        raise MetaError(
            f"no {META_DIR}/{BACKUP_META} or {META_DIR}/{FULL_META}: this is not a backup or it is incomplete; "
            "check the name with mbackup list"
        )
    backup = load_file(BackupInfo, by_name[BACKUP_META], BACKUP_META)
    needed = [COLLECTION_META]
    if backup.format != FORMAT_SNAPSHOT:
        needed += [PARTITION_META, SEGMENT_META]
    for name in needed:
        if name not in by_name:
            raise MetaError(f"{META_DIR}/{name} is missing and there is no {META_DIR}/{FULL_META}: {_DAMAGED}")
    collections = load_file(CollectionLevelBackupInfo, by_name[COLLECTION_META], COLLECTION_META)
    if PARTITION_META not in by_name:  # snapshot format: collections keep their own partitions
        return dataclasses.replace(backup, collection_backups=list(collections.infos))
    partitions = load_file(PartitionLevelBackupInfo, by_name[PARTITION_META], PARTITION_META)
    segments = load_file(SegmentLevelBackupInfo, by_name[SEGMENT_META], SEGMENT_META)
    return level_to_tree(backup, collections, partitions, segments)


def level_to_tree(
    backup: BackupInfo,
    collections: CollectionLevelBackupInfo,
    partitions: PartitionLevelBackupInfo,
    segments: SegmentLevelBackupInfo,
) -> BackupInfo:
    """Rebuild the tree from the level files, recomputing sizes as the Go reader does.

    Segments attach to partitions by (collection_id, partition_id), partitions to
    collections by collection_id; partition, collection and backup sizes are sums.
    The level files never held collection-level L0 segments, RBAC or database info, so
    a tree rebuilt this way lacks them (the Go reader has the same gap).
    """
    segs_by_part: dict[tuple[int, int], list[SegmentBackupInfo]] = {}
    for seg in segments.infos:
        if seg is not None:
            segs_by_part.setdefault((seg.collection_id, seg.partition_id), []).append(seg)
    parts_by_coll: dict[int, list[PartitionBackupInfo]] = {}
    for part in partitions.infos:
        if part is None:
            continue
        segs = segs_by_part.get((part.collection_id, part.partition_id), [])
        rebuilt = dataclasses.replace(part, segment_backups=list(segs), size=sum(s.size for s in segs))
        parts_by_coll.setdefault(part.collection_id, []).append(rebuilt)
    colls = []
    for coll in collections.infos:
        if coll is None:
            continue
        parts = parts_by_coll.get(coll.collection_id, [])
        colls.append(dataclasses.replace(coll, partition_backups=parts, size=sum(p.size for p in parts)))
    return dataclasses.replace(backup, collection_backups=colls, size=sum(c.size for c in colls))


def write_meta_files(info: BackupInfo) -> dict[str, bytes]:
    """The meta files of ``info``, keyed by file name, in the Go tool's write order.

    backup_meta.json holds only the backup's scalars; collection_meta.json the collections
    without segments and without l0_segments (partitions kept, without segments);
    partition_meta.json the partitions without segments; segment_meta.json the partition
    segments; full_meta.json the whole tree. The snapshot format has no partition or
    segment files.
    """
    files: dict[str, bytes] = {}
    files[BACKUP_META] = dumps_compact(
        BackupInfo(
            id=info.id,
            state_code=info.state_code,
            name=info.name,
            backup_timestamp=info.backup_timestamp,
            size=info.size,
            milvus_version=info.milvus_version,
            format=info.format,
        )
    )
    bare_colls = [
        dataclasses.replace(
            coll,
            partition_backups=[dataclasses.replace(p, segment_backups=[]) for p in coll.partition_backups],
            l0_segments=[],
        )
        for coll in info.collection_backups
    ]
    files[COLLECTION_META] = dumps_compact(CollectionLevelBackupInfo(infos=bare_colls))
    if info.format != FORMAT_SNAPSHOT:
        parts = [p for coll in bare_colls for p in coll.partition_backups]
        segs = [s for coll in info.collection_backups for p in coll.partition_backups for s in p.segment_backups]
        files[PARTITION_META] = dumps_compact(PartitionLevelBackupInfo(infos=parts))
        files[SEGMENT_META] = dumps_compact(SegmentLevelBackupInfo(infos=segs))
    files[FULL_META] = dumps_compact(info)
    return files


# --------------------------------------------------------------------------------------
# What a backup holds beyond JSON types. The reader above accepts what Go's accepts; a
# backup that mbackup reads, lists or restores must also hold what the Go tool always
# writes, with numbers a restore can use: content read from storage is untrusted.

BACKUP_ID = untrusted.Text(r"[A-Za-z0-9_.-]{1,128}", "a backup id (letters, digits, '_', '.', '-')")
_MILVUS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,254}")
_LAST_SECOND = 253402300799  # 9999-12-31 23:59:59 UTC: later is no time a backup was taken


def load_file(cls: type, data: bytes, name: str) -> Any:
    """One meta file parsed into ``cls`` and checked; MetaError naming the file otherwise."""
    return check(loads(cls, data, name), name)


def check(msg: Any, name: str) -> Any:
    """``msg`` (read from meta file ``name``) if it can be a backup's; else MetaError naming
    the file and the path: required fields missing (a backup's id and name, a collection's
    name and schema, ...), names that break Milvus's or the backup naming rule, null where
    an object belongs, numbers out of range (negative sizes, counts or ids)."""
    try:
        _check(msg, "")
    except _Bad as e:
        raise MetaError(f"{META_DIR}/{name}: {e}: {_DAMAGED}") from None
    return msg


def _check(msg: _Message, path: str) -> None:
    for spec in _specs(type(msg)):  # type: ignore[arg-type]  # a class is hashable (mypy issue 11470)
        value = getattr(msg, spec.attr)
        where = f"{path}.{spec.key}" if path else spec.key
        if spec.kind == "int":
            _check_int(spec.attr, value, where)
        elif spec.kind == "msg" and value is not None:
            _check(value, where)
        elif spec.kind == "list":
            for i, item in enumerate(value):
                if spec.item is int:
                    _check_int(spec.attr, item, f"{where}[{i}]")
                elif isinstance(spec.item, type) and issubclass(spec.item, _Message):
                    if item is None:
                        raise _Bad(f"{where}[{i}]", "null where an object belongs")
                    _check(item, f"{where}[{i}]")
    rule = _RULES.get(type(msg))
    if rule:
        rule(msg, lambda attr: f"{path}.{attr}" if path else attr)


def _check_int(attr: str, value: int, where: str) -> None:
    lowest = -1 if attr == "partition_id" else 0  # -1: collection-level L0 segments
    if not lowest <= value < 1 << 64:
        raise _Bad(where, f"out of range ({value}), expected {'-1 or more' if lowest else 'a non-negative integer'}")


# A rule's ``at(attr)``: the path of one of the message's fields, for its error.
_At = Callable[[str], str]


def _need(ok: bool, where: str, value: Any, what: str) -> None:
    if not ok:
        raise _Bad(where, "missing" if value in ("", None) else f"expected {what}, got {_describe(value)}")


def _milvus_name(value: str, where: str, what: str) -> None:
    _need(bool(_MILVUS_NAME.fullmatch(value)), where, value, f"a {what} name (letters, digits, _ and -)")


def _label(value: str, where: str) -> None:
    """A short value get and list print on a line of their own (a version, a load state)."""
    if value and not (len(value) <= 64 and value.isprintable()):
        raise _Bad(where, f"expected a short printable text, got {_describe(value)}")


def _backup_rule(info: BackupInfo, at: _At) -> None:
    _need(bool(BACKUP_ID.pattern.fullmatch(info.id)), at("id"), info.id, BACKUP_ID.what)
    _need(bool(_NAME.fullmatch(info.name)), at("name"), info.name, "a backup name (letters, digits and _)")
    _label(info.milvus_version, at("milvus_version"))


def _collection_rule(c: CollectionBackupInfo, at: _At) -> None:
    _milvus_name(c.collection_name, at("collection_name"), "collection")
    if c.db_name:
        _milvus_name(c.db_name, at("db_name"), "database")
    if c.schema is None or not c.schema.fields:
        raise _Bad(at("schema") if c.schema is None else at("schema.fields"), "missing: a collection has a schema")
    _need(c.backup_physical_timestamp <= _LAST_SECOND, at("backup_physical_timestamp"),
          c.backup_physical_timestamp, "a time before the year 10000")
    _label(c.load_state, at("load_state"))


def _partition_rule(p: PartitionBackupInfo, at: _At) -> None:
    _milvus_name(p.partition_name, at("partition_name"), "partition")
    _label(p.load_state, at("load_state"))


def _field_rule(f: FieldSchema, at: _At) -> None:
    _need(bool(f.name), at("name"), f.name, "a field name")


_RULES: dict[type[_Message], Callable[[Any, _At], None]] = {
    BackupInfo: _backup_rule, CollectionBackupInfo: _collection_rule, PartitionBackupInfo: _partition_rule,
    FieldSchema: _field_rule}


# --------------------------------------------------------------------------------------
# Names and keys

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
NAME_PATTERN = _NAME  # public: the server's OpenAPI document states it
_INT = re.compile(r"-?[0-9]+")


def validate_backup_name(name: str) -> str:
    """Return ``name`` if it follows the Go tool's rule, else raise BackupNameError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BackupNameError(
            f"invalid backup name {name!r}: use letters, digits and _ (max 128), starting with a letter or _"
        )
    return name


def _unsafe(what: str, value: Any) -> MetaError:
    return MetaError(f"unsafe {what} {value!r}: it would build a key outside the backup dir; {_DAMAGED}")


def _component(value: Any, what: str) -> str:
    """One path element from a name: never empty, '.', '..' or containing a separator."""
    if not isinstance(value, str):
        raise _unsafe(what, value)
    if value in ("", ".", "..") or any(c in value for c in "/\\\x00"):
        raise _unsafe(what, value)
    return value


def _id(value: Any, what: str) -> str:
    """One path element from an id: a decimal integer and nothing else."""
    if isinstance(value, bool):
        raise _unsafe(what, value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _INT.fullmatch(value):
        return value
    raise _unsafe(what, value)


def _root(root: str) -> str:
    """Normalise a storage root: no leading/trailing '/', no empty, '.' or '..' elements."""
    if not isinstance(root, str):
        raise _unsafe("root path", root)
    parts = [p for p in root.split("/") if p]
    for p in parts:
        if p in (".", "..") or "\\" in p or "\x00" in p:
            raise _unsafe("root path", root)
    return "/".join(parts)


def backup_dir(root: str, name: str) -> str:
    """``<root>/<name>`` (no trailing slash); ``name`` alone when the root is empty.

    ``name`` only has to be a safe path element, not a valid new name, so backups made
    by other tools stay readable; use validate_backup_name before creating one.
    """
    r = _root(root)
    n = _component(name, "backup name")
    return f"{r}/{n}" if r else n


def _under(bdir: str) -> str:
    # A backup dir handed back to us must itself be safe: re-normalise and refuse escapes.
    normal = _root(bdir)
    if not normal:
        raise _unsafe("backup dir", bdir)
    return normal


def meta_key(bdir: str, file_name: str) -> str:
    """``<backup dir>/meta/<file>`` for one of META_FILES."""
    if file_name not in META_FILES:
        raise ValueError(f"unknown meta file {file_name!r}; expected one of {', '.join(META_FILES)}")
    return f"{_under(bdir)}/{META_DIR}/{file_name}"


def insert_log_key(
    bdir: str,
    collection_id: int,
    partition_id: int,
    segment_id: int,
    field_id: int,
    log_id: int,
    *,
    group_id: int | None = None,
) -> str:
    """Backup key of one insert binlog; the group defaults to the segment id."""
    group = segment_id if group_id is None else group_id
    parts = [
        _id(collection_id, "collection id"),
        _id(partition_id, "partition id"),
        _id(group, "group id"),
        _id(segment_id, "segment id"),
        _id(field_id, "field id"),
        _id(log_id, "log id"),
    ]
    return f"{_under(bdir)}/binlogs/insert_log/" + "/".join(parts)


def delta_log_key(
    bdir: str,
    collection_id: int,
    partition_id: int,
    segment_id: int,
    log_id: int,
    *,
    group_id: int | None = None,
) -> str:
    """Backup key of one delta log.

    Partition -1 (collection-level L0) has no group element:
    ``delta_log/<coll>/-1/<seg>/<log>``; otherwise ``delta_log/<coll>/<part>/<group>/<seg>/<log>``
    with the group defaulting to the segment id.
    """
    part = _id(partition_id, "partition id")
    parts = [_id(collection_id, "collection id"), part]
    if part != "-1":
        parts.append(_id(segment_id if group_id is None else group_id, "group id"))
    parts += [_id(segment_id, "segment id"), _id(log_id, "log id")]
    return f"{_under(bdir)}/binlogs/delta_log/" + "/".join(parts)


@dataclass(frozen=True)
class ImportDirs:
    """Directory prefixes (ending in '/') handed to one Milvus binlog import job."""

    insert: str | None
    delta: str | None

    def files(self) -> list[str]:
        """The ``files`` entry of the import request: [insert, delta], [insert] or [delta]."""
        return [d for d in (self.insert, self.delta) if d]


def _has_logs(field_binlogs: Iterable[FieldBinlog | None]) -> bool:
    return any(fb is not None and fb.binlogs for fb in field_binlogs)


def segment_import_dirs(bdir: str, seg: SegmentBackupInfo) -> ImportDirs:
    """Import prefixes of one segment.

    Data segments import ``insert_log/<c>/<p>/<group>/`` plus ``delta_log/<c>/<p>/<group>/``
    when the segment has delta logs. L0 segments import only their delta dir:
    ``delta_log/<c>/<p>/<seg>/`` (``delta_log/<c>/-1/<seg>/`` at collection level).
    Backups made before group ids existed (group_id 0) are imported per partition:
    use partition_import_dirs.
    """
    base = f"{_under(bdir)}/binlogs"
    coll = _id(seg.collection_id, "collection id")
    part = _id(seg.partition_id, "partition id")
    if seg.is_l0:
        group = _id(seg.segment_id if part == "-1" or not seg.group_id else seg.group_id, "group id")
        return ImportDirs(None, f"{base}/delta_log/{coll}/{part}/{group}/")
    if not seg.group_id:
        raise MetaError(
            f"segment {seg.segment_id} has no group id (a backup made before 2023): import it with its partition"
        )
    group = _id(seg.group_id, "group id")
    delta = f"{base}/delta_log/{coll}/{part}/{group}/" if _has_logs(seg.deltalogs) else None
    return ImportDirs(f"{base}/insert_log/{coll}/{part}/{group}/", delta)


def partition_import_dirs(bdir: str, collection_id: int, partition_id: int, *, with_delta: bool) -> ImportDirs:
    """Import prefixes of a whole partition, for backups made before group ids existed."""
    base = f"{_under(bdir)}/binlogs"
    coll = _id(collection_id, "collection id")
    part = _id(partition_id, "partition id")
    delta = f"{base}/delta_log/{coll}/{part}/" if with_delta else None
    return ImportDirs(f"{base}/insert_log/{coll}/{part}/", delta)


def _log_id(binlog: Binlog, what: str) -> int:
    if binlog.log_id:
        return binlog.log_id
    # Older backups carry no log_id; the source path ends with it.
    last = binlog.log_path.rstrip("/").rsplit("/", 1)[-1]
    if not _INT.fullmatch(last):
        raise _unsafe(f"{what} log path", binlog.log_path)
    return int(last)


def segment_files(bdir: str, seg: SegmentBackupInfo) -> list[tuple[str, str, int]]:
    """(source key in the Milvus bucket, backup key, size) of every file of a segment.

    Keys follow the segment's own group id; a segment without one (pre-2023 backups)
    uses the old ``<coll>/<part>/<seg>/...`` layout.
    """
    out: list[tuple[str, str, int]] = []
    c, p, s = seg.collection_id, seg.partition_id, seg.segment_id
    legacy = not seg.group_id and p != -1 and not seg.is_l0
    base = f"{_under(bdir)}/binlogs"
    for fb in seg.binlogs:
        if fb is None:
            continue
        for b in fb.binlogs:
            log = _log_id(b, "insert")
            if legacy:
                key = f"{base}/insert_log/" + "/".join(
                    [_id(c, "collection id"), _id(p, "partition id"), _id(s, "segment id"), _id(fb.field_id, "field id"), _id(log, "log id")]
                )
            else:
                key = insert_log_key(bdir, c, p, s, fb.field_id, log, group_id=seg.group_id or None)
            out.append((b.log_path, key, b.log_size))
    for fb in seg.deltalogs:
        if fb is None:
            continue
        for b in fb.binlogs:
            log = _log_id(b, "delta")
            if legacy:
                key = f"{base}/delta_log/" + "/".join(
                    [_id(c, "collection id"), _id(p, "partition id"), _id(s, "segment id"), _id(log, "log id")]
                )
            else:
                key = delta_log_key(bdir, c, p, s, log, group_id=seg.group_id or None)
            out.append((b.log_path, key, b.log_size))
    return out
