"""The Go tool's older flags and its version line, so that scripts written for it run unchanged.

The Go tool 0.5 still honours the flags it deprecated and logs a warning for each; mbackup
does the same, on stderr (``warning: ...``), and the command runs.
"""

from __future__ import annotations

import json
import platform

import typer

from .errors import MBackupError


def deprecated(flag: str, advice: str) -> None:
    typer.echo(f"warning: {flag} is deprecated, {advice}", err=True)


def legacy_filters(colls: list[str] | None, databases: list[str] | None, database_collections: str | None,
                   colls_flag: str = "-c/--colls") -> list[str]:
    """``-c/--colls``, ``-d/--databases`` and ``-a/--database_collections`` (JSON
    ``{"db1": ["c1"], "db2": []}``, an empty list meaning every collection of the database)
    as --filter items; a warning for each one given."""
    for given, flag in ((colls, colls_flag), (databases, "-d/--databases"),
                        (database_collections, "-a/--database_collections")):
        if given:
            deprecated(flag, "use --filter instead")
    names = [c for raw in colls or [] for c in raw.split(",") if c]
    dbs = [d for raw in databases or [] for d in raw.split(",") if d]
    # A name may say its database (db.coll, as the Go tool parses -c); a plain one is in each -d
    # database, else in default.
    out = [c if "." in c else f"{db}.{c}" for db in (dbs or ["default"]) for c in names] if names \
        else [f"{db}.*" for db in dbs]
    out = list(dict.fromkeys(out))
    if database_collections:
        try:
            doc = json.loads(database_collections)
            if not isinstance(doc, dict) or not all(isinstance(v, list) and all(isinstance(c, str) for c in v)
                                                    for v in doc.values()):
                raise ValueError("not an object of lists of names")
        except ValueError as e:
            raise MBackupError(f"-a/--database_collections: {e}: use JSON such as "
                               '\'{"db1":["c1","c2"],"db2":[]}\' (or --filter db1.c1,db1.c2,db2.*)') from None
        out += [f"{db}.{c}" for db, colls_ in doc.items() for c in colls_] + [f"{db}.*" for db, c in doc.items() if not c]
    return out


def version_line() -> str:
    """The Go tool's version banner shape: ``<version> (Built on <date> from Git SHA <sha> by <go>)``,
    with what mbackup knows in place of the build facts it does not record."""
    from . import __version__

    return f"mbackup {__version__} (Python {platform.python_version()} on {platform.system()} {platform.machine()})"


def create_strategy(force: bool, meta_only: bool, index_extra: bool, strategy: str) -> str:
    """Warn for each deprecated create flag given; returns the strategy -f/--force or
    --meta_only stand for (the Go tool 0.5's mapping), or ``strategy`` itself."""
    if index_extra:
        typer.echo("warning: --backup_index_extra: mbackup reads no etcd, so the extra index meta the Go tool reads "
                   "there is not backed up; indexes are backed up as without the flag", err=True)
    for on, flag, implied in ((force, "-f/--force", "skip_flush"), (meta_only, "--meta_only", "meta_only")):
        if on:
            deprecated(flag, f"use --strategy={implied} instead")
            if strategy not in ("", implied):
                raise MBackupError(f"{flag} stands for --strategy {implied}, but --strategy {strategy} is given "
                                   "too: keep one")
            strategy = implied
    return strategy
