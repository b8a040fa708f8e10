"""Plugins register what they serve (issue #9, part A): storage backends by URL scheme and
config provider, Milvus adapters by line, looked up in a dict. Registering one thing twice
stops mbackup naming both plugins; the deprecated first-result storage hooks still work; and
the packages import without cycles, each module alone in a fresh interpreter.

Inline plugins are registered for one test with the ``plugin`` fixture, as pytest and llm do;
third-party plugins are installed for real (a dist-info with an entry point on PYTHONPATH)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import inprocess
from milvus_backup.errors import PluginError
from milvus_backup.milvus.adapters.base import MilvusAdapter
from milvus_backup.milvus.adapters.v2_3 import Milvus23Adapter
from milvus_backup.milvus.connection import MilvusError
from milvus_backup.plugins.hookspecs import hookimpl
from milvus_backup.plugins.manager import describe, manager, milvus_adapters, storage_backends
from milvus_backup.storage.location import Location, StorageError, StorageUrl, native_store
from milvus_backup.storage.registry import StorageTarget

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "milvus_backup"


@pytest.fixture
def plugin():
    """``plugin(obj, name)`` registers an inline plugin for this test only."""
    pm = manager()
    names: list[str] = []

    def register(obj: object, name: str) -> None:
        pm.register(obj, name=name)
        names.append(name)

    yield register
    for name in names:
        pm.unregister(name=name)


def _memory(url: StorageUrl, options: dict[str, str]) -> Location:
    return Location(native_store(url.text, f"memory://{url.bucket}", {}), url.prefix, url.text, url.scheme)


# --------------------------------------------------------------------------------------
# One thing, one plugin


class _SecondS3:
    @hookimpl
    def mbackup_register_storage(self, register):
        register("s3", _memory)


class _SecondMinio:
    @hookimpl
    def mbackup_register_storage(self, register):
        register("s4", _memory, providers=("minio",), target=lambda st: StorageTarget("s4://b", {}, "b", "", "minio"))


class _Second23:
    @hookimpl
    def mbackup_register_milvus_adapter(self, register):
        register("2.3", Milvus23Adapter)


@pytest.mark.parametrize("second, first, line", [
    (_SecondS3(), "milvus_backup.storage.backends.s3", "storage scheme 's3'"),
    (_SecondMinio(), "milvus_backup.storage.backends.s3", "storage provider 'minio'"),
    (_Second23(), "milvus_backup.milvus.adapters.v2_3", "Milvus 2.3 adapter"),
], ids=["scheme", "provider", "milvus-line"])
def test_one_thing_registered_by_two_plugins_stops_mbackup_naming_both(plugin, second, first, line):
    plugin(second, "second")
    expected = f"{line} is registered by two plugins, {first} and second: uninstall one, or leave it out with MBACKUP_PLUGINS"
    with pytest.raises(PluginError) as e:
        storage_backends() if "adapter" not in line else milvus_adapters()
    assert str(e.value) == expected
    code, out, err = inprocess.run("plugins")
    assert (code, out, err) == (2, "", f"error: {expected}\n")


def _install(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    """Install a third-party plugin for real: its module, and a dist-info declaring it in the
    ``milvus_backup`` entry-point group, on PYTHONPATH."""
    site = tmp_path / "site"
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[milvus_backup]\n{name} = {name}\n")
    path = [p for p in (os.environ.get("PYTHONPATH"), str(site)) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("MBACKUP_PLUGINS", None)
    return env


def _mbackup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_an_installed_plugin_taking_a_builtin_scheme_stops_every_command_at_start(tmp_path):
    env = _install(tmp_path, "takes_s3", """
        from milvus_backup.hookspecs import hookimpl

        @hookimpl
        def mbackup_register_storage(register):
            register("s3", lambda url, options: None)
        """)
    line = ("error: storage scheme 's3' is registered by two plugins, milvus_backup.storage.backends.s3 and takes_s3: "
            "uninstall one, or leave it out with MBACKUP_PLUGINS\n")
    for args in (["plugins"], ["copy", "memory://a", str(tmp_path / "dst")]):
        r = _mbackup(env, *args)
        assert (r.returncode, r.stdout, r.stderr) == (2, "", line), args
    assert not (tmp_path / "dst").exists()
    r = _mbackup(dict(env, MBACKUP_PLUGINS=""), "plugins")
    assert r.returncode == 0 and "takes_s3" not in r.stdout, r.stderr


def test_mbackup_plugins_naming_no_installed_plugin_is_one_line_and_loads_nothing_else(tmp_path):
    """A typo in MBACKUP_PLUGINS loaded nothing, silently (no webhook posted, no backend)."""
    env = _install(tmp_path, "good_one", """
        from milvus_backup.hookspecs import hookimpl

        @hookimpl
        def mbackup_register_storage(register):
            register("goodone", lambda url, options: None)
        """)
    r = _mbackup(dict(env, MBACKUP_PLUGINS="good_one,god_one"), "plugins")
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert r.stderr.startswith("error: MBACKUP_PLUGINS names god_one, which no installed plugin is called (installed: ")
    assert "good_one" in r.stderr and r.stderr.endswith("): correct it, or install the plugin\n")
    assert len(r.stderr.splitlines()) == 1
    r = _mbackup(dict(env, MBACKUP_PLUGINS="good_one"), "plugins")
    assert r.returncode == 0 and "goodone" in r.stdout, r.stderr


def test_an_installed_plugin_with_a_misspelled_hook_is_named_in_one_line(tmp_path):
    env = _install(tmp_path, "typo", """
        from milvus_backup.hookspecs import hookimpl

        @hookimpl
        def mbackup_register_storag(register):
            pass
        """)
    r = _mbackup(env, "plugins")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.startswith("error: plugin typo does not fit mbackup's hooks (unknown hook 'mbackup_register_storag'")
    assert r.stderr.endswith("): fix it, uninstall it, or leave it out with MBACKUP_PLUGINS\n")
    assert len(r.stderr.splitlines()) == 1


# --------------------------------------------------------------------------------------
# Storage: the URL split once, looked up by scheme


def test_a_backend_gets_the_url_split_once_and_a_family_scheme_serves_its_variants(plugin):
    calls = []

    class Demo:
        @hookimpl
        def mbackup_register_storage(self, register):
            register("demo", lambda url, options: calls.append((url, options)) or _memory(url, options))
            register("demo+", lambda url, options: calls.append((url, options)) or _memory(url, options))

    plugin(Demo(), "demo")
    backends = storage_backends()
    location = backends.open("demo://b/p/q?region=x", {"k": "v"})
    assert calls == [(StorageUrl("demo", "b", "p/q", {"region": "x"}, "demo://b/p/q?region=x"), {"k": "v"})]
    assert (location.prefix, location.scheme) == ("p/q", "demo")
    backends.open("demo+sftp://host/dir")
    assert calls[-1][0].scheme == "demo+sftp" and calls[-1][0].bucket == "host"
    with pytest.raises(StorageError, match=r"^demo://b/p: the URL holds the secret secret_access_key \(not shown\)"):
        backends.open("demo://b/p?secret_access_key=x")
    assert len(calls) == 2  # refused before any backend saw it
    assert [p.schemes for p in describe() if p.name == "demo"] == [["demo", "demo+*"]]


def test_a_plugin_on_the_deprecated_storage_hooks_still_opens_its_urls(plugin):
    class Legacy:
        @hookimpl
        def mbackup_storage_schemes(self):
            return ["old"]

        @hookimpl
        def mbackup_open_storage(self, url, options):
            return _memory(StorageUrl("old", "x", "", {}, url), options) if url.startswith("old://") else None

    with pytest.warns(DeprecationWarning, match="mbackup_open_storage is deprecated: implement mbackup_register_storage"):
        plugin(Legacy(), "legacy")
    location = storage_backends().open("old://x")
    assert location.url == "old://x"
    assert storage_backends().open("memory://y").scheme == "memory"  # registered schemes come first
    assert [p.schemes for p in describe() if p.name == "legacy"] == [["old"]]
    with pytest.raises(StorageError, match=r"^no storage backend for 'nope://x' \(scheme 'nope'\); known schemes: az, "
                                           r"azure, file, .*old"):
        storage_backends().open("nope://x")


# --------------------------------------------------------------------------------------
# Milvus: the adapter of the server's line


def _init(self, version, connection):
    self.version, self.connection = version, connection


# A third-party adapter for Milvus 2.9, a line no local server runs: a stand-in whose Milvus
# methods are never called here.
_LaterLine = type("_LaterLine", (MilvusAdapter,), {
    "__init__": _init, **{name: lambda self, *a, **k: None for name in MilvusAdapter.__abstractmethods__}})


class _Registers29:
    @hookimpl
    def mbackup_register_milvus_adapter(self, register):
        register("2.9", _LaterLine)


def test_a_third_party_adapter_is_chosen_for_its_line(plugin):
    plugin(_Registers29(), "milvus-2-9")
    adapters = milvus_adapters()
    connection = object()
    chosen = adapters.adapter_for("v2.9.1", connection)
    assert type(chosen) is _LaterLine and (chosen.version, chosen.connection) == ("v2.9.1", connection)
    assert type(adapters.adapter_for("v2.3.5", None)) is Milvus23Adapter
    with pytest.raises(MilvusError) as e:
        adapters.adapter_for("v3.4.0", None)
    assert str(e.value) == ("Milvus v3.4.0 is not supported: no adapter for Milvus 3.4 (lines: 2.3, 2.4, 2.5, 2.6, 2.9, "
                            "3.0); to try the nearest, 3.0, set mbackup.milvusAdapter: 3.0 (or --set "
                            "mbackup.milvusAdapter=3.0), or install an adapter plugin for Milvus 3.4")
    assert type(adapters.adapter_for("v3.4.0", None, line="2.9")) is _LaterLine
    code, out, _ = inprocess.run("plugins", "--json")
    assert code == 0
    assert {p["name"]: p["milvus_lines"] for p in json.loads(out) if p["milvus_lines"]} == {
        "milvus_backup.milvus.adapters.v2_3": ["2.3"], "milvus-2-9": ["2.9"],
        "milvus_backup.milvus.adapters.v2_4_plus": ["2.4", "2.5", "2.6", "3.0"]}


def cargo_version() -> str:
    """The version as written in its one place, Cargo.toml."""
    with open(Path(__file__).parents[1] / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["package"]["version"]


def test_plugins_lists_the_milvus_lines_each_plugin_serves():
    code, out, err = inprocess.run("plugins")
    assert code == 0, err
    assert (f"milvus_backup.milvus.adapters.v2_3 {cargo_version()} (built-in) Milvus lines: 2.3; hooks: "
            "mbackup_register_milvus_adapter") in out.splitlines()
    assert ("milvus_backup.milvus.adapters.v2_4_plus 0.1.0 (built-in) Milvus lines: 2.4, 2.5, 2.6, 3.0; hooks: "
            "mbackup_register_milvus_adapter") in out.splitlines()


def test_the_package_has_the_version_written_in_cargo_toml():
    from importlib import metadata

    import milvus_backup

    # The engine carries it (read without importlib.metadata); pip shows the package's.
    assert milvus_backup.__version__ == cargo_version() == metadata.version("mbackup")


# --------------------------------------------------------------------------------------
# Imports: no cycles, every module alone


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports when it runs: at the top, inside functions, through
    its parent packages, and by name (the plugin manager's DEFAULT_PLUGINS); not what it
    imports for type checking only."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if is_package else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + [node.module] if node.module else base) if node.level else node.module
            found.update([prefix, *(f"{prefix}.{a.name}" for a in node.names)])
        elif isinstance(node, ast.Constant) and node.value in modules:
            found.add(node.value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    deps = set()
    for target in found:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        while target:  # importing a.b.c runs a and a.b first
            if target != name and not name.startswith(target + "."):
                deps.add(target)
            target = target.rpartition(".")[0]
    return deps


def test_the_package_has_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles: list[str] = []
    done: set[str] = set()

    def walk(name: str, stack: list[str]) -> None:
        stack.append(name)
        for dep in sorted(graph[name]):
            if dep in stack:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in done:
                walk(dep, stack)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            walk(name, [])
    assert cycles == []


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = [n for n in _modules() if not n.endswith("__main__")]
    failed = []
    for i in range(0, len(names), 4):  # four interpreters at a time
        procs = [(n, subprocess.Popen([sys.executable, "-c", f"import {n}"], stderr=subprocess.PIPE, text=True))
                 for n in names[i:i + 4]]
        for n, proc in procs:
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                failed.append(f"{n}: {err.strip().splitlines()[-1]}")
    assert failed == []
