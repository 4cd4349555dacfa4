"""The rows the harness measures (issue 10's table), the stacks and the profiles.

Theory of operation
-------------------
A :class:`Row` is one workload of one protocol family (``quic``: raw QUIC over the
``<stack>_side`` adapters; ``h3``: HTTP/3 over ``h3_<stack>``; ``wt``: WebTransport over
``wt_<stack>``), run for a list of :class:`Target` s (our stack first, then the peers,
plus pseudo-targets such as "ours with tracemalloc") under one or more profiles. A
:class:`Metric` names one number of the client's RESULT line; a row can report several
from the same run (the 1,000-session row gives memory, p50, p99 and successes).

Profiles (adapter flags):

* ``default``: the asyncio event loop, each library's default key shares;
* ``best``: uvloop (where installed in that stack's environment; the report shows the
  loop that really ran) and x25519-only key shares (fewest bytes and operations) —
  except where a row names a faster loop for a stack (:attr:`Row.best_loops`): a
  stack's best is its fastest configuration, not the one we expected to be fastest;
* ``matched``: asyncio, x25519-only key shares for everyone (the handshake row's
  like-for-like comparison);
* ``verified`` (the full handshake only): ``default`` with certificate verification on,
  as every library's client has it by default: each client checks the server's chain
  against the run's root (``--cafile``, :mod:`benchmarks.certs`). The other profiles
  turn verification off for every stack, as a benchmark's throwaway certificate needs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

PROFILES: dict[str, tuple[str, ...]] = {
    "default": ("--loop", "asyncio", "--key-shares", "default"),
    "best": ("--loop", "uvloop", "--key-shares", "x25519"),
    "matched": ("--loop", "asyncio", "--key-shares", "x25519"),
    "verified": ("--loop", "asyncio", "--key-shares", "default"),
}
#: Profiles whose clients verify the server's certificate (given ``--cafile``).
VERIFYING_PROFILES = frozenset({"verified"})
PROFILE_TEXT = {
    "default": "default: asyncio, library default key shares",
    "best": "best: uvloop (aioquic, qh3: asyncio in the raw QUIC and HTTP/3 rows), x25519 only",
    "matched": "matched: asyncio, x25519 only",
    "verified": "verified: asyncio, library default key shares, certificate chain verified",
}

# aioquic and qh3 take their clock from ``loop.time()``, which uvloop rounds to whole
# milliseconds (libuv's ``uv_now``), and uvloop runs a ``call_at`` due in under 0.5 ms at
# once. Their pacers then gain send credit only once per millisecond tick (aioquic: its
# token bucket, 2-16 packets a tick) and their sub-millisecond pacing timers spin until
# the tick: in a 50 MB raw download aioquic's server woke 1.67 million times, 1.66
# million of them to send nothing (5,500 wake-ups, 306 empty, on asyncio). So their
# best loop in the two bulk rows is asyncio (measured: docs/benchmarks.md); in the
# WebTransport rows uvloop is faster for aioquic and stays.
BULK_BEST_LOOPS = (("aioquic", "asyncio"), ("qh3", "asyncio"))

# (family, stack) -> (adapter module, environment name in benchmarks.peers)
ADAPTERS: dict[tuple[str, str], tuple[str, str]] = {
    ("quic", "ours"): ("benchmarks.ours_side", "main"),
    ("quic", "aioquic"): ("benchmarks.aioquic_side", "aioquic"),
    ("quic", "qh3"): ("benchmarks.qh3_side", "qh3"),
    ("h3", "ours"): ("benchmarks.h3_ours", "main"),
    ("h3", "aioquic"): ("benchmarks.h3_aioquic", "aioquic"),
    ("h3", "qh3"): ("benchmarks.h3_qh3", "qh3"),
    ("wt", "ours"): ("benchmarks.wt_ours", "main"),
    ("wt", "pwt021"): ("benchmarks.wt_pwt021", "pwt021"),
    ("wt", "aioquic"): ("benchmarks.wt_aioquic", "aioquic"),
}
STACK_NAMES = {
    "ours": "ours",
    "aioquic": "aioquic 1.7.2",
    "qh3": "qh3 2.x",
    "pwt021": "pywebtransport 0.21.1",
}


@dataclass(frozen=True)
class Target:
    label: str  # column name in the report
    stack: str
    client_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    key: str  # key in the RESULT json
    label: str
    unit: str
    higher_is_better: bool
    targets: tuple[str, ...] | None = None  # labels that report it (None: all)
    series: bool = False  # a list (one number per slice)


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    family: str
    workload: str
    client_args: tuple[str, ...]
    targets: tuple[Target, ...]
    metrics: tuple[Metric, ...]
    profiles: tuple[str, ...]
    timeout: float
    wants_server_stats: bool = False
    server_args: tuple[str, ...] = field(default_factory=tuple)
    best_loops: tuple[tuple[str, str], ...] = ()  # (stack, loop): its faster loop for best

    def loop(self, profile: str, stack: str) -> str:
        """The event loop ``stack`` runs under ``profile`` in this row (client and server)."""
        if profile == "best":
            for name, loop in self.best_loops:
                if name == stack:
                    return loop
        return PROFILES[profile][1]


def _targets(*stacks: str) -> tuple[Target, ...]:
    return tuple(Target(stack, stack) for stack in stacks)


def _handshake_row(
    workload: str,
    what: str,
    metric: str,
    count: int,
    server_args: tuple[str, ...] = (),
    profiles: tuple[str, ...] = ("default", "matched", "best"),
) -> Row:
    """A row of ``count`` sequential handshakes (the ``handshake`` and ``resume``
    workloads): ours, aioquic and qh3, in the default, matched and best profiles (the
    full handshake also ``verified``; a resumed one checks no certificate)."""
    return Row(
        workload,
        f"{what}, {count} sequential (median)",
        "quic",
        workload,
        ("--count", str(count)),
        _targets("ours", "aioquic", "qh3"),
        (Metric("value", metric, "ms", False),),
        profiles,
        60.0 + 2.0 * count,
        server_args=server_args,
    )


def build_rows(args: argparse.Namespace) -> list[Row]:
    quick = args.quick
    bulk_mb = args.bulk_mb or (10.0 if quick else 200.0)
    get_mb = args.get_mb or (5.0 if quick else 50.0)
    handshakes = args.handshakes or (10 if quick else 50)
    echo_mib = args.echo_mib or (4.0 if quick else 50.0)
    seconds = args.dgram_seconds or (1.0 if quick else 5.0)
    sessions = args.sessions or (50 if quick else 1000)
    long_mib = args.long_mib or (8.0 if quick else 200.0)
    slice_mib = long_mib / 4
    wt = ("ours", "pwt021", "aioquic")
    rows = [
        Row(
            "quic-bulk",
            f"raw QUIC: download {bulk_mb:g} MB on one stream",
            "quic",
            "download",
            ("--size-mb", str(bulk_mb)),
            _targets("ours", "aioquic", "qh3"),
            (Metric("value", "throughput", "MB/s", True),),
            ("default", "best"),
            120.0 + 4.0 * bulk_mb,
            best_loops=BULK_BEST_LOOPS,
        ),
        Row(
            "h3-get",
            f"HTTP/3 GET of {get_mb:g} MB",
            "h3",
            "h3-get",
            ("--size-mb", str(get_mb)),
            _targets("ours", "aioquic", "qh3"),
            (Metric("value", "throughput", "MB/s", True),),
            ("default", "best"),
            120.0 + 4.0 * get_mb,
            best_loops=BULK_BEST_LOOPS,
        ),
        _handshake_row(
            "handshake",
            "handshake",
            "median handshake",
            handshakes,
            profiles=("default", "verified", "matched", "best"),
        ),
        _handshake_row(
            "resume",
            "handshake resumed with a session ticket",
            "median resumed handshake",
            handshakes,
            ("--tickets",),  # the servers issue tickets only when asked
        ),
        Row(
            "wt-echo",
            f"WebTransport bidi echo, {echo_mib:g} MiB",
            "wt",
            "wt-echo",
            ("--size-mib", str(echo_mib)),
            _targets(*wt),
            (Metric("value", "throughput", "MB/s", True),),
            ("default", "best"),
            120.0 + 8.0 * echo_mib,
        ),
        Row(
            "wt-dgram",
            "WT datagram ping-pong, 64 B, 1 in flight",
            "wt",
            "wt-dgram",
            ("--seconds", str(seconds)),
            _targets(*wt),
            (Metric("value", "round trips", "rt/s", True),),
            ("default", "best"),
            60.0 + seconds,
        ),
        Row(
            "wt-sessions",
            f"{sessions} idle WT sessions, then one 64-B echo on each at once",
            "wt",
            "wt-sessions",
            ("--sessions", str(sessions)),
            (*_targets(*wt), Target("ours tracemalloc", "ours", ("--trace",))),
            (
                Metric("kb_per_session", "server RSS per idle session", "KB", False, wt),
                Metric(
                    "kb_per_session",
                    "server tracemalloc per idle session",
                    "KB",
                    False,
                    ("ours tracemalloc",),
                ),
                Metric("p50_ms", "burst echo p50", "ms", False, wt),
                Metric("p99_ms", "burst echo p99", "ms", False, wt),
                Metric("ok", f"burst echoes ok (of {sessions})", "", True, wt),
            ),
            ("default", "best"),
            180.0 + 0.5 * sessions,
            wants_server_stats=True,
        ),
        Row(
            "wt-long",
            f"one WT session echoing {long_mib:g} MiB ({slice_mib:g} MiB slices)",
            "wt",
            "wt-long",
            ("--size-mib", str(long_mib), "--slice-mib", str(slice_mib)),
            _targets(*wt),
            (
                Metric("slice_mbps", "rate per slice", "MB/s", True, series=True),
                Metric(
                    "slice_rss_mb",
                    "server RSS above the start, at each slice end",
                    "MiB",
                    False,
                    series=True,
                ),
                Metric(
                    "rss_after_close_mb",
                    "server RSS above the start, 1 s after close",
                    "MiB",
                    False,
                ),
            ),
            ("default", "best"),
            300.0 + 10.0 * long_mib,
            wants_server_stats=True,
        ),
    ]
    return [row for row in rows if args.rows is None or row.key in args.rows]


ROW_KEYS = (
    "quic-bulk",
    "h3-get",
    "handshake",
    "resume",
    "wt-echo",
    "wt-dgram",
    "wt-sessions",
    "wt-long",
)
