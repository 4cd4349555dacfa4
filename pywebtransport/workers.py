"""Worker processes on one UDP port: ``ServerApp.run(workers=N)``, ``serve --workers N``.

Theory of operation
-------------------
A :class:`Supervisor` process serves nothing itself. It

1. creates the SO_REUSEPORT socket group **itself, in index order**
   (:func:`quic.aio.workers.reuseport_sockets`) and attaches the steering program to it
   (:func:`quic.aio.workers.attach_steering`: the kernel sends a short-header datagram
   to the socket whose index its DCID names; where the kernel refuses, it logs it and
   workers forward such datagrams to each other). The supervisor, not the workers,
   binds: the kernel numbers a group's sockets in the order they join it and the
   program returns that number, so socket *i* must be worker *i*'s — workers binding
   their own sockets would join in whatever order they happen to start (and a
   restarted worker would join last). The supervisor also keeps every socket open as
   long as it runs: a socket leaving the group would renumber the others, so a worker
   that drains or dies leaves its socket, and the datagrams queued in it, to its
   replacement.
2. forks N workers (``multiprocessing`` with the **"fork"** start method). *The app
   object reaches the workers by fork*: each worker is a copy of the supervisor made
   after the app, its routes, hooks and configuration (and the certificate) were set
   up, so build the whole app before ``run()``; nothing is pickled, and lambdas or
   closures as handlers are fine. What the app does at startup (``on_startup`` hooks,
   connections to other services) runs in every worker. No event loop may be running
   in the supervisor (``run`` is blocking, as without workers). Fork is POSIX-only, as
   SO_REUSEPORT groups are: elsewhere ``workers > 1`` raises.
3. watches them: a worker that exits unexpectedly (a crash, ``kill -9``) is replaced
   on its socket; more than ``max_restarts`` unexpected exits within 60 s stop the
   whole group (exit status 1) rather than restart a crashing worker forever.
4. on SIGTERM/SIGINT stops every worker gracefully (each sends GOAWAY and DRAIN and
   waits up to ``config.shutdown_timeout``), then kills what is left after that
   time plus :data:`STOP_MARGIN`.
5. on SIGHUP (or :meth:`Supervisor.drain`) restarts the workers one at a time
   ("rolling"): worker *i* is sent SIGUSR1, stops taking new connections — their
   Initials, which the hash may still bring to its socket, are forwarded to worker
   *i+1* (:class:`quic.workers.WorkerRouting` ``successor``), so no new connection is
   lost — sends GOAWAY to its connections and WT DRAIN to its sessions, waits up to
   ``config.shutdown_timeout`` and exits; its replacement starts on the same socket,
   and once it listens the next worker drains.

Rooms across workers: a worker whose app has no backplane gets a
:class:`~pywebtransport.backplane.MeshBackplane` (``app.backplane``; its sockets in the
supervisor's private directory), so ``app.rooms`` broadcasts reach the members on every
worker; an app given a backplane before ``run()`` (``serve --redis``) keeps it — every
worker is then one instance of it.

Each worker serves the app with :meth:`ServerApp.serve` on its socket (a
:class:`quic.aio.workers.WorkerSpec`: the worker's index, the group size, the shared
stateless reset key and the private directory of the forwarding sockets, which the
supervisor removes on exit). ``app.worker_info`` (:class:`WorkerInfo`) tells a worker
who it is and holds the sessions per worker: a shared-memory array of N counters
(each worker writes its own slot when a session starts or ends) that ``/status``
reports.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from quic.aio.workers import WorkerSpec, attach_steering, reuseport_sockets, worker_scheme

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from pywebtransport.app import ServerApp

__all__ = [
    "MAX_RESTARTS_PER_MINUTE",
    "STOP_MARGIN",
    "Supervisor",
    "WorkerInfo",
    "run_workers",
]

logger = logging.getLogger("pywebtransport.workers")

#: Unexpected worker exits tolerated within 60 s; one more stops the group (exit 1).
MAX_RESTARTS_PER_MINUTE = 10
#: Seconds a stopping or draining worker gets beyond ``config.shutdown_timeout``
#: before it is killed.
STOP_MARGIN = 5.0
#: Seconds a new worker may take to listen before the supervisor gives up on it.
START_TIMEOUT = 30.0
_POLL = 0.1  # seconds between looks at the workers
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass
class WorkerInfo:
    """Who this worker is, and the sessions of every worker (shared memory)."""

    index: int
    count: int
    sessions: Any  # a shared ctypes array of ``count`` longs
    steering: bool = False  # the kernel steers by connection ID (else: forwarding only)
    spec: WorkerSpec | None = None

    def publish(self, sessions: int) -> None:
        """This worker now has ``sessions`` sessions."""
        self.sessions[self.index] = sessions

    def sessions_per_worker(self) -> list[int]:
        return [int(n) for n in self.sessions[: self.count]]


class _Flags:
    """What the signal handlers ask of the supervisor's loop."""

    def __init__(self) -> None:
        self.stop = False
        self.drain = False


