"""``create --pushgateway URL`` and ``restore --pushgateway URL``: a CLI run's metrics (the
ones ``--metrics-file`` writes, metrics.textfile) pushed to a Prometheus Pushgateway, for a
CronJob on a host without node_exporter.

The push is prometheus-client's ``push_to_gateway`` (a PUT: it replaces the group's metrics),
under ``job="mbackup"`` and grouped by ``command`` (create, restore), so the last create and
the last restore are kept side by side. A push that fails is a warning: the backup or the
restore is what the run is for, and it is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ..config.secrets import display_url
from ..errors import MBackupError
from . import EXTRA

JOB = "mbackup"
TIMEOUT = 10.0  # seconds: a gateway that does not answer must not hold a CronJob


def check(url: str) -> None:
    """Refuse, before the run, a gateway URL push_to_gateway could not use."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MBackupError(f"--pushgateway needs prometheus-client: install it with {EXTRA}") from None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        parts.port  # noqa: B018  (raises ValueError for a port that is not one)
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.username or parts.password:
        raise MBackupError(f"--pushgateway {display_url(url)}: a user or password in the URL is not sent; give the "
                           "Pushgateway's address alone, such as http://pushgateway:9091")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise MBackupError(f"--pushgateway {display_url(url)}: expected the Pushgateway's address, such as "
                           "http://pushgateway:9091")


class _Parsed:
    """The metrics of a textfile, as a collector push_to_gateway can push."""

    def __init__(self, text: str) -> None:
        self.text = text

    def collect(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        yield from text_string_to_metric_families(self.text)


def push(url: str, command: str, text: str) -> str:
    """Push ``text`` (metrics.textfile's) to the gateway; "" when done, else the warning to show."""
    from prometheus_client import CollectorRegistry, push_to_gateway

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Parsed(text))
    try:
        push_to_gateway(url, job=JOB, registry=registry, grouping_key={"command": command}, timeout=TIMEOUT)
    except Exception as e:  # any failure to push: the run's own outcome stands
        reason = str(getattr(e, "reason", "") or e) or type(e).__name__
        return f"--pushgateway {display_url(url)}: the metrics were not pushed ({reason}); the {command} itself is unaffected"
    return ""
