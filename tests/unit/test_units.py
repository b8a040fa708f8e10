"""Sizes as people write them (units.py): exact to the byte, whether written with a decimal point
or not, and one clear error for anything else."""

from __future__ import annotations

from fractions import Fraction

import pytest

from milvus_backup.units import _UNITS, parse_rate, parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("16MiB", 16 * 2**20), ("1.5GB", 1_500_000_000), ("1.5GiB", 3 * 2**29), (" 7 kib ", 7 * 1024),
    ("0.5B", 0), ("2.0000000000000000001TiB", 2 * 2**40),  # a float would round the last one
    ("9" * 400 + "TB", int("9" * 400) * 1000**4),  # a float would overflow
    ("1" * 4000, int("1" * 4000)),
])
def test_sizes_are_exact(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("unit", sorted(_UNITS))
@pytest.mark.parametrize("number", ["0", "1", "3", "10", "999", "4096", "0.5", "1.25", "12.0", "0.001", "7.999"])
def test_with_and_without_a_decimal_point_the_arithmetic_is_the_same(number: str, unit: str) -> None:
    # Whole numbers skip fractions (a module that was ~3 ms of every start): same bytes either way.
    assert parse_size(number + unit) == int(Fraction(number) * _UNITS[unit])


@pytest.mark.parametrize("text", ["", "MiB", "-1MiB", "1XB", "1.MiB", ".5MiB", "1e3", "1,5GB", "1" * 4001])
def test_anything_else_is_one_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid size .*: use a number with an optional unit, e\.g\. 64MiB or 1\.5GB$"):
        parse_size(text)


def test_rates_take_an_optional_per_second() -> None:
    assert parse_rate("200MiB/s") == parse_rate("200MiB") == 200 * 2**20
    with pytest.raises(ValueError, match=r"^invalid rate '2 XB/s': use bytes per second"):
        parse_rate("2 XB/s")
