"""The allowed range of every number mbackup reads, in one table.

A number is checked where it enters (a flag, a config key, an environment variable, ``--set``):
out of range, it gets one line naming where it came from and the range, and it never reaches
the engine (which would refuse it, or overflow a u64 after a ``<< 20``). Sizes are in bytes and
rates per second; a config key counted in MiB says so with ``scale``.

Part sizes are held to S3's multipart limits (5 MiB to 5 GiB) for every destination: the
destination is not known when a flag or key is read, and smaller parts only slow a local copy.

Issue #9 will grow each row into the single declaration of its setting (default, doc, env var).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..units import format_size, parse_rate, parse_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@dataclass(frozen=True)
class Range:
    lo: int | float
    hi: int | float
    unit: str = ""  # "" (a count), "port", "B" (bytes), "B/s", "requests/s"
    why: str = ""  # where the bounds come from, shown with them
    zero: str = ""  # what 0 means when it is allowed outside lo-hi ("unlimited")


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


@dataclass(frozen=True)
class Number:
    """One number a user can set: its range, the config key and CLI flag that set it."""

    range: Range
    key: str | None = None  # config key (v2 spelling)
    flag: str | None = None  # CLI flag, written in the range's unit (sizes with units: 64MiB)
    scale: int = 1  # the config key's unit, in the range's unit (MiB keys: MiB)

    def contains(self, value: int | float, scale: int | None = None) -> bool:
        """In range, counted in the config key's unit (or in ``scale``); 0 too where 0 means
        something."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        r = self.range
        return (value == 0 and bool(r.zero)) or r.lo <= value * (self.scale if scale is None else scale) <= r.hi

    def expected(self, scale: int | None = None) -> str:
        """What a valid value looks like, in the config key's unit (or in ``scale``):
        ``an integer 5-5120 MiB (S3 part size limits)``; for a flag ``a size 5MiB-5GiB (...)``."""
        r = self.range
        scale = self.scale if scale is None else scale
        if r.unit == "port":
            text = f"a port number {r.lo}-{r.hi}"
        elif r.unit == "B" and scale == 1:
            text = f"a size {format_size(r.lo)}-{format_size(r.hi)}"
        elif r.unit == "B":
            text = f"an integer {r.lo // scale}-{r.hi // scale} {_UNIT_NAMES[scale]}"
        elif r.unit == "B/s":
            text = f"a rate {format_size(r.lo)}/s-{format_size(r.hi)}/s"
        elif r.unit == "requests/s":
            text = f"a number of requests per second {r.lo:g}-{r.hi:.0f}"
        else:
            text = f"an integer {r.lo}-{r.hi}"
        if r.zero:
            text += f", or 0 for {r.zero}"
        return f"{text} ({r.why})" if r.why else text

    def parse(self, text: str) -> int | float:
        """A flag's text -> the value in the range's unit; ValueError with one line saying why."""
        unit = self.range.unit
        value: int | float | None = None
        if unit == "B":
            value = parse_size(text)  # its own message for text that is no size at all
        elif unit == "B/s":
            value = parse_rate(text)
        elif unit == "requests/s":
            try:
                value = float(text)
            except ValueError:
                pass
        elif re.fullmatch(r"\s*[-+]?[0-9]{1,30}\s*", text):
            value = int(text)
        if value is None or not self.contains(value, scale=1):
            shown = text if len(text) <= 40 else f"{text[:30]}..."
            raise ValueError(f"expected {self.expected(scale=1)}, got {shown!r}")
        return value


_UNIT_NAMES = {KiB: "KiB", MiB: "MiB", GiB: "GiB"}

NUMBERS: tuple[Number, ...] = (
    Number(PARALLEL, "mbackup.parallel", "--parallel"),
    Number(PART_SIZE, "mbackup.partSizeMiB", "--part-size", MiB),
    Number(THRESHOLD, "mbackup.multipartThresholdMiB", "--multipart-threshold", MiB),
    Number(THRESHOLD, "transfer.multipartCopyThresholdMiB", "--multipart-copy-threshold", MiB),
    Number(PART_SIZE, None, "--copy-part-size"),
    Number(MEMORY, "mbackup.memoryBudgetMiB", scale=MiB),
    Number(BANDWIDTH, "mbackup.maxBandwidth", "--max-bandwidth"),
    Number(REQUEST_RATE, "mbackup.maxRequestsPerSecond", "--max-requests"),
    Number(PARALLEL, "transfer.concurrency"),
    Number(CONCURRENCY, "backup.concurrency.collections"),
    Number(CONCURRENCY, "backup.concurrency.segments"),
    Number(CONCURRENCY, "restore.concurrency.collections"),
    Number(CONCURRENCY, "restore.concurrency.importJobs"),
    Number(CONCURRENCY, "restore.maxSegmentsPerImportJob"),
    Number(PORT, "milvus.grpc.port"),
    *(Number(PORT, f"{side}.storage.port") for side in ("milvus", "backup")),
    *(Number(OPTIONAL_PORT, f"{side}.storage.milvusPort") for side in ("milvus", "backup")),
    Number(LOG_SIZE, "log.file.maxSizeMiB", scale=MiB),
    Number(LOG_DAYS, "log.file.maxDays"),
    Number(LOG_FILES, "log.file.maxBackups"),
)

BY_KEY = {n.key: n for n in NUMBERS if n.key}
BY_FLAG = {n.flag: n for n in NUMBERS if n.flag}