class Supervisor:
    """Runs ``app`` in ``workers`` processes on one port (see the module docstring).

    ``on_listening(port)`` is called once every worker listens; ``on_worker(index,
    pid)`` each time a worker starts (the first time and after every restart)."""

    def __init__(
        self,
        app: ServerApp,
        host: str,
        port: int,
        workers: int,
        *,
        steer: bool = True,
        max_restarts: int = MAX_RESTARTS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        on_listening: Callable[[int], None] | None = None,
        on_worker: Callable[[int, int], None] | None = None,
    ) -> None:
        if not 2 <= workers <= 256:
            raise ValueError("workers must be 2..256 (one byte of the CID names the worker)")
        if "fork" not in multiprocessing.get_all_start_methods():
            raise RuntimeError("workers need the 'fork' start method (POSIX)")
        self.app = app
        self.host = host
        self.port = port
        self.workers = workers
        self.steer = steer
        self.max_restarts = max_restarts
        self.on_listening = on_listening
        self.on_worker = on_worker
        # the supervisor's one clock (start, restart and drain deadlines), given to it
        # like every component's ``now``: nothing below reads the time itself
        self._clock = clock
        self._ctx = multiprocessing.get_context("fork")
        # QUIC-LB settings (docs/quic-lb.md): the server ID becomes the host prefix of
        # every worker's server ID, which adds the worker byte; checked here, before a fork
        self._lb = app.config.quic_lb()
        self._lb_settings: dict[str, Any] = {}
        if self._lb is not None:
            self._lb_settings = {
                "host_id": self._lb.server_id,
                "config_rotation": self._lb.config_rotation,
                "nonce_length": self._lb.nonce_length,
                "key": self._lb.key,
            }
        worker_scheme(workers, 0, **self._lb_settings)
        self._flags = _Flags()
        self._procs: list[BaseProcess | None] = [None] * workers
        self._ready: Any = None
        self._sessions: Any = None
        self._restarts: collections.deque[float] = collections.deque(maxlen=max_restarts + 1)
        self._draining: int | None = None  # the worker being drained (rolling)
        self._drain_next: collections.deque[int] = collections.deque()
        self._drain_deadline = 0.0
        self.restarts = 0  # unexpected exits replaced
        self.drained = 0  # workers drained and replaced
        self.steering = False

    # -- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every worker gracefully and return from :meth:`run`."""
        self._flags.stop = True

    def drain(self) -> None:
        """Restart every worker, one at a time, each draining first."""
        self._flags.drain = True

    @property
    def pids(self) -> list[int | None]:
        return [p.pid if p is not None else None for p in self._procs]

    # -- running ----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`); the exit status."""
        sockets = reuseport_sockets(self.host, self.port, self.workers)
        port = sockets[0].getsockname()[1]
        directory = tempfile.mkdtemp(prefix="pywebtransport-workers-")
        os.mkdir(_rooms_directory(directory), 0o700)
        reset_key = os.urandom(32)
        if self.steer:
            scheme = self._spec_settings(0, sockets[0], directory, reset_key).scheme()
            self.steering = attach_steering(sockets[0], scheme)
        self._ready = self._ctx.RawArray("b", self.workers)
        self._sessions = self._ctx.RawArray("q", self.workers)
        previous = self._install_signals()
        status = 0
        try:
            for index in range(self.workers):
                self._start(index, sockets, directory, reset_key)
            if not self._wait_ready(range(self.workers)):
                status = 1
            elif self.on_listening is not None:
                self.on_listening(port)
            while status == 0 and not self._flags.stop:
                status = self._tick(sockets, directory, reset_key)
        finally:
            self._stop_all()
            for sock in sockets:
                sock.close()
            shutil.rmtree(directory, ignore_errors=True)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return status

    def _install_signals(self) -> dict[int, Any]:
        flags = self._flags

        def stop(signum: int, frame: Any) -> None:
            flags.stop = True

        def drain(signum: int, frame: Any) -> None:
            flags.drain = True

        previous: dict[int, Any] = {}
        for signum, handler in ((signal.SIGTERM, stop), (signal.SIGINT, stop)):
            previous[signum] = signal.signal(signum, handler)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, drain)
        return previous

    def _spec_settings(
        self, index: int, sock: socket.socket, directory: str, reset_key: bytes
    ) -> WorkerSpec:
        """Worker ``index``'s spec, with the app's QUIC-LB settings when it has some."""
        return WorkerSpec(index, self.workers, sock, directory, reset_key, **self._lb_settings)

    def _start(
        self, index: int, sockets: list[socket.socket], directory: str, reset_key: bytes
    ) -> None:
        self._ready[index] = 0
        self._sessions[index] = 0
        spec = self._spec_settings(index, sockets[index], directory, reset_key)
        info = WorkerInfo(index, self.workers, self._sessions, self.steering)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.app, self.host, sockets, spec, info, self._ready),
            name=f"pywebtransport-worker-{index}",
        )
        proc.start()
        self._procs[index] = proc
        logger.info("worker %d started (pid %s)", index, proc.pid)
        if self.on_worker is not None and proc.pid is not None:
            self.on_worker(index, proc.pid)

    def _wait_ready(self, indexes: range | list[int]) -> bool:
        deadline = self._clock() + START_TIMEOUT
        while self._clock() < deadline and not self._flags.stop:
            if all(self._ready[i] for i in indexes):
                return True
            dead = [i for i in indexes if not self._alive(i)]
            if dead:
                logger.error("worker(s) %s exited while starting", dead)
                return False
            time.sleep(0.02)
        return self._flags.stop  # stopping while starting is not a failure

    def _alive(self, index: int) -> bool:
        proc = self._procs[index]
        return proc is not None and proc.is_alive()

    def _tick(self, sockets: list[socket.socket], directory: str, reset_key: bytes) -> int:
        """One look at the workers: restart the dead, move the rolling drain on."""
        sentinels = [p.sentinel for p in self._procs if p is not None]
        wait(sentinels, timeout=_POLL)
        if self._flags.stop:
            return 0  # a group-wide SIGINT/SIGTERM ends the workers too: no restarts
        if self._flags.drain and self._draining is None and not self._drain_next:
            self._flags.drain = False
            self._drain_next.extend(range(self.workers))
        for index, proc in enumerate(self._procs):
            if proc is None or proc.is_alive():
                continue
            proc.join()
            if index == self._draining:
                self._draining = None
                self.drained += 1
                logger.info("worker %d drained (exit %s): replacing it", index, proc.exitcode)
            else:
                logger.warning("worker %d exited (code %s): restarting", index, proc.exitcode)
                if self._note_restart(self._clock()):
                    logger.error("over %d worker restarts in 60 s: stopping", self.max_restarts)
                    return 1
            self._start(index, sockets, directory, reset_key)
            if not self._wait_ready([index]):
                return 0 if self._flags.stop else 1
        self._roll()
        return 0

    def _note_restart(self, now: float) -> bool:
        """Count an unexpected exit at ``now``; True when more than ``max_restarts`` of
        them fell within the last 60 s (the group then stops)."""
        self._restarts.append(now)
        self.restarts += 1
        return sum(1 for t in self._restarts if now - t < 60.0) > self.max_restarts

    def _roll(self) -> None:
        """The rolling drain: one worker at a time, the next once its replacement runs."""
        if self._draining is not None:
            proc = self._procs[self._draining]
            if proc is not None and self._clock() > self._drain_deadline:
                logger.warning("worker %d did not drain in time: killing it", self._draining)
                proc.kill()
            return
        if not self._drain_next:
            return
        index = self._drain_next.popleft()
        proc = self._procs[index]
        if proc is None or proc.pid is None or not proc.is_alive():
            return
        self._draining = index
        self._drain_deadline = self._clock() + self._grace() + STOP_MARGIN
        logger.info("draining worker %d", index)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGUSR1)

    def _grace(self) -> float:
        return float(getattr(self.app.config, "shutdown_timeout", 5.0))

    def _stop_all(self) -> None:
        procs = [p for p in self._procs if p is not None and p.is_alive()]
        for proc in procs:
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = self._clock() + self._grace() + STOP_MARGIN
        for proc in procs:
            proc.join(max(0.0, deadline - self._clock()))
            if proc.is_alive():
                logger.warning("worker %s did not stop in time: killing it", proc.name)
                proc.kill()
                proc.join(1.0)


