"""Milvus binlog files (storage v1): just enough to count the records one holds.

A binlog is a magic number, a descriptor event, then data events. Each event starts with a
17-byte header (timestamp i64, type code i8, length i32, next position i32, little-endian);
a data event's body is its start and end timestamps (2 x i64) then a Parquet file holding
the event's records. The record count is the ``num_rows`` of that Parquet file's footer, a
Thrift compact-protocol ``FileMetaData`` struct (field 3), so counting reads no column data.

Restore counts the records of delta logs this way: the number of deletes a backup holds.
"""

from __future__ import annotations

import struct

MAGIC = 0xFFFABC
_HEADER = struct.Struct("<qbii")
_DESCRIPTOR = 0
_DATA_FIXED = 16  # start and end timestamps of a data event
_PAR1 = b"PAR1"


class BinlogError(ValueError):
    """Not a binlog this module can read."""


def count_records(data: bytes) -> int:
    """Records in every data event of the binlog ``data`` (rows of an insert log, deletes
    of a delta log)."""
    if len(data) < 4 or struct.unpack_from("<i", data)[0] != MAGIC:
        raise BinlogError("no binlog magic number")
    total, pos = 0, 4
    while pos < len(data):
        if pos + _HEADER.size > len(data):
            raise BinlogError(f"event header cut short at byte {pos}")
        _, type_code, length, _ = _HEADER.unpack_from(data, pos)
        if length < _HEADER.size or pos + length > len(data):
            raise BinlogError(f"event at byte {pos} has length {length}, beyond the file")
        if type_code != _DESCRIPTOR:
            total += parquet_rows(data[pos + _HEADER.size + _DATA_FIXED: pos + length])
        pos += length
    return total


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
