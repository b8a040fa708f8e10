"""The progress line's arithmetic and layout: pure code, driven with a fake clock (the rate)
and rich's own console at a fixed width (the fit). The real display, with the real engine's
counters, is in tests/test_progress.py."""

from __future__ import annotations

import io
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from milvus_backup.transfer.progress import ProgressDisplay, RateWindow, Status, counter_fields, fit

MIB = 1024 * 1024
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_is_the_last_ten_seconds_not_the_average_since_the_start():
    clock = FakeClock()
    meter = RateWindow(window=10, clock=clock)
    moved = 0
    meter.add(moved)
    assert meter.rate() is None  # one sample: no rate yet, rather than a made-up one
    for _ in range(40):  # 20 s at 100 MiB/s
        clock.now += 0.5
        moved += 50 * MIB
        meter.add(moved)
    assert meter.rate() == 100 * MIB
    for _ in range(20):  # then 10 s at 2 MiB/s: the average since the start would say 68 MiB/s
        clock.now += 0.5
        moved += MIB
        meter.add(moved)
    assert meter.rate() == 2 * MIB
    assert len(meter.samples) <= 22  # the window is all that is kept


def test_the_eta_follows_the_current_rate_from_the_second_sample():
    p = {"objects_total": 60, "objects_done": 10, "in_flight": 4, "bytes_total": 100 * MIB, "bytes_done": 40 * MIB}
    shown = dict((t.split(" ")[0], t) for t, _ in counter_fields(p, 2 * MIB))
    assert shown["ETA"] == "ETA 30.0s"  # 60 MiB left at 2 MiB/s
    assert [t for t, _ in counter_fields(p, None)][2:4] == ["-/s", "ETA -"]


def test_objects_count_those_in_flight_so_bytes_never_run_ahead_of_them():
    # The engine counts bytes as they stream: 19 done and 41 in flight may have moved every byte.
    p = {"objects_total": 60, "objects_done": 19, "in_flight": 41, "bytes_total": 60 * MIB, "bytes_done": 60 * MIB}
    objects, size = (t for t, _ in counter_fields(p, MIB)[:2])
    assert (objects, size) == ("19+41/60 objects", "60.0 MiB/60.0 MiB")
    p.update(objects_done=55, objects_skipped=5, in_flight=0)
    assert counter_fields(p, MIB)[0][0] == "60/60 objects"


FIELDS = st.lists(st.tuples(st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=30),
                            st.integers(0, 9)), min_size=1, max_size=8)


@given(FIELDS, st.integers(1, 200))
def test_a_line_always_fits_and_keeps_what_matters_most(fields, width):
    line = fit(fields, width)
    assert len(line) <= width
    whole = fit(fields, None)
    if len(whole) <= width:
        assert line == whole  # nothing left out when it fits
    elif len(fields) > 1 and len(fields[0][0]) + 2 + len(fields[1][0]) <= width and fields[1][1] == 9:
        assert line.startswith(f"{fields[0][0]}: {fields[1][0]}")


def test_the_least_important_fields_go_first():
    p = {"objects_total": 1200, "objects_done": 1000, "in_flight": 64, "bytes_total": 900 * MIB,
         "bytes_done": 600 * MIB, "retries": 3, "failures": 2}
    fields = [("stage default.e2e_int", 9), *counter_fields(p, 12 * MIB)]
    assert fit(fields, None) == ("stage default.e2e_int: 1,000+64/1,200 objects, 600.0 MiB/900.0 MiB, 12.0 MiB/s, "
                                 "ETA 25.0s, 2 failed, 3 retries")
    assert fit(fields, 60) == "stage default.e2e_int: 1,000+64/1,200 objects, 2 failed"
    assert fit(fields, 12) == "stage defau…"


def test_the_live_line_fits_a_40_column_terminal_and_is_cleared_at_the_end():
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=True)
    counters = {"objects_total": 1200, "objects_done": 0, "in_flight": 64, "bytes_total": 900 * MIB, "bytes_done": 0,
                "retries": 0, "failures": 0}
    status = Status("backup", lambda: dict(counters))
    display = ProgressDisplay(lambda: status, console=console)
    display.start()
    for _ in range(4):
        time.sleep(0.6)
        counters["objects_done"] += 100
        counters["bytes_done"] += 50 * MIB
    display.print("warning: a line above the live one")
    time.sleep(0.6)
    display.stop()
    drawn = [ANSI.sub("", piece) for piece in re.split(r"[\r\n]", out.getvalue())]
    shown = [line for line in drawn if line.strip()]
    assert any(line.startswith("backup: 300+64/1,200 objects") for line in shown), shown
    assert "warning: a line above the live one" in shown
    assert all(len(line) <= 40 for line in shown), shown
    # transient: the last thing written erases the live line (cursor up, erase line)
    assert out.getvalue().endswith("\x1b[2K"), repr(out.getvalue()[-40:])


class _Stream(io.StringIO):
    def __init__(self, tty: bool | None) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        if self.tty is None:
            raise ValueError("I/O operation on closed file")
        return self.tty


@pytest.mark.parametrize(("tty", "env", "drawn"), [
    (True, {}, True),            # a terminal: the live line
    (False, {}, False),          # a pipe or a log: timestamped lines, rich never imported
    (None, {}, False),           # a closed stream
    (False, {"FORCE_COLOR": "1"}, True),      # rich is told to take it for a terminal
    (False, {"TTY_COMPATIBLE": "1"}, True),
    (False, {"TTY_COMPATIBLE": "0"}, False),  # rich asked, and says no
    (True, {"TTY_COMPATIBLE": "0"}, False),
])
def test_the_live_line_is_drawn_where_rich_takes_the_stream_for_a_terminal(monkeypatch, tty, env, drawn):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    display = ProgressDisplay(lambda: None, stream=_Stream(tty))
    assert display.tty is drawn
    assert (display.console is not None) is (tty is True or bool(env))
    display.print("warning: a line")
    if not drawn:
        assert display.stream.getvalue() == "warning: a line\n"
