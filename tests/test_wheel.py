"""The wheel a user installs: built by scripts/build-wheel, installed into a fresh venv of the
oldest CPython the package supports, and run from there (not from this checkout) against the
local SeaweedFS. The wheel is built once per run; a warm cargo cache makes that a re-pack."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "target" / "build-tools" / "bin"


FLOOR = (3, 10)  # the oldest CPython the README promises


def _oldest_python() -> str:
    """The interpreter of the oldest version promised, where this machine has one (python3.X on
    PATH or under pyenv); else the one running the tests."""
    name = "python{}.{}".format(*FLOOR)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in [shutil.which(name), *sorted(glob.glob(str(pyenv / "versions" / "*" / "bin" / name)))]:
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


@pytest.fixture(scope="session")
def wheel() -> Path:
    proc = subprocess.run([str(ROOT / "scripts" / "build-wheel")], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(ROOT / proc.stdout.split()[-1])


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("dist-info/METADATA"))).decode()
    return [line.split(":", 1)[1].strip() for line in metadata.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


@pytest.fixture(scope="session", params=["newest", "floors"])
def installed(request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel installed, dependencies from the package index: their newest
    versions, or each at the floor the wheel declares (so a floor is a promise kept); its bin/."""
    venv = tmp_path_factory.mktemp(f"wheel-venv-{request.param}")
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    subprocess.run([str(TOOLS / "uv"), "venv", "-q", "--python", _oldest_python(), str(venv)], env=env, check=True)
    floors = ["--resolution", "lowest-direct", *_requires(wheel)] if request.param == "floors" else []
    subprocess.run([str(TOOLS / "uv"), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel),
                    *floors], env=env, check=True, timeout=600)
    yield venv / "bin"
    shutil.rmtree(venv)  # 200 MB of others' packages: nothing for the end-of-run secrets scan


def run(bin_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH: the test runner points it at this checkout, the user's shell does not.
    clean = {k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"}
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], env=clean, capture_output=True, text=True, timeout=120)


def test_wheel_is_abi3_manylinux2014_and_holds_only_the_package(wheel: Path):
    # One wheel for every CPython from the floor on, installable where glibc is 2.17 or newer.
    assert re.fullmatch(r"mbackup-[^-]+-cp310-abi3-manylinux2014_x86_64\.manylinux_2_17_x86_64\.whl", wheel.name)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"milvus_backup", next(t for t in tops if t.endswith(".dist-info"))}, tops  # no mbackup_dev
    assert [n for n in names if n.endswith(".so")] == ["milvus_backup/_engine.abi3.so"]
    assert "Requires-Python: >={}.{}".format(*FLOOR) in metadata
    # The dev stack only as extras: none of it is installed with the tool.
    runtime = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [r for r in runtime if re.search(r"pytest|seaweedfs|milvus==|moto|mypy|ruff|hypothesis", r)], runtime


def test_engine_needs_no_glibc_newer_than_the_tag(wheel: Path, tmp_path: Path):
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to read the engine's glibc symbol versions"
    so = tmp_path / "engine.so"
    with zipfile.ZipFile(wheel) as archive:
        so.write_bytes(archive.read(next(n for n in archive.namelist() if n.endswith(".so"))))
    symbols = subprocess.run([objdump, "-T", str(so)], capture_output=True, text=True, check=True).stdout
    versions = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols)}
    assert versions and max(versions) <= (2, 17), sorted(versions)[-5:]


