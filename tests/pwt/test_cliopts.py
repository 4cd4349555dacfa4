"""The trust and draft options shared by ``probe`` and ``baton``."""

from __future__ import annotations

import argparse

import pytest

from pywebtransport.baton.client import add_baton_parser
from pywebtransport.cliopts import add_trust_options, parse_trust
from pywebtransport.probe.runner import add_probe_parser

DIGEST = "ab" * 32


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_trust_options(parser, ("draft16", "draft02"))
    return parser


def test_hashes_drafts_and_defaults() -> None:
    trust = parse_trust(_parser().parse_args(["--cert-hash", DIGEST, "--cert-hash", "cd" * 32]))
    assert trust.cert_hashes == [bytes.fromhex(DIGEST), bytes.fromhex("cd" * 32)]
    assert (trust.ca_certs, trust.insecure, trust.drafts) == (None, False, None)
    colon = ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2))
    assert parse_trust(_parser().parse_args(["--cert-hash", colon])).cert_hashes == [
        bytes.fromhex(DIGEST)
    ]
    trust = parse_trust(_parser().parse_args(["--insecure", "--drafts", " draft16, ,draft02"]))
    assert trust.insecure and trust.drafts == ("draft16", "draft02")


@pytest.mark.parametrize("bad", ["ab" * 31, "zz" * 32, "ab" * 33])
def test_bad_hash_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        parse_trust(_parser().parse_args(["--cert-hash", bad]))


def test_trust_choices_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--insecure", "--ca-certs", "ca.pem"])


@pytest.mark.parametrize("add", [add_probe_parser, add_baton_parser])
def test_probe_and_baton_share_the_options(add: object) -> None:
    root = argparse.ArgumentParser()
    commands = root.add_subparsers(dest="command")
    add(commands)  # type: ignore[operator]
    name = "probe" if add is add_probe_parser else "baton"
    args = root.parse_args([name, "https://x/", "--cert-hash", DIGEST, "--drafts", "draft16"])
    trust = parse_trust(args)
    assert trust.cert_hashes == [bytes.fromhex(DIGEST)] and trust.drafts == ("draft16",)
