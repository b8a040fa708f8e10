"""Copy benchmark (issue #2): mbackup against the tools users pick instead, on one tree.

Writes each tree (a Milvus-shaped one, many small objects, a few huge ones, and one object of
one byte, which measures what each tool spends on any run: its start) into a source
bucket (and a local folder), then, for each of bucket->bucket, S3->local and local->S3 at the
same parallelism, times `mbackup copy` and s5cmd, rclone, the AWS CLI, boto3 and obstore, and
counts each tool's requests in one more run through a counting proxy. Every tool copies into a
fresh empty destination and the result is checked (every key with its size); a wrong copy is
reported as failed, not timed. Prints one markdown table per tree and direction and writes
them, with the machine and tool versions, to benches/results/copy-<date>.md.

    python benches/copy_bench.py                      # local SeaweedFS, all trees, --parallel 64
    python benches/copy_bench.py --trees milvus --size 256MiB --repeat 3
    python benches/copy_bench.py --endpoint http://minio:9000 --access-key K --secret-key S
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import benchlib
from benchlib import MIB, Measured, S3Server, Tree

from mbackup_dev.sampletree import plan_huge, plan_small, plan_tree
from milvus_backup.plugins.manager import storage_backends
from milvus_backup.units import parse_size

DIRECTIONS = ("bucket->bucket", "S3->local", "local->S3")
SHORT = {"bucket->bucket": "b2b", "S3->local": "s2l", "local->S3": "l2s"}  # for bucket and folder names
TREES = ("milvus", "small", "huge", "one")
START_TREE = "one"  # one 1-byte object: a run's fixed cost, shown beside every other cell's CPU
HERE = Path(__file__).resolve().parent
PEER_CLIENTS = HERE / "peer_clients.py"
GIB = 1024 * MIB
# The tests' pass-through proxy, which counts requests by method and path.
sys.path.insert(0, str(HERE.parent / "tests"))
from faultproxy import FaultProxy  # noqa: E402


@dataclass
class Context:
    server: S3Server
    parallel: int
    workdir: Path
    env: dict[str, str]


@dataclass
class End:
    """One side of a copy: a bucket (whole bucket) or a local folder."""

    bucket: str = ""
    folder: Path | None = None

    @property
    def is_s3(self) -> bool:
        return bool(self.bucket)


# ---------------------------------------------------------------- the tools

class Tool:
    name = ""
    slug = ""  # lowercase letters and dashes: part of bucket names
    missing = ""  # why it cannot run here; "" when it can

    def version(self) -> str:
        raise NotImplementedError

    def argv(self, ctx: Context, direction: str, src: End, dst: End) -> list[str]:
        raise NotImplementedError


class Mbackup(Tool):
    name = slug = "mbackup"

    def __init__(self, extra: list[str]):
        self.extra = extra

    def version(self) -> str:
        return benchlib.mbackup_version()

    def argv(self, ctx, direction, src, dst):
        def url(end: End) -> str:
            return ctx.server.url(end.bucket) if end.is_s3 else str(end.folder)
        return [*benchlib.mbackup_command(), "copy", url(src), url(dst), "--parallel", str(ctx.parallel),
                "--quiet", *self.extra]


class Executable(Tool):
    """A peer CLI found on PATH (the venv's bin first)."""

    program = ""

    def __init__(self):
        self.path = shutil.which(self.program, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        if self.path and "/.pyenv/shims/" in self.path:
            # A pyenv shim re-resolves the interpreter on every call; use what it points to.
            real = benchlib.command_version(["pyenv", "which", self.program])
            self.path = real or self.path
        if not self.path:
            self.missing = "not installed"


class S5cmd(Executable):
    name = slug = program = "s5cmd"

    def version(self):
        return benchlib.command_version([self.path, "version"])

    def argv(self, ctx, direction, src, dst):
        source = f"s3://{src.bucket}/*" if src.is_s3 else f"{src.folder}/*"
        target = f"s3://{dst.bucket}/" if dst.is_s3 else f"{dst.folder}/"
        return [self.path, "--endpoint-url", ctx.server.endpoint, "--numworkers", str(ctx.parallel),
                "--log", "error", "cp", source, target]


class Rclone(Executable):
    name = slug = program = "rclone"

    def version(self):
        return benchlib.command_version([self.path, "version"], "rclone")

    def argv(self, ctx, direction, src, dst):
        def path(end: End) -> str:
            return f"bench:{end.bucket}" if end.is_s3 else str(end.folder)
        return [self.path, "copy", path(src), path(dst), "--transfers", str(ctx.parallel),
                "--checkers", str(ctx.parallel)]


class AwsCli(Executable):
    name, slug, program = "aws s3 cp", "aws", "aws"

    def version(self):
        return benchlib.command_version([self.path, "--version"], "aws-cli")

    def argv(self, ctx, direction, src, dst):
        def path(end: End) -> str:
            return f"s3://{end.bucket}" if end.is_s3 else str(end.folder)
        return [self.path, "--endpoint-url", ctx.server.endpoint, "s3", "cp", "--recursive", "--only-show-errors",
                path(src), path(dst)]


class Library(Tool):
    """boto3 or obstore, driven by peer_clients.py in an interpreter that has the library."""

    def __init__(self, name: str, pythons: list[str]):
        self.name = self.slug = name
        self.python, self._version = "", ""
        for python in [sys.executable, *pythons]:
            out = subprocess.run([python, str(PEER_CLIENTS), "--probe", name], capture_output=True, text=True)
            if out.returncode == 0:
                self.python, self._version = python, out.stdout.strip()
                break
        if not self.python:
            self.missing = "not installed"

    def version(self):
        where = "" if self.python == sys.executable else f" (run with {self.python})"
        return f"{self.name} {self._version}{where}"

    def argv(self, ctx, direction, src, dst):
        job = {"direction": direction, "parallel": ctx.parallel, "endpoint": ctx.server.endpoint,
               "region": ctx.server.region,
               "src": src.bucket or str(src.folder), "dst": dst.bucket or str(dst.folder)}
        return [self.python, str(PEER_CLIENTS), self.name, json.dumps(job)]


def configure_peers(ctx: Context, local_stack: bool) -> None:
    """Config files for the AWS CLI (and boto3) and rclone, in the scratch folder."""
    aws_config = ctx.workdir / "aws-config"
    aws_config.write_text(
        "[default]\n"
        f"region = {ctx.server.region}\n"
        # boto >= 1.36 sends CRC checksums by default, which many S3-compatible stores reject.
        "request_checksum_calculation = when_required\n"
        "response_checksum_validation = when_required\n"
        "s3 =\n"
        f"    max_concurrent_requests = {ctx.parallel}\n"
        "    addressing_style = path\n")
    (ctx.workdir / "aws-credentials").write_text("")
    (ctx.workdir / "rclone.conf").write_text("")
    ctx.env.update(
        AWS_CONFIG_FILE=str(aws_config), AWS_SHARED_CREDENTIALS_FILE=str(ctx.workdir / "aws-credentials"),
        RCLONE_CONFIG=str(ctx.workdir / "rclone.conf"),
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="SeaweedFS" if local_stack else "Other",
        RCLONE_CONFIG_BENCH_ENDPOINT=ctx.server.endpoint,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ctx.server.access_key,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=ctx.server.secret_key,
        RCLONE_CONFIG_BENCH_REGION=ctx.server.region,
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
        RCLONE_CONFIG_BENCH_NO_CHECK_BUCKET="true",
    )


# ---------------------------------------------------------------- one measurement

@dataclass
class Outcome:
    tool: str
    direction: str
    runs: list[Measured] = field(default_factory=list)
    failure: str = ""  # set when any run failed or copied wrong; then nothing is timed
    requests: Counter[str] | None = None  # by kind, from the counted run
    request_note: str = ""  # why the counts are missing or a lower bound

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not self.failure


def through(ctx: Context, proxy: FaultProxy) -> Context:
    """The same context, every tool sent to ``proxy`` instead of the server."""
    env = dict(ctx.env, RCLONE_CONFIG_BENCH_ENDPOINT=proxy.endpoint)
    return Context(dataclasses.replace(ctx.server, endpoint=proxy.endpoint), ctx.parallel, ctx.workdir, env)


def request_kinds(seen: Counter[str]) -> Counter[str]:
    """Requests by kind: LIST for a GET of a bucket (listings, ListMultipartUploads), else the
    HTTP method of a request on an object."""
    kinds: Counter[str] = Counter()
    for request, n in seen.items():
        method, path = request.split(" ", 1)
        on_bucket = "/" not in path.strip("/")
        kinds["LIST" if method == "GET" and on_bucket else method] += n
    return kinds


def measure_once(ctx: Context, tool: Tool, direction: str, tree: Tree, source_bucket: str,
                 source_folder: Path, tag: str, proxy: FaultProxy | None = None) -> tuple[Measured, str | None]:
    """Copy into a fresh destination, check it, then remove it. With ``proxy``, the tool talks
    to the server through it and its requests are left in ``proxy.seen``."""
    dst_name = f"{tag}-{SHORT[direction]}-{tool.slug}"
    src = End(folder=source_folder) if direction == "local->S3" else End(bucket=source_bucket)
    if direction == "S3->local":
        dst = End(folder=ctx.workdir / "dst" / dst_name)
        dst.folder.mkdir(parents=True)
    else:
        dst = End(bucket=dst_name)
        ctx.server.create_bucket(dst.bucket)
    try:
        tool_ctx = ctx
        if proxy:
            tool_ctx = through(ctx, proxy)
            proxy.seen.clear()
            proxy.stats.clear()
        run = benchlib.measure(tool.argv(tool_ctx, direction, src, dst), tool_ctx.env,
                               ctx.workdir / "logs" / f"{dst_name}.log", server_cpu=ctx.server.cpu_seconds)
        if run.returncode != 0:
            return run, run.error_line()
        found = ({o.key: o.size for o in ctx.server.location(dst.bucket).list()} if dst.is_s3
                 else benchlib.list_local(dst.folder))
        return run, benchlib.compare(tree, found)
    finally:
        if dst.is_s3:
            ctx.server.remove_bucket(dst.bucket)
        else:
            shutil.rmtree(dst.folder, ignore_errors=True)


def count_requests(ctx: Context, tool: Tool, direction: str, tree: Tree, source_bucket: str,
                   source_folder: Path, tag: str, outcome: Outcome) -> None:
    """One more, untimed run through a counting proxy (it costs CPU of its own)."""
    with FaultProxy(ctx.server.endpoint, max_lifetime=3600) as proxy:
        _, problem = measure_once(ctx, tool, direction, tree, source_bucket, source_folder, tag, proxy)
        seen, opaque = Counter(proxy.seen), proxy.stats.get("opaque", 0)
    if problem:
        outcome.request_note = "counted run failed"
        print(f"  counted run of {tool.name}, {direction} failed: {problem}", file=sys.stderr)
    else:
        outcome.requests = request_kinds(seen)
        # A chunked upload has no length to follow: the rest of its connection is not counted.
        outcome.request_note = "at least" if opaque else ""


# ---------------------------------------------------------------- report

def median_of(outcome: Outcome, attr: str) -> float:
    return benchlib.median([getattr(r, attr) for r in outcome.runs])


NPROC = len(os.sched_getaffinity(0))  # the client's and the server's cores (the same here)
WALL_TARGET = 0.70  # mbackup's wall time over the best peer's
SATURATED = 0.90  # share of what the client left that the server must use to be the bound


@dataclass(frozen=True)
class CpuShare:
    """What one tool and the S3 server made of the machine during a run."""

    nproc: int
    wall: float  # s
    client: float  # CPU s of the tool
    server: float  # CPU s of the server meanwhile

    @property
    def left(self) -> float:
        """CPU s the client left to everyone else."""
        return max(self.nproc * self.wall - self.client, 0.0)

    @property
    def use(self) -> float:
        """(client + server) CPU s over nproc x wall: 1.0 is every core busy the whole run."""
        return (self.client + self.server) / (self.nproc * self.wall)


def cpu_share(outcome: Outcome, nproc: int = NPROC) -> CpuShare | None:
    """Medians over the runs; None when the server's CPU was not watched."""
    if not outcome.runs or any(r.server_cpu is None for r in outcome.runs):
        return None
    return CpuShare(nproc, median_of(outcome, "wall"), median_of(outcome, "cpu"), median_of(outcome, "server_cpu"))


@dataclass(frozen=True)
class Floor:
    """The least wall time these cores allow for the CPU a run of the tree cannot avoid: the
    server's least (over every tool's runs, medians) and mbackup's own, spread on every core."""

    nproc: int
    server: float  # CPU s
    server_by: str  # the tool whose runs cost the server least
    client: float  # mbackup's CPU s
    target: float  # s: WALL_TARGET x the best peer's wall

    @property
    def seconds(self) -> float:
        return (self.server + self.client) / self.nproc

    def out_of_reach(self) -> str:
        """Why the target cannot be met on these cores, or "" when it could be."""
        if self.seconds <= self.target:
            return ""
        alone = self.server / self.nproc
        return (f"out of reach on these {self.nproc} cores: the server's least CPU for this tree "
                f"({self.server:.2f} s, under {self.server_by}) and mbackup's ({self.client:.2f} s) take "
                f">= {self.seconds:.2f} s, the server's alone >= {alone:.2f} s; the target is {self.target:.2f} s")


def wall_floor(outcomes: list[Outcome], best_wall: float, nproc: int = NPROC) -> Floor | None:
    """The floor of one tree and direction; None without mbackup's server reading."""
    shares = {o.tool: share for o in outcomes if o.ok and (share := cpu_share(o, nproc)) is not None}
    if "mbackup" not in shares:
        return None
    by = min(shares, key=lambda tool: shares[tool].server)
    return Floor(nproc, shares[by].server, by, shares["mbackup"].client, WALL_TARGET * best_wall)


def wall_verdict(ratio: float, share: CpuShare | None, floor: Floor | None = None) -> str:
    """Issue #14's wall-time target: met; or missed where the server was the measured bound;
    or missed, saying so where the cores could not have met it. Server-bound: the server used
    >= 90% of the CPU the client left (so client and server together used >= 90% of nproc x
    wall: the machine was saturated) and at least as much as the client, which mostly waited
    on it. A client that saturates the cores itself is not server-bound, however busy the
    machine was."""
    if ratio <= WALL_TARGET:
        return "met"
    if share is not None and share.server >= SATURATED * share.left and share.server >= share.client:
        return (f"server-bound: server {share.server:.2f} CPU s of {share.left:.2f} available "
                f"while mbackup used {share.client:.2f}")
    why = floor.out_of_reach() if floor is not None else ""
    return f"**MISSED**, {why}" if why else "**MISSED**"


def per_object(outcome: Outcome, tree: Tree) -> str:
    if outcome.requests is None:
        return outcome.request_note or "not counted"
    kinds = ", ".join(per_object_count(kind, n, tree.count) for kind, n in sorted(outcome.requests.items()))
    return f"{'>= ' if outcome.request_note else ''}{kinds}"


def per_object_count(kind: str, n: int, objects: int) -> str:
    """``n`` requests of ``kind`` per object, to two decimals; a count that would show as
    0.00 (one listing of 20,000 objects) is given in all instead."""
    return f"{kind} {n / objects:.2f}" if n / objects >= 0.005 else f"{kind} {n} in all"


@dataclass
class Best:
    """The best peer's wall time and the leanest peer's CPU and memory, in one tree and direction."""

    wall: float | None = None
    wall_by: str = ""
    cpu: float | None = None
    cpu_by: str = ""
    rss: float | None = None
    rss_by: str = ""


def best_peers(outcomes: list[Outcome]) -> Best:
    done = [o for o in outcomes if o.ok and o.tool != "mbackup"]
    if not done:
        return Best()
    wall = min(done, key=lambda o: median_of(o, "wall"))
    cpu = min(done, key=lambda o: median_of(o, "cpu"))
    rss = min(done, key=lambda o: median_of(o, "peak_rss"))
    return Best(median_of(wall, "wall"), wall.tool, median_of(cpu, "cpu"), cpu.tool,
                median_of(rss, "peak_rss"), rss.tool)


def table_row(outcome: Outcome, tool: Tool, tree: Tree, best: Best) -> list[str]:
    if tool.missing:
        return [tool.name, tool.missing] + [""] * (len(HEADER) - 2)
    if not outcome.ok:
        return [tool.name, "failed (below)"] + [""] * (len(HEADER) - 2)
    wall, cpu = median_of(outcome, "wall"), median_of(outcome, "cpu")
    share = cpu_share(outcome)
    rated = tree.bytes >= MIB  # not the one-byte tree, whose rates would be noise
    return [tool.name, f"{wall:.2f}", f"{tree.bytes / MIB / wall:,.0f}" if rated else "-", f"{cpu:.2f}",
            f"{cpu / (tree.bytes / GIB):.2f}" if rated else "-", f"{median_of(outcome, 'peak_rss') / MIB:,.0f}",
            f"{share.server:.2f}" if share else "-", f"{share.use:.0%}" if share else "-",
            per_object(outcome, tree),
            f"{wall / best.wall:.2f}" if best.wall else "-", f"{cpu / best.cpu:.2f}" if best.cpu else "-"]


def net_of_start(outcomes: list[Outcome], starts: dict[str, float]) -> str:
    """CPU beyond each tool's start (its median on the one-object tree, same direction):
    mbackup's against the leanest peer's, the work a run does for its bytes."""
    net = {o.tool: median_of(o, "cpu") - starts[o.tool] for o in outcomes if o.ok and o.tool in starts}
    peers = {tool: cpu for tool, cpu in net.items() if tool != "mbackup"}
    if "mbackup" not in net or not peers:
        return ""
    leanest = min(peers, key=peers.__getitem__)
    return (f"; net of each tool's start, CPU {net['mbackup']:.2f} s against {leanest}'s {peers[leanest]:.2f} "
            "(starts: " + ", ".join(f"{tool} {starts[tool]:.2f}" for tool in net) + ")")


def targets_for(label: str, mb: Outcome, best: Best, net: str = "", floor: Floor | None = None) -> list[str]:
    """Issue #2's wall-time target and issue #14's CPU and memory targets, met or not; ``net``
    (net_of_start) says how much of the CPU is the tools' starts, ``floor`` (wall_floor)
    whether these cores could meet the wall target at all."""
    if not mb.ok or best.wall is None or best.cpu is None or best.rss is None:
        return [f"- {label}: no ratio (mbackup {'ok' if mb.ok else 'failed'}, no peer succeeded)"
                if not mb.ok or best.wall is None else f"- {label}: no ratio"]
    wall = median_of(mb, "wall") / best.wall
    cpu = median_of(mb, "cpu") / best.cpu
    rss = median_of(mb, "peak_rss") / best.rss
    return [f"- {label}: wall {wall:.2f}x the best peer's ({best.wall_by}; target <= {WALL_TARGET:.2f}x): "
            f"{wall_verdict(wall, cpu_share(mb), floor)}; CPU {cpu:.2f}x the leanest peer's ({best.cpu_by}; "
            f"target <= 1.00x): {'met' if cpu <= 1.0 else '**MISSED**'}; peak RSS {rss:.2f}x the leanest "
            f"peer's ({best.rss_by}; target <= 1.50x): {'met' if rss <= 1.5 else '**MISSED**'}{net}"]


def under_load(machine: dict[str, str]) -> str:
    """A warning for the header when the machine was busy: wall times are then not the result."""
    # Start and end both: others' work that began during the run counts as much.
    load = max(float(machine.get(f"load average at {when}", "0").split()[0]) for when in ("start", "end"))
    cores = os.cpu_count() or 1
    if load < 0.5 * cores:
        return ""
    return (f"**Measured under load** (1-minute load average up to {load:.2f} on {cores} cores): wall times and "
            "ratios of wall times are not the result; CPU seconds, peak RSS and request counts hold better.")


HEADER = ["tool", "wall s", "MiB/s", "CPU s", "CPU s/GiB", "peak RSS MiB", "server CPU s", "machine CPU use",
          "requests per object", "wall / best peer", "CPU / leanest peer"]


def report(ctx: Context, args: argparse.Namespace, tools: list[Tool], directions: list[str],
           trees: dict[str, Tree], outcomes: dict[tuple[str, str, str], Outcome], machine: dict[str, str],
           elapsed: float) -> str:
    lines = [f"# Copy benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}", ""]
    warning = under_load(machine)
    lines += [warning, ""] if warning else []
    lines += ["## Setup", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    lines += [f"- S3 server: {ctx.server.description}", "- trees:"]
    lines += [f"  - {name}: {tree.count:,} objects, {tree.bytes / MIB:,.1f} MiB ({describe_tree(name, args)})"
              for name, tree in trees.items()]
    lines += [f"- parallelism: {ctx.parallel} for every tool; repeats: {args.repeat} (median shown)",
              "- tools:"]
    lines += [f"  - {t.name}: {t.missing or t.version()}" for t in tools]
    lines += [f"- mbackup runs with {benchlib.PLUGINS_VAR}= (no third-party plugins), as a user's install "
              "has none: the dev venv's example plugins are not loaded"]
    lines += [f"- total run time: {elapsed / 60:.1f} min", "",
              "Wall time runs from starting the tool's process to its exit, listing included. Peak RSS is the "
              "kernel's high-water mark (VmHWM) of each process of the tool, read every 50 ms and summed. "
              "CPU s is user+system time of the tool's process tree; CPU s/GiB divides it by the tree's bytes. "
              "Requests per object come from one more run of each tool through a counting proxy (not timed): "
              "requests of each kind over the tree's objects, LIST being any GET of a bucket (listings, "
              "ListMultipartUploads). Ratios compare with the best peer's wall time and the leanest peer's CPU. "
              "The S3 server runs on the same cores. Server CPU s is user+system time of the server's process "
              "tree (/proc/<pid>/stat) from the tool's start to its exit; machine CPU use is (CPU s + server CPU "
              f"s) / (nproc x wall s), nproc = {NPROC}; both '-' for a server not started here. Each tool copies "
              "into a fresh empty bucket or folder, checked key by key (size) afterwards.", "",
              f"A missed wall target reads \"server-bound\" instead of MISSED when, over mbackup's runs "
              f"(medians), the server used >= {SATURATED:.0%} of the CPU mbackup left (nproc x wall s - mbackup's "
              f"CPU s; so the machine was >= {SATURATED:.0%} busy) and at least as much CPU as "
              "mbackup: the server was the bound and mbackup waited on it. A MISSED one says \"out of reach\" "
              "when these cores could not have met it: the server's least CPU for that tree and direction (over "
              "every tool's runs, medians) plus mbackup's own, over nproc, is more than the target's seconds; "
              "mbackup, spending the CPU it spent, could not have finished within the target on these cores (the line "
              "gives the server's share alone too).", ""]

    targets = []
    for name, tree in trees.items():
        for direction in directions:
            row_outcomes = [outcomes[(name, t.name, direction)] for t in tools]
            best = best_peers(row_outcomes)
            rows = [table_row(o, t, tree, best) for o, t in zip(row_outcomes, tools, strict=True)]
            lines += [f"## {name} tree, {direction}", "", benchlib.markdown_table(HEADER, rows), ""]
            lines += [f"- {o.tool} failed: {o.failure}" for o in row_outcomes if o.failure]
            lines += [""] if lines[-1] else []
            if name == START_TREE:  # not a target of its own: each tool's start, for the lines below
                continue
            starts = {t.name: median_of(o, "cpu") for t in tools
                      if (o := outcomes.get((START_TREE, t.name, direction))) is not None and o.ok}
            floor = wall_floor(row_outcomes, best.wall) if best.wall is not None else None
            targets += targets_for(f"{name}, {direction}", row_outcomes[0], best, net_of_start(row_outcomes, starts),
                                   floor)
    mb_rss = [r.peak_rss for o in outcomes.values() if o.tool == "mbackup" for r in o.runs]
    if mb_rss:
        peak = max(mb_rss) / MIB
        note = "" if ctx.parallel == 64 and not args.mbackup_args else " (the target is stated for --parallel 64, default settings)"
        targets.append(f"- mbackup peak RSS, any tree and direction: {peak:,.0f} MiB (target < 300 MiB at --parallel "
                       f"64 with default part sizes): {'met' if peak < 300 else '**MISSED**'}{note}")
    lines += ["## Targets (issues #2 and #14)", "", *targets, ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the trees

def describe_tree(name: str, args: argparse.Namespace) -> str:
    return {"milvus": f"mbackup_dev.sampletree, --size {args.size}",
            "small": f"{args.small_count:,} objects of 1-64 KiB (--small-count)",
            "huge": f"{args.huge_count} x {args.huge_size} (--huge-count, --huge-size)",
            START_TREE: "1 object of 1 byte: what a run costs before its bytes, start and listing included"}[name]


def plan(name: str, args: argparse.Namespace) -> list[tuple[str, int]]:
    if name == "milvus":
        return plan_tree(parse_size(args.size))
    if name == "small":
        return plan_small(args.small_count)
    if name == START_TREE:
        return [("files/one", 1)]
    return plan_huge(args.huge_count, parse_size(args.huge_size))


# ---------------------------------------------------------------- main

def run_all(args: argparse.Namespace, tools: list[Tool], directions: list[str], tree_names: list[str],
            machine: dict[str, str], clock: benchlib.Stopwatch, workdir: Path,
            outcomes: dict[tuple[str, str, str], Outcome]) -> str:
    """Every tree, tool and direction measured (into ``outcomes``); the report's text."""
    server = benchlib.start_server(args, workdir)
    ctx = Context(server, args.parallel, workdir, benchlib.base_env(server))
    configure_peers(ctx, local_stack=server.stop is not None)
    tag = f"cb{benchlib.run_id()}"
    trees: dict[str, Tree] = {}
    source_buckets: list[str] = []
    try:
        for name in tree_names:
            source_bucket, source_folder = f"{tag}-{name}-src", workdir / f"src-{name}"
            print(f"writing the {name} tree to s3://{source_bucket} and {source_folder} ...", file=sys.stderr)
            server.create_bucket(source_bucket)
            source_buckets.append(source_bucket)
            objects = plan(name, args)
            tree = trees[name] = benchlib.write_planned_tree(server.location(source_bucket), objects)
            local_tree = benchlib.write_planned_tree(storage_backends().open(str(source_folder)), objects)
            assert local_tree.objects == tree.objects, "the two sample trees differ"
            print(f"{name} tree: {tree.count:,} objects, {tree.bytes / MIB:,.1f} MiB", file=sys.stderr)

            outcomes.update({(name, t.name, d): Outcome(t.name, d) for t in tools for d in DIRECTIONS})
            for rep in range(args.repeat):
                for direction in directions:
                    for tool in tools:
                        outcome = outcomes[(name, tool.name, direction)]
                        if tool.missing or outcome.failure:
                            continue
                        run, problem = measure_once(ctx, tool, direction, tree, source_bucket, source_folder,
                                                    f"{tag}-{name[0]}{rep}")
                        by_server = "" if run.server_cpu is None else f", server {run.server_cpu:.2f} CPU s"
                        state = f"FAILED: {problem}" if problem else f"{run.wall:.2f} s, {run.cpu:.2f} CPU s, " \
                                                                     f"{run.peak_rss / MIB:.0f} MiB{by_server}"
                        print(f"[{rep + 1}/{args.repeat}] {name:6} {direction:15} {tool.name:10} {state}",
                              file=sys.stderr)
                        if problem:
                            outcome.failure = problem
                        else:
                            outcome.runs.append(run)
            for direction in directions:
                for tool in tools:
                    outcome = outcomes[(name, tool.name, direction)]
                    if args.no_count or not outcome.ok:
                        continue
                    count_requests(ctx, tool, direction, tree, source_bucket, source_folder, f"{tag}-{name[0]}c",
                                   outcome)
                    print(f"[count] {name:6} {direction:15} {tool.name:10} {per_object(outcome, tree)}",
                          file=sys.stderr)
            # The next tree needs the disk more than this one's source does.
            server.remove_bucket(source_bucket)
            source_buckets.remove(source_bucket)
            shutil.rmtree(source_folder, ignore_errors=True)
        machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        text = report(ctx, args, tools, directions, trees, outcomes, machine, clock.elapsed())
    finally:
        if server.stop:
            server.stop()
        elif not args.keep:
            for bucket in source_buckets:
                server.remove_bucket(bucket)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_server_arguments(parser)
    parser.add_argument("--trees", default=",".join(TREES),
                        help="Comma-separated subset of milvus (--size bytes of a Milvus-shaped tree), small "
                             "(--small-count objects of 1-64 KiB), huge (--huge-count x --huge-size) and one "
                             "(one object of one byte: each tool's start, shown beside every target).")
    parser.add_argument("--small-count", type=int, default=20_000, help="Objects of the small tree (default 20000).")
    parser.add_argument("--huge-count", type=int, default=4, help="Objects of the huge tree (default 4).")
    parser.add_argument("--huge-size", default="1GiB", type=benchlib.size_arg,
                        help="Size of each object of the huge tree (default 1GiB).")
    parser.add_argument("--no-count", action="store_true", help="Skip the runs that count requests.")
    parser.add_argument("--parallel", type=int, default=64, help="Objects in flight for every tool (default 64).")
    parser.add_argument("--repeat", type=int, default=1, help="Measurements per tool and direction; the median is shown.")
    parser.add_argument("--tools", default="mbackup,s5cmd,rclone,aws,boto3,obstore",
                        help="Comma-separated subset of mbackup,s5cmd,rclone,aws,boto3,obstore.")
    parser.add_argument("--directions", default=",".join(DIRECTIONS), help="Comma-separated subset of " + ",".join(DIRECTIONS))
    parser.add_argument("--peer-python", action="append", default=[],
                        help="Another interpreter to try for boto3/obstore when this one lacks them (repeatable).")
    parser.add_argument("--mbackup-args", default="", help="Extra arguments for `mbackup copy`, e.g. '--checksum none'.")
    args = parser.parse_args()
    benchlib.clean_commit()  # refuse before measuring anything a table could not name
    directions = [d for d in DIRECTIONS if d in args.directions.split(",")]
    tree_names = [t for t in TREES if t in args.trees.split(",")]

    clock = benchlib.Stopwatch()
    machine = benchlib.machine()
    chosen = args.tools.split(",")
    catalogue = {"mbackup": lambda: Mbackup(args.mbackup_args.split()), "s5cmd": S5cmd, "rclone": Rclone,
                 "aws": AwsCli, "boto3": lambda: Library("boto3", args.peer_python),
                 "obstore": lambda: Library("obstore", args.peer_python)}
    tools = [catalogue[name]() for name in catalogue if name in chosen or name == "mbackup"]
    for t in tools:
        print(f"{t.name}: {t.missing or t.version()}", file=sys.stderr)

    outcomes: dict[tuple[str, str, str], Outcome] = {}
    with benchlib.scratch(args, "copy-bench", failed=lambda: any(o.failure for o in outcomes.values())) as workdir:
        text = run_all(args, tools, directions, tree_names, machine, clock, workdir, outcomes)
    path = benchlib.write_result("copy", text, "copy_bench.py")
    print(text)
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
