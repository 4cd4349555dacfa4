"""Spoofed Initial packets, cheap enough to make tens of thousands (endpoint scale tests).

A real client's first Initial is decrypted once (its frames: the first CRYPTO bytes of a
ClientHello, then padding); :func:`sealed_initial` seals those frames again for any
Destination/Source Connection ID, so the result authenticates at a server exactly like
the client's own first packet but opens a different connection each time. A copy whose
DCID is then changed (:func:`undecryptable_initial`) looks just as valid but fails
authentication: the server derives its Initial keys from the DCID (RFC 9001 §5.2).
"""

from __future__ import annotations

import random
from functools import lru_cache

from quic.configuration import QuicConfiguration
from quic.connection import QuicConnection
from quic.packet import PacketType, parse_header
from quic.packet_builder import PacketAssembler
from quic.protection import initial_keys
from quic.tls.groups import NamedGroup
from quic.versions import QuicVersion
from tests.support.quicpair import client_config

V1 = int(QuicVersion.VERSION_1)


@lru_cache(maxsize=4)
def client_initial_frames(complete_hello: bool = False) -> bytes:
    """The plaintext frames of a real client's first Initial packet.

    ``complete_hello``: a ClientHello small enough for one packet (x25519 only), so a
    server answers with its whole first flight; else the first part of a large one.
    """
    kwargs = {"key_share_groups": (NamedGroup.x25519,)} if complete_hello else {}
    config: QuicConfiguration = client_config(**kwargs)
    client = QuicConnection(config)
    client.connect(("192.0.2.1", 443), 0.0)
    datagram = client.datagrams_to_send(0.0)[0][0]
    header = parse_header(datagram, 0, 8)
    _, read = initial_keys(client.version, header.dcid, is_client=False)
    view = memoryview(datagram)[: header.end]
    plain, pn = read.unprotect_header(view, header.pn_offset, -1)
    return read.decrypt_payload(plain, pn, view).rstrip(b"\x00")


def sealed_initial(
    frames: bytes,
    dcid: bytes,
    scid: bytes,
    version: int = V1,
    packet_number: int = 0,
    pad: bool = True,
) -> bytes:
    """A client Initial datagram carrying ``frames``, sealed for ``dcid`` (padded to
    1200 bytes unless ``pad`` is False)."""
    write, _ = initial_keys(version, dcid, is_client=True)
    asm = PacketAssembler(1200)
    asm.begin_datagram(1200)
    assert asm.begin_packet(PacketType.INITIAL, version, dcid, scid, write, 0, packet_number, None)
    asm.push(frames[: asm.room])
    asm.end_packet()
    asm.end_datagram(pad_initial=pad)
    return asm.datagrams[0]


def decryptable_initial(rng: random.Random, complete_hello: bool = False) -> bytes:
    """An Initial for a random new connection that authenticates (and never continues)."""
    return sealed_initial(client_initial_frames(complete_hello), rng.randbytes(8), rng.randbytes(8))


def undecryptable_initial(rng: random.Random) -> bytes:
    """A valid-looking 1200-byte Initial for a random DCID that fails authentication."""
    datagram = bytearray(decryptable_initial(rng))
    datagram[6:14] = rng.randbytes(8)  # the keys no longer match the DCID
    return bytes(datagram)


def random_address(rng: random.Random) -> tuple[str, int]:
    return (f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", 1024)
