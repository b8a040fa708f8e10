"""The allowed range of a number, and how a number is checked against it and described.

A number is checked where it enters (a flag, a config key, an environment variable, ``--set``):
out of range, it gets one line naming where it came from and the range, and it never reaches
the engine (which would refuse it, or overflow a u64 after a ``<< 20``). Sizes are in bytes and
rates per second; a config key counted in MiB passes ``scale``. Which setting has which range
is declared with the setting, in params.py.

Part sizes are held to S3's multipart limits (5 MiB to 5 GiB) for every destination: the
destination is not known when a flag or key is read, and smaller parts only slow a local copy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..units import format_size, parse_rate, parse_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

_UNIT_NAMES = {KiB: "KiB", MiB: "MiB", GiB: "GiB"}


@dataclass(frozen=True)
class Range:
    lo: int | float
    hi: int | float
    unit: str = ""  # "" (a count), "port", "B" (bytes), "B/s", "requests/s"
    why: str = ""  # where the bounds come from, shown with them
    zero: str = ""  # what 0 means when it is allowed outside lo-hi ("unlimited")

    def contains(self, value: int | float, scale: int = 1) -> bool:
        """In range, counted in units of ``scale`` (a MiB key: MiB); 0 too where 0 means
        something."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (value == 0 and bool(self.zero)) or self.lo <= value * scale <= self.hi

    def expected(self, scale: int = 1) -> str:
        """What a valid value looks like, counted in units of ``scale``:
        ``an integer 5-5120 MiB (S3 part size limits)``; for a flag ``a size 5MiB-5GiB (...)``."""
        if self.unit == "port":
            text = f"a port number {self.lo}-{self.hi}"
        elif self.unit == "B" and scale == 1:  # byte bounds are ints
            text = f"a size {format_size(int(self.lo))}-{format_size(int(self.hi))}"
        elif self.unit == "B":
            text = f"an integer {self.lo // scale}-{self.hi // scale} {_UNIT_NAMES[scale]}"
        elif self.unit == "B/s":
            text = f"a rate {format_size(int(self.lo))}/s-{format_size(int(self.hi))}/s"
        elif self.unit == "requests/s":
            text = f"a number of requests per second {self.lo:g}-{self.hi:.0f}"
        else:
            text = f"an integer {self.lo}-{self.hi}"
        if self.zero:
            text += f", or 0 for {self.zero}"
        return f"{text} ({self.why})" if self.why else text

    def parse(self, text: str) -> int | float:
        """A flag's text -> the value in the range's unit; ValueError with one line saying why."""
        value: int | float | None = None
        if self.unit == "B":
            value = parse_size(text)  # its own message for text that is no size at all
        elif self.unit == "B/s":
            value = parse_rate(text)
        elif self.unit == "requests/s":
            try:
                value = float(text)
            except ValueError:
                pass
        elif re.fullmatch(r"\s*[-+]?[0-9]{1,30}\s*", text):
            value = int(text)
        if value is None or not self.contains(value):
            shown = text if len(text) <= 40 else f"{text[:30]}..."
            raise ValueError(f"expected {self.expected()}, got {shown!r}")
        return value


PORT = Range(1, 65535, "port")
OPTIONAL_PORT = Range(1, 65535, "port", zero="none")
# More objects in flight than this only exhaust sockets and file handles.
PARALLEL = Range(1, 4096)
CONCURRENCY = Range(1, 100_000)
PART_SIZE = Range(5 * MiB, 5 * GiB, "B", "S3 part size limits")
THRESHOLD = Range(1 * MiB, 5 * GiB, "B", "one PUT or CopyObject stops at 5 GiB")
# At least one smallest part; the engine counts the budget in KiB.
MEMORY = Range(5 * MiB, 1 * TiB, "B")
BANDWIDTH = Range(1 * KiB, 1 * TiB, "B/s", zero="unlimited")
# Below one request every 100 s a cap stalls a copy rather than pacing it.
REQUEST_RATE = Range(0.01, 1_000_000, "requests/s", zero="unlimited")
LOG_SIZE = Range(0, 1 * TiB, "B")
LOG_DAYS = Range(0, 36_500)
LOG_FILES = Range(0, 100_000)