def _worker_main(
    app: ServerApp,
    host: str,
    sockets: list[socket.socket],
    spec: WorkerSpec,
    info: WorkerInfo,
    ready: Any,
) -> None:
    """The worker process (forked: ``app`` is the supervisor's, copied)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor's business
    _end_with_supervisor()
    for index, sock in enumerate(sockets):
        if index != spec.index:
            sock.close()  # the supervisor keeps them in the group
    info.spec = spec
    app.worker_info = info
    if app.backplane is None:
        # rooms across the workers of this host (a Redis backplane, set before run(),
        # is the app's choice: it spans hosts too, each worker an instance of it)
        from pywebtransport.backplane import MeshBackplane

        app.backplane = MeshBackplane(spec.index, spec.workers, _rooms_directory(spec.directory))
    asyncio.run(_serve_worker(app, host, spec, ready))


def _rooms_directory(directory: str) -> str:
    """Where the workers' :class:`~pywebtransport.backplane.MeshBackplane` sockets live
    (made by the supervisor inside its private directory)."""
    return os.path.join(directory, "rooms")


def _end_with_supervisor() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (``prctl(PR_SET_PDEATHSIG)``),
    so a killed supervisor leaves no orphan holding the port; elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_PDEATHSIG) not available")


async def _serve_worker(app: ServerApp, host: str, spec: WorkerSpec, ready: Any) -> None:
    loop = asyncio.get_running_loop()

    def drain() -> None:
        spec.drain()  # new connections go to the next worker from now on
        app.stop()  # GOAWAY, DRAIN, up to shutdown_timeout, then exit

    loop.add_signal_handler(signal.SIGTERM, app.stop)
    loop.add_signal_handler(signal.SIGINT, app.stop)
    loop.add_signal_handler(signal.SIGUSR1, drain)
    serving = asyncio.create_task(app.serve(host, 0, worker=spec))
    try:
        await app.wait_started()
    except BaseException:
        await asyncio.gather(serving, return_exceptions=True)
        raise
    ready[spec.index] = 1
    await serving


def run_workers(
    app: ServerApp,
    host: str,
    port: int,
    workers: int,
    **kwargs: Any,
) -> int:
    """Run ``app`` in ``workers`` processes on ``host:port`` until SIGTERM/SIGINT
    (blocking); the exit status. ``kwargs`` go to :class:`Supervisor`."""
    return Supervisor(app, host, port, workers, **kwargs).run()
