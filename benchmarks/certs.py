"""The harness's throwaway certificates: a root and a server certificate it issued.

Every server of a run presents the same ECDSA P-256 certificate for ``127.0.0.1`` and
``localhost`` (two days valid), issued by a root made with it
(:func:`quic.tls.selfsigned.generate_ca_and_leaf`). Clients do not verify it, except in
the handshake row's ``verified`` profile (:mod:`benchmarks.rows`), where each stack's
client checks the chain against that root (``--cafile``), as a client in its default
configuration does with a real server: the root stands in for the system trust store,
so no stack reads a large bundle per handshake and none gets a shortcut.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from quic.tls.selfsigned import generate_ca_and_leaf

__all__ = ["Certificates", "write_certificates"]


@dataclass(frozen=True)
class Certificates:
    cert: Path  # the server's certificate (PEM)
    key: Path  # its private key (PEM, PKCS#8)
    ca: Path  # the root that issued it (PEM): ``--cafile`` of a verifying client


def write_certificates(directory: Path) -> Certificates:
    """A root and a server certificate it issued, written to ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    root, leaf = generate_ca_and_leaf(now, hostnames=("localhost", "127.0.0.1"), days=2)
    paths = Certificates(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    leaf.write(paths.cert, paths.key)
    paths.ca.write_bytes(root.certificate_pem)
    return paths
