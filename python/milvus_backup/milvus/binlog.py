"""Milvus binlog files (storage v1): the event envelope, read and written, and the records
one holds counted.

A binlog is a magic number, a descriptor event, then data events. Each event starts with a
17-byte header (timestamp i64, type code i8, length i32, next position i32, little-endian).
The descriptor's body is collection, partition, segment and field ids (4 x i64), start and
end timestamps (2 x u64), the payload's data type (i32), one byte per event type giving the
size of its fixed part (8 types), then a JSON object of extras (its length as i32 first:
``original_size``, and ``version: MULTI_FIELD`` for a delete log of pk and ts columns). A
data event's body is its start and end timestamps (2 x u64) then a Parquet file holding the
event's records. The record count is the ``num_rows`` of that Parquet file's footer, a
Thrift compact-protocol ``FileMetaData`` struct (field 3), so counting reads no column data.

Restore counts the records of delta logs this way: the number of deletes a backup holds;
l0compact (backup/l0compact.py) reads the payloads and writes delete logs.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

MAGIC = 0xFFFABC
_HEADER = struct.Struct("<qbii")
_DESCRIPTOR = 0
INSERT_EVENT, DELETE_EVENT = 1, 2
_DATA_FIXED = 16  # start and end timestamps of a data event
_DATA_TIMES = struct.Struct("<QQ")
_DESCRIPTOR_FIXED = struct.Struct("<qqqqQQi")  # 52 bytes
# The fixed-part size of each event type Milvus knows (descriptor, insert, delete, create and
# drop collection and partition, index file), as every Milvus line writes them.
_POST_HEADER = bytes([_DESCRIPTOR_FIXED.size] + [_DATA_FIXED] * 7)
_PAR1 = b"PAR1"


@dataclass
class Binlog:
    """A binlog read: its descriptor's fields and extras, and each data event's (type code,
    Parquet payload)."""

    collection_id: int
    partition_id: int
    segment_id: int
    field_id: int
    payload_type: int
    extras: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[int, bytes]] = field(default_factory=list)


def read(data: bytes) -> Binlog:
    """The envelope of the binlog ``data``; BinlogError when it is not one."""
    if len(data) < 4 or struct.unpack_from("<i", data)[0] != MAGIC:
        raise BinlogError("no binlog magic number")
    out: Binlog | None = None
    for pos, type_code, length in _events(data):
        body = data[pos + _HEADER.size: pos + length]
        if type_code == _DESCRIPTOR:
            out = _descriptor(body)
        elif out is None:
            raise BinlogError("a data event before the descriptor")
        else:
            out.events.append((type_code, body[_DATA_FIXED:]))
    if out is None:
        raise BinlogError("no descriptor event")
    return out


def _descriptor(body: bytes) -> Binlog:
    need = _DESCRIPTOR_FIXED.size + len(_POST_HEADER) + 4
    if len(body) < need:
        raise BinlogError(f"descriptor event of {len(body)} bytes, shorter than its fixed part")
    coll, part, seg, fid, _, _, payload_type = _DESCRIPTOR_FIXED.unpack_from(body)
    (extra_len,) = struct.unpack_from("<i", body, need - 4)
    if extra_len < 0 or need + extra_len > len(body):
        raise BinlogError(f"descriptor extras of {extra_len} bytes do not fit the event")
    try:
        extras = json.loads(body[need: need + extra_len]) if extra_len else {}
    except ValueError:
        raise BinlogError("descriptor extras are not JSON") from None
    if not isinstance(extras, dict):
        raise BinlogError("descriptor extras are not a JSON object")
    return Binlog(coll, part, seg, fid, payload_type, extras)


def write(binlog: Binlog, start_ts: int = 1, end_ts: int = 1) -> bytes:
    """The bytes of ``binlog`` as Milvus's binlog writers lay them out: each event's start and
    end timestamps ``start_ts`` and ``end_ts`` (Milvus writes 1 and 1)."""
    extras = json.dumps(binlog.extras, separators=(",", ":")).encode()
    body = (_DESCRIPTOR_FIXED.pack(binlog.collection_id, binlog.partition_id, binlog.segment_id, binlog.field_id,
                                   0, 0, binlog.payload_type)
            + _POST_HEADER + struct.pack("<i", len(extras)) + extras)
    out = [struct.pack("<i", MAGIC)]
    pos = 4
    for type_code, payload in [(_DESCRIPTOR, body), *((t, _DATA_TIMES.pack(start_ts, end_ts) + p)
                                                       for t, p in binlog.events)]:
        length = _HEADER.size + len(payload)
        out.append(_HEADER.pack(0, type_code, length, pos + length) + payload)
        pos += length
    return b"".join(out)


def _events(data: bytes) -> list[tuple[int, int, int]]:
    """(position, type code, length) of every event after the magic number."""
    out, pos = [], 4
    while pos < len(data):
        if pos + _HEADER.size > len(data):
            raise BinlogError(f"event header cut short at byte {pos}")
        _, type_code, length, _ = _HEADER.unpack_from(data, pos)
        if length < _HEADER.size or pos + length > len(data):
            raise BinlogError(f"event at byte {pos} has length {length}, beyond the file")
        if type_code != _DESCRIPTOR and length < _HEADER.size + _DATA_FIXED:
            raise BinlogError(f"data event at byte {pos} is shorter than its timestamps")
        out.append((pos, type_code, length))
        pos += length
    return out


class BinlogError(ValueError):
    """Not a binlog this module can read."""


def count_records(data: bytes) -> int:
    """Records in every data event of the binlog ``data`` (rows of an insert log, deletes
    of a delta log)."""
    if len(data) < 4 or struct.unpack_from("<i", data)[0] != MAGIC:
        raise BinlogError("no binlog magic number")
    return sum(parquet_rows(data[pos + _HEADER.size + _DATA_FIXED: pos + length])
               for pos, type_code, length in _events(data) if type_code != _DESCRIPTOR)


def parquet_rows(payload: bytes) -> int:
    """``num_rows`` from the footer of the Parquet file ``payload``."""
    if len(payload) < 12 or payload[:4] != _PAR1 or payload[-4:] != _PAR1:
        raise BinlogError("event payload is not a Parquet file")
    footer_len = struct.unpack_from("<i", payload, len(payload) - 8)[0]
    if not 0 < footer_len <= len(payload) - 12:
        raise BinlogError(f"Parquet footer length {footer_len} does not fit the payload")
    footer = payload[len(payload) - 8 - footer_len: len(payload) - 8]
    try:
        return _num_rows(footer)
    except IndexError:
        raise BinlogError("Parquet footer cut short") from None


# Thrift compact protocol: the few pieces needed to walk to FileMetaData.num_rows.
_BOOL_TRUE, _BOOL_FALSE, _I8, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
_NUM_ROWS = 3
_MAX_DEPTH = 64  # Parquet footers nest a few levels; deeper means garbage


def _varint(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _field_header(b: bytes, i: int, last_id: int) -> tuple[int, int, int]:
    """(field id, type, next index); type 0 is the struct's end."""
    byte = b[i]
    i += 1
    if byte == 0:
        return 0, 0, i
    delta, kind = byte >> 4, byte & 0x0F
    if delta:
        return last_id + delta, kind, i
    fid, i = _varint(b, i)
    return _zigzag(fid), kind, i


