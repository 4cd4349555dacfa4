"""End-to-end loopback benchmark: our stack against each peer, every row of issue 10.

Theory of operation
-------------------
``python -m benchmarks.harness [--quick] [--rows ...] [--repeat 3] [--setup-peers]``

The rows (:mod:`benchmarks.rows`): raw QUIC bulk download, HTTP/3 GET, sequential
handshakes, WebTransport bidi echo, WT datagram ping-pong, 1,000 idle WT sessions (server
memory per session, then one echo on each at once) and one long WT echo (rate and
server RSS per slice). Each row runs for our stack and each peer, under each of its
profiles (``default``; ``best``, ``matched``, ``verified``: :mod:`benchmarks.rows`).
One *run* is: a fresh server process (``python -m benchmarks.<adapter> server``,
127.0.0.1, port 0 or a free port, the per-run certificate of :mod:`benchmarks.certs`,
a stats file for memory figures), one client process for the
workload, the client's ``RESULT`` line, then the server stopped (stdin closed, then
SIGTERM, then SIGKILL). Runs alternate between stacks — ours, peer 1, peer 2, ours,
... — ``--repeat`` times, and the report gives each stack's median (and min..max and
successes), and ours/peer ratios marked better or worse; the detail tables add the
range of the ratios round by round (:func:`paired_ratios`: the two runs of a round are
minutes apart, so the machine's drift between rounds cancels out of each).

Peers run where :mod:`benchmarks.peers` says (pywebtransport 0.21.1 isolated in its
own venv; qh3 in the main interpreter or its venv). A peer whose environment is missing
is reported "not available" with the commands that create it (``--setup-peers`` runs
them); a run that fails is reported with its error and the others go on. Progress goes
to stderr; the report (markdown tables) to stdout; exit status 1 if any run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks import parse_result_line
from benchmarks.certs import write_certificates
from benchmarks.peers import (
    DEFAULT_VENVS,
    ROOT,
    Env,
    availability,
    environments,
    isolation_dir,
    setup,
)
from benchmarks.rows import (
    ADAPTERS,
    PROFILE_TEXT,
    PROFILES,
    ROW_KEYS,
    STACK_NAMES,
    VERIFYING_PROFILES,
    Metric,
    Row,
    Target,
    build_rows,
)

SERVER_START_TIMEOUT = 30.0
PIN_CPUS = {"server": 0, "client": 1}  # --pin
PINNED = " (pinned: server on CPU 0, client on CPU 1)"


@dataclass(slots=True)
class Outcome:
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(slots=True)
class Cell:
    """All runs of one target under one profile of one row."""

    outcomes: list[Outcome] = field(default_factory=list)

    def values(self, key: str) -> list[Any]:
        return [o.result[key] for o in self.outcomes if o.result and o.result.get(key) is not None]

    def errors(self) -> list[str]:
        return [o.error for o in self.outcomes if o.error]

    def details(self, key: str) -> str | None:
        found = self.values(key)
        return str(found[0]) if found else None


class Runner:
    """Starts adapter processes in the right interpreter and folder."""

    def __init__(self, args: argparse.Namespace, scratch: Path, envs: dict[str, Env]) -> None:
        self.args = args
        self.scratch = scratch
        self.envs = envs
        self.certificates = write_certificates(scratch)
        self.counter = 0

    def _process_env(self, env: Env) -> tuple[Path, dict[str, str]]:
        if env.isolated:
            variables = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            return isolation_dir(self.scratch), variables
        return ROOT, dict(os.environ)

    def affinity(self, role: str) -> Callable[[], None] | None:
        """With ``--pin``: the server on CPU 0, the client on CPU 1 (every thread of each)."""
        if not self.args.pin:
            return None
        cpus = {PIN_CPUS[role]}
        return lambda: os.sched_setaffinity(0, cpus)

    def _base(self, row: Row, target: Target, role: str, profile: str) -> list[str]:
        module, env_name = ADAPTERS[(row.family, target.stack)]
        command = [str(self.envs[env_name].python), "-m", module, role, "--host", "127.0.0.1"]
        command += ["--loop", row.loop(profile, target.stack)]
        if row.family == "quic":
            command += ["--packet-size", str(self.args.packet_size)]
        return command

    @contextlib.contextmanager
    def server(self, row: Row, target: Target, profile: str) -> Iterator[tuple[int, int, Path]]:
        env = self.envs[ADAPTERS[(row.family, target.stack)][1]]
        cwd, variables = self._process_env(env)
        self.counter += 1
        stats = self.scratch / f"stats-{self.counter}.json"
        command = self._base(row, target, "server", profile)
        certs = self.certificates
        command += ["--port", "0", "--cert", str(certs.cert), "--key", str(certs.key)]
        command += ["--stats-file", str(stats), *row.server_args]
        with tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=variables,
                preexec_fn=self.affinity("server"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            try:
                yield _await_port(process, errors), process.pid, stats
            finally:
                stop_process(process)

    def run(self, row: Row, target: Target, profile: str) -> Outcome:
        before = udp_receive_drops()
        outcome = self._run(row, target, profile)
        after = udp_receive_drops()
        if outcome.result is not None and before is not None and after is not None:
            outcome.result["udp_drops"] = after - before
        return outcome

    def _run(self, row: Row, target: Target, profile: str) -> Outcome:
        env = self.envs[ADAPTERS[(row.family, target.stack)][1]]
        cwd, variables = self._process_env(env)
        try:
            with self.server(row, target, profile) as (port, pid, stats):
                command = self._base(row, target, "client", profile)
                command += ["--port", str(port), "--workload", row.workload]
                command += ["--key-shares", PROFILES[profile][3]]
                if profile in VERIFYING_PROFILES:
                    command += ["--cafile", str(self.certificates.ca)]
                command += ["--timeout", str(row.timeout), *row.client_args, *target.client_args]
                if row.wants_server_stats:
                    command += ["--server-pid", str(pid), "--stats-file", str(stats)]
                return run_client(
                    command, cwd, variables, row.timeout + 30, self.affinity("client")
                )
        except (RuntimeError, OSError) as exc:
            return Outcome(error=str(exc))


def udp_receive_drops(snmp: str = "/proc/net/snmp") -> int | None:
    """The kernel's count of UDP datagrams dropped for a full socket receive buffer.

    Linux's ``Udp: ... RcvbufErrors`` counter, for the whole machine (other processes'
    drops count too; on a quiet machine they are the run's). A run's delta goes into its
    RESULT as ``udp_drops``: a stack whose sockets overflow loses packets on loopback,
    and its throughput then depends on when its threads get a core. ``None`` where the
    file or the counter does not exist.
    """
    try:
        with open(snmp, encoding="ascii") as table:
            lines = [line.split() for line in table if line.startswith("Udp:")]
    except OSError:
        return None
    if len(lines) < 2 or "RcvbufErrors" not in lines[0]:
        return None
    return int(lines[1][lines[0].index("RcvbufErrors")])


def _await_port(process: subprocess.Popen[str], errors: IO[str]) -> int:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], SERVER_START_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("LISTENING "):
        errors.seek(0)
        raise RuntimeError(f"server did not start: {line!r} {tail(errors.read())}")
    return int(line.split()[1])


def run_client(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=preexec,
        )
    except subprocess.TimeoutExpired:
        return Outcome(error=f"client timed out after {timeout:g} s")
    for line in done.stdout.splitlines():
        result = parse_result_line(line)
        if result is not None:
            return Outcome(result=result)
        if line.startswith("ERROR"):
            return Outcome(error=line)
    return Outcome(error=f"no RESULT line (rc={done.returncode}) {tail(done.stderr)}")


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


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measuring

Results = dict[tuple[str, str, str], Cell]  # (row key, profile, target label) -> runs


def available_targets(
    row: Row, envs: dict[str, Env], unavailable: dict[str, str], stacks: Sequence[str]
) -> list[Target]:
    chosen = []
    for target in row.targets:
        if target.stack not in stacks:
            continue
        env = envs[ADAPTERS[(row.family, target.stack)][1]]
        reason = unavailable.get(env.name)
        if reason is None and env.name not in unavailable:
            reason = availability(env)
            unavailable[env.name] = reason or ""
        if reason:
            continue
        chosen.append(target)
    return chosen


def row_profiles(row: Row, args: argparse.Namespace) -> list[str]:
    """The profiles ``row`` runs: ``--profiles`` if given, else the row's own; a
    verifying profile only where the row lists it (only the full handshake's
    adapters take ``--cafile``)."""
    if not args.profiles:
        return list(row.profiles)
    return [p for p in args.profiles if p in row.profiles or p not in VERIFYING_PROFILES]


def measure(
    args: argparse.Namespace, rows: list[Row], runner: Runner
) -> tuple[Results, dict[str, str]]:
    results: Results = {}
    unavailable: dict[str, str] = {}
    for row in rows:
        targets = available_targets(row, runner.envs, unavailable, args.stacks)
        for profile in row_profiles(row, args):
            for round_index in range(args.repeat):
                for target in targets:  # alternate: A B C A B C ...
                    cell = results.setdefault((row.key, profile, target.label), Cell())
                    outcome = runner.run(row, target, profile)
                    cell.outcomes.append(outcome)
                    shown = outcome.error or _short(row, target, outcome)
                    if outcome.result is not None and "udp_drops" in outcome.result:
                        shown += f" ({outcome.result['udp_drops']} UDP drops)"
                    progress(
                        f"[{row.key} {profile} {round_index + 1}/{args.repeat}] "
                        f"{target.label}: {shown}"
                    )
    return results, {k: v for k, v in unavailable.items() if v}


def _short(row: Row, target: Target, outcome: Outcome) -> str:
    assert outcome.result is not None
    parts = []
    for metric in row.metrics:
        if metric.targets is not None and target.label not in metric.targets:
            continue
        value = outcome.result.get(metric.key)
        if value is not None:
            parts.append(f"{metric.label} {format_value(value)} {metric.unit}".strip())
    return "; ".join(dict.fromkeys(parts))


# --------------------------------------------------------------------------- reporting


def format_value(value: Any) -> str:
    if isinstance(value, list):
        return " → ".join(format_value(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def summarize(cell: Cell | None, metric: Metric) -> tuple[Any, str]:
    """(median, "median (min..max, k/n ok)") of a cell's runs for one metric."""
    if cell is None:
        return None, "n/a"
    values = cell.values(metric.key)
    runs = len(cell.outcomes)
    if not values:
        return None, f"failed ({len(cell.errors())}/{runs})"
    if metric.series:
        length = min(len(v) for v in values)
        median: Any = [statistics.median(v[i] for v in values) for i in range(length)]
        return median, f"{format_value(median)} ({len(values)}/{runs} ok)"
    median = statistics.median(values)
    spread = f"{format_value(min(values))}..{format_value(max(values))}"
    return median, f"{format_value(median)} ({spread}, {len(values)}/{runs} ok)"


