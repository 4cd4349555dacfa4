"""Key schedule and transcript tests: RFC 8448 §3 known answers, plus independent checks.

The RFC 8448 "Simple 1-RTT Handshake" values (handshake bytes, shared secret and every
derived secret) are facts from that document; the independent checks recompute the
RFC 9846 §7.1 formulas with ``cryptography``'s HKDF rather than ``quic.tls.hkdf``.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from quic.tls.key_schedule import (
    KeySchedule,
    Transcript,
    export_keying_material,
    finished_key,
    next_application_secret,
    resumption_psk,
    verify_data,
)
from quic.tls.messages import (
    Certificate,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    ServerHello,
    decode_handshake,
)
from quic.tls.suites import CipherSuite

H = bytes.fromhex

# -- RFC 8448 §3 ------------------------------------------------------------------------
CH = H(
    "010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7000006130113"
    "031302010000910000000b0009000006736572766572ff01000100000a00140012001d001700180019010001"
    "0101020103010400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae"
    "4d5413691e529aaf2c002b0003020304000d0020001e040305030603020308040805080604010501060102010"
    "402050206020202002d00020101001c00024001"
)
SH = H(
    "020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e"
    "00330024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b0002"
    "0304"
)
EE = H("080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000")
CERT = H(
    "0b0001b9000001b50001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e"
    "310c300a06035504031303727361301e170d3136303733303031323335395a170d323630373330303132333"
    "5395a300e310c300a0603550403130372736130819f300d06092a864886f70d010101050003818d00308189"
    "02818100b4bb498f8279303d980836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc"
    "9a95137ace6c1af19eaa6af98c7ced43120998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda"
    "430846748030530ef0461c8ca9d9efbfae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f"
    "0203010001a31a301830090603551d1304023000300b0603551d0f0404030205a0300d06092a864886f70d01"
    "010b05000381810085aad2a0e5b9276b908c65f73a7267170618a54c5f8a7b337d2df7a594365417f2eae8f8"
    "a58c8f8172f9319cf36b7fd6c55b80f21a03015156726096fd335e5e67f2dbf102702e608ccae6bec1fc63a4"
    "2a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759409ba3eac9d91d402dcc0cc8f8961229ac9187"
    "b42b4de10000"
)
CV = H(
    "0f000084080400805a747c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc90"
    "db78e2d33a5c141a078653fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac"
    "027671459e46445c9ea58c181e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfac"
    "d42f74f3"
)
SERVER_FINISHED = H("140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718")
CLIENT_FINISHED = H("14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61")
SHARED = H("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d")

EARLY_SECRET = H("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a")
HANDSHAKE_SECRET = H("1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac")
HELLO_HASH = H("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8")
C_HS = H("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
S_HS = H("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
MAIN_SECRET = H("18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919")
SERVER_FINISHED_KEY = H("008d3b66f816ea559f96b537e885c31fc068bf492c652f01f288a1d8cdc19fc8")
C_AP = H("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
S_AP = H("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
EXPORTER = H("fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50")
CLIENT_FINISHED_HASH = H("209145a96ee8e2a122ff810047cc952684658d6049e86429426db87c54ad143d")
RESUMPTION = H("7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c")
TICKET_PSK = H("4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3")
PSK_EARLY_SECRET = H("9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c")
# RFC 8448 §4: the resumed ClientHello's binder over the truncated ClientHello.
PARTIAL_CH_HASH = H("63224b2e4573f2d3454ca84b9d009a04f6be9e05711a8396473aefa01e924a14")
BINDER = H("3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d")

AES128 = CipherSuite.TLS_AES_128_GCM_SHA256


def test_rfc8448_messages_decode() -> None:
    ch = decode_handshake(CH)
    assert isinstance(ch, ClientHello)
    assert ch.server_name == "server"
    assert ch.cipher_suites == (0x1301, 0x1303, 0x1302)
    assert ch.key_share is not None and ch.key_share[0].group == 0x001D
    sh = decode_handshake(SH)
    assert isinstance(sh, ServerHello)
    assert sh.supported_version == 0x0304 and sh.cipher_suite == 0x1301
    ee = decode_handshake(EE)
    assert isinstance(ee, EncryptedExtensions) and ee.server_name_ack
    cert = decode_handshake(CERT)
    assert isinstance(cert, Certificate) and len(cert.certificate_list) == 1
    cv = decode_handshake(CV)
    assert isinstance(cv, CertificateVerify) and cv.algorithm == 0x0804
    assert isinstance(decode_handshake(SERVER_FINISHED), Finished)


def test_rfc8448_full_schedule() -> None:
    transcript = Transcript()
    transcript.add(CH)
    transcript.set_hash("sha256")
    transcript.add(SH)
    assert transcript.digest() == HELLO_HASH

    schedule = KeySchedule(AES128)
    assert schedule.early_secret == EARLY_SECRET
    schedule.set_shared_secret(SHARED)
    assert schedule.secret == HANDSHAKE_SECRET
    assert schedule.handshake_traffic_secrets(HELLO_HASH) == (C_HS, S_HS)

    assert finished_key("sha256", S_HS) == SERVER_FINISHED_KEY
    for message in (EE, CERT, CV):
        transcript.add(message)
    assert verify_data("sha256", S_HS, transcript.digest()) == SERVER_FINISHED[4:]
    transcript.add(SERVER_FINISHED)

    schedule.enter_main()
    assert schedule.secret == MAIN_SECRET
    server_finished_hash = transcript.digest()
    assert schedule.application_traffic_secrets(server_finished_hash) == (C_AP, S_AP)
    assert schedule.exporter_secret(server_finished_hash) == EXPORTER

    assert verify_data("sha256", C_HS, server_finished_hash) == CLIENT_FINISHED[4:]
    transcript.add(CLIENT_FINISHED)
    assert transcript.digest() == CLIENT_FINISHED_HASH
    assert schedule.resumption_secret(CLIENT_FINISHED_HASH) == RESUMPTION


def test_rfc8448_resumption_psk_and_binder() -> None:
    psk = resumption_psk("sha256", RESUMPTION, b"\x00\x00")
    assert psk == TICKET_PSK
    schedule = KeySchedule(AES128, psk=psk)
    assert schedule.early_secret == PSK_EARLY_SECRET
    assert verify_data("sha256", schedule.binder_key(), PARTIAL_CH_HASH) == BINDER


def test_transcript_buffers_until_hash_chosen() -> None:
    transcript = Transcript()
    with pytest.raises(ValueError):
        transcript.digest()
    transcript.add(b"abc")
    transcript.add(b"def")
    transcript.set_hash("sha384")
    assert transcript.hash_name == "sha384"
    assert transcript.digest() == hashlib.sha384(b"abcdef").digest()
    transcript.set_hash("sha384")  # idempotent
    with pytest.raises(ValueError):
        transcript.set_hash("sha256")


def test_transcript_hello_retry_request_rule() -> None:
    """RFC 9846 §4.1: CH1 is replaced by message_hash(Hash(CH1))."""
    ch1, hrr, ch2 = b"\x01\x00\x00\x01A", b"\x02\x00\x00\x01B", b"\x01\x00\x00\x01C"
    transcript = Transcript()
    transcript.add(ch1)
    transcript.restart_after_hrr("sha256")
    transcript.add(hrr)
    transcript.add(ch2)
    ch1_hash = hashlib.sha256(ch1).digest()
    expected = hashlib.sha256(b"\xfe\x00\x00\x20" + ch1_hash + hrr + ch2).digest()
    assert transcript.digest() == expected


# -- independent recomputation with cryptography's HKDF ----------------------------------


def _expand_label(hash_cls: type[hashes.HashAlgorithm], secret: bytes, label: bytes,
                  context: bytes, length: int) -> bytes:  # fmt: skip
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(hash_cls(), length, info).derive(secret)


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_schedule_matches_independent_computation(suite: CipherSuite) -> None:
    name = "sha384" if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else "sha256"
    hash_cls: type[hashes.HashAlgorithm] = hashes.SHA384 if name == "sha384" else hashes.SHA256
    n = hashlib.new(name).digest_size
    empty = hashlib.new(name).digest()
    shared, th_hello, th_fin = b"\x11" * 32, b"\x22" * n, b"\x33" * n

    early = hmac.digest(bytes(n), bytes(n), name)
    derived = _expand_label(hash_cls, early, b"derived", empty, n)
    handshake = hmac.digest(derived, shared, name)
    main = hmac.digest(_expand_label(hash_cls, handshake, b"derived", empty, n), bytes(n), name)

    schedule = KeySchedule(suite)
    assert schedule.hash_len == n
    assert schedule.early_secret == early
    schedule.set_shared_secret(shared)
    assert schedule.secret == handshake
    assert schedule.handshake_traffic_secrets(th_hello) == (
        _expand_label(hash_cls, handshake, b"c hs traffic", th_hello, n),
        _expand_label(hash_cls, handshake, b"s hs traffic", th_hello, n),
    )
    schedule.enter_main()
    assert schedule.secret == main
    assert schedule.application_traffic_secrets(th_fin) == (
        _expand_label(hash_cls, main, b"c ap traffic", th_fin, n),
        _expand_label(hash_cls, main, b"s ap traffic", th_fin, n),
    )
    exporter = schedule.exporter_secret(th_fin)
    assert exporter == _expand_label(hash_cls, main, b"exp master", th_fin, n)
    assert schedule.resumption_secret(th_fin) == _expand_label(
        hash_cls, main, b"res master", th_fin, n
    )

    # RFC 9846 §7.5 exporter.
    label, context = b"EXPORTER-WebTransport", b"ctx"
    inner = _expand_label(hash_cls, exporter, label, empty, n)
    expected = _expand_label(hash_cls, inner, b"exporter", hashlib.new(name, context).digest(), 40)
    assert export_keying_material(name, exporter, label, context, 40) == expected
    # §7.2 key update and §4.5.3 finished.
    assert next_application_secret(name, exporter) == _expand_label(
        hash_cls, exporter, b"traffic upd", b"", n
    )
    fkey = _expand_label(hash_cls, exporter, b"finished", b"", n)
    assert verify_data(name, exporter, th_hello) == hmac.digest(fkey, th_hello, name)


def test_binder_labels_differ() -> None:
    schedule = KeySchedule(AES128, psk=b"\x01" * 32)
    assert schedule.binder_key(external=True) != schedule.binder_key(external=False)
    ch_hash = b"\x05" * 32
    assert schedule.client_early_traffic_secret(ch_hash) != schedule.early_exporter_secret(ch_hash)


def test_stages_must_be_entered_in_order() -> None:
    schedule = KeySchedule(AES128)
    with pytest.raises(RuntimeError):
        schedule.handshake_traffic_secrets(b"\x00" * 32)
    with pytest.raises(RuntimeError):
        schedule.enter_main()
    schedule.set_shared_secret(None)  # no (EC)DHE: the zero IKM (§7.1)
    with pytest.raises(RuntimeError):
        schedule.set_shared_secret(b"x")
    with pytest.raises(RuntimeError):
        schedule.application_traffic_secrets(b"\x00" * 32)
    schedule.enter_main()
    with pytest.raises(RuntimeError):
        schedule.binder_key()


def test_psk_schedule_derives_its_own_handshake_secret() -> None:
    # The no-PSK Early Secret and its "derived" secret are computed once per hash;
    # a PSK schedule made between two no-PSK ones must use its own (RFC 9846 §7.1).
    n = 32
    empty = hashlib.sha256().digest()
    shared = b"\x44" * 32
    psk = b"\x05" * 32

    def handshake_secret(early: bytes) -> bytes:
        return hmac.digest(
            _expand_label(hashes.SHA256, early, b"derived", empty, n), shared, "sha256"
        )

    no_psk_early = hmac.digest(bytes(n), bytes(n), "sha256")
    psk_early = hmac.digest(bytes(n), psk, "sha256")
    for use_psk in (False, True, False, True):
        schedule = KeySchedule(AES128, psk=psk if use_psk else None)
        early = psk_early if use_psk else no_psk_early
        assert schedule.early_secret == early
        schedule.set_shared_secret(shared)
        assert schedule.secret == handshake_secret(early)
    assert psk_early != no_psk_early
