"""The copy benchmark's report logic (benches/copy_bench.py): which wall-time verdict a run
earns, the server's CPU as /proc accounts it, and the table's shape. Pure functions on
given numbers; nothing here times a copy (the benchmark itself is run on purpose)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))
import benchlib
import copy_bench
from copy_bench import (
    HEADER,
    Best,
    CpuShare,
    Floor,
    Outcome,
    Tool,
    cpu_share,
    net_of_start,
    per_object_count,
    table_row,
    targets_for,
    wall_floor,
    wall_verdict,
)

SERVER_BOUND = "server-bound"

# (wall ratio, share or None, expected verdict start). nproc 2, wall 10 s: 20 CPU s in all.
VERDICTS = [
    pytest.param(0.70, CpuShare(2, 10, 2, 1), "met", id="at the target"),
    pytest.param(0.50, CpuShare(2, 10, 15, 5), "met", id="met, saturated by the client"),
    pytest.param(0.71, None, "**MISSED**", id="server not watched"),
    pytest.param(1.20, CpuShare(2, 10, 6, 13), SERVER_BOUND, id="server took what the client left"),
    pytest.param(1.20, CpuShare(2, 10, 2, 16.5), SERVER_BOUND, id="client idles, server >= 90% of the rest"),
    pytest.param(1.20, CpuShare(2, 10, 10, 10), SERVER_BOUND, id="equal shares, machine full"),
    pytest.param(1.20, CpuShare(2, 10, 6, 11), "**MISSED**", id="machine at 85%: not saturated"),
    pytest.param(1.20, CpuShare(2, 10, 12, 7.5), "**MISSED**", id="saturated, but the client used more"),
    pytest.param(1.20, CpuShare(2, 10, 8, 10.1), "**MISSED**", id="saturated, server 84% of what was left"),
    pytest.param(1.20, CpuShare(2, 10, 19, 1), "**MISSED**", id="the client saturates the cores itself"),
    pytest.param(1.20, CpuShare(2, 10, 1, 2), "**MISSED**", id="machine mostly idle"),
]


@pytest.mark.parametrize(("ratio", "share", "expected"), VERDICTS)
def test_wall_verdict(ratio, share, expected):
    assert wall_verdict(ratio, share).startswith(expected)


@pytest.mark.parametrize(("ratio", "share", "expected"), VERDICTS)
def test_server_bound_only_on_a_saturated_machine(ratio, share, expected):
    if wall_verdict(ratio, share).startswith(SERVER_BOUND):
        assert share.use >= copy_bench.SATURATED


def test_server_bound_verdict_states_the_numbers():
    # 2 cores x 10 s = 20 CPU s; mbackup used 6, so 14 were left, of which the server used 13.
    assert wall_verdict(1.2, CpuShare(2, 10, 6, 13)) == \
        "server-bound: server 13.00 CPU s of 14.00 available while mbackup used 6.00"


# (wall ratio, share, floor, expected verdict). Target 0.70x of a best peer's 10 s: 7 s.
FLOORS = [
    pytest.param(0.69, CpuShare(2, 6.9, 2, 20), Floor(2, 20, "s5cmd", 2, 7.0), "met", id="met whatever the floor"),
    pytest.param(1.20, CpuShare(2, 12, 4, 19), Floor(2, 19, "rclone", 4, 7.0), SERVER_BOUND,
                 id="server-bound said first"),
    pytest.param(1.20, CpuShare(2, 12, 4, 11), Floor(2, 11, "s5cmd", 4, 7.0), "**MISSED**, out of reach",
                 id="server and client over the cores"),
    pytest.param(1.20, CpuShare(2, 12, 1, 15), Floor(2, 15, "s5cmd", 1, 7.0), "**MISSED**, out of reach",
                 id="the server alone over the cores"),
    pytest.param(1.20, CpuShare(2, 12, 4, 10.1), Floor(2, 10.1, "s5cmd", 4, 7.0), "**MISSED**, out of reach",
                 id="just over"),
    pytest.param(1.20, CpuShare(2, 12, 4, 10), Floor(2, 10, "s5cmd", 4, 7.0), "**MISSED**", id="at the floor: reachable"),
    pytest.param(1.20, CpuShare(2, 12, 2, 3), Floor(2, 3, "s5cmd", 2, 7.0), "**MISSED**", id="idle machine: reachable"),
]


@pytest.mark.parametrize(("ratio", "share", "floor", "expected"), FLOORS)
def test_wall_verdict_with_a_floor(ratio, share, floor, expected):
    verdict = wall_verdict(ratio, share, floor)
    assert verdict.startswith(expected)
    assert ("out of reach" in verdict) == (floor.seconds > floor.target and expected != SERVER_BOUND and ratio > 0.7)
    if expected == "**MISSED**":
        assert verdict == "**MISSED**"


def test_out_of_reach_states_the_numbers():
    assert wall_verdict(1.2, CpuShare(2, 12, 5, 10), Floor(2, 10, "s5cmd", 5, 7.0)) == (
        "**MISSED**, out of reach on these 2 cores: the server's least CPU for this tree (10.00 s, under s5cmd) "
        "and mbackup's (5.00 s) take >= 7.50 s, the server's alone >= 5.00 s; the target is 7.00 s")


def test_the_floor_takes_the_servers_least_cpu_of_any_tool_and_mbackups_own():
    outcomes = [Outcome("mbackup", "bucket->bucket", [run(4, 0.3, 5.0), run(4, 0.4, 5.2), run(4, 0.2, 5.1)]),
                Outcome("s5cmd", "bucket->bucket", [run(3, 0.2, 4.5)]),
                Outcome("rclone", "bucket->bucket", [run(3, 0.9, 6.0)]),
                Outcome("obstore", "bucket->bucket", failure="exit 1")]
    assert wall_floor(outcomes, 3.0, nproc=2) == Floor(2, 4.5, "s5cmd", 0.3, 0.7 * 3.0)
    outcomes[1].runs.append(run(3, 0.2, None))  # s5cmd's server not watched in every run: left out
    assert wall_floor(outcomes, 3.0, nproc=2) == Floor(2, 5.1, "mbackup", 0.3, 0.7 * 3.0)
    outcomes[0].runs.append(run(4, 0.3, None))  # nor mbackup's: no floor
    assert wall_floor(outcomes, 3.0, nproc=2) is None


def run(wall, cpu, server_cpu, rss=50 * benchlib.MIB):
    return benchlib.Measured(wall, rss, cpu, 0, Path("log"), server_cpu)


def test_cpu_share_is_the_median_of_the_runs_and_needs_every_server_reading():
    outcome = Outcome("mbackup", "S3->local", [run(4, 3, 5), run(5, 2, 7), run(9, 4, 6)])
    assert cpu_share(outcome, nproc=2) == CpuShare(2, 5, 3, 6)
    assert cpu_share(outcome, nproc=2).use == pytest.approx(0.9)
    outcome.runs.append(run(5, 3, None))  # one run against a server we could not watch
    assert cpu_share(outcome, nproc=2) is None


def test_targets_line_says_server_bound_with_numbers():
    n = copy_bench.NPROC  # the report's nproc: scale so client + server fill 95% of it
    mb = Outcome("mbackup", "S3->local", [run(10, 3 * n, 6.5 * n)])
    line = targets_for("milvus, S3->local", mb, Best(5.0, "s5cmd", 6.0, "s5cmd", 50 * benchlib.MIB, "s5cmd"))[0]
    wall_part = line.split("; CPU")[0]
    assert wall_part == (f"- milvus, S3->local: wall 2.00x the best peer's (s5cmd; target <= 0.70x): server-bound: "
                         f"server {6.5 * n:.2f} CPU s of {7 * n:.2f} available while mbackup used {3 * n:.2f}")


def test_net_of_start_takes_each_tools_own_start_and_the_leanest_peer_after_it():
    outcomes = [Outcome("mbackup", "S3->local", [run(2, 0.89, 1)]), Outcome("s5cmd", "S3->local", [run(2, 1.05, 1)]),
                Outcome("rclone", "S3->local", [run(2, 0.75, 1)]), Outcome("obstore", "S3->local", failure="exit 1")]
    starts = {"mbackup": 0.20, "s5cmd": 0.01, "rclone": 0.02, "obstore": 0.30}
    # rclone is the leanest in all (0.75) and after its start (0.73); a failed tool is left out.
    assert net_of_start(outcomes, starts) == ("; net of each tool's start, CPU 0.69 s against rclone's 0.73 "
                                              "(starts: mbackup 0.20, s5cmd 0.01, rclone 0.02)")
    starts["s5cmd"] = 0.40  # s5cmd leaner than rclone once starts are taken off: 0.65 against 0.73
    assert "against s5cmd's 0.65" in net_of_start(outcomes, starts)
    assert net_of_start(outcomes, {"rclone": 0.02}) == ""  # no start of mbackup's: nothing to say


def test_every_row_has_a_cell_per_column():
    tree = benchlib.Tree({"a": 1024, "b": 2048})
    best = Best(1.0, "s5cmd", 1.0, "s5cmd", benchlib.MIB, "s5cmd")
    tool = Tool()
    tool.name = "x"
    rows = [table_row(Outcome("x", "S3->local", [run(1, 1, 1)]), tool, tree, best),
            table_row(Outcome("x", "S3->local", [run(1, 1, None)]), tool, tree, best),
            table_row(Outcome("x", "S3->local", failure="exit 1"), tool, tree, best)]
    tool.missing = "not installed"
    rows.append(table_row(Outcome("x", "S3->local"), tool, tree, best))
    assert [len(r) for r in rows] == [len(HEADER)] * 4
    assert rows[1][HEADER.index("server CPU s")] == "-"
    assert rows[0][HEADER.index("MiB/s")] == rows[0][HEADER.index("CPU s/GiB")] == "-"  # 3 KiB: no rate to speak of
    big = benchlib.Tree({"a": benchlib.MIB})
    assert table_row(Outcome("x", "S3->local", [run(1, 1, 1)]), Tool(), big, best)[HEADER.index("MiB/s")] == "1"


@pytest.mark.parametrize(("kind", "n", "objects", "shown"), [
    ("PUT", 20_000, 20_000, "PUT 1.00"),
    ("POST", 8, 4, "POST 2.00"),
    ("LIST", 21, 1_008, "LIST 0.02"),
    ("LIST", 5, 1_000, "LIST 0.01"),  # 0.005: still shows as a rate
    ("LIST", 1, 20_000, "LIST 1 in all"),  # 0.00005 would read "LIST 0.00": none at all
    ("HEAD", 4, 1_000, "HEAD 4 in all"),
])
def test_a_request_count_never_shows_as_zero(kind, n, objects, shown):
    assert per_object_count(kind, n, objects) == shown


def test_session_cpu_counts_reaped_children():
    """A child that burned CPU and ended is still in the session's count (in cutime), so a
    server process that ends between two readings is not lost."""
    sid = os.getsid(0)
    before = benchlib.session_cpu(sid)
    burned = subprocess.run([sys.executable, "-c",
                             "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"],
                            check=True)
    assert burned.returncode == 0
    assert benchlib.session_cpu(sid) - before >= 0.45


def test_no_weed_on_path_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    args = argparse.Namespace(endpoint=None)
    with pytest.raises(SystemExit) as exited:
        benchlib.start_server(args, tmp_path)
    assert str(exited.value).startswith("error: SeaweedFS's `weed` is not on PATH; activate the venv")
    assert not (tmp_path / "seaweedfs").exists()



def test_a_bench_stopped_before_its_server_started_leaves_no_scratch_folder(monkeypatch, tmp_path):
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    args = argparse.Namespace(endpoint=None, workdir=None, keep=False)
    with pytest.raises(SystemExit, match="`weed` is not on PATH"), benchlib.scratch(args, "copy-bench") as work:
        benchlib.start_server(args, work)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_result_already_written_that_day_is_never_overwritten(monkeypatch, tmp_path):
    monkeypatch.setattr(benchlib, "RESULTS", tmp_path)
    monkeypatch.setattr(benchlib, "clean_commit", lambda: "c0ffee")
    paths = [benchlib.write_result("copy", f"# run {n}\nbody {n}\n", "copy_bench.py") for n in (1, 2, 3)]
    today = benchlib.dt.date.today().isoformat()
    assert [p.name for p in paths] == [f"copy-{today}.md", f"copy-{today}-2.md", f"copy-{today}-3.md"]
    assert [p.read_text() for p in paths] == [
        f"# run {n}\n\nProduced by benches/copy_bench.py at commit c0ffee (clean tree); do not edit by hand, "
        f"re-run it.\nbody {n}\n" for n in (1, 2, 3)]
