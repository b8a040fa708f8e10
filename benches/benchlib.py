"""What the benchmarks share: an S3 server to run against, a sample tree, timing a command
with the peak memory of its whole process tree, and a description of the machine.

Benchmarks are run on purpose (see benches/README.md), never from the test suite.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime as dt
import functools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mbackup_dev.devstack import s3_request, scratch_folder
from mbackup_dev.sampletree import write_objects, write_tree
from milvus_backup.plugins.manager import storage_backends
from milvus_backup.storage.location import Location
from milvus_backup.units import parse_size

MIB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- the S3 server

@dataclass
class S3Server:
    """An S3 endpoint with credentials; ``stop`` is set when we started the server ourselves."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    description: str = ""
    stop: Callable[[], None] | None = None
    pid: int | None = None  # the server's process, when it runs here (its session is its tree)

    def cpu_seconds(self) -> float | None:
        """User+system seconds the server's process tree has used so far; None when the
        server is not ours to watch (a user endpoint)."""
        return session_cpu(self.pid) if self.pid else None

    def options(self) -> dict[str, str]:
        """Options for opening a location (storage_backends().open)."""
        return {"access_key_id": self.access_key, "secret_access_key": self.secret_key, "region": self.region}

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3://{bucket}/{prefix}".rstrip("/") + f"?endpoint={self.endpoint}"

    def location(self, bucket: str) -> Location:
        return storage_backends().open(self.url(bucket), self.options())

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` and write and delete one object: SeaweedFS allocates a new
        bucket's volumes on its first write (0.2 s and more here), which is server setup and
        would otherwise be charged to whichever tool writes first."""
        location = self.location(bucket)
        location.ensure_bucket()
        location.write(".warm-up", b"x")
        location.delete(".warm-up")

    def remove_bucket(self, bucket: str) -> None:
        """Delete every object, then the bucket (a long run would otherwise pile up
        buckets, each backed by volumes of its own in SeaweedFS)."""
        store = self.location(bucket).store
        keys = [key for key, _, _ in store.list("")]
        for key, error in store.delete_many(keys, 64):
            print(f"  warning: could not delete s3://{bucket}/{key}: {error}", file=sys.stderr)
        try:
            resp = s3_request(self.endpoint, "DELETE", bucket, access_key=self.access_key,
                              secret_key=self.secret_key, region=self.region)
            problem = "" if resp.status in (200, 204) else f"HTTP {resp.status} {resp.error_code or ''}"
        except OSError as e:
            problem = str(e)
        if problem:
            print(f"  warning: bucket {bucket} emptied but not removed: {problem}", file=sys.stderr)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=os.environ.get("MBACKUP_BENCH_ENDPOINT"),
                        help="Run against this S3 endpoint (e.g. your MinIO) instead of starting a local "
                             "SeaweedFS. Env: MBACKUP_BENCH_ENDPOINT.")
    parser.add_argument("--access-key", default=os.environ.get("MBACKUP_BENCH_ACCESS_KEY") or os.environ.get("AWS_ACCESS_KEY_ID"),
                        help="With --endpoint. Env: MBACKUP_BENCH_ACCESS_KEY or AWS_ACCESS_KEY_ID.")
    parser.add_argument("--secret-key", default=os.environ.get("MBACKUP_BENCH_SECRET_KEY") or os.environ.get("AWS_SECRET_ACCESS_KEY"),
                        help="With --endpoint. Env: MBACKUP_BENCH_SECRET_KEY or AWS_SECRET_ACCESS_KEY.")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--size", default="1GiB", type=size_arg,
                        help="Total bytes of the sample Milvus tree (default 1GiB), e.g. 256MiB.")
    parser.add_argument("--workdir", help="Scratch folder for local trees and the server's data "
                                          "(default: a new folder under the system temp dir, removed at the end).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder and the source bucket.")


def size_arg(text: str) -> str:
    """Keeps the text as written (for the report); ``parse_size(args.size)`` gives bytes."""
    try:
        parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def start_server(args: argparse.Namespace, workdir: Path) -> S3Server:
    """The user's endpoint, or a SeaweedFS of our own from mbackup_dev.devstack."""
    if args.endpoint:
        if not (args.access_key and args.secret_key):
            sys.exit("error: --endpoint needs --access-key and --secret-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
        return S3Server(args.endpoint.rstrip("/"), args.access_key, args.secret_key, args.region,
                        description=f"user endpoint {args.endpoint}")
    from mbackup_dev.devstack import SeaweedFS

    known = set(child_pids())
    seaweed = SeaweedFS(workdir / "seaweedfs")
    if not shutil.which("weed"):
        sys.exit("error: SeaweedFS's `weed` is not on PATH; activate the venv that scripts/setup made "
                 "(it installs weed), or pass --endpoint to use your own S3 server")
    started = seaweed.start() or seaweed
    # devstack starts `weed` as our child in a session of its own: the new child is the server.
    new = [pid for pid in child_pids() if pid not in known and _comm(pid) == "weed"]
    return S3Server(started.endpoint.rstrip("/"), started.access_key, started.secret_key, args.region,
                    description=f"local SeaweedFS ({command_version(['weed', 'version'], 'version')}) "
                                "started by mbackup_dev.devstack, on this machine over loopback",
                    stop=started.stop, pid=new[0] if len(new) == 1 else None)


@contextlib.contextmanager
def scratch(args: argparse.Namespace, name: str, failed: Callable[[], bool] | None = None) -> Iterator[Path]:
    """The bench's scratch folder: --workdir as given (never removed), else
    mbackup_dev.devstack.scratch_folder's (removed at the end; only its logs kept when the run
    failed or ``failed()`` says a tool did)."""
    if args.workdir:
        path = Path(args.workdir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with scratch_folder(name, args.keep, failed) as path:
        yield path


def run_id() -> str:
    """Short and lowercase: bucket names are built from it."""
    return os.urandom(3).hex()


# ---------------------------------------------------------------- the sample tree

@dataclass
class Tree:
    objects: dict[str, int]  # key relative to the tree's root -> size

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def bytes(self) -> int:
        return sum(self.objects.values())


def write_sample_tree(location: Location, total_bytes: int) -> Tree:
    write_tree(location, total_bytes)
    return Tree({o.key: o.size for o in location.list()})


def write_planned_tree(location: Location, objects: list[tuple[str, int]]) -> Tree:
    """The (key, size) objects of one of mbackup_dev.sampletree's plans, written under ``location``."""
    write_objects(location, objects)
    return Tree({o.key: o.size for o in location.list()})


def list_local(root: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            found[path.relative_to(root).as_posix()] = path.stat().st_size
    return found


def compare(expected: Tree, found: dict[str, int]) -> str | None:
    """None when ``found`` holds exactly the expected keys and sizes, else what differs."""
    if found == expected.objects:
        return None
    missing = expected.objects.keys() - found.keys()
    extra = found.keys() - expected.objects.keys()
    wrong = [k for k in expected.objects.keys() & found.keys() if found[k] != expected.objects[k]]
    problems = [f"{len(found)} objects / {sum(found.values()):,} bytes at the destination, "
                f"expected {expected.count} / {expected.bytes:,}"]
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {min(missing)})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {min(extra)})")
    if wrong:
        problems.append(f"{len(wrong)} with the wrong size (e.g. {min(wrong)})")
    return "; ".join(problems)


# ---------------------------------------------------------------- measuring a command

@dataclass
class Measured:
    wall: float  # seconds
    peak_rss: int  # bytes, whole process tree
    cpu: float  # user + system seconds of the process tree
    returncode: int
    log: Path
    server_cpu: float | None = None  # user + system seconds the S3 server used meanwhile, when watched

    def error_line(self) -> str:
        try:
            lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        last = " / ".join(line[:200] for line in lines[-3:]) if lines else "no output"
        return f"exit {self.returncode}: {last} (log: {self.log})"


def _stat_fields(pid: int | str) -> list[bytes]:
    """/proc/<pid>/stat from field 3 (state) on: the command name before it may hold spaces."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2:].split()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def child_pids(parent: int | None = None) -> list[int]:
    """The live children of ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if int(_stat_fields(name)[1]) == parent:  # field 4: parent pid
                    found.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def session_cpu(sid: int) -> float:
    """User+system seconds of every process in session ``sid``, threads included, plus what
    their reaped children used (cutime, cstime): a child that ends between two readings
    moves into its parent's count and is not lost."""
    ticks = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = _stat_fields(name)
                if int(fields[3]) == sid:  # field 6: session
                    ticks += sum(int(x) for x in fields[11:15])  # fields 14-17: utime stime cutime cstime
            except (OSError, ValueError, IndexError):
                continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _group_hwm(pgid: int, seen: dict[int, int]) -> None:
    """Record in ``seen`` the peak resident bytes (VmHWM) of every process in group ``pgid``."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if int(_stat_fields(name)[2]) != pgid:  # field 5: process group
                continue
            with open(f"/proc/{name}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        # The latest value, not the largest: between fork and exec a child
                        # still shows its parent's peak, which exec resets.
                        seen[int(name)] = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            continue


def measure(argv: list[str], env: dict[str, str], log: Path, poll: float = 0.05,
            server_cpu: Callable[[], float | None] | None = None) -> Measured:
    """Run ``argv`` in its own process group. Wall time from spawn to exit; peak RSS as the
    kernel's high-water mark (VmHWM) of each process in the group, read every ``poll``
    seconds and summed (exact for a single process, an upper bound for several); CPU time
    from the kernel's accounting of the whole tree. ``server_cpu`` (S3Server.cpu_seconds)
    is read just before the spawn and just after the exit: the server's CPU in between."""
    log.parent.mkdir(parents=True, exist_ok=True)
    seen: dict[int, int] = {}
    done = threading.Event()
    server_before = server_cpu() if server_cpu else None
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

        def sample() -> None:
            while not done.wait(poll):
                _group_hwm(proc.pid, seen)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            os.killpg(proc.pid, 9)
            raise
        wall = time.perf_counter() - start
        server_after = server_cpu() if server_cpu else None
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Not ru_maxrss: Linux carries the parent's peak into a forked child across exec.
    server_used = server_after - server_before if server_before is not None and server_after is not None else None
    return Measured(wall, sum(seen.values()), usage.ru_utime + usage.ru_stime, proc.returncode, log, server_used)


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------- describing the machine

def command_version(argv: list[str], contains: str = "") -> str:
    """First line of ``argv``'s output that contains ``contains``; "" when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in (out.stdout + out.stderr).splitlines():
        if line.strip() and contains.lower() in line.lower():
            return line.strip()
    return ""


def machine() -> dict[str, str]:
    cpu_model, cores = "unknown", 0
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                cores += 1
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    simd = ", ".join(f for f in ("sse4_2", "pclmulqdq", "avx2", "avx512f", "vpclmulqdq") if f in flags)
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": f"{cpu_model} ({cores} logical CPUs in /proc/cpuinfo; {simd})",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


REPO = Path(__file__).resolve().parent.parent


def clean_commit() -> str:
    """The commit being measured; exits when the tree has changes a table could not name.

    A table must say which code it measured: ``git rev-parse HEAD`` of a tree with no
    uncommitted change to tracked files (results/ excepted: that is where tables go)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        raise SystemExit(f"error: cannot tell the commit being measured ({head.stderr.strip()}); run from a git checkout")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benches/results")
    if changed.returncode != 0 or changed.stdout.strip():
        raise SystemExit("error: the tree has uncommitted changes, so no table could name the code it measured; "
                         "commit or stash them and run again:\n" + changed.stdout + changed.stderr)
    return head.stdout.strip()


def mbackup_version() -> str:
    from milvus_backup import __version__

    return f"{__version__} (git {clean_commit()})"


@functools.cache
def _byte_compiled() -> None:
    """Compile mbackup's modules (and the example plugins') as pip does when it installs a
    wheel. A checkout installed editable, run where PYTHONDONTWRITEBYTECODE=1 (this
    machine's environment sets it), compiles every one of them again in every run: ~0.1 CPU s
    of a one-object copy (0.40 against 0.30 s, medians of 6), which no installed mbackup pays."""
    for folder in (REPO / "python", REPO / "examples"):
        compileall.compile_dir(folder, quiet=1)


def mbackup_command() -> list[str]:
    """The ``mbackup`` entry point of the interpreter running the benchmark (its modules
    byte-compiled, as an installed mbackup's are)."""
    _byte_compiled()
    script = Path(sys.executable).with_name("mbackup")
    if script.exists():
        return [str(script)]
    found = shutil.which("mbackup")
    if found:
        return [found]
    return [sys.executable, "-c", "from milvus_backup.cli import main; main()"]


def base_env(server: S3Server) -> dict[str, str]:
    """The environment every tool runs in: the server's credentials and nothing of the
    user's AWS profile, so each tool sees the same configuration."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_")) or k in ("AWS_CA_BUNDLE",)}
    env.update(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
               AWS_REGION=server.region, AWS_DEFAULT_REGION=server.region)
    # mbackup as a user installs it: the dev venv also holds the repository's example plugins
    # (examples/), whose loading is ~0.045 CPU s of each run and no part of mbackup.
    env[PLUGINS_VAR] = ""
    return env


PLUGINS_VAR = "MBACKUP_PLUGINS"


def write_result(name: str, text: str, script: str) -> Path:
    """Write a table to results/<name>-<date>.md, stamped with the commit it measured (the
    tree is checked again: a change made while the benchmark ran voids the table). A table
    already there (an earlier run that day, maybe committed) is never overwritten: the next
    run's is <name>-<date>-2.md, and so on."""
    commit = clean_commit()
    title, _, rest = text.partition("\n")
    stamp = f"Produced by benches/{script} at commit {commit} (clean tree); do not edit by hand, re-run it."
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{dt.date.today().isoformat()}"
    n = 1
    while True:
        path = RESULTS / (f"{stem}.md" if n == 1 else f"{stem}-{n}.md")
        try:
            with path.open("x") as f:
                f.write(f"{title}\n\n{stamp}\n{rest}")
            return path
        except FileExistsError:
            n += 1


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Stopwatch:
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