def ratio(metric: Metric, ours: Any, theirs: Any) -> str:
    if metric.series or not ours or not theirs:
        return "—"
    value = ours / theirs
    if abs(value - 1) < 0.005:
        return "1.00x (same)"
    better = value > 1 if metric.higher_is_better else value < 1
    return f"{value:.2f}x ({'better' if better else 'worse'})"


def paired_ratios(ours: Cell | None, theirs: Cell | None, metric: Metric) -> list[float]:
    """ours/peer of each round in which both runs gave the metric. The runs alternate
    (ours, peer, ..., ours, peer, ...), so the two runs of a round are minutes apart at
    most: a machine whose speed drifts between rounds (this 2-core VM's moves by 40%
    within ten minutes) moves both, and the spread of these ratios is the spread of
    the comparison itself, which the min..max of each stack's own runs overstates."""
    if ours is None or theirs is None or metric.series:
        return []
    pairs = []
    for mine, peer in zip(ours.outcomes, theirs.outcomes, strict=False):
        a = mine.result.get(metric.key) if mine.result else None
        b = peer.result.get(metric.key) if peer.result else None
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            pairs.append(a / b)
    return pairs


def render_summary(rows: list[Row], results: Results, args: argparse.Namespace) -> list[str]:
    """One compact table: each metric's medians, peers with ours/peer in brackets."""
    peers = [s for s in STACK_NAMES if s != "ours" and s in args.stacks]
    lines = [
        "| workload | metric | config | ours | " + " | ".join(STACK_NAMES[p] for p in peers) + " |",
        "|---" * (4 + len(peers)) + "|",
    ]
    for row in rows:
        for metric in row.metrics:
            labels = [t.label for t in row.targets]
            if metric.targets is not None:
                labels = [label for label in labels if label in metric.targets]
            own = "ours" if "ours" in labels else labels[0]
            for profile in row_profiles(row, args):
                ours, _ = summarize(results.get((row.key, profile, own)), metric)
                cells = [format_value(ours) if ours is not None else "—"]
                for peer in peers:
                    theirs, _ = summarize(results.get((row.key, profile, peer)), metric)
                    if peer not in labels or theirs is None:
                        cells.append("—")
                        continue
                    shown = ratio(metric, ours, theirs).split(" ")[0]
                    suffix = "" if shown == "—" else f" ({shown})"
                    cells.append(f"{format_value(theirs)}{suffix}")
                unit = f" ({metric.unit})" if metric.unit else ""
                title = row.title if metric is row.metrics[0] else ""
                lines.append(
                    f"| {title} | {metric.label}{unit} | {profile} | " + " | ".join(cells) + " |"
                )
    note = (
        "Peer cells: median (ours/peer: above 1 is better for MB/s, rt/s and ok counts, "
        "below 1 for ms, KB and MiB). Details per row below."
    )
    return [*lines, "", note, ""]


