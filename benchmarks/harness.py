"""End-to-end loopback benchmark: the same workloads on our stack and on aioquic.

Theory of operation
-------------------
``python -m benchmarks.harness [--stacks ours,aioquic] [--bulk-mb 200] [--handshakes 200]
[--pingpong-seconds 5] [--packet-size 1200]``

Each stack is an *adapter module* ``benchmarks/<stack>_side.py`` with one CLI (documented
in ``benchmarks/README.md``): ``server`` prints ``LISTENING <port>`` and serves the bench
protocol of :mod:`benchmarks`; ``client --workload W`` runs one workload and prints
``RESULT {json}`` (or ``ERROR ...``). For every stack and workload the harness starts a
fresh server process on 127.0.0.1 (port 0, the OS picks), runs the client in a second
process, reads its result, then stops the server by closing its stdin. Client and server
are therefore always separate processes, and one failing workload cannot disturb the
next. A stack whose adapter module is missing (``ours`` until ``benchmarks/ours_side.py``
exists) or whose dependency is not installed is reported as "not available"; the others
still run.

Workloads: bulk upload and bulk download of ``--bulk-mb`` * 10^6 bytes on one stream
(MB/s), median full-handshake time over ``--handshakes`` sequential connections (ms),
and 64-byte DATAGRAM ping-pong for ``--pingpong-seconds`` (round trips/s). The table
shows each stack's number, the ratio ours/aioquic, and the same comparison as
"N.NNx faster" (ours relative to aioquic: throughput ratio, or aioquic_ms / ours_ms for
handshakes), so above 1 means ours is better.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import ipaddress
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks import WORKLOADS, parse_result_line

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
STACKS = ("ours", "aioquic")
STACK_REQUIREMENTS = {"aioquic": "aioquic"}  # stack → importable module it needs
SERVER_START_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Workload:
    key: str  # the adapter's --workload value
    label: str
    unit: str
    higher_is_better: bool
    client_args: tuple[str, ...]
    timeout: float  # seconds for the client process


@dataclass(slots=True)
class Outcome:
    value: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def build_workloads(args: argparse.Namespace) -> list[Workload]:
    mb = args.bulk_mb
    bulk_timeout = 120.0 + 2.0 * mb  # generous: 0.5 MB/s is still a result
    table = {
        "upload": Workload(
            "upload", f"bulk upload {mb:g} MB", "MB/s", True, ("--size-mb", str(mb)), bulk_timeout
        ),
        "download": Workload(
            "download",
            f"bulk download {mb:g} MB",
            "MB/s",
            True,
            ("--size-mb", str(mb)),
            bulk_timeout,
        ),
        "handshake": Workload(
            "handshake",
            f"handshake median ({args.handshakes} conns)",
            "ms",
            False,
            ("--count", str(args.handshakes)),
            60.0 + 1.0 * args.handshakes,
        ),
        "pingpong": Workload(
            "pingpong",
            f"datagram ping-pong 64 B ({args.pingpong_seconds:g} s)",
            "rt/s",
            True,
            ("--seconds", str(args.pingpong_seconds)),
            60.0 + args.pingpong_seconds,
        ),
    }
    return [table[key] for key in args.workloads]


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway ECDSA P-256 self-signed certificate for 127.0.0.1 / localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class StackAdapter:
    """Runs ``python -m benchmarks.<name>_side`` server and client processes."""

    def __init__(self, name: str, packet_size: int) -> None:
        self.name = name
        self.module = f"benchmarks.{name}_side"
        self.packet_size = packet_size

    def unavailable_reason(self) -> str | None:
        path = BENCH_DIR / f"{self.name}_side.py"
        if not path.exists():
            return f"benchmarks/{path.name} missing"
        needed = STACK_REQUIREMENTS.get(self.name)
        if needed and importlib.util.find_spec(needed) is None:
            return f"{needed} is not installed"
        return None

    def _command(self, role: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.module,
            role,
            "--host",
            "127.0.0.1",
            "--packet-size",
            str(self.packet_size),
            *extra,
        ]

    @contextlib.contextmanager
    def server(self, cert: Path, key: Path) -> Iterator[int]:
        """Start a server process, yield its port, stop it (close stdin, then signals)."""
        with tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen(
                self._command("server", "--port", "0", "--cert", str(cert), "--key", str(key)),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            try:
                yield self._await_port(process, errors)
            finally:
                stop_process(process)

    def _await_port(self, process: subprocess.Popen[str], errors: IO[str]) -> int:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], SERVER_START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            errors.seek(0)
            raise RuntimeError(f"server did not start: {line!r} {tail(errors.read())}")
        return int(line.split()[1])

    def run_client(self, port: int, workload: Workload) -> Outcome:
        command = self._command(
            "client",
            "--port",
            str(port),
            "--workload",
            workload.key,
            "--timeout",
            str(workload.timeout),
            *workload.client_args,
        )
        try:
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=workload.timeout + 15
            )
        except subprocess.TimeoutExpired:
            return Outcome(error=f"client timed out after {workload.timeout + 15:g} s")
        for line in done.stdout.splitlines():
            result = parse_result_line(line)
            if result is not None:
                return Outcome(value=float(result["value"]), details=result)
            if line.startswith("ERROR"):
                return Outcome(error=line)
        return Outcome(error=f"no RESULT line (rc={done.returncode}) {tail(done.stderr)}")

    def run(self, workload: Workload, cert: Path, key: Path) -> Outcome:
        try:
            with self.server(cert, key) as port:
                return self.run_client(port, workload)
        except (RuntimeError, OSError) as exc:
            return Outcome(error=str(exc))


def stop_process(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    for action in (None, process.terminate, process.kill):
        if action is not None:
            action()
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            continue
        break
    if process.stdout is not None:
        process.stdout.close()


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def speedup(workload: Workload, ours: float, theirs: float) -> float:
    """Above 1 means ours is better (faster transfer, more round trips, shorter handshakes)."""
    return ours / theirs if workload.higher_is_better else theirs / ours


def format_value(outcome: Outcome | None) -> str:
    if outcome is None or outcome.value is None:
        return "n/a" if outcome is None else "error"
    value = outcome.value
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def render_table(
    workloads: Sequence[Workload],
    stacks: Sequence[str],
    results: dict[str, dict[str, Outcome]],
) -> str:
    compare = "ours" in stacks and "aioquic" in stacks
    header = ["workload", "unit", *stacks] + (["ours/aioquic", "speed"] if compare else [])
    rows = [header]
    for workload in workloads:
        outcomes = [results.get(stack, {}).get(workload.key) for stack in stacks]
        row = [workload.label, workload.unit, *(format_value(o) for o in outcomes)]
        if compare:
            ours = results.get("ours", {}).get(workload.key)
            theirs = results.get("aioquic", {}).get(workload.key)
            if ours and theirs and ours.value and theirs.value:
                row += [
                    f"{ours.value / theirs.value:.2f}",
                    f"{speedup(workload, ours.value, theirs.value):.2f}x faster",
                ]
            else:
                row += ["-", "-"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace) -> tuple[dict[str, dict[str, Outcome]], dict[str, str]]:
    workloads = build_workloads(args)
    results: dict[str, dict[str, Outcome]] = {}
    unavailable: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pwt-bench-") as tmp:
        cert, key = write_certificate(Path(tmp))
        for stack in args.stacks:
            adapter = StackAdapter(stack, args.packet_size)
            reason = adapter.unavailable_reason()
            if reason is not None:
                unavailable[stack] = reason
                progress(f"{stack}: not available ({reason})")
                continue
            results[stack] = {}
            for workload in workloads:
                progress(f"[{stack}] {workload.label} ...")
                outcome = adapter.run(workload, cert, key)
                results[stack][workload.key] = outcome
                shown = outcome.error or f"{format_value(outcome)} {workload.unit}"
                progress(f"[{stack}] {workload.label}: {shown}")
    return results, unavailable


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, Outcome]],
    unavailable: dict[str, str],
) -> str:
    workloads = build_workloads(args)
    lines = [
        f"QUIC loopback benchmark: 127.0.0.1, packet size {args.packet_size} B, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} CPUs, client and server in separate processes",
        "",
        render_table(workloads, args.stacks, results),
        "",
    ]
    lines += [f"{stack}: not available ({why})" for stack, why in unavailable.items()]
    for stack, outcomes in results.items():
        lines += [
            f"{stack}: {key}: {outcome.error}"
            for key, outcome in outcomes.items()
            if outcome.error is not None
        ]
    return "\n".join(lines).rstrip() + "\n"


def csv_choice(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if item not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}; got {text!r}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description="Loopback QUIC benchmark of our stack against aioquic.",
    )
    parser.add_argument("--stacks", type=csv_choice(STACKS), default=list(STACKS))
    parser.add_argument("--workloads", type=csv_choice(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--bulk-mb", type=float, default=200.0, help="10^6 bytes per transfer")
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--pingpong-seconds", type=float, default=5.0)
    parser.add_argument("--packet-size", type=int, default=1200, help="max UDP payload bytes")
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results, unavailable = run_all(args)
    print(report(args, results, unavailable), end="", flush=True)
    if args.json is not None:
        raw = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "unavailable": unavailable,
            "results": {
                stack: {
                    key: {"value": o.value, "error": o.error, "details": o.details}
                    for key, o in outcomes.items()
                }
                for stack, outcomes in results.items()
            },
        }
        args.json.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    failed = any(o.error for outcomes in results.values() for o in outcomes.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
