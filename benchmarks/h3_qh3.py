"""qh3 2.x HTTP/3 adapter: :mod:`benchmarks.h3_aioquic` run on qh3.

qh3 is an aioquic fork with the same API (Rust code inside for crypto, TLS and packet
work); :func:`benchmarks.aioquic_tweaks.alias_qh3_as_aioquic` makes ``import aioquic``
load qh3 in this process, then the aioquic adapter runs unchanged.
"""

from __future__ import annotations

from benchmarks.aioquic_tweaks import alias_qh3_as_aioquic

alias_qh3_as_aioquic()

from benchmarks import h3_aioquic  # noqa: E402  (after the alias, on purpose)
from benchmarks.h3_common import H3Stack, main  # noqa: E402

STACK = H3Stack("qh3", h3_aioquic.serve, h3_aioquic.download, h3_aioquic.describe)

if __name__ == "__main__":
    main(STACK)
