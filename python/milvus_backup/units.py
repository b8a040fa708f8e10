"""Sizes and rates as people write them (``200MiB/s``, ``1.5GB``) and as we print them."""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """``"16MiB"`` -> 16777216. Raises ValueError with a hint on anything else."""
    m = _SIZE.match(text)
    unit = m and m.group(2).lower()
    if not m or unit not in _UNITS or len(m.group(1)) > 4000:  # int() refuses longer ones
        raise ValueError(f"invalid size {text!r}: use a number with an optional unit, e.g. 64MiB or 1.5GB")
    number = m.group(1)
    if "." not in number:
        return int(number) * _UNITS[unit]
    # Exact arithmetic: through a float, 400 digits would become inf (an OverflowError). Imported
    # here: fractions (and decimal with it) was ~3 ms of every start (issue #14).
    from fractions import Fraction

    return int(Fraction(number) * _UNITS[unit])


def parse_rate(text: str) -> int:
    """Bytes per second from ``"200MiB/s"`` (the ``/s`` is optional); ``0`` means unlimited."""
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    try:
        return parse_size(body)
    except ValueError:
        raise ValueError(f"invalid rate {text!r}: use bytes per second, e.g. 200MiB/s or 1GB/s") from None


def format_size(n: int) -> str:
    """Exactly, in the largest binary unit that divides it: ``5242880`` -> ``5MiB``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SECONDS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``"24h"``, ``"90m"``, ``"2d"``, ``"30s"`` (a bare number is seconds)."""
    m = _DURATION.match(text)
    unit = m and m.group(2).lower()
    if not m or unit not in _SECONDS:
        raise ValueError(f"invalid duration {text!r}: use a number with s, m, h or d, e.g. 90m or 24h")
    return float(m.group(1)) * _SECONDS[unit]


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_time(seconds: float) -> str:
    """A time (seconds since the epoch) as ``2024-01-02 03:04:05 UTC``."""
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
