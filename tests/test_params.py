"""Each setting is declared once (config/params.py); every place that shows or uses a default,
a flag or an environment variable agrees with that declaration. Each test below fails when one
of those places says something else: the help of the copy flags, ``config show``, the README's
table, the model's defaults, CopySettings and the engine's own defaults, the environment.
No S3 server is needed."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from milvus_backup import _engine
from milvus_backup.config.params import BY_FLAG, SETTINGS, Setting, flag_default, format_value
from milvus_backup.config.secrets import mask
from milvus_backup.config.settings import GO_ENV, Config, Origin, load_config
from milvus_backup.transfer.copy import CopySettings
from milvus_backup.wiring import copy_settings

# Environment variables the Go tool reads (docs/user_guide/env_variables.md and
# internal/cfg/cfg.go of zilliztech/milvus-backup): v2 has them for credentials only.
GO_V2_ENV = {
    "MILVUS_USER", "MILVUS_PASSWORD", "ZILLIZ_CLOUD_API_KEY",
    *(f"{side}_STORAGE_{name}" for side in ("MILVUS", "BACKUP") for name in (
        "ACCOUNT_NAME", "AUTH_ACCESS_KEY_ID", "AUTH_SECRET_ACCESS_KEY", "AUTH_SESSION_TOKEN", "AUTH_ACCOUNT_KEY",
        "AUTH_CREDENTIALS_FILE")),
}
GO_V1_ENV = {
    "MILVUS_ADDRESS", "MILVUS_PORT", "MILVUS_USER", "MILVUS_PASSWORD", "MILVUS_TLS_MODE", "MILVUS_CA_CERT_PATH",
    "MILVUS_SERVER_NAME", "MILVUS_MTLS_CERT_PATH", "MILVUS_MTLS_KEY_PATH", "MILVUS_RPC_CHANNEL_NAME",
    "MINIO_ADDRESS", "MINIO_PORT", "MINIO_REGION", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_TOKEN", "GCP_KEY_JSON",
    "MINIO_USE_SSL", "MINIO_BUCKET_NAME", "MINIO_ROOT_PATH", "MINIO_USE_IAM", "MINIO_IAM_ENDPOINT",
    "MINIO_BACKUP_ADDRESS", "MINIO_BACKUP_PORT", "MINIO_BACKUP_REGION", "MINIO_BACKUP_ACCESS_KEY",
    "MINIO_BACKUP_SECRET_KEY", "MINIO_BACKUP_TOKEN", "BACKUP_GCP_KEY_JSON", "MINIO_BACKUP_USE_SSL",
    "MINIO_BACKUP_BUCKET_NAME", "MINIO_BACKUP_ROOT_PATH", "MINIO_BACKUP_USE_IAM", "MINIO_BACKUP_IAM_ENDPOINT",
    "BACKUP_PARALLELISM_COPYDATA", "BACKUP_PARALLELISM_BACKUP_COLLECTION", "BACKUP_PARALLELISM_RESTORE_COLLECTION",
    "BACKUP_KEEP_TEMP_FILES", "BACKUP_GC_PAUSE_ENABLE", "BACKUP_GC_PAUSE_ADDRESS",
}
EVERY_ENV = GO_V2_ENV | GO_V1_ENV
KEYED = [s for s in SETTINGS if s.key]


# The Go tool's (v1) names in a v2 file or with no file (issue #11): every one but the GCP key
# file, whose v1 meaning (it also picks the auth type) is more than a value.
GO_NAME_CASES = [pytest.param(schema, how, s, e, id=f"{schema}-{how}-{e}") for schema in ("v2", "no-file")
                 for how in ("env", "set") for s in KEYED if s.key in GO_ENV for e in GO_ENV[s.key]]
GO_NEEDS = {"MINIO_IAM_ENDPOINT": {"MINIO_USE_IAM": "true"}, "MINIO_BACKUP_IAM_ENDPOINT": {"MINIO_BACKUP_USE_IAM": "true"}}


def test_the_go_tools_variables_are_read_without_a_v1_file():
    assert set().union(*GO_ENV.values()) == GO_V1_ENV - GO_V2_ENV - {"GCP_KEY_JSON", "BACKUP_GCP_KEY_JSON"}


@pytest.mark.parametrize(("schema", "how", "setting", "var"), GO_NAME_CASES)
def test_each_go_tool_variable_sets_its_key_in_v2_and_with_no_file(tmp_path, schema, how, setting, var):
    """MILVUS_ADDRESS=... in the environment (the Go tool's Kubernetes pattern), or --set
    MILVUS_ADDRESS=..., reaches milvus.grpc.address whatever the config file, and says so."""
    text, expected = V1_TRANSLATED.get(var) or _text_and_value(setting, setting.v1.kind)
    if schema == "v2":
        (tmp_path / "backup.yaml").write_text("configVersion: v2\n")
    env = {var: text} if how == "env" else {}
    cfg = load_config(None, env={**env, **GO_NEEDS.get(var, {})}, cwd=tmp_path,
                      overrides=[f"{var}={text}"] if how == "set" else [])
    assert cfg.get(setting.key) == expected
    assert cfg.origin(setting.key) == Origin("env" if how == "env" else "override", var)


def mbackup(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The CLI with none of the variables a setting reads, in a folder without backup.yaml."""
    run_env = {k: v for k, v in os.environ.items() if k not in EVERY_ENV and k not in ("MILVUSCONF", "MBACKUP_PLUGINS")}
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], cwd=cwd, env={**run_env, **env},
                          capture_output=True, text=True, timeout=120)


