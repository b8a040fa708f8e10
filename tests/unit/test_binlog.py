"""Counting the records of a Milvus binlog (milvus_backup.milvus.binlog) on binlogs built byte by
byte: Parquet footers of any shape a Thrift compact writer can produce, and damaged files.
The same count runs on real 2.3.5 binlogs in tests/test_backup_restore.py."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milvus_backup.milvus.binlog import MAGIC, BinlogError, count_records

# --------------------------------------------------------------------------------------
# Binlogs built byte by byte: a Thrift compact encoder for Parquet footers of any shape.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _value(kind: str, v, in_container: bool = False) -> bytes:
    """The bytes of one value; a struct field's bool is in its header, not here."""
    if kind == "bool":
        return bytes([1 if v else 2]) if in_container else b""
    if kind == "i8":
        return struct.pack("<b", v)
    if kind in ("i16", "i32", "i64"):
        return _varint(_zigzag(v))
    if kind == "double":
        return struct.pack("<d", v)
    if kind == "binary":
        return _varint(len(v)) + v
    if kind == "list":
        elem, items = v
        head = bytes([len(items) << 4 | TYPES[elem]]) if len(items) < 15 else bytes([0xF0 | TYPES[elem]]) + _varint(len(items))
        return head + b"".join(_value(elem, x, True) for x in items)
    if kind == "map":
        (kt, vt), pairs = v
        if not pairs:
            return b"\x00"
        return _varint(len(pairs)) + bytes([TYPES[kt] << 4 | TYPES[vt]]) + b"".join(
            _value(kt, a, True) + _value(vt, b, True) for a, b in pairs)
    if kind == "struct":
        return _struct(v)
    raise AssertionError(kind)


TYPES = {"bool": 1, "i8": 3, "i16": 4, "i32": 5, "i64": 6, "double": 7, "binary": 8, "list": 9, "map": 11, "struct": 12}


def _struct(fields: list[tuple[int, str, object]]) -> bytes:
    """Fields (id, kind, value) in id order, short or long headers as a writer picks them."""
    out, last = bytearray(), 0
    for fid, kind, v in sorted(fields, key=lambda f: f[0]):
        code = (1 if v else 2) if kind == "bool" else TYPES[kind]
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | code)
        else:
            out.append(code)
            out += _varint(_zigzag(fid))
        out += _value(kind, v)
        last = fid
    return bytes(out) + b"\x00"


scalars = st.one_of(
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("i8"), st.integers(-128, 127)),
    st.tuples(st.just("i16"), st.integers(-(2 ** 15), 2 ** 15 - 1)),
    st.tuples(st.just("i32"), st.integers(-(2 ** 31), 2 ** 31 - 1)),
    st.tuples(st.just("i64"), st.integers(-(2 ** 63), 2 ** 63 - 1)),
    st.tuples(st.just("double"), st.floats(allow_nan=False)),
    st.tuples(st.just("binary"), st.binary(max_size=24)),
)


def _fields(children) -> st.SearchStrategy:
    return st.lists(st.tuples(st.integers(1, 60), children), max_size=4, unique_by=lambda f: f[0]).map(
        lambda fs: [(fid, kind, v) for fid, (kind, v) in fs])


values = st.recursive(
    scalars,
    lambda children: st.one_of(
        _fields(children).map(lambda fs: ("struct", fs)),
        st.sampled_from(["bool", "i32", "binary"]).flatmap(
            lambda elem: st.lists(_scalar_of(elem), max_size=18).map(lambda items: ("list", (elem, items)))),
        st.lists(_fields(children), max_size=3).map(lambda structs: ("list", ("struct", structs))),
        st.lists(st.tuples(st.binary(max_size=8), st.integers(-(2 ** 63), 2 ** 63 - 1)), max_size=4).map(
            lambda pairs: ("map", (("binary", "i64"), pairs))),
    ),
    max_leaves=8,
)


def _scalar_of(kind: str) -> st.SearchStrategy:
    return {"bool": st.booleans(), "i32": st.integers(-(2 ** 31), 2 ** 31 - 1), "binary": st.binary(max_size=8)}[kind]


@st.composite
def footers(draw) -> tuple[bytes, int]:
    """A FileMetaData: version (1), a schema list (2), num_rows (3), then anything after."""
    rows = draw(st.integers(0, 2 ** 40))
    schema = draw(st.lists(_fields(values), max_size=3))
    after = draw(_fields(values).map(lambda fs: [(fid + 3, kind, v) for fid, kind, v in fs]))
    fields = [(1, "i32", 1), (2, "list", ("struct", schema)), (3, "i64", rows), *after]
    return _struct(fields), rows


def _event(type_code: int, body: bytes) -> bytes:
    return struct.pack("<qbii", 0, type_code, 17 + len(body), 0) + body


def binlog(footer_list: list[bytes], column: bytes = b"\x15\x00data") -> bytes:
    out = struct.pack("<i", MAGIC) + _event(0, b"descriptor: collection, partition, segment, field ids, extras")
    for footer in footer_list:
        parquet = b"PAR1" + column + footer + struct.pack("<i", len(footer)) + b"PAR1"
        out += _event(1, struct.pack("<qq", 1, 2) + parquet)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(footers(), max_size=3), st.binary(max_size=64))
def test_count_records_sums_num_rows_of_every_event(events, column):
    data = binlog([f for f, _ in events], column)
    assert count_records(data) == sum(rows for _, rows in events)


def _damaged(good: bytes) -> st.SearchStrategy:
    return st.one_of(
        st.integers(0, len(good) - 1).map(lambda n: good[:n]),  # cut short
        st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)).map(  # one byte changed
            lambda p: good[:p[0]] + bytes([p[1]]) + good[p[0] + 1:]),
        st.binary(max_size=200))


@settings(max_examples=200, deadline=None)
@given(footers(), st.data())
def test_a_damaged_binlog_is_a_binlog_error_never_a_crash(footer, data):
    # Damage the whole file, or only its Parquet footer (the file around it stays well formed).
    footer, _ = footer
    damaged = data.draw(st.one_of(_damaged(binlog([footer])), _damaged(footer).map(lambda f: binlog([f]))))
    try:
        count_records(damaged)
    except BinlogError:
        pass


@pytest.mark.parametrize("footer", [b"\x1c" * 5000, b"\x19\x1c" * 3000, b"\x1b\x01\xcc" * 3000],
                         ids=["structs", "lists-of-structs", "maps-of-structs"])
def test_a_footer_nested_without_end_is_a_binlog_error(footer):
    with pytest.raises(BinlogError):
        count_records(binlog([footer]))
