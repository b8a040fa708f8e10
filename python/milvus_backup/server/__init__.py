"""``mbackup server``: the Go tool's REST API (v1) over the same flows the command line runs.

Built on Starlette and uvicorn, with prometheus-client for ``/metrics``; all three come with
the ``server`` extra (``pip install "mbackup[server]"``), so a plain install stays lean.
Nothing here is imported by the other commands.

- ``app.py``: the ASGI application: routes, the bearer token, body limits, error shapes;
- ``v1.py``: the Go tool's ``/api/v1`` handlers, request parsing and response envelopes;
- ``v2.py``: the ``/api/v2`` resource API (backups, jobs, cancel) and its OpenAPI document;
- ``jobs.py``: create and restore jobs, persisted under the backup root and resumed after a
  restart, one runner per job across servers (a store lock);
- ``metrics.py``: the Prometheus metrics and the node_exporter textfile writer;
- ``schedules.py``: ``server.schedules``, backups fired on a cron timetable as jobs.
"""

from __future__ import annotations

from ..errors import MBackupError

EXTRA = 'pip install "mbackup[server]"'


def require() -> None:
    """Refuse, in one line, a server without its extra installed."""
    missing = []
    for module in ("starlette", "uvicorn", "prometheus_client", "croniter"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module.replace("_", "-"))
    if missing:
        raise MBackupError(f"mbackup server needs {', '.join(missing)}: install them with {EXTRA}")