def _skip(b: bytes, i: int, kind: int, in_container: bool = False, depth: int = 0) -> int:
    if depth > _MAX_DEPTH:
        raise BinlogError("Parquet footer nested too deep")
    if kind in (_BOOL_TRUE, _BOOL_FALSE):
        return i + 1 if in_container else i  # a struct field's bool lives in its header
    if kind == _I8:
        return i + 1
    if kind in (_I16, _I32, _I64):
        return _varint(b, i)[1]
    if kind == _DOUBLE:
        return i + 8
    if kind == _BINARY:
        n, i = _varint(b, i)
        return i + n
    if kind in (_LIST, _SET):
        head = b[i]
        i += 1
        n, elem = head >> 4, head & 0x0F
        if n == 15:
            n, i = _varint(b, i)
        for _ in range(n):
            i = _skip(b, i, elem, True, depth + 1)
        return i
    if kind == _MAP:
        n, i = _varint(b, i)
        if n == 0:
            return i
        types = b[i]
        i += 1
        for _ in range(n):
            i = _skip(b, i, types >> 4, True, depth + 1)
            i = _skip(b, i, types & 0x0F, True, depth + 1)
        return i
    if kind == _STRUCT:
        fid = 0
        while True:
            fid, sub, i = _field_header(b, i, fid)
            if sub == 0:
                return i
            i = _skip(b, i, sub, False, depth + 1)
    raise BinlogError(f"unknown Thrift type {kind} in the Parquet footer")


def _num_rows(footer: bytes) -> int:
    fid, i = 0, 0
    while True:
        fid, kind, i = _field_header(footer, i, fid)
        if kind == 0:
            raise BinlogError("Parquet footer has no num_rows")
        if fid == _NUM_ROWS and kind == _I64:
            n, _ = _varint(footer, i)
            return _zigzag(n)
        i = _skip(footer, i, kind)