def render_row(row: Row, results: Results, profiles: Sequence[str]) -> list[str]:
    lines = [
        f"### {row.title}",
        "",
        "| metric | config | ours | peer | peer value | ours/peer |",
        "|---|---|---|---|---|---|",
    ]
    for metric in row.metrics:
        labels = [
            t.label for t in row.targets if metric.targets is None or t.label in metric.targets
        ]
        for profile in profiles:
            own = next((label for label in labels if row.targets[0].label == label), labels[0])
            ours_median, ours_text = summarize(results.get((row.key, profile, own)), metric)
            peers: list[str | None] = [label for label in labels if label != own] or [None]
            for peer in peers:
                pairs: list[float] = []
                if peer is None:
                    peer_text, peer_median, peer_name = "—", None, "—"
                else:
                    peer_median, peer_text = summarize(
                        results.get((row.key, profile, peer)), metric
                    )
                    peer_name = STACK_NAMES.get(peer, peer)
                    pairs = paired_ratios(
                        results.get((row.key, profile, own)),
                        results.get((row.key, profile, peer)),
                        metric,
                    )
                shown = ratio(metric, ours_median, peer_median)
                if len(pairs) > 1 and shown != "—":
                    shown += f"; per round {min(pairs):.2f}..{max(pairs):.2f}x"
                unit = f" ({metric.unit})" if metric.unit else ""
                lines.append(
                    f"| {metric.label}{unit} | {profile} | {ours_text} | {peer_name} | "
                    f"{peer_text} | {shown} |"
                )
    return [*lines, ""]


