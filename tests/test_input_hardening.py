"""Every number and every secret in the input, as properties (issue #8 items 9, 10).

Numbers: any text given to a numeric flag or config key is either accepted, and then the engine
takes it, or refused with one line and exit 2; never a traceback or a panic. Secrets: a secret
written under any secret key, in YAML broken in many ways, never shows up in what mbackup
prints. The single cases live in the table of tests/test_bad_input.py; these generate more.
No S3 server is needed: copies run between local folders.
"""

from __future__ import annotations

import os
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from milvus_backup.config import settings as config_module
from milvus_backup.config.params import NUMBER_FLAGS as BY_FLAG
from milvus_backup.config.params import NUMBER_KEYS as BY_KEY
from milvus_backup.config.secrets import is_secret_name
from milvus_backup.config.settings import ConfigError, load_config
from milvus_backup.transfer.copy import CopySettings
from milvus_backup.wiring import copy_settings
from test_bad_input import LEAK, laughs

FLAG_ATTRS = {"--parallel": "parallel", "--max-bandwidth": "max_bandwidth", "--max-requests": "max_requests_per_sec",
              "--part-size": "part_size", "--multipart-threshold": "multipart_threshold",
              "--multipart-copy-threshold": "multipart_copy_threshold", "--copy-part-size": "copy_part_size"}

NUMBER_TEXT = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e-300", "18446744073709551617", "nan", "-inf", "0", "-0", "5MiB", "5GiB", "6GiB", "1B/s",
                     "1KiB/s", "unlimited", "99999999999999999999999TiB", "0x10", " 8 ", "", "1_000", "9" * 400]),
    st.text(alphabet="0123456789.eE+-kKMGTiBb/s ", max_size=12),
)


