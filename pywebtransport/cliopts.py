"""Command-line options shared by the client-side subcommands (``probe``, ``baton``).

How a client trusts the server — a CA file, certificate SHA-256 hashes (the browser's
``serverCertificateHashes``), or no verification — and which WebTransport drafts it may
offer. One definition, so the subcommands spell and check them the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Trust", "add_trust_options", "parse_trust"]


@dataclass(frozen=True, slots=True)
class Trust:
    """The parsed trust and draft options."""

    ca_certs: str | None
    cert_hashes: list[bytes]
    insecure: bool
    drafts: tuple[str, ...] | None  # None: the subcommand's default


def add_trust_options(parser: argparse.ArgumentParser, default_drafts: Sequence[str]) -> None:
    """Add ``--ca-certs`` | ``--cert-hash`` (repeatable) | ``--insecure`` (one of them) and
    ``--drafts LIST`` to ``parser``."""
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--ca-certs", metavar="FILE", help="PEM file of trusted CAs")
    trust.add_argument(
        "--cert-hash",
        metavar="HEX",
        action="append",
        default=[],
        help="accept the server certificate with this SHA-256 (repeatable)",
    )
    trust.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument(
        "--drafts",
        metavar="LIST",
        help=f"comma-separated drafts to offer (default: {','.join(default_drafts)})",
    )


def parse_trust(args: argparse.Namespace) -> Trust:
    """Check and convert the options of :func:`add_trust_options` (raises ValueError)."""
    hashes: list[bytes] = []
    for text in args.cert_hash:
        try:
            digest = bytes.fromhex(text.replace(":", ""))
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ValueError("--cert-hash takes a SHA-256 (64 hex digits)")
        hashes.append(digest)
    drafts = None
    if args.drafts:
        drafts = tuple(name.strip() for name in args.drafts.split(",") if name.strip())
    return Trust(args.ca_certs, hashes, bool(args.insecure), drafts)
