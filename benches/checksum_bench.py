"""Checksum benchmark (issue #2): how fast the engine's CRCs are, and what they cost a copy.

1. GB/s on one core (the process is pinned to one CPU) of `milvus_backup._engine.checksum`
   for crc32c and crc64nvme on 1 MiB and 64 MiB buffers, best of N timed loops, beside a
   plain memory copy of the same buffer for scale.
2. The overhead on a streaming copy: `mbackup copy` S3->local of one sample tree with
   `--checksum none`, `crc32c` and `crc64nvme`, each repeated, order rotated, medians.

Writes benches/results/checksum-<date>.md and prints it.

    python benches/checksum_bench.py                  # local SeaweedFS, 1 GiB tree
    python benches/checksum_bench.py --size 256MiB --repeat 5
    python benches/checksum_bench.py --micro-only
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import benchlib
from benchlib import MIB, Measured

from milvus_backup import _engine
from milvus_backup.units import parse_size

ALGOS = ("crc32c", "crc64nvme")
MIN_TIMING = 0.2  # seconds one timed loop should last


def gb_per_s(fn, nbytes: int, best_of: int) -> float:
    """Decimal GB/s of ``fn`` (which processes ``nbytes``), best of ``best_of`` timed loops."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        if time.perf_counter() - start >= MIN_TIMING:
            break
        loops *= 2
    best = float("inf")
    for _ in range(best_of):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, time.perf_counter() - start)
    return nbytes * loops / best / 1e9


def micro(best_of: int) -> tuple[str, dict[str, float]]:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    rows, found = [], {}
    try:
        for size in (1 * MIB, 64 * MIB):
            data = os.urandom(size)
            target = memoryview(bytearray(size))
            source = bytearray(data)
            cases = [(algo, (lambda a=algo: _engine.checksum(a, data))) for algo in ALGOS]
            cases += [("memory copy (memoryview slice assignment)", lambda: target.__setitem__(slice(None), data)),
                      ("memory copy (bytes(bytearray), allocates)", lambda: bytes(source))]
            for name, fn in cases:
                rate = gb_per_s(fn, size, best_of)
                found[f"{name} {size // MIB} MiB"] = rate
                rows.append([name, f"{size // MIB} MiB", f"{rate:.1f}", f"{rate * 1e9 / 2**30:.1f}"])
                print(f"{name:45} {size // MIB:3} MiB {rate:6.1f} GB/s", file=sys.stderr)
    finally:
        os.sched_setaffinity(0, before)
    table = benchlib.markdown_table(["what", "buffer", "GB/s (10^9 B/s)", "GiB/s"], rows)
    return f"Pinned to CPU {cpu}; best of {best_of} loops of at least {MIN_TIMING} s each.\n\n{table}\n", found


