"""``./run.sh test`` runs the default suite in two halves at once (``run_suite``): every
test of pyproject.toml's ``testpaths`` must be in exactly one of them.

Checked on the two files' text (a collection of each half would cost a minute): the
first half names paths, the second names paths and ignores the first half's paths that
lie under them. Every testpath must be a path of one half or lie under one; a path of
the first half that lies under a path of the second must be ignored there, and no path
may be named by both.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _halves() -> tuple[list[str], list[str], list[str]]:
    """(first half's paths, second half's paths, second half's ignored paths)."""
    script = (ROOT / "run.sh").read_text()
    arrays = {}
    for name in ("first", "second"):
        match = re.search(rf"^\s*{name}=\((.*)\)\s*$", script, re.MULTILINE)
        assert match is not None, f"run.sh has no {name}=(...) array"
        arrays[name] = shlex.split(match.group(1))
    second = [word for word in arrays["second"] if not word.startswith("--ignore=")]
    ignored = [word[len("--ignore=") :] for word in arrays["second"] if word not in second]
    assert not any(word.startswith("-") for word in arrays["first"] + second)
    return arrays["first"], second, ignored


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def test_the_two_halves_cover_every_testpath_once() -> None:
    first, second, ignored = _halves()
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"
    ]["testpaths"]
    for path in testpaths:  # every testpath runs in one half: its own path or one above
        if not any(_under(path, p) for p in second):
            assert any(_under(path, p) for p in first), f"{path} runs in neither half"
    for path in first + second:
        assert (ROOT / path).is_dir(), path
        assert any(_under(path, t) for t in testpaths), f"{path} is not under a testpath"
    for path in first:  # and no test runs in both
        assert path not in second, path
        if any(_under(path, p) for p in second):
            assert path in ignored, f"{path} runs in both halves"
    for path in ignored:
        assert path in first, f"{path} is ignored by the second half and not run by the first"
