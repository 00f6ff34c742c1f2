"""The type stubs (`_native.pyi`) name exactly what the built native module has: a name
added to the Rust and not to the stub, or left in the stub after the Rust dropped it, fails
here. mypy (.ci/run) checks the package's use of them."""

import ast
import pathlib

import mtf_candles
from mtf_candles import _native

STUB = pathlib.Path(mtf_candles.__file__).with_name("_native.pyi")


def _stub():
    tree = ast.parse(STUB.read_text())
    names, methods = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            if node.name == "Segment":
                methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}, methods - {"__init__"}


def test_the_stub_names_every_public_name_of_the_native_module_and_no_other():
    names, methods = _stub()
    built = {n for n in dir(_native) if not n.startswith("_")}
    assert names == built
    built_methods = {n for n in vars(_native.Segment) if not n.startswith("_")}
    assert methods == built_methods


def test_the_native_tuples_are_named_by_the_native_module():
    # Segment.tick's tuple, in MT5's Tick order: the package's Tick is built from it.
    assert tuple(mtf_candles.Tick._fields) == tuple(_native.TICK_FIELDS)
    assert len(_native.TERMINAL_FIELDS) == 7 and "login" in _native.TERMINAL_FIELDS


def test_the_package_is_marked_typed():
    assert STUB.with_name("py.typed").exists()