def shown_default(s: Setting) -> str:
    return mask(s.default) if s.secret else format_value(s.default, s.kind)


# --------------------------------------------------------------------------------------
# What a user reads


def test_copy_help_states_each_declared_default(tmp_path):
    """``mbackup copy --help`` gives each flag's default as declared (it once said 512MiB for
    --multipart-copy-threshold while every run used the config's 500 MiB)."""
    proc = mbackup(["copy", "--help"], tmp_path, COLUMNS="1000", NO_COLOR="1", TERM="dumb")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("│ --")}
    assert set(BY_FLAG) <= set(lines)
    for flag, s in BY_FLAG.items():
        assert f"; default {flag_default(flag)}" in lines[flag], lines[flag]
        if s.key:
            assert f"(config {s.key}" in lines[flag], lines[flag]
    assert "default 500MiB" in lines["--multipart-copy-threshold"] and "default 128" in lines["--parallel"]


def test_config_show_lists_every_setting_at_its_declared_default(tmp_path):
    proc = mbackup(["config", "show", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: (r["value"], r["source"]) for r in json.loads(proc.stdout)["settings"]}
    assert rows == {s.key: (shown_default(s), "default") for s in KEYED}
    text = mbackup(["config", "show"], tmp_path).stdout.splitlines()
    assert text[0] == "config file: (none: defaults) (schema v2)"
    assert [line.split()[0] for line in text[1:]] == [s.key for s in KEYED]
    threshold = next(line for line in text if line.startswith("transfer.multipartCopyThresholdMiB "))
    assert threshold.split() == ["transfer.multipartCopyThresholdMiB", "500", "default"]


def test_readme_settings_table_is_current():
    """The README's table is what scripts/readme renders from the declaration: edit params.py
    and run scripts/readme."""
    from mbackup_dev import readme

    text = readme.README.read_text()
    assert readme.BEGIN in text and readme.END in text, "the README has lost its settings table markers"
    assert readme.with_table(text) == text, "README.md: the settings table is stale; run scripts/readme"
    assert "(default 64)" not in text  # the copy options table no longer repeats defaults


# --------------------------------------------------------------------------------------
# What runs


def test_the_model_defaults_are_the_declared_ones():
    cfg = Config()
    for s in KEYED:
        assert cfg.get(s.key) == s.default, s.key


def test_copy_settings_and_the_engine_default_to_the_declaration():
    """A copy with no config file runs with what CopySettings, the engine and the declaration
    say (copy once ran 128 objects in flight while CopySettings and the engine said 64)."""
    declared = {s.engine: s.to_engine(s.default) for s in SETTINGS if s.engine}
    defaults = CopySettings()
    assert {arg: getattr(defaults, arg) for arg in declared} == declared
    no_file = load_config(None, env={}, cwd=Path(__file__).parent / "compat")
    assert copy_settings(no_file) == defaults
    # The engine fills in what a caller leaves out (the check command, tests, sample trees).
    engine = _engine.Copier.defaults()
    numeric = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(CopySettings)
               if f.name not in ("checksum", "verify")}
    assert engine == numeric
    signature = inspect.signature(_engine.Copier).parameters
    assert (signature["checksum"].default, signature["verify"].default) == (defaults.checksum, defaults.verify)


def test_a_restore_request_defaults_to_the_config_defaults():
    """A restore through the Python API (the benchmarks) runs like ``mbackup restore`` with no
    config file (it once ran 16 import jobs at once where the command ran 64)."""
    from milvus_backup.backup.restore import RestoreRequest

    request = RestoreRequest(name="n")
    no_file = load_config(None, env={}, cwd=Path(__file__).parent / "compat")
    assert request.import_jobs == no_file.restore.concurrency.import_jobs
    assert request.keep_temp_files == no_file.restore.keep_temp_files


# --------------------------------------------------------------------------------------
# Environment variables


# mbackup's own keys read from the environment too (MBACKUP_ prefixed: no Go tool name clashes).
OWN_ENV = {"MBACKUP_SERVER_TOKEN"}


def test_env_vars_are_the_ones_the_go_tool_reads():
    assert {e for s in SETTINGS for e in s.env} == GO_V2_ENV | OWN_ENV
    assert {e for s in SETTINGS if s.v1 for e in s.v1.env} == GO_V1_ENV


