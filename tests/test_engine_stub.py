"""The engine's type stub, _engine.pyi, says what the compiled module has (issue #9, item 2):
every public name in one is in the other, with the same methods and signatures, and the typed
results have exactly the keys the engine returns."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from milvus_backup import _engine

STUB = Path(_engine.__file__).with_name("_engine.pyi")


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"))


def type_check_only(node: ast.ClassDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "type_check_only" for d in node.decorator_list)


def public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def stub_names() -> dict[str, ast.AST]:
    """Public names the stub says exist at runtime (type-only helpers left out)."""
    out: dict[str, ast.AST] = {}
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef) or (isinstance(node, ast.ClassDef) and not type_check_only(node)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return {k: v for k, v in out.items() if not k.startswith("_")}


def typed_dict_keys(name: str) -> set[str]:
    node, = (n for n in stub_tree().body if isinstance(n, ast.ClassDef) and n.name == name)
    return {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}


def test_every_public_name_is_in_the_stub_and_back():
    assert set(stub_names()) == public(dir(_engine))


@pytest.mark.parametrize("cls", ["Store", "Copier"])
def test_every_method_is_in_the_stub_with_its_parameters(cls):
    node = stub_names()[cls]
    in_stub = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
    runtime = getattr(_engine, cls)
    assert public(in_stub) == public(vars(runtime))
    for name in public(in_stub) | {"__new__"}:
        if any(isinstance(d, ast.Name) and d.id == "property" for d in in_stub[name].decorator_list):
            assert inspect.isgetsetdescriptor(vars(runtime)[name]), name
            continue
        args = in_stub[name].args
        bound = not any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in in_stub[name].decorator_list)
        stub_params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs][bound:]  # no self/cls
        target = runtime if name == "__new__" else getattr(runtime, name)
        assert stub_params == [p for p in inspect.signature(target).parameters if p != "self"], name


def test_the_stub_lists_every_error_code_the_engine_has():
    node, = (n for n in stub_tree().body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "_ErrorCode")
    literal = node.value
    assert isinstance(literal, ast.Subscript) and isinstance(literal.slice, ast.Tuple)
    assert [e.value for e in literal.slice.elts] == list(_engine.ERROR_CODES)


def test_copy_results_have_the_keys_the_stub_types():
    store = _engine.Store(f"memory://{uuid.uuid4().hex}")
    store.put("src", b"data")
    done, failed = _engine.Copier().run([(store, "src", store, "dst", 4), (store, "missing", store, "other", None)])
    assert set(done) == set(failed) == typed_dict_keys("CopyResult")


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install .[dev])")
def test_mypy_stubtest_finds_the_stub_and_the_module_agree():
    assert STUB.is_file()  # without one, stubtest finds nothing to disagree with
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "milvus_backup._engine"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
