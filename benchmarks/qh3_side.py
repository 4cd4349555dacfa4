"""qh3 2.x adapter of the raw QUIC rows: :mod:`benchmarks.aioquic_side` run on qh3.

qh3 is an aioquic fork with the same API (Rust code inside for crypto, TLS and packet
work); :func:`benchmarks.aioquic_tweaks.alias_qh3_as_aioquic` makes ``import aioquic``
load qh3 in this process, then the aioquic adapter runs unchanged (same CLI, wire
protocol and output as every ``<stack>_side`` adapter: ``benchmarks/README.md``).
"""

from __future__ import annotations

import sys

from benchmarks.aioquic_tweaks import alias_qh3_as_aioquic

alias_qh3_as_aioquic()

from benchmarks.aioquic_side import main  # noqa: E402  (after the alias, on purpose)

if __name__ == "__main__":
    sys.exit(main())
