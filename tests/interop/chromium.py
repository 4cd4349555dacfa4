"""Helpers to drive headless Chromium against a local HTTP/3 server (test-only).

Theory of operation
-------------------
Chromium is the real-world HTTP/3 client our server must work with. It runs as a
separate process, exactly as ``/work/shared/PEERS.md`` prescribes:

* a new, empty ``--user-data-dir`` per run (removed afterwards), and the headless flags
  of :data:`HEADLESS_FLAGS` (they work as root);
* plain HTTP/3 to ``https://127.0.0.1:PORT`` needs both
  ``--origin-to-force-quic-on=127.0.0.1:PORT`` (no Alt-Svc discovery over TCP) and
  ``--ignore-certificate-errors-spki-list=<base64 SHA-256 of the SPKI>``: see
  :func:`quic_flags`; always ``127.0.0.1``, never ``localhost`` (Chromium tries ``::1``
  first and does not fall back);
* :func:`dump_dom` runs ``--dump-dom URL`` and returns the serialized DOM; it returns
  before asynchronous JavaScript finishes, so it only suits static pages;
* :func:`netlog_events` reads a ``--log-net-log`` file (e.g. the negotiated QUIC
  version, ``QUIC_SESSION_VERSION_NEGOTIATED``);
* for pages that compute something asynchronously, :class:`ResultServer` is a small
  plain-HTTP server on 127.0.0.1 that the page POSTs its JSON result to (``text/plain``
  with ``mode: 'no-cors'`` is a CORS-safelisted request, so no preflight is needed), and
  :class:`ChromiumProcess` keeps the browser running until the test has the result,
  then ends it by its process id (SIGTERM, then SIGKILL of its process group, which the
  helper created with ``start_new_session``).

Nothing here imports the library: Chromium talks to the server over real UDP sockets.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
RESULT_LIMIT = 1 << 20  # bytes accepted in one result POST


def find_chromium() -> str | None:
    """Path of an installed Chromium (or Chrome) binary, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def spki_sha256_base64(cert_pem: bytes) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's SPKI pin)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def quic_flags(port: int, spki_b64: str, host: str = "127.0.0.1") -> list[str]:
    """Flags that make Chromium use HTTP/3 to ``host:port`` and accept its certificate."""
    return [
        f"--origin-to-force-quic-on={host}:{port}",
        f"--ignore-certificate-errors-spki-list={spki_b64}",
    ]


def _command(binary: str, profile: Path, flags: Sequence[str], url: str, dump: bool) -> list[str]:
    command = [binary, *HEADLESS_FLAGS, f"--user-data-dir={profile}", *flags]
    if dump:
        command.append("--dump-dom")
    command.append(url)
    return command


def end_process_group(process: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the browser by its PID, then SIGKILL the process group it leads."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Renderer/GPU/zygote children share the group created by start_new_session=True;
    # its id is the browser's PID.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def dump_dom(
    url: str,
    flags: Sequence[str] = (),
    *,
    timeout: float = 30.0,
    binary: str | None = None,
) -> tuple[int, str, str]:
    """Run ``chromium --headless --dump-dom URL``: (return code, DOM, stderr).

    The run is bounded by ``timeout`` seconds (the browser is then killed and
    ``TimeoutError`` raised with its stderr).
    """
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not installed")
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    process = subprocess.Popen(
        _command(binary, profile, flags, url, dump=True),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_process_group(process, 2.0)
        out, err = process.communicate()
        raise TimeoutError(f"chromium --dump-dom {url} timed out; stderr:\n{err}") from None
    finally:
        end_process_group(process, 2.0)
        shutil.rmtree(profile, ignore_errors=True)
    return process.returncode, out, err


def netlog_events(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(event type name, params) of a ``--log-net-log`` file, in order.

    Chromium completes the JSON only when it exits cleanly; a file cut short after the
    last whole event is repaired by closing the ``events`` array.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        log = json.loads(text)
    except ValueError:
        head = text.rstrip().rstrip(",")
        cut = head.rfind("}")
        log = json.loads(head[: cut + 1] + "]}")
    names = {code: name for name, code in log["constants"]["logEventTypes"].items()}
    return [
        (names.get(event.get("type"), str(event.get("type"))), event.get("params") or {})
        for event in log.get("events", [])
    ]


class ChromiumProcess:
    """Headless Chromium showing ``url`` until :meth:`stop` (use as a context manager)."""

    def __init__(self, url: str, flags: Sequence[str] = (), binary: str | None = None) -> None:
        found = binary or find_chromium()
        if found is None:
            raise FileNotFoundError("chromium not installed")
        self.binary = found
        self.url = url
        self.flags = list(flags)
        self.profile: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ChromiumProcess:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            _command(self.binary, self.profile, self.flags, self.url, dump=False),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        """What the browser printed so far (stdout and stderr)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self, grace: float = 5.0) -> None:
        if self.process is not None:
            end_process_group(self.process, grace)
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def __enter__(self) -> ChromiumProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


class _ResultHandler(BaseHTTPRequestHandler):
    server: _ResultHTTPServer

    def do_POST(self) -> None:
        length = min(int(self.headers.get("content-length") or 0), RESULT_LIMIT)
        body = self.rfile.read(length)
        try:
            record: Any = json.loads(body)
        except ValueError:
            record = {"unparsable": body.decode("utf-8", "replace")}
        self.server.results.put({"path": self.path, "body": record})
        self._reply(204)

    def do_OPTIONS(self) -> None:  # a CORS preflight, should the page send one
        self._reply(204)

    def _reply(self, status: int) -> None:
        self.send_response(status)
        self.send_header("access-control-allow-origin", "*")
        self.send_header("access-control-allow-methods", "POST")
        self.send_header("access-control-allow-headers", "content-type")
        self.send_header("access-control-allow-private-network", "true")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ResultHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    results: queue.Queue[dict[str, Any]]


class ResultServer:
    """Plain-HTTP server on 127.0.0.1:0 that collects JSON POSTed by a test page."""

    def __init__(self) -> None:
        self._server = _ResultHTTPServer(("127.0.0.1", 0), _ResultHandler)
        self._server.results = queue.Queue()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/result"

    def wait(self, timeout: float) -> dict[str, Any]:
        """The next POSTed record ``{"path", "body"}``; ``TimeoutError`` if none arrives."""
        try:
            return self._server.results.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no result POSTed within {timeout} s") from None

    def __enter__(self) -> ResultServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
