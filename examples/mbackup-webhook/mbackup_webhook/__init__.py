"""mbackup lifecycle plugin: POST a JSON summary of each backup and restore to a webhook."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from milvus_backup.hookspecs import hookimpl

TIMEOUT_S = 10


def post(event: str, **body: Any) -> None:
    url = os.environ.get("MBACKUP_WEBHOOK_URL")
    if not url:
        return
    # Here, not when the plugin loads: every mbackup run loads it, few post (urllib brings ssl).
    import urllib.request

    data = json.dumps({"event": event, **body}, default=str).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            response.read()
    except OSError as e:  # a notification must never fail the backup itself
        print(f"warning: webhook {url.split('?')[0]} failed: {e}", file=sys.stderr)


@hookimpl
def mbackup_before_create(context: dict[str, Any]) -> None:
    post("before_create", context=context)


@hookimpl
def mbackup_after_create(context: dict[str, Any], summary: dict[str, Any]) -> None:
    post("after_create", context=context, summary=summary)


@hookimpl
def mbackup_before_restore(context: dict[str, Any]) -> None:
    post("before_restore", context=context)


@hookimpl
def mbackup_after_restore(context: dict[str, Any], summary: dict[str, Any]) -> None:
    post("after_restore", context=context, summary=summary)


@hookimpl
def mbackup_on_failure(context: dict[str, Any], error: str) -> None:
    post("failure", context=context, error=error)