def streaming(args: argparse.Namespace, workdir, server, rates: dict[str, float]) -> tuple[str, list[str]]:
    env = benchlib.base_env(server)
    bucket = f"ck{benchlib.run_id()}-src"
    server.create_bucket(bucket)
    try:
        print(f"writing a {args.size} tree to s3://{bucket} ...", file=sys.stderr)
        tree = benchlib.write_sample_tree(server.location(bucket), parse_size(args.size))
        runs: dict[str, list[Measured]] = {"none": [], **{a: [] for a in ALGOS}}
        order = list(runs)
        for rep in range(args.repeat):
            for algo in order[rep % len(order):] + order[:rep % len(order)]:
                dst = workdir / "dst" / f"{rep}-{algo}"
                dst.mkdir(parents=True)
                argv = [*benchlib.mbackup_command(), "copy", server.url(bucket), str(dst),
                        "--parallel", str(args.parallel), "--checksum", algo, "--quiet"]
                run = benchlib.measure(argv, env, workdir / "logs" / f"{rep}-{algo}.log")
                problem = run.error_line() if run.returncode else benchlib.compare(tree, benchlib.list_local(dst))
                shutil.rmtree(dst, ignore_errors=True)
                if problem:
                    raise SystemExit(f"mbackup copy --checksum {algo} failed: {problem}")
                runs[algo].append(run)
                print(f"[{rep + 1}/{args.repeat}] --checksum {algo:9} {run.wall:.2f} s, cpu {run.cpu:.2f} s",
                      file=sys.stderr)
    finally:
        if not args.keep:
            server.remove_bucket(bucket)

    base_wall = benchlib.median([r.wall for r in runs["none"]])
    base_cpu = benchlib.median([r.cpu for r in runs["none"]])
    spread = max(r.wall for r in runs["none"]) / min(r.wall for r in runs["none"]) - 1
    rows, verdicts = [], []
    for algo, measured in runs.items():
        wall = benchlib.median([r.wall for r in measured])
        cpu = benchlib.median([r.cpu for r in measured])
        walls = ", ".join(f"{r.wall:.2f}" for r in measured)
        over_wall = "" if algo == "none" else f"{(wall / base_wall - 1) * 100:+.1f}%"
        over_cpu = "" if algo == "none" else f"{(cpu / base_cpu - 1) * 100:+.1f}%"
        rows.append([algo, f"{wall:.2f}", f"{tree.bytes / MIB / wall:,.0f}", over_wall, f"{cpu:.2f}", over_cpu,
                     f"{benchlib.median([r.peak_rss for r in measured]) / MIB:,.0f}", walls])
        if algo == "crc32c":
            pct = (wall / base_wall - 1) * 100
            # What the checksum itself costs, from the one-core rate: a floor for the
            # overhead that does not depend on how busy the machine is.
            crc_cpu = tree.bytes / (rates["crc32c 1 MiB"] * 1e9)
            expected = (f"the CRC work itself is {tree.bytes / MIB:,.0f} MiB at {rates['crc32c 1 MiB']:.0f} GB/s = "
                        f"{crc_cpu:.3f} s of CPU, {crc_cpu / base_cpu * 100:.1f}% of the copy's CPU time")
            if spread * 100 > 5:
                verdict = (f"**inconclusive**: the --checksum none runs alone differ by {spread * 100:.0f}%, more "
                           "than the 5% being measured (rerun on a quiet machine, or with a higher --repeat)")
            else:
                verdict = "met" if pct <= 5 else "**MISSED**"
            verdicts.append(f"- crc32c adds {pct:+.1f}% wall time ({(cpu / base_cpu - 1) * 100:+.1f}% CPU time) to a "
                            f"streaming copy (target <= 5%): {verdict}; {expected}")
    text = (f"`mbackup copy` S3->local, {tree.count:,} objects, {tree.bytes / MIB:,.1f} MiB, --parallel {args.parallel}, "
            f"{args.repeat} runs each (order rotated), medians. Run-to-run spread of --checksum none: "
            f"{spread * 100:.1f}% (max/min), the noise floor for the overheads below.\n\n"
            + benchlib.markdown_table(["--checksum", "wall s", "MiB/s", "wall vs none", "CPU s", "CPU vs none",
                                       "peak RSS MiB", "each run's wall s"], rows) + "\n")
    return text, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_server_arguments(parser)
    parser.add_argument("--parallel", type=int, default=64, help="For the streaming copies (default 64).")
    parser.add_argument("--repeat", type=int, default=3, help="Streaming copies per --checksum value (default 3).")
    parser.add_argument("--best-of", type=int, default=5, help="Timed loops per micro-benchmark (default 5).")
    parser.add_argument("--micro-only", action="store_true", help="Skip the streaming copies (no S3 server needed).")
    args = parser.parse_args()
    benchlib.clean_commit()  # refuse before measuring anything a table could not name

    clock = benchlib.Stopwatch()
    machine = benchlib.machine()
    machine["mbackup"] = benchlib.mbackup_version()
    micro_text, rates = micro(args.best_of)
    crc32c = min(rates["crc32c 1 MiB"], rates["crc32c 64 MiB"])
    verdicts = [f"- CRC32C on one core: {rates['crc32c 1 MiB']:.1f} GB/s (1 MiB), {rates['crc32c 64 MiB']:.1f} GB/s "
                f"(64 MiB) (target >= 10 GB/s): {'met' if crc32c >= 10 else '**MISSED**'}"]

    stream_text = "Skipped (--micro-only).\n"
    if not args.micro_only:
        with benchlib.scratch(args, "checksum-bench") as workdir:
            server = benchlib.start_server(args, workdir)
            machine["S3 server"] = server.description
            try:
                stream_text, more = streaming(args, workdir, server, rates)
                verdicts += more
            finally:
                if server.stop:
                    server.stop()
    machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    machine["total run time"] = f"{clock.elapsed() / 60:.1f} min"

    text = "\n".join([f"# Checksum benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}", "", "## Setup", "",
                      *[f"- {k}: {v}" for k, v in machine.items()], "",
                      "## Checksum speed on one core", "", micro_text,
                      "## Overhead on a streaming copy", "", stream_text,
                      "## Targets (issue #2)", "", *verdicts, ""])
    path = benchlib.write_result("checksum", text, "checksum_bench.py")
    print(text)
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