def mbackup(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    run_env = dict(os.environ, **(env or {}))
    run_env.pop("MBACKUP_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], cwd=cwd, env=run_env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_or_ok(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    if proc.returncode == 2:
        assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr
    return errors


# --------------------------------------------------------------------------------------
# Numbers


def _settings_from_flag(flag: str, value) -> CopySettings:
    s = CopySettings()
    setattr(s, FLAG_ATTRS[flag], value)
    return s


@settings(max_examples=300, deadline=None)
@given(target=st.sampled_from(sorted(BY_FLAG) + sorted(BY_KEY)), text=NUMBER_TEXT)
def test_accepted_numbers_are_taken_by_the_engine(target, text):
    """In process, so hundreds of values: whatever a flag or key accepts, the engine's Copier
    accepts too (a value it would refuse, or overflow on, is refused at the flag or key)."""
    if target.startswith("--"):
        try:
            value = BY_FLAG[target].parse(text)
        except ValueError as e:
            assert str(e).startswith("invalid ") or str(e).startswith("expected "), e
            return
        _settings_from_flag(target, value).copier()
    else:
        try:
            with tempfile.TemporaryDirectory() as empty:  # no backup.yaml to find
                cfg = load_config(None, overrides=[f"{target}={text}"], env={}, cwd=empty)
        except ConfigError as e:
            assert all("\n" not in p and p.split(":")[0] in BY_KEY for p in e.problems), e.problems
            return
        assert BY_KEY[target].contains(cfg.get(target) or 0)
        copy_settings(cfg).copier()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(sorted(BY_FLAG) + sorted(BY_KEY)), text=NUMBER_TEXT)
@example(target="--max-requests", text="1e-300")
@example(target="--parallel", text="18446744073709551617")
@example(target="--part-size", text="0")
@example(target="mbackup.memoryBudgetMiB", text="18446744073709551617")
@example(target="mbackup.parallel", text="99999999999999999999999")
def test_numbers_from_the_command_line(target, text):
    """Through the CLI: accepted, or one line and exit 2; never a traceback or a panic. The
    destination already holds the source, so an accepted run builds the engine and copies
    nothing (a tiny rate cannot make it slow), and a refused one leaves it as it was."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for side in ("src", "dst"):
            (work / side).mkdir()
            (work / side / "a.bin").write_bytes(b"x" * 1000)
        if target.startswith("--"):
            args = ["copy", "src", "dst", f"{target}={text}"]
        else:
            args = ["--set", f"{target}={text}", "copy", "src", "dst"]
        proc = mbackup(args, work)
        assert_one_line_or_ok(proc)
        if proc.returncode == 0:
            assert "copied 0 objects" in proc.stdout and "skipped 1" in proc.stdout, proc.stdout
        assert sorted(p.name for p in (work / "dst").iterdir()) == ["a.bin"]
        assert (work / "dst" / "a.bin").read_bytes() == b"x" * 1000


# --------------------------------------------------------------------------------------
# Secrets

V2_SECRET_KEYS = [p.key for p in config_module.ALL_PARAMS if p.secret]
V1_SECRET_KEYS = [p.key for p in config_module.V1_PARAMS if is_secret_name(p.key)]
PROFILE_SECRET_KEYS = ["secret_access_key", "session_token", "account_key", "sas_token", "service_account_key"]
PLACES = ([("v2", k) for k in V2_SECRET_KEYS] + [("v1", k) for k in V1_SECRET_KEYS]
          + [("profile", k) for k in PROFILE_SECRET_KEYS])

# How a value can break YAML, or be read as something other than one string. "{s}" is the secret.
BREAKAGES = [
    "{s}", "*{s}", "[{s}]", "[{s}, x]", "{{{s}}}", "{{k: {s}}}", "{{{s}: 1}}", "!{s}", "!!int {s}", "!!float {s}",
    "!!bool {s}", "!!timestamp {s}", "!!binary {s}", "&{s}", "&{s} x", '"{s}', "'{s}", "{s}\x01", "{s}: x", "[{s}",
    "{{{s}", "@{s}", "`{s}", "%{s}", '"{s}\\q"', "{s}\t", "- {s}", "? {s}", "|\n{s}", "{s} #",
]

SECRETS = st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=16).map(lambda t: "Zq" + t)


def yaml_with(place: str, key: str, value: str) -> str:
    if place == "profile":
        head = "configVersion: v2\nmbackup:\n  profiles:\n    p:\n      url: s3://b/p\n"
        return head + f"      {key}: " + value.replace("\n", "\n        ") + "\n"
    path = key.split(".")
    lines = ["configVersion: v2"] if place == "v2" else []
    for depth, part in enumerate(path[:-1]):
        lines.append("  " * depth + f"{part}:")
    indent = "  " * len(path)
    lines.append("  " * (len(path) - 1) + f"{path[-1]}: " + value.replace("\n", "\n" + indent))
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), breakage=st.sampled_from(BREAKAGES), secret=SECRETS)
@example(place=("v2", "milvus.password"), breakage="*{s}", secret=LEAK)
@example(place=("v2", "milvus.password"), breakage="[{s}, x]", secret=LEAK)
@example(place=("v2", "milvus.password"), breakage="{{{s}}}", secret=LEAK)
@example(place=("v1", "minio.secretAccessKey"), breakage="!{s}", secret=LEAK)
def test_secrets_in_broken_yaml_are_never_printed(place, breakage, secret):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "backup.yaml").write_text(yaml_with(*place, breakage.format(s=secret)))
        proc = mbackup(["config", "show"], work)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 2), proc.stderr
        assert secret not in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(V2_SECRET_KEYS), typo=st.sampled_from(["x", "", " "]), secret=SECRETS)
def test_secrets_given_to_a_mistyped_set_are_never_printed(key, typo, secret):
    """--set with a misspelt key, or a broken KEY=VALUE: the value is never repeated."""
    with tempfile.TemporaryDirectory() as tmp:
        arg = f"{key}{typo}={secret}" if typo != " " else f"{key.replace('.', ' ', 1)}={secret}"
        proc = mbackup(["--set", arg, "config", "show"], Path(tmp))
        assert "Traceback" not in proc.stderr, proc.stderr
        assert secret not in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)


# --------------------------------------------------------------------------------------
# Resource bombs and gRPC tracing


def test_alias_bomb_is_refused_fast(tmp_path):
    """An ~800-byte billion-laughs file took 17 s and 4 GB before a MemoryError; now the
    aliases are counted as they would expand, and it is refused at once."""
    bomb = laughs()
    assert len(bomb) < 1000
    (tmp_path / "backup.yaml").write_text(bomb)
    started = time.monotonic()
    proc = mbackup(["config", "show"], tmp_path)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: backup.yaml: the YAML expands to more than 100,000 values through its aliases (*name); "
        "a config file needs far fewer: remove the aliases"]


def test_grpc_tracing_with_a_password_runs_only_when_asked(tmp_path):
    """Refused without MBACKUP_ALLOW_GRPC_TRACE (the table in test_bad_input.py); with it, one
    warning and the run goes on (here to a Milvus that is not there)."""
    (tmp_path / "backup.yaml").write_text("configVersion: v2\nmilvus:\n  grpc: {address: 127.0.0.1, port: 9}\n")
    env = {"GRPC_TRACE": "api", "MILVUS_PASSWORD": LEAK, "MBACKUP_ALLOW_GRPC_TRACE": "1"}
    proc = mbackup(["check"], tmp_path, env)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: GRPC_TRACE=api with MBACKUP_ALLOW_GRPC_TRACE=1: the gRPC trace shows the Milvus "
                        "password (base64, in the authorization header); do not share it"]
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[-1].startswith("error: cannot reach Milvus at 127.0.0.1:9")
