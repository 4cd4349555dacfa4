"""A whole in-memory bulk transfer (see :mod:`benchmarks.micro.inmem`)."""

from __future__ import annotations

from typing import Any

from benchmarks.micro.inmem import run


def test_inmemory_upload_2mb(benchmark: Any) -> None:
    result = benchmark.pedantic(run, args=(2_000_000,), rounds=3, iterations=1)
    assert result["MB"] == 2.0
