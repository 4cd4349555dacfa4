#!/usr/bin/env python3
"""aioquic's hq-interop peer (``aioquic_hq.py``) with Retry: test-only, run as a process.

The same command line and output as ``aioquic_hq.py``, except that:

* the server sends a Retry to every new connection (aioquic's ``serve(retry=True)``:
  RFC 9000 §8.1.2) and its ``CONNECTED`` line tells whether the connection went
  through a Retry (``"retry": true``: aioquic set retry_source_connection_id);
* the client prints ``RETRY {"retry_count": n}`` once each connection's handshake is
  complete (aioquic counts the Retry packets it accepted).

aioquic exposes neither publicly; both are read from its internals.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aioquic_hq
from aioquic.asyncio.server import serve
from aioquic.quic.connection import QuicConnection
from aioquic_peer import emit

_negotiated = aioquic_hq.negotiated
_reported: set[int] = set()  # connections whose RETRY line is out (negotiated() runs twice)


def negotiated(quic: QuicConnection) -> dict[str, Any]:
    info = dict(_negotiated(quic))
    if quic._is_client and id(quic) not in _reported:
        _reported.add(id(quic))
        emit("RETRY", {"retry_count": int(getattr(quic, "_retry_count", 0))})
    else:
        info["retry"] = getattr(quic, "_retry_source_connection_id", None) is not None
    return info


aioquic_hq.negotiated = negotiated
aioquic_hq.serve = functools.partial(serve, retry=True)

if __name__ == "__main__":
    sys.exit(aioquic_hq.main())
