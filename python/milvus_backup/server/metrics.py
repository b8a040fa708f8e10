"""Prometheus metrics of the server's jobs (``/metrics``), and of one CLI run written as a
node_exporter textfile (``--metrics-file``). What operators alert on: jobs by kind and state,
bytes and objects copied, time per phase, and the last successful backup per collection.

prometheus-client is the server extra's; the textfile writer needs nothing: a CronJob's
plain install writes it too.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import MBackupError

if TYPE_CHECKING:
    from .jobs import Job

STATES = ("initial", "executing", "success", "fail", "timeout")


class Metrics:
    """The server's metrics, in a registry of their own (no process collectors: what they
    show is the host's business)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Gauge("mbackup_jobs", "Jobs this server started or resumed, by kind and state",
                          ["kind", "state"], registry=self.registry)
        self.bytes = Counter("mbackup_copied_bytes", "Bytes copied by jobs", ["kind"], registry=self.registry)
        self.objects = Counter("mbackup_copied_objects", "Objects copied by jobs", ["kind"], registry=self.registry)
        self.phases = Histogram("mbackup_phase_seconds", "Time spent per phase of a job", ["kind", "phase"],
                                registry=self.registry, buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")))
        self.last_success = Gauge("mbackup_last_success_timestamp_seconds",
                                  "When the last successful backup of a collection ended",
                                  ["collection"], registry=self.registry)
        self.last_size = Gauge("mbackup_last_success_size_bytes", "Size of the last successful backup of a collection",
                               ["collection"], registry=self.registry)
        for kind in ("create", "restore", "restore_secondary"):
            for state in STATES:
                self.jobs.labels(kind, state)

    def job_started(self, kind: str) -> None:
        self.jobs.labels(kind, "executing").inc()

    def job_finished(self, job: Job) -> None:
        self.jobs.labels(job.kind, "executing").dec()
        self.jobs.labels(job.kind, job.state_name).inc()
        self.bytes.labels(job.kind).inc(job.bytes_done)
        self.objects.labels(job.kind).inc(job.objects_done)

    def backup_succeeded(self, collections: Iterable[tuple[str, int]], when: float | None = None) -> None:
        """``collections``: (db.collection, bytes backed up) of a backup just made."""
        for label, size in collections:
            self.last_success.labels(label).set(when or time.time())
            self.last_size.labels(label).set(size)

    def phase_seconds(self, kind: str, phase: str, seconds: float) -> None:
        self.phases.labels(kind, phase).observe(seconds)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def textfile(command: str, summary: dict[str, Any], ok: bool, now: float | None = None) -> str:
    """One CLI run (create or restore) in the Prometheus text format node_exporter's textfile
    collector reads: when it ended, whether it succeeded, what it moved, and for a create each
    collection's backup size."""
    now = time.time() if now is None else now
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.extend((f"# HELP {name} {help_}", f"# TYPE {name} {kind}"))
        for labels, value in samples:
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            number = str(int(value)) if float(value).is_integer() else repr(float(value))  # all digits: no %g
            lines.append(f"{name}{{{shown}}} {number}" if shown else f"{name} {number}")

    run = {"command": command}
    metric("mbackup_last_run_timestamp_seconds", "gauge", "When the last run ended", [(run, round(now, 3))])
    metric("mbackup_last_run_success", "gauge", "1 if the last run succeeded, else 0", [(run, 1 if ok else 0)])
    if "seconds" in summary:
        metric("mbackup_last_run_seconds", "gauge", "How long the last run took", [(run, summary["seconds"])])
    if ok and command == "create":
        metric("mbackup_last_success_timestamp_seconds", "gauge", "When the last successful backup ended",
               [({"backup": summary["name"]}, round(now, 3))])
        metric("mbackup_last_success_size_bytes", "gauge", "Size of the last successful backup",
               [({"backup": summary["name"]}, summary["size"])])
        metric("mbackup_copied_objects", "gauge", "Objects the last run copied",
               [(run, summary.get("objects_copied", 0))])
    return "\n".join(lines) + "\n"


def check_textfile(path: str) -> None:
    """Refuse, before a run starts, a --metrics-file it could not write at its end."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MBackupError(f"--metrics-file {path}: no folder {folder}: create it, or point the flag at the "
                           "node_exporter textfile folder (--collector.textfile.directory)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MBackupError(f"--metrics-file {path}: the folder {folder} is not writable")
    if not path.endswith(".prom"):
        raise MBackupError(f"--metrics-file {path}: node_exporter reads only files named *.prom: use e.g. "
                           f"{path}.prom")


def write_textfile(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, renamed), so
    node_exporter never reads half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mbackup-metrics-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