def test_installed_cli_runs_from_the_venv(installed: Path):
    where = run(installed, "python", "-c", "import milvus_backup._engine as e; print(e.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(installed.parent)), where.stdout  # the installed copy, not this checkout

    help_ = run(installed, "mbackup", "--help")
    assert help_.returncode == 0, help_.stderr
    if re.search(r"│ version\b", help_.stdout):  # `version` lands with another branch of issue #11
        version = run(installed, "mbackup", "version")
        assert version.returncode == 0 and "0.1.0" in version.stdout, version.stderr

    plugins = run(installed, "mbackup", "plugins")
    assert plugins.returncode == 0, plugins.stderr
    lines = plugins.stdout.splitlines()
    assert any(line.startswith("milvus_backup.storage.backends.s3 ") for line in lines), plugins.stdout
    assert any("Milvus lines: 2.3" in line for line in lines), plugins.stdout
    assert not [line for line in lines if "(third-party)" in line]  # a fresh venv has none


# Every message and enum the installed package names from its generated modules (milvus/_proto),
# looked up there: the adapters import them inside methods, so a missing one shows only when
# that call runs.
PB2_NAMES = """
import ast, importlib, pathlib, milvus_backup
used, missing = set(), []
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
def bindings(scope):
    # alias -> module of every `from ..._proto import x_pb2 as alias` in scope, nested ones included
    return {a.asname or a.name: importlib.import_module("milvus_backup.milvus._proto." + a.name)
            for n in ast.walk(scope) if isinstance(n, ast.ImportFrom) and (n.module or "").endswith("_proto")
            for a in n.names if a.name.endswith("_pb2")}
for path in pathlib.Path(milvus_backup.__file__).parent.rglob("*.py"):
    tree = ast.parse(path.read_text())
    parent = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    scopes = {}
    for n in ast.walk(tree):
        # Messages and enums are CamelCase; a lower-case attribute is a local of the same name's.
        if not (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.attr[0].isupper()
                and n.attr != "DESCRIPTOR"):
            continue
        # The alias as bound where it is used: the innermost function importing it (one file may
        # bind one alias to different modules in different functions), else the module's imports.
        # A parameter of that name (lambda m: m.SerializeToString()) is no module.
        scope, param = parent.get(n), False
        while scope is not None:
            if isinstance(scope, (*FUNCS, ast.Lambda)) and n.value.id in {a.arg for a in scope.args.args}:
                param = True
                break
            if isinstance(scope, FUNCS) and n.value.id in scopes.setdefault(scope, bindings(scope)):
                break
            scope = parent.get(scope)
        if param:
            continue
        modules = scopes[scope] if scope is not None else scopes.setdefault(tree, bindings(tree))
        if n.value.id in modules:
            used.add((modules[n.value.id].__name__, n.attr))
            if not hasattr(modules[n.value.id], n.attr):
                missing.append(f"{path.name}: {n.value.id}.{n.attr}")
print(len(used), missing)
"""


def test_installed_package_has_every_message_the_adapters_build(installed: Path):
    proc = run(installed, "python", "-c", PB2_NAMES)
    assert proc.returncode == 0, proc.stderr
    used, missing = proc.stdout.split(" ", 1)
    assert int(used) > 40 and missing.strip() == "[]", proc.stdout


def test_the_install_holds_no_pymilvus_pandas_or_numpy(wheel: Path, installed: Path):
    # The runtime needs are the tool's own; pymilvus (and pandas and numpy with it) are the dev extra's.
    assert sorted(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in _requires(wheel)) == [
        "grpcio", "pluggy", "protobuf", "pyyaml", "rich", "typer"]
    found = run(installed, "python", "-c", "import importlib.util as u; "
                "print([m for m in ('pymilvus', 'pandas', 'numpy') if u.find_spec(m)])")
    assert (found.returncode, found.stdout.strip()) == (0, "[]"), found.stderr


# What `mbackup server` (and --pushgateway) import: the `server` extra, not in a plain install;
# and what `mbackup l0compact` imports: the `l0compact` extra.
SERVER_EXTRA = ["croniter", "prometheus_client", "starlette", "uvicorn"]
L0COMPACT_EXTRA = ["pyarrow"]
EXTRAS = sorted(SERVER_EXTRA + L0COMPACT_EXTRA)


def test_every_module_imports_with_the_runtime_dependencies_alone(installed: Path):
    # What pymilvus used to bring along (requests, pandas...) would fail here, module by module,
    # although most are imported only inside the function that needs them. The extras'
    # libraries are named apart: they must be exactly the extras', and absent here.
    code = ("import ast, pathlib, sys, milvus_backup; root = pathlib.Path(milvus_backup.__file__).parent; "
            "names = {(n.names[0].name if isinstance(n, ast.Import) else n.module).split('.')[0] "
            "for p in root.rglob('*.py') for n in ast.walk(ast.parse(p.read_text())) "
            "if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and n.level == 0)}; "
            f"extra = {{m for m in names if m in {EXTRAS!r}}}; "
            "import importlib, importlib.util as u; "
            "[importlib.import_module(m) for m in sorted(names - sys.stdlib_module_names - extra)]; "
            "print(sorted(names - sys.stdlib_module_names - extra), sorted(extra), "
            "[m for m in sorted(extra) if u.find_spec(m)])")
    proc = run(installed, "python", "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == ("['google', 'grpc', 'milvus_backup', 'pluggy', 'rich', 'typer', 'yaml'] "
                                   f"{EXTRAS!r} []")
    # Without the extra, the server says how to get it.
    proc = run(installed, "mbackup", "server", "-p", "1")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: mbackup server needs "), proc.stderr
    assert 'pip install "mbackup[server]"' in proc.stderr
    # Nor l0compact without its own, before it reads any config.
    proc = run(installed, "mbackup", "l0compact", "-n", "b")
    assert (proc.returncode, proc.stderr) == (2, "error: mbackup l0compact needs pyarrow to read and write Parquet: "
                                                 'install it with pip install "mbackup[l0compact]"\n'), proc.stderr


@pytest.mark.milvus
def test_installed_cli_backs_up_from_a_real_milvus(installed: Path, milvus_clusters, seaweedfs, tmp_path: Path):
    """check, create and list from the installed venv against Milvus 2.3.5: the whole gRPC path
    (TLS aside) on the wheel's own messages, with the dependencies a user gets."""
    from pymilvus import DataType, MilvusClient

    from mbackup_dev.devstack import backup_config

    source, name, backups = milvus_clusters.source, "wheel_rows", "mbk-wheel"
    mc = MilvusClient(uri=source.uri)
    try:
        schema = mc.create_schema(auto_id=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        if not mc.has_collection(name):
            mc.create_collection(name, schema=schema)
            mc.insert(name, [{"pk": i, "vec": [float(i), 0.0, 1.0, 2.0]} for i in range(20)])
            mc.flush(name)
    finally:
        mc.close()
    config = tmp_path / "backup.yaml"
    config.write_text(backup_config(source, backup_bucket=backups, backup_root=f"wheel-{tmp_path.name}"))
    seaweedfs.create_bucket(backups)
    cli = ("mbackup", "--config", str(config))
    check = run(installed, *cli, "check")
    assert check.returncode == 0 and "Milvus adapter: 2.3 " in check.stdout, check.stderr
    create = run(installed, *cli, "create", "-n", "w1", "--filter", f"default.{name}")
    assert create.returncode == 0, create.stderr
    listed = run(installed, *cli, "list", "--json")
    assert listed.returncode == 0 and '"w1"' in listed.stdout, listed.stderr


def test_installed_cli_copies_against_local_s3(installed: Path, seaweedfs, s3env, bucket):
    store = seaweedfs.store(bucket)
    objects = {f"src/files/{i}.bin": os.urandom(1000 + 977 * i) for i in range(5)}
    objects["src/files/empty"] = b""
    for key, data in objects.items():
        store.put(key, data)

    def url(prefix: str) -> str:
        return f"s3://{bucket}/{prefix}?endpoint={seaweedfs.endpoint}"

    proc = run(installed, "mbackup", "copy", url("src"), url("dst"), env=s3env)
    assert proc.returncode == 0, proc.stderr
    copied = {key: store.get(key) for key, _, _ in store.list("dst")}
    assert copied == {key.replace("src/", "dst/", 1): data for key, data in objects.items()}


def test_an_installed_copy_skips_the_plugin_scan_and_yaml_where_there_are_none(installed: Path, seaweedfs, s3env,
                                                                               bucket, tmp_path: Path):
    """A fresh install has no third-party plugin and here no backup.yaml: a copy then reads no
    distribution's metadata (importlib.metadata) and loads no PyYAML, ~0.055 CPU s of each run
    (issue #14). mbackup's own dist-info declares the plugin group empty, which is no plugin."""
    seaweedfs.store(bucket).put("one/o", b"x" * 1000)
    modules = tmp_path / "modules.json"
    script = ("import json, os, sys\nsys.argv = ['mbackup', *sys.argv[1:]]\nfrom milvus_backup.cli import main\n"
              "try:\n    main()\nfinally:\n"
              "    open(os.environ['MODULES_FILE'], 'w').write(json.dumps(sorted(sys.modules)))\n")
    proc = run(installed, "python", "-c", script, "copy", f"s3://{bucket}/one?endpoint={seaweedfs.endpoint}",
               str(tmp_path / "dst"), "--quiet", env=dict(s3env, MODULES_FILE=str(modules)))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dst" / "o").read_bytes() == b"x" * 1000
    loaded = set(json.loads(modules.read_text()))
    assert "milvus_backup.storage.backends.s3" in loaded
    assert not loaded & {"importlib.metadata", "yaml", "logging.handlers", "socket"}
