"""``mbackup config migrate``: a v1 ``backup.yaml`` as a complete v2 file, as the Go tool's
``config migrate`` writes one (every v2 key, with the value the v1 file resolves to).

A secret that came from a v1 environment variable stays out of the file (the report names
the v2 variable to set), as the Go tool does; a secret from the file itself is written only
into an output file, never to stdout.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import yaml

from ..errors import ConfigError, MBackupError
from .settings import ALL_PARAMS, Config, load_config


def migrate(cfg: Config, *, to_stdout: bool) -> tuple[str, list[str]]:
    """(the v2 YAML, the report's lines) for the v1 config ``cfg``."""
    if cfg.version != "v1":
        raise MBackupError(f"{cfg.path or 'the configuration'} is already a v2 config: nothing to migrate")
    tree: dict[str, Any] = {"configVersion": "v2"}
    report: list[str] = []
    for param in ALL_PARAMS:
        origin, value = cfg.origin(param.key), cfg.get(param.key)
        if value is None or (param.key.startswith("mbackup.") and origin.source == "default"):
            continue  # unset, or mbackup's own key at its default: the file stays the Go tool's
        instead = f"set ${param.env[0]}" if param.env else f"write {param.key} into the file"
        if param.secret and value and origin.source == "env":
            report.append(f"{param.key}: from ${origin.source_key}, left out of the file: {instead}")
            continue
        if param.secret and value and to_stdout:
            report.append(f"{param.key}: a secret, not printed: write the file with -o FILE, or {instead}")
            continue
        node = tree
        *parents, leaf = param.key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if cfg.mbackup.profiles and not to_stdout:
        tree.setdefault("mbackup", {})["profiles"] = cfg.mbackup.profiles
    elif cfg.mbackup.profiles:
        report.append("mbackup.profiles: may hold secrets, not printed: write the file with -o FILE")
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=False), report


def problems(text: str) -> list[str]:
    """What is wrong with ``text`` read as a config file, as mbackup reads one ([] when valid)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "backup.yaml")
        with open(path, "w") as f:
            f.write(text)
        try:
            load_config(path, env={})
        except ConfigError as e:
            return list(e.problems)
    return []


def write(text: str, path: str, *, overwrite: bool) -> None:
    """Write the file readable by its owner only: it may hold the v1 file's secrets."""
    if os.path.exists(path) and not overwrite:
        raise MBackupError(f"output file {path} already exists, use --force to overwrite")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
