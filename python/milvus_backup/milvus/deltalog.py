"""Delete logs and primary keys in a segment's binlogs, read and written as Milvus does
(what l0compact needs; Parquet through pyarrow, the ``l0compact`` extra).

Storage versions 0 and 1 keep every file in the binlog envelope (milvus/binlog.py), its
events' payloads Parquet files:

- an insert binlog holds one field, its values the payload's only column;
- a delete log holds either one string column, each value a JSON object
  ``{"pk":..,"ts":..,"pkType":5|21}`` (``pk,ts`` before 2.2, int64 keys only), or, when its
  descriptor's extras say ``version: MULTI_FIELD``, two columns: pk and ts (int64).

Storage versions 2 and 3 keep bare Parquet files: an insert "binlog" is a column group whose
columns carry their field id (``PARQUET:field_id``, or the id as the column's name); a delete
log has the pk and ts columns.

A primary key is an int (Int64) or a str (VarChar); a delete is (pk, ts).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from . import binlog

INT64, VARCHAR, STRING = 5, 21, 20  # schemapb.DataType of a primary key, and a delete log's payload
PK_TYPES = (INT64, VARCHAR)
MULTI_FIELD = "MULTI_FIELD"
_FIELD_ID = b"PARQUET:field_id"

PrimaryKey = int | str


class DeltalogError(ValueError):
    """A binlog or delete log that is not what Milvus writes."""


def is_envelope(version: int) -> bool:
    """Does a segment of this storage version keep its files in the binlog envelope (0, 1),
    rather than bare Parquet (2, 3)? DeltalogError for a version Milvus does not have."""
    if version in (0, 1):
        return True
    if version in (2, 3):
        return False
    raise DeltalogError(f"storage version {version} is not one Milvus writes (0 to 3)")


def _table(payload: bytes, columns: list[int] | None = None) -> pa.Table:
    try:
        f = pq.ParquetFile(io.BytesIO(payload))
        if columns is None:
            return f.read()
        return f.read(columns=[f.schema_arrow.names[i] for i in columns])
    except (pa.ArrowException, IndexError) as e:
        raise DeltalogError(f"not a Parquet file Milvus writes: {e}") from None


def _keys(column: pa.ChunkedArray, pk_type: int) -> list[PrimaryKey]:
    want = pa.int64() if pk_type == INT64 else (pa.string(), pa.large_string())
    if (column.type != want) if pk_type == INT64 else (column.type not in want):
        kind = "Int64" if pk_type == INT64 else "VarChar"
        raise DeltalogError(f"a primary-key column of type {column.type}, where the schema says {kind}")
    values: list[PrimaryKey] = column.to_pylist()
    if any(v is None for v in values):
        raise DeltalogError("a null primary key")
    return values


def _pairs(table: pa.Table, pk_type: int) -> list[tuple[PrimaryKey, int]]:
    if table.num_columns != 2 or table.column(1).type != pa.int64():
        raise DeltalogError(f"a delete log of pk and ts columns with {table.schema.types}")
    return list(zip(_keys(table.column(0), pk_type), (ts & (2**64 - 1) for ts in table.column(1).to_pylist()),
                    strict=True))


def _json_row(text: str, pk_type: int) -> tuple[PrimaryKey, int]:
    if not text.startswith("{"):  # "pk,ts": the format before 2.2, int64 keys only
        pk, sep, ts = text.partition(",")
        if not sep or pk_type != INT64:
            raise DeltalogError(f"a delete log row {text[:80]!r} that is neither JSON nor pk,ts")
        try:
            return int(pk), int(ts)
        except ValueError:
            raise DeltalogError(f"a delete log row {text[:80]!r} that is neither JSON nor pk,ts") from None
    try:
        row = json.loads(text)
        pk, ts, kind = row["pk"], row["ts"], row["pkType"]
    except (ValueError, KeyError, TypeError):
        raise DeltalogError(f"a delete log row {text[:80]!r} without pk, ts and pkType") from None
    ok = isinstance(pk, int) and not isinstance(pk, bool) if kind == INT64 else isinstance(pk, str)
    if kind != pk_type or not ok or not isinstance(ts, int):
        raise DeltalogError(f"a delete log row {text[:80]!r} whose key is not the schema's (type {pk_type})")
    return pk, ts


def read_deltalog(data: bytes, storage_version: int, pk_type: int) -> list[tuple[PrimaryKey, int]]:
    """Every (pk, ts) of the delete log ``data`` of a segment of ``storage_version``."""
    if not is_envelope(storage_version):
        return _pairs(_table(data), pk_type)
    try:
        log = binlog.read(data)
    except binlog.BinlogError as e:
        raise DeltalogError(f"not a delete log: {e}") from None
    out: list[tuple[PrimaryKey, int]] = []
    for _, payload in log.events:
        if log.extras.get("version") == MULTI_FIELD:
            out += _pairs(_table(payload), pk_type)
            continue
        column = _table(payload, [0]).column(0)
        if column.type not in (pa.string(), pa.large_string(), pa.binary()):
            raise DeltalogError(f"a delete log of one {column.type} column, where Milvus writes strings")
        out += [_json_row(v.decode() if isinstance(v, bytes) else v, pk_type) for v in column.to_pylist()]
    return out


def write_deltalog(deletes: Iterable[tuple[PrimaryKey, int]], pk_type: int, collection_id: int, partition_id: int,
                   segment_id: int) -> bytes:
    """A delete log of ``deletes`` as Milvus's JSON delete-log writer lays it out, whatever the
    segment's storage version: the binlog envelope, one string column of ``{"pk","ts","pkType"}``
    rows. Milvus's import reads a segment's delete logs with its envelope reader on every line
    (so the Go tool's l0compact writes this form for every storage version too)."""
    deletes = list(deletes)
    rows = [json.dumps({"pk": pk, "ts": ts, "pkType": pk_type}, separators=(",", ":")) for pk, ts in deletes]
    if not rows:
        raise ValueError("a delete log needs at least one delete")
    table = pa.table({"delta": pa.array(rows, pa.string())},
                     schema=pa.schema([pa.field("delta", pa.string(), nullable=False)]))
    buf = io.BytesIO()
    pq.write_table(table, buf, use_dictionary=False, compression="zstd")
    payload = buf.getvalue()
    stamps = [ts for _, ts in deletes]
    log = binlog.Binlog(collection_id, partition_id, segment_id, -1, STRING, {"original_size": str(len(payload))},
                        [(binlog.DELETE_EVENT, payload)])
    return binlog.write(log, min(stamps), max(stamps))


def read_insert_pks(blobs: Iterable[bytes], pk_type: int) -> list[PrimaryKey]:
    """The primary keys of a storage v0/v1 segment: ``blobs`` are its primary-key field's
    insert binlogs, in log order."""
    out: list[PrimaryKey] = []
    for data in blobs:
        try:
            log = binlog.read(data)
        except binlog.BinlogError as e:
            raise DeltalogError(f"not an insert binlog: {e}") from None
        for _, payload in log.events:
            out += _keys(_table(payload, [0]).column(0), pk_type)
    return out


def column_group_pks(data: bytes, field_id: int, pk_type: int) -> list[PrimaryKey] | None:
    """The primary keys in the column group ``data`` of a storage v2/v3 segment, None when
    the group has no column of ``field_id``. Only that column is decoded."""
    try:
        f = pq.ParquetFile(io.BytesIO(data))
        schema = f.schema_arrow
    except pa.ArrowException as e:
        raise DeltalogError(f"not a Parquet file Milvus writes: {e}") from None
    want = str(field_id)
    for name, fld in zip(schema.names, schema, strict=True):
        if (fld.metadata or {}).get(_FIELD_ID, b"").decode() == want or name == want:
            try:
                return _keys(f.read(columns=[name]).column(0), pk_type)
            except pa.ArrowException as e:
                raise DeltalogError(f"not a Parquet file Milvus writes: {e}") from None
    return None
