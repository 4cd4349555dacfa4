"""Issue 8, thin asyncio layer: the modules of ``pywebtransport`` talk to each other
through public names only, and only the link (``_link.py``) touches the protocol core,
HTTP/3 or the QUIC connection. Checked on the source (AST), so a new shortcut fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pywebtransport

PACKAGE = Path(pywebtransport.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
#: attributes that lead below the link: the core, HTTP/3, the QUIC connection
BELOW = {"wt", "h3", "quic", "connection", "quic_session", "streams", "recovery"}


def defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines: functions, classes, ``self.x = ...`` attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def test_no_private_names_of_other_modules() -> None:
    offences = []
    for path in MODULES:
        tree = ast.parse(path.read_text())
        own = defined_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if attr not in own:  # another module's private name
                offences.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert offences == []


def test_only_the_link_reaches_below() -> None:
    offences = []
    for path in MODULES:
        if path.name == "_link.py":
            continue
        tree = ast.parse(path.read_text())
        offences.extend(
            f"{path.name}:{node.lineno} {ast.unparse(node)}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in BELOW
        )
    assert offences == []


def test_the_check_sees_an_offence() -> None:
    """The checks above can fail: a reach-through is recognised."""
    tree = ast.parse("stream._on_data(b'')\nsession._link.wt.h3.send_goaway()\n")
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "_on_data" in attrs and "_on_data" not in defined_names(tree)
    assert attrs & BELOW == {"wt", "h3"}
