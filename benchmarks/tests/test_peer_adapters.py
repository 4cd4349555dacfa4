"""The pywebtransport 0.21.1 adapter, run in its own venv (skipped where it is missing).

The adapter reads in the library's own stream chunk (64 KiB): the earlier 1 MiB reads
made its echo server send 1 MiB bursts into the peer's 208 KiB socket buffers and ran
it at a third of its speed (``benchmarks/wt_pwt021.py``). Nothing here asserts a speed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.peers import DEFAULT_VENVS, availability, environments, isolation_dir

PWT021 = environments(DEFAULT_VENVS)["pwt021"]
needs_pwt021 = pytest.mark.skipif(
    availability(PWT021) is not None, reason="pywebtransport 0.21.1 venv not available"
)


@needs_pwt021
def test_reads_are_the_library_own_stream_chunk(tmp_path: Path) -> None:
    probe = (
        "import json; from benchmarks import wt_pwt021 as a; from pywebtransport import stream;"
        "print(json.dumps([a.READ_SIZE, stream._READ_CHUNK_SIZE, stream._WRITE_CHUNK_SIZE,"
        " stream.__file__]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(PWT021.python), "-c", probe],
        cwd=isolation_dir(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    read_size, read_chunk, write_chunk, where = json.loads(done.stdout)
    assert str(PWT021.venv) in where  # the installed 0.21.1, not this repository
    assert read_size == read_chunk == write_chunk == 65536


@needs_pwt021
def test_echo_runs_through_the_harness(tmp_path: Path) -> None:
    out = io.StringIO()
    argv = ["--rows", "wt-echo", "--stacks", "pwt021", "--profiles", "default"]
    argv += ["--repeat", "1", "--echo-mib", "1", "--json", str(tmp_path / "runs.json")]
    with contextlib.redirect_stdout(out):
        status = harness.main(argv)
    assert status == 0, out.getvalue()
    (run,) = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert run["result"]["bytes"] == 1 << 20 and run["result"]["value"] > 0
    assert "64 KiB reads" in run["result"]["config"]
