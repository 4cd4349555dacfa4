"""pytest-benchmark micro benchmarks of the QUIC hot paths (``bench_*.py``).

Run with ``python -m pytest benchmarks/micro/bench_*.py`` (the default test run does not
collect them). :mod:`benchmarks.micro.inmem` also drives a whole in-memory bulk transfer
and reports the CPU time spent by each side: ``python -m benchmarks.micro.inmem``.
"""
