"""The layering of DESIGN.md, checked on the source (not hoped for).

* quic/ never imports h3/ or pywebtransport/; h3/ never imports pywebtransport/
  (each layer uses only the public names and events of the one below);
* only drivers touch the clock, sockets or the event loop: the Sans-I/O modules (the
  QUIC connection and endpoint, HTTP/3, the WebTransport core in
  ``pywebtransport/protocol/``) import none of ``time``, ``asyncio``, ``socket``,
  ``selectors`` and call no ``datetime.now()``/``utcnow()``/``today()`` nor any
  ``.time()`` / ``.monotonic()`` / ``.perf_counter()``: time is passed in.

Every import is found from the syntax tree, including imports inside functions and
``TYPE_CHECKING`` blocks and ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: package -> packages above it, which it must never import
FORBIDDEN = {
    "quic": ("h3", "pywebtransport"),
    "h3": ("pywebtransport",),
}

#: drivers: the only modules that may read the clock or touch sockets / the event loop
DRIVERS = (
    "quic/aio/",
    "quic/interop/",
    "quic/__main__.py",
    "h3/aio",  # h3/aio.py or an h3/aio/ package
    "h3/cli.py",
    "h3/interop.py",
    "h3/__main__.py",
)
#: in pywebtransport/ everything but the Sans-I/O core is the asyncio API (a driver)
SANS_IO_PREFIXES = ("quic/", "h3/", "pywebtransport/protocol/")

_IO_MODULES = frozenset({"time", "asyncio", "socket", "selectors"})
_CLOCK_CALLS = frozenset({"time", "monotonic", "perf_counter", "monotonic_ns", "time_ns"})
_WALL_CLOCK_CALLS = frozenset({"now", "utcnow", "today"})


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module name an AST imports (top-level or nested, static or literal dynamic)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.add(first.value)
    return names


def clock_reads(tree: ast.AST) -> list[str]:
    """Calls that read a clock: ``x.time()``, ``x.monotonic()``, ``datetime.now()``..."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        attr = node.func.attr
        owner = node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        clock = attr in _CLOCK_CALLS and not node.args
        wall = attr in _WALL_CLOCK_CALLS and owner_name in ("datetime", "date")
        if clock or wall:
            found.append(f"{owner_name}.{attr}() at line {node.lineno}")
    return found


def _is_sans_io(rel: str) -> bool:
    return rel.startswith(SANS_IO_PREFIXES) and not rel.startswith(DRIVERS)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_never_import_upper_ones(package: str) -> None:
    offenders = []
    for path in _sources(package):
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in imported_modules(tree):
            top = name.split(".")[0]
            if top in FORBIDDEN[package]:
                offenders.append(f"{_relative(path)} imports {name}")
    assert offenders == []


def test_sans_io_modules_neither_read_the_clock_nor_do_io() -> None:
    offenders = []
    checked = 0
    for package in ("quic", "h3", "pywebtransport"):
        for path in _sources(package):
            rel = _relative(path)
            if not _is_sans_io(rel):
                continue
            checked += 1
            tree = ast.parse(path.read_text(), filename=str(path))
            offenders.extend(
                f"{rel} imports {name}"
                for name in imported_modules(tree)
                if name.split(".")[0] in _IO_MODULES
            )
            offenders.extend(f"{rel}: {call}" for call in clock_reads(tree))
    assert checked > 50  # the walk really saw the Sans-I/O modules
    assert offenders == []


def test_the_checks_catch_what_they_are_for() -> None:
    # the detectors themselves: each forbidden shape is found
    tree = ast.parse(
        "import time\n"
        "from h3.connection import H3Connection\n"
        "def f(loop):\n"
        "    import pywebtransport.protocol\n"
        "    importlib.import_module('h3.aio')\n"
        "    return loop.time(), time.monotonic(), datetime.now()\n"
    )
    names = imported_modules(tree)
    assert {"time", "h3.connection", "pywebtransport.protocol", "h3.aio"} <= names
    reads = clock_reads(tree)
    assert len(reads) == 3
    assert _is_sans_io("quic/connection.py")
    assert _is_sans_io("pywebtransport/protocol/connection.py")
    assert not _is_sans_io("quic/aio/__init__.py")
    assert not _is_sans_io("pywebtransport/session.py")
