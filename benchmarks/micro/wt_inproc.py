"""``benchmarks.wt_ours``'s WebTransport server started on the running loop, in this
process (the micro benchmarks that drive both sides on one loop use it)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from benchmarks import wt_ours
from benchmarks.certs import write_certificates


async def serve_here(args: argparse.Namespace) -> tuple[asyncio.Future[None], asyncio.Event]:
    """Start the server on ``args`` (port 0: any) and set ``args.port`` to the port it
    bound; returns its task and the event that stops it."""
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def wait_for_stop() -> None:
        await stop.wait()

    patches = {
        "announce": listening.set_result,
        "wait_for_stop": wait_for_stop,
        "install_stats_handlers": lambda _path: None,
    }
    saved = {name: getattr(wt_ours, name) for name in patches}
    for name, value in patches.items():
        setattr(wt_ours, name, value)
    try:
        server = asyncio.ensure_future(wt_ours.serve(args))
        args.port = await listening
    finally:
        for name, value in saved.items():
            setattr(wt_ours, name, value)
    return server, stop


def server_args(directory: Path, max_sessions: int, **extra: Any) -> argparse.Namespace:
    """``wt_ours.serve``'s arguments on 127.0.0.1, any port, with a certificate written
    into ``directory``, room for ``max_sessions`` sessions, and ``extra`` as they are."""
    certs = write_certificates(directory)
    return argparse.Namespace(
        host="127.0.0.1",
        port=0,
        cert=str(certs.cert),
        key=str(certs.key),
        stats_file=None,
        max_sessions=max_sessions,
        key_shares="default",
        **extra,
    )
