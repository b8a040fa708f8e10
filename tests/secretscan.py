"""The secrets scan of a test run: what mbackup printed and wrote must not hold a secret the
suite used. tests/conftest.py feeds it and runs it when the session finishes."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Files tests write as mbackup's input (configs, certificates), not its output: a config
# holds the secret on purpose.
INPUT_SUFFIXES = (".yaml", ".yml", ".pem", ".key", ".csr", ".ext", ".srl")

# What every mbackup run printed, as (command, stdout, stderr): subprocesses (tests/conftest.py)
# and in-process runs (tests/inprocess.py) both add theirs here.
RUNS: list[tuple[str, str, str]] = []
# The log files runs were told to write (log.file.path), wherever they are: added with RUNS.
LOG_FILES: set[Path] = set()


def note_log_files(argv: Iterable[object], cwd: str | os.PathLike[str] | None = None) -> None:
    """Remember the log file a run writes, from its --set log.file.path=... or the log.file
    path of its config file (the Go tool's log.file.filename in a v1 file), relative to ``cwd``."""
    args = [str(a) for a in argv]
    base = Path(cwd or os.getcwd())
    config = base / "backup.yaml"  # the default config file, read from the working folder
    named = []
    for flag, value in itertools.pairwise(args):
        if flag == "--set" and value.lower().startswith("log.file.path="):
            named.append(value.split("=", 1)[1])
        if flag == "--config":
            config = base / value
    named.append(_configured_log_file(config))
    LOG_FILES.update(base / n for n in named if n)


def _configured_log_file(config: Path) -> str:
    import yaml

    try:
        file = ((yaml.safe_load(config.read_text()) or {}).get("log") or {}).get("file") or {}
        return str(file.get("path") or file.get("filename") or "")
    except Exception:  # no config file, or a broken one a test feeds mbackup on purpose
        return ""


def log_files(named: Iterable[Path]) -> Iterator[Path]:
    """The named log files and their rotated copies (``backup.log.1`` ...) that exist."""
    for path in named:
        if path.parent.is_dir():
            yield from (p for p in path.parent.glob(path.name + "*") if p.is_file())


@dataclass
class Scan:
    runs: int = 0  # mbackup processes whose stdout and stderr were read
    run_bytes: int = 0
    written: int = 0  # bodies mbackup sent or stored that tests read back (webhooks, journals)
    written_bytes: int = 0
    files: int = 0  # files mbackup wrote under the run's temporary folders
    file_bytes: int = 0
    log_files: int = 0  # log files runs were told to write (log.file.path), wherever they are
    log_bytes: int = 0
    leaks: list[str] = field(default_factory=list)
    unscanned: list[str] = field(default_factory=list)  # mbackup runs whose output nobody read

    def summary(self) -> str:
        return (f"secrets scan: {self.runs} mbackup runs ({self.run_bytes:,} bytes of output), "
                f"{self.written} bodies ({self.written_bytes:,} bytes), {self.files} files ({self.file_bytes:,} bytes), "
                f"{self.log_files} log files ({self.log_bytes:,} bytes)")


def _server_dir(path: Path) -> bool:
    """A data folder of a server the tests started (SeaweedFS, Milvus): not mbackup's."""
    return path.name.startswith("seaweedfs") or (path / "configs" / "milvus.yaml").exists() or (path / "milvus.log").exists()


def files_written(root: Path) -> Iterator[Path]:
    """Every file under ``root`` but the servers' data and the inputs tests wrote."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _server_dir(Path(folder, d))]
        for name in files:
            path = Path(folder, name)
            # Only regular files: opening a FIFO a test left would block the scan for ever.
            if not name.endswith(INPUT_SUFFIXES) and path.is_file() and not path.is_symlink():
                yield path


def scan(secrets: Iterable[str], runs: Iterable[tuple[str, str, str]], written: Iterable[tuple[str, bytes]],
         roots: Iterable[Path] = (), unscanned: Iterable[str] = (), logs: Iterable[Path] = ()) -> Scan:
    """Look for each secret in every run's output, every written body, every file under
    ``roots`` and every log file named in ``logs`` (wherever it is)."""
    needles = [s.encode() for s in secrets]
    result = Scan(unscanned=list(unscanned))

    def look(what: str, data: bytes) -> None:
        result.leaks.extend(f"{what}: {n.decode()!r}" for n in needles if n in data)

    for command, out, err in runs:
        result.runs += 1
        data = (out + err).encode(errors="replace")
        result.run_bytes += len(data)
        look(f"output of {command[:200]}", data)
    for what, data in written:
        result.written += 1
        result.written_bytes += len(data)
        look(what, data)
    logs = sorted(set(log_files(logs)))
    for path in logs:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        result.log_files += 1
        result.log_bytes += len(data)
        look(f"log file {path}", data)
    for root in roots:
        for path in files_written(root):
            if path in logs:
                continue  # scanned above
            try:
                data = path.read_bytes()
            except OSError:
                continue  # removed while walking
            result.files += 1
            result.file_bytes += len(data)
            look(str(path), data)
    return result
