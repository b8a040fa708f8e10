"""``--dry-run``: a command's plan, printed instead of carried out.

Each command that writes (copy, create, restore, delete) finds what it would do by reading
only, with every refusal of the real run, and the real run starts from that same plan: so
what the dry run says is what the real run then does.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import typer


class Plan(Protocol):
    def summary(self) -> dict[str, Any]:
        """The plan for ``--json``, with ``"dry_run": true``."""

    def lines(self) -> list[str]:
        """The plan as ``would ...`` lines."""


def show_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(plan.summary()))
        return
    for line in plan.lines():
        typer.echo(line)