def _text_and_value(s: Setting, kind: str) -> tuple[str, object]:
    """A valid value for the setting as an environment variable writes it, and as read."""
    if kind == "bool":
        return ("false", False) if s.default else ("true", True)
    if kind == "int":
        return ("1234", 1234) if s.range and s.range.unit == "port" else ("7", 7)
    if s.key.endswith("endpoint") and "auth" not in s.key:
        return "http://from-env:9091", "http://from-env:9091"
    return "from-env", "from-env"


# What a v1 variable becomes where v1 writes it otherwise (settings._V1Translation).
V1_TRANSLATED = {"MILVUS_TLS_MODE": ("1", "server"), "MINIO_USE_IAM": ("true", "iam"),
                 "MINIO_BACKUP_USE_IAM": ("true", "iam")}
# Variables read (or allowed) only with other settings: what the file says for them.
STORAGE_NEEDS = {"ACCOUNT_NAME": {"provider": "azure", "auth": {"type": "default"}},
                 "AUTH_ACCOUNT_KEY": {"provider": "azure", "accountName": "acct", "auth": {"type": "sharedKey"}},
                 "AUTH_CREDENTIALS_FILE": {"provider": "gcpnative", "auth": {"type": "serviceAccount"}}}
NEEDS = {
    "GCP_KEY_JSON": "minio:\n  storageType: gcpnative\n", "BACKUP_GCP_KEY_JSON": "minio:\n  storageType: gcpnative\n",
    "MINIO_IAM_ENDPOINT": "minio:\n  useIAM: true\n", "MINIO_BACKUP_IAM_ENDPOINT": "minio:\n  useIAM: true\n",
    **{f"{side.upper()}_STORAGE_{var}": yaml.safe_dump({side: {"storage": storage}})
       for side in ("milvus", "backup") for var, storage in STORAGE_NEEDS.items()},
}

CASES = ([pytest.param("v2", s, e, id=e) for s in KEYED for e in s.env]
         + [pytest.param("v1", s, e, id=f"v1-{e}") for s in KEYED if s.v1 for e in s.v1.env])


@pytest.mark.parametrize(("schema", "setting", "var"), CASES)
def test_each_env_var_sets_its_declared_key(tmp_path, schema, setting, var):
    """Every variable the declaration names reaches its key, and config show says so."""
    text, expected = V1_TRANSLATED.get(var) or _text_and_value(setting, setting.v1.kind if schema == "v1" else setting.kind)
    (tmp_path / "backup.yaml").write_text(f"configVersion: {schema}\n" + NEEDS.get(var, ""))
    cfg = load_config(None, env={var: text}, cwd=tmp_path)
    assert cfg.get(setting.key) == expected
    assert cfg.origin(setting.key) == Origin("env", var)


def test_config_show_says_where_each_value_came_from_with_or_without_a_file(tmp_path):
    """The Go tool's Kubernetes pattern: MILVUS_ADDRESS and friends in the environment, no config
    file; then the same with a v2 file. config show names the file, the variable or the --set,
    and never shows the secret."""
    secret = "s3cr3t-from-env-" + "x" * 8
    env = {"MILVUS_ADDRESS": "milvus.ns.svc", "MILVUS_PORT": "19531", "MINIO_SECRET_KEY": secret}
    args = ["--set", "MINIO_BUCKET_NAME=from-set", "config", "show"]
    for with_file in (False, True):
        if with_file:
            (tmp_path / "backup.yaml").write_text("configVersion: v2\nmilvus:\n  grpc:\n    address: from-file\n"
                                                  "  storage:\n    rootPath: data\n")
        run = mbackup([*args, "--json"], tmp_path, **env)
        assert run.returncode == 0, run.stderr
        rows = {r["key"]: (r["value"], r["where"]) for r in json.loads(run.stdout)["settings"]}
        assert rows["milvus.grpc.address"] == ("milvus.ns.svc", "env MILVUS_ADDRESS")  # env wins over the file
        assert rows["milvus.grpc.port"] == ("19531", "env MILVUS_PORT")
        assert rows["milvus.storage.auth.secretAccessKey"] == ("****", "env MINIO_SECRET_KEY")
        assert rows["milvus.storage.bucketName"] == ("from-set", "--set MINIO_BUCKET_NAME")
        assert rows["backup.storage.bucketName"] == ("from-set", "inherited from milvus.storage.bucketName, "
                                                     "--set MINIO_BUCKET_NAME")
        assert rows["milvus.storage.rootPath"] == (("data", "file backup.yaml") if with_file else ("files", "default"))
        text = mbackup(args, tmp_path, **env)
        assert re.search(r"^milvus\.grpc\.port +19531 +env MILVUS_PORT$", text.stdout, re.M), text.stdout
        assert secret not in run.stdout + run.stderr + text.stdout + text.stderr