def configurations(results: Results) -> list[str]:
    """One line per distinct (stack, configuration, loop), with the rows that used it."""
    seen: dict[tuple[str, str], list[str]] = {}
    for (row_key, profile, label), cell in results.items():
        config = cell.details("config")
        if config is not None:
            key = (label, f"{config}; loop {cell.details('loop')}")
            seen.setdefault(key, []).append(f"{row_key}/{profile}")
    return [
        f"- {label}: {config} ({', '.join(dict.fromkeys(rows))})"
        for (label, config), rows in sorted(seen.items())
    ]


def report(
    args: argparse.Namespace, rows: list[Row], results: Results, unavailable: dict[str, str]
) -> str:
    load = os.getloadavg()
    lines = [
        "## Loopback benchmark",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; Python "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, load "
        f"average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; client and server "
        f"in separate processes on 127.0.0.1{PINNED if args.pin else ''}; medians of "
        f"{args.repeat} alternating runs "
        f"(min..max, successes); {'quick sizes' if args.quick else 'full sizes'}.",
        "Profiles: " + "; ".join(PROFILE_TEXT.values()) + ".",
        "",
    ]
    lines += render_summary(rows, results, args)
    for row in rows:
        lines += render_row(row, results, row_profiles(row, args))
    lines += [f"- not available: {STACK_NAMES.get(k, k)}: {why}" for k, why in unavailable.items()]
    errors = [
        f"- error: {key[0]} / {key[1]} / {key[2]}: {error}"
        for key, cell in results.items()
        for error in cell.errors()
    ]
    lines += errors
    lines += ["", "Configurations as reported by each client:", *configurations(results)]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- CLI


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
        description="Loopback benchmark of this stack against aioquic, qh3 and "
        "pywebtransport 0.21.1 (issue 10's rows).",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: proves every row")
    parser.add_argument("--rows", type=csv_choice(ROW_KEYS), default=None)
    parser.add_argument(
        "--stacks",
        type=csv_choice(tuple(STACK_NAMES)),
        default=list(STACK_NAMES),
        help="stacks to run (ours is the reference of every ratio)",
    )
    parser.add_argument("--profiles", type=csv_choice(tuple(PROFILES)), default=None)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per stack")
    parser.add_argument("--bulk-mb", type=float, default=None, help="raw QUIC MB (200)")
    parser.add_argument("--get-mb", type=float, default=None, help="HTTP/3 GET MB (50)")
    parser.add_argument("--handshakes", type=int, default=None, help="per run (50)")
    parser.add_argument("--echo-mib", type=float, default=None, help="WT echo MiB (50)")
    parser.add_argument("--dgram-seconds", type=float, default=None, help="(5)")
    parser.add_argument("--sessions", type=int, default=None, help="idle WT sessions (1000)")
    parser.add_argument("--long-mib", type=float, default=None, help="long WT echo MiB (200)")
    parser.add_argument("--packet-size", type=int, default=1200, help="raw QUIC UDP payload")
    parser.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="peers' venvs")
    parser.add_argument("--setup-peers", action="store_true", help="create missing peer venvs")
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    parser.add_argument(
        "--pin", action="store_true", help="server on CPU 0, client on CPU 1 (every stack)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.pin and not set(PIN_CPUS.values()) <= os.sched_getaffinity(0):
        parser.error(f"--pin needs CPUs {sorted(PIN_CPUS.values())}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    envs = environments(args.venvs)
    if args.setup_peers:
        for env in envs.values():
            problem = setup(env)
            if problem:
                progress(f"{env.name}: {problem}")
    rows = build_rows(args)
    with tempfile.TemporaryDirectory(prefix="pwt-bench-") as tmp:
        runner = Runner(args, Path(tmp), envs)
        results, unavailable = measure(args, rows, runner)
    print(report(args, rows, results, unavailable), end="", flush=True)
    if args.json is not None:
        raw = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "unavailable": unavailable,
            "runs": [
                {"row": k[0], "profile": k[1], "target": k[2], "result": o.result, "error": o.error}
                for k, cell in results.items()
                for o in cell.outcomes
            ],
        }
        args.json.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    failed = any(cell.errors() for cell in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
