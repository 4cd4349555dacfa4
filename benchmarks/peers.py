"""Where each benchmark adapter runs: the interpreters of the peers and their venvs.

Theory of operation
-------------------
Our stack and aioquic 1.7.2 run in the interpreter that runs the harness. Two peers
need their own environment:

* pywebtransport 0.21.1 (PyPI) has the import name of this repository's package, so it
  lives in a venv on Python 3.12 (``<venvs>/pwt021``) and its adapter runs *isolated*:
  the working directory is a scratch folder holding only a ``benchmarks`` symlink to
  this package and ``PYTHONPATH`` is removed, so ``import pywebtransport`` finds 0.21.1.
* qh3 2.x runs in the harness's interpreter when it is installed there, else in
  ``<venvs>/qh3``.

:func:`availability` says whether an environment is usable (its interpreter exists
and imports the peer); :func:`setup_commands` lists the shell commands that create it,
which ``python -m benchmarks.harness --setup-peers`` runs (pip from PyPI) and which
the report prints for a peer that is not available.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_VENVS = Path(os.environ.get("BENCH_VENVS", "/work/venvs"))


@dataclass(frozen=True)
class Env:
    name: str
    python: Path  # interpreter that runs the adapter
    isolated: bool  # run from a scratch folder without PYTHONPATH (import-name clash)
    probe: str  # a module that must import there
    venv: Path | None = None  # the venv to create, if this is not the main interpreter
    base_python: str | None = None  # interpreter that creates the venv
    packages: tuple[str, ...] = ()  # pip requirements of the venv


def _python312() -> str | None:
    found = shutil.which("python3.12")
    if found:
        return found
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python")))
    return candidates[-1] if candidates else None


def environments(venvs: Path = DEFAULT_VENVS) -> dict[str, Env]:
    main = Path(sys.executable)
    qh3_here = _imports(str(main), "qh3", False)
    qh3_venv = venvs / "qh3"
    return {
        "main": Env("main", main, False, "cryptography"),
        "aioquic": Env("aioquic", main, False, "aioquic", packages=("aioquic==1.7.2",)),
        "qh3": (
            Env("qh3", main, False, "qh3")
            if qh3_here
            else Env(
                "qh3",
                qh3_venv / "bin" / "python",
                True,
                "qh3",
                qh3_venv,
                sys.executable,
                ("qh3>=2,<3", "uvloop"),
            )
        ),
        "pwt021": Env(
            "pwt021",
            venvs / "pwt021" / "bin" / "python",
            True,
            "pywebtransport._pywebtransport",
            venvs / "pwt021",
            _python312(),
            ("pywebtransport==0.21.1", "uvloop"),
        ),
    }


@functools.cache
def _imports(python: str, module: str, isolated: bool) -> bool:
    if not Path(python).exists():
        return False
    env = {k: v for k, v in os.environ.items() if not (isolated and k == "PYTHONPATH")}
    cwd = "/" if isolated else str(ROOT)
    try:
        done = subprocess.run(
            [python, "-c", f"import {module}"], cwd=cwd, env=env, capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def availability(env: Env) -> str | None:
    """``None`` if usable, else why not (with the commands that would fix it)."""
    if _imports(str(env.python), env.probe, env.isolated):
        return None
    commands = setup_commands(env)
    fix = " && ".join(commands) if commands else f"pip install {' '.join(env.packages)}"
    return f"{env.probe} does not import with {env.python} (fix: {fix})"


def setup_commands(env: Env) -> list[str]:
    if env.venv is None:
        return [f"{sys.executable} -m pip install {' '.join(env.packages)}"] if env.packages else []
    base = env.base_python or "python3.12"
    pip = env.venv / "bin" / "pip"
    return [f"{base} -m venv {env.venv}", f"{pip} install {' '.join(env.packages)}"]


def setup(env: Env) -> str | None:
    """Create ``env``'s venv and install its packages; ``None`` on success."""
    if env.venv is None or availability(env) is None:
        return None
    if env.base_python is None:
        return f"no interpreter to create {env.venv} (need Python 3.12 for {env.name})"
    steps = [
        [env.base_python, "-m", "venv", str(env.venv)],
        [str(env.venv / "bin" / "pip"), "install", "-q", *env.packages],
    ]
    for step in steps:
        print("+", " ".join(step), file=sys.stderr, flush=True)
        if subprocess.run(step).returncode != 0:
            return f"failed: {' '.join(step)}"
    _imports.cache_clear()
    return availability(env)


def isolation_dir(scratch: Path) -> Path:
    """A folder holding only a ``benchmarks`` symlink (the cwd of isolated adapters)."""
    folder = scratch / "isolated"
    if not folder.exists():
        folder.mkdir()
        (folder / "benchmarks").symlink_to(BENCH_DIR)
    return folder
