"""QUIC packet protection: RFC 9001 Appendix A and RFC 9369 Appendix A vectors, round
trips for every suite and level, key update, AEAD limits and tampering."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from quic.protection import (
    AEAD_TAG_LENGTH,
    CONFIDENTIALITY_LIMIT,
    INITIAL_SALT,
    INTEGRITY_LIMIT,
    DecryptionError,
    HeaderProtection,
    PacketProtector,
    PacketUnprotector,
    append_retry_integrity_tag,
    derive_packet_keys,
    initial_keys,
    initial_secrets,
    min_payload_length,
    next_key_phase_secret,
    retry_integrity_tag,
    retry_pseudo_packet,
    verify_retry_integrity,
)
from quic.tls.hkdf import hkdf_expand, hkdf_extract
from quic.tls.suites import CipherSuite
from quic.versions import QuicVersion


def h(text: str) -> bytes:
    """Hex from an RFC figure: whitespace and line breaks are ignored."""
    return bytes.fromhex("".join(text.split()))


AES128 = CipherSuite.TLS_AES_128_GCM_SHA256
AES256 = CipherSuite.TLS_AES_256_GCM_SHA384
CHACHA = CipherSuite.TLS_CHACHA20_POLY1305_SHA256
ALL_SUITES = [AES128, AES256, CHACHA]
V1 = QuicVersion.VERSION_1
V2 = QuicVersion.VERSION_2
ALL_VERSIONS = [V1, V2]

CID = h("8394c8f03e515708")

# RFC 9001 §A.2 / RFC 9369 §A.2: CRYPTO frame of the client Initial, padded to 1162.
CLIENT_CRYPTO_FRAME = h("""
060040f1010000ed0303ebf8fa56f129 39b9584a3896472ec40bb863cfd3e868
04fe3a47f06a2b69484c000004130113 02010000c000000010000e00000b6578
616d706c652e636f6dff01000100000a 00080006001d00170018001000070005
04616c706e0005000501000000000033 00260024001d00209370b2c9caa47fba
baf4559fedba753de171fa71f50f1ce1 5d43e994ec74d748002b000302030400
0d0010000e0403050306030203080408 050806002d00020101001c0002400100
3900320408ffffffffffffffff050480 00ffff07048000ffff08011001048000
75300901100f088394c8f03e51570806 048000ffff
""")
CLIENT_PAYLOAD = CLIENT_CRYPTO_FRAME + bytes(1162 - len(CLIENT_CRYPTO_FRAME))

# RFC 9001 §A.3 / RFC 9369 §A.3: server Initial payload (ACK + CRYPTO, no PADDING).
SERVER_PAYLOAD = h("""
02000000000600405a020000560303ee fce7f7b37ba1d1632e96677825ddf739
88cfc79825df566dc5430b9a045a1200 130100002e00330024001d00209d3c94
0d89690b84d08a60993c144eca684d10 81287c834d5311bcf32bb9da1a002b00
020304
""")

# RFC 9001 §A.5 / RFC 9369 §A.5: 1-RTT secret for the ChaCha20-Poly1305 example.
CHACHA_SECRET = h("9ac312a7f877468ebe69422748ad00a1 5443f18203a07d6060f688f30f21632b")
CHACHA_PN = 654360564


@dataclass(frozen=True)
class Vectors:
    version: int
    labels: dict[str, tuple[str, str]]  # role -> HkdfLabel hex per key/iv/hp
    initial_secret: bytes
    client_secret: bytes
    client_keys: tuple[bytes, bytes, bytes]
    server_secret: bytes
    server_keys: tuple[bytes, bytes, bytes]
    client_header: bytes
    client_sample: bytes
    client_mask: bytes
    client_protected_header: bytes
    client_packet: bytes
    server_header: bytes
    server_sample: bytes
    server_mask: bytes
    server_protected_header: bytes
    server_packet: bytes
    retry: bytes
    chacha_keys: tuple[bytes, bytes, bytes]
    chacha_ku: bytes
    chacha_nonce: bytes
    chacha_header: bytes
    chacha_ciphertext: bytes
    chacha_sample: bytes
    chacha_mask: bytes
    chacha_protected_header: bytes
    chacha_packet: bytes


V1_VECTORS = Vectors(
    version=V1,
    labels={
        "key": ("00100e746c7331332071756963206b657900", "16"),
        "iv": ("000c0d746c733133207175696320697600", "12"),
        "hp": ("00100d746c733133207175696320687000", "16"),
    },
    initial_secret=h("7db5df06e7a69e432496adedb0085192 3595221596ae2ae9fb8115c1e9ed0a44"),
    client_secret=h("c00cf151ca5be075ed0ebfb5c80323c4 2d6b7db67881289af4008f1f6c357aea"),
    client_keys=(
        h("1f369613dd76d5467730efcbe3b1a22d"),
        h("fa044b2f42a3fd3b46fb255c"),
        h("9f50449e04a0e810283a1e9933adedd2"),
    ),
    server_secret=h("3c199828fd139efd216c155ad844cc81 fb82fa8d7446fa7d78be803acdda951b"),
    server_keys=(
        h("cf3a5331653c364c88f0f379b6067e37"),
        h("0ac1493ca1905853b0bba03e"),
        h("c206b8d9b9f0f37644430b490eeaa314"),
    ),
    client_header=h("c300000001088394c8f03e5157080000449e00000002"),
    client_sample=h("d1b1c98dd7689fb8ec11d242b123dc9b"),
    client_mask=h("437b9aec36"),
    client_protected_header=h("c000000001088394c8f03e5157080000449e7b9aec34"),
    client_packet=h("""
c000000001088394c8f03e5157080000 449e7b9aec34d1b1c98dd7689fb8ec11
d242b123dc9bd8bab936b47d92ec356c 0bab7df5976d27cd449f63300099f399
1c260ec4c60d17b31f8429157bb35a12 82a643a8d2262cad67500cadb8e7378c
8eb7539ec4d4905fed1bee1fc8aafba1 7c750e2c7ace01e6005f80fcb7df6212
30c83711b39343fa028cea7f7fb5ff89 eac2308249a02252155e2347b63d58c5
457afd84d05dfffdb20392844ae81215 4682e9cf012f9021a6f0be17ddd0c208
4dce25ff9b06cde535d0f920a2db1bf3 62c23e596d11a4f5a6cf3948838a3aec
4e15daf8500a6ef69ec4e3feb6b1d98e 610ac8b7ec3faf6ad760b7bad1db4ba3
485e8a94dc250ae3fdb41ed15fb6a8e5 eba0fc3dd60bc8e30c5c4287e53805db
059ae0648db2f64264ed5e39be2e20d8 2df566da8dd5998ccabdae053060ae6c
7b4378e846d29f37ed7b4ea9ec5d82e7 961b7f25a9323851f681d582363aa5f8
9937f5a67258bf63ad6f1a0b1d96dbd4 faddfcefc5266ba6611722395c906556
be52afe3f565636ad1b17d508b73d874 3eeb524be22b3dcbc2c7468d54119c74
68449a13d8e3b95811a198f3491de3e7 fe942b330407abf82a4ed7c1b311663a
c69890f4157015853d91e923037c227a 33cdd5ec281ca3f79c44546b9d90ca00
f064c99e3dd97911d39fe9c5d0b23a22 9a234cb36186c4819e8b9c5927726632
291d6a418211cc2962e20fe47feb3edf 330f2c603a9d48c0fcb5699dbfe58964
25c5bac4aee82e57a85aaf4e2513e4f0 5796b07ba2ee47d80506f8d2c25e50fd
14de71e6c418559302f939b0e1abd576 f279c4b2e0feb85c1f28ff18f58891ff
ef132eef2fa09346aee33c28eb130ff2 8f5b766953334113211996d20011a198
e3fc433f9f2541010ae17c1bf202580f 6047472fb36857fe843b19f5984009dd
c324044e847a4f4a0ab34f719595de37 252d6235365e9b84392b061085349d73
203a4a13e96f5432ec0fd4a1ee65accd d5e3904df54c1da510b0ff20dcc0c77f
cb2c0e0eb605cb0504db87632cf3d8b4 dae6e705769d1de354270123cb11450e
fc60ac47683d7b8d0f811365565fd98c 4c8eb936bcab8d069fc33bd801b03ade
a2e1fbc5aa463d08ca19896d2bf59a07 1b851e6c239052172f296bfb5e724047
90a2181014f3b94a4e97d117b4381303 68cc39dbb2d198065ae3986547926cd2
162f40a29f0c3c8745c0f50fba3852e5 66d44575c29d39a03f0cda721984b6f4
40591f355e12d439ff150aab7613499d bd49adabc8676eef023b15b65bfc5ca0
6948109f23f350db82123535eb8a7433 bdabcb909271a6ecbcb58b936a88cd4e
8f2e6ff5800175f113253d8fa9ca8885 c2f552e657dc603f252e1a8e308f76f0
be79e2fb8f5d5fbbe2e30ecadd220723 c8c0aea8078cdfcb3868263ff8f09400
54da48781893a7e49ad5aff4af300cd8 04a6b6279ab3ff3afb64491c85194aab
760d58a606654f9f4400e8b38591356f bf6425aca26dc85244259ff2b19c41b9
f96f3ca9ec1dde434da7d2d392b905dd f3d1f9af93d1af5950bd493f5aa731b4
056df31bd267b6b90a079831aaf579be 0a39013137aac6d404f518cfd4684064
7e78bfe706ca4cf5e9c5453e9f7cfd2b 8b4c8d169a44e55c88d4a9a7f9474241
e221af44860018ab0856972e194cd934
"""),
    server_header=h("c1000000010008f067a5502a4262b50040750001"),
    server_sample=h("2cd0991cd25b0aac406a5816b6394100"),
    server_mask=h("2ec0d8356a"),
    server_protected_header=h("cf000000010008f067a5502a4262b5004075c0d9"),
    server_packet=h("""
cf000000010008f067a5502a4262b500 4075c0d95a482cd0991cd25b0aac406a
5816b6394100f37a1c69797554780bb3 8cc5a99f5ede4cf73c3ec2493a1839b3
dbcba3f6ea46c5b7684df3548e7ddeb9 c3bf9c73cc3f3bded74b562bfb19fb84
022f8ef4cdd93795d77d06edbb7aaf2f 58891850abbdca3d20398c276456cbc4
2158407dd074ee
"""),
    retry=h("""
ff000000010008f067a5502a4262b574 6f6b656e04a265ba2eff4d829058fb3f
0f2496ba
"""),
    chacha_keys=(
        h("c6d98ff3441c3fe1b2182094f69caa2e d4b716b65488960a7a984979fb23e1c8"),
        h("e0459b3474bdd0e44a41c144"),
        h("25a282b9e82f06f21f488917a4fc8f1b 73573685608597d0efcb076b0ab7a7a4"),
    ),
    chacha_ku=h("1223504755036d556342ee9361d25342 1a826c9ecdf3c7148684b36b714881f9"),
    chacha_nonce=h("e0459b3474bdd0e46d417eb0"),
    chacha_header=h("4200bff4"),
    chacha_ciphertext=h("655e5cd55c41f69080575d7999c25a5bfb"),
    chacha_sample=h("5e5cd55c41f69080575d7999c25a5bfb"),
    chacha_mask=h("aefefe7d03"),
    chacha_protected_header=h("4cfe4189"),
    chacha_packet=h("4cfe4189655e5cd55c41f69080575d7999c25a5bfb"),
)

V2_VECTORS = Vectors(
    version=V2,
    labels={
        "key": ("001010746c73313320717569637632206b657900", "16"),
        "iv": ("000c0f746c7331332071756963763220697600", "12"),
        "hp": ("00100f746c7331332071756963763220687000", "16"),
    },
    initial_secret=h("2062e8b3cd8d52092614b8071d0aa1fb 7c2e3ac193f78b280e72d8f5751f6aba"),
    client_secret=h("14ec9d6eb9fd7af83bf5a668bc17a7e2 83766aade7ecd0891f70f9ff7f4bf47b"),
    client_keys=(
        h("8b1a0bc121284290a29e0971b5cd045d"),
        h("91f73e2351d8fa91660e909f"),
        h("45b95e15235d6f45a6b19cbcb0294ba9"),
    ),
    server_secret=h("0263db1782731bf4588e7e4d93b74639 07cb8cd8200b5da55a8bd488eafc37c1"),
    server_keys=(
        h("82db637861d55e1d011f19ea71d5d2a7"),
        h("dd13c276499c0249d3310652"),
        h("edf6d05c83121201b436e16877593c3a"),
    ),
    client_header=h("d36b3343cf088394c8f03e5157080000449e00000002"),
    client_sample=h("ffe67b6abcdb4298b485dd04de806071"),
    client_mask=h("94a0c95e80"),
    client_protected_header=h("d76b3343cf088394c8f03e5157080000449ea0c95e82"),
    client_packet=h("""
d76b3343cf088394c8f03e5157080000 449ea0c95e82ffe67b6abcdb4298b485
dd04de806071bf03dceebfa162e75d6c 96058bdbfb127cdfcbf903388e99ad04
9f9a3dd4425ae4d0992cfff18ecf0fdb 5a842d09747052f17ac2053d21f57c5d
250f2c4f0e0202b70785b7946e992e58 a59ac52dea6774d4f03b55545243cf1a
12834e3f249a78d395e0d18f4d766004 f1a2674802a747eaa901c3f10cda5500
cb9122faa9f1df66c392079a1b40f0de 1c6054196a11cbea40afb6ef5253cd68
18f6625efce3b6def6ba7e4b37a40f77 32e093daa7d52190935b8da58976ff33
12ae50b187c1433c0f028edcc4c2838b 6a9bfc226ca4b4530e7a4ccee1bfa2a3
d396ae5a3fb512384b2fdd851f784a65 e03f2c4fbe11a53c7777c023462239dd
6f7521a3f6c7d5dd3ec9b3f233773d4b 46d23cc375eb198c63301c21801f6520
bcfb7966fc49b393f0061d974a2706df 8c4a9449f11d7f3d2dcbb90c6b877045
636e7c0c0fe4eb0f697545460c806910 d2c355f1d253bc9d2452aaa549e27a1f
ac7cf4ed77f322e8fa894b6a83810a34 b361901751a6f5eb65a0326e07de7c12
16ccce2d0193f958bb3850a833f7ae43 2b65bc5a53975c155aa4bcb4f7b2c4e5
4df16efaf6ddea94e2c50b4cd1dfe060 17e0e9d02900cffe1935e0491d77ffb4
fdf85290fdd893d577b1131a610ef6a5 c32b2ee0293617a37cbb08b847741c3b
8017c25ca9052ca1079d8b78aebd4787 6d330a30f6a8c6d61dd1ab5589329de7
14d19d61370f8149748c72f132f0fc99 f34d766c6938597040d8f9e2bb522ff9
9c63a344d6a2ae8aa8e51b7b90a4a806 105fcbca31506c446151adfeceb51b91
abfe43960977c87471cf9ad4074d30e1 0d6a7f03c63bd5d4317f68ff325ba3bd
80bf4dc8b52a0ba031758022eb025cdd 770b44d6d6cf0670f4e990b22347a7db
848265e3e5eb72dfe8299ad7481a4083 22cac55786e52f633b2fb6b614eaed18
d703dd84045a274ae8bfa73379661388 d6991fe39b0d93debb41700b41f90a15
c4d526250235ddcd6776fc77bc97e7a4 17ebcb31600d01e57f32162a8560cacc
7e27a096d37a1a86952ec71bd89a3e9a 30a2a26162984d7740f81193e8238e61
f6b5b984d4d3dfa033c1bb7e4f0037fe bf406d91c0dccf32acf423cfa1e70710
10d3f270121b493ce85054ef58bada42 310138fe081adb04e2bd901f2f13458b
3d6758158197107c14ebb193230cd115 7380aa79cae1374a7c1e5bbcb80ee23e
06ebfde206bfb0fcbc0edc4ebec30966 1bdd908d532eb0c6adc38b7ca7331dce
8dfce39ab71e7c32d318d136b6100671 a1ae6a6600e3899f31f0eed19e3417d1
34b90c9058f8632c798d4490da498730 7cba922d61c39805d072b589bd52fdf1
e86215c2d54e6670e07383a27bbffb5a ddf47d66aa85a0c6f9f32e59d85a44dd
5d3b22dc2be80919b490437ae4f36a0a e55edf1d0b5cb4e9a3ecabee93dfc6e3
8d209d0fa6536d27a5d6fbb17641cde2 7525d61093f1b28072d111b2b4ae5f89
d5974ee12e5cf7d5da4d6a31123041f3 3e61407e76cffcdcfd7e19ba58cf4b53
6f4c4938ae79324dc402894b44faf8af bab35282ab659d13c93f70412e85cb19
9a37ddec600545473cfb5a05e08d0b20 9973b2172b4d21fb69745a262ccde96b
a18b2faa745b6fe189cf772a9f84cbfc
"""),
    server_header=h("d16b3343cf0008f067a5502a4262b50040750001"),
    server_sample=h("6f05d8a4398c47089698baeea26b91eb"),
    server_mask=h("4dd92e91ea"),
    server_protected_header=h("dc6b3343cf0008f067a5502a4262b5004075d92f"),
    server_packet=h("""
dc6b3343cf0008f067a5502a4262b500 4075d92faaf16f05d8a4398c47089698
baeea26b91eb761d9b89237bbf872630 17915358230035f7fd3945d88965cf17
f9af6e16886c61bfc703106fbaf3cb4c fa52382dd16a393e42757507698075b2
c984c707f0a0812d8cd5a6881eaf21ce da98f4bd23f6fe1a3e2c43edd9ce7ca8
4bed8521e2e140
"""),
    retry=h("""
cf6b3343cf0008f067a5502a4262b574 6f6b656ec8646ce8bfe33952d9555436
65dcc7b6
"""),
    chacha_keys=(
        h("3bfcddd72bcf02541d7fa0dd1f5f9eee a817e09a6963a0e6c7df0f9a1bab90f2"),
        h("a6b5bc6ab7dafce30ffff5dd"),
        h("d659760d2ba434a226fd37b35c69e2da 8211d10c4f12538787d65645d5d1b8e2"),
    ),
    chacha_ku=h("c69374c49e3d2a9466fa689e49d476db 5d0dfbc87d32ceeaa6343fd0ae4c7d88"),
    chacha_nonce=h("a6b5bc6ab7dafce328ff4a29"),
    chacha_header=h("4200bff4"),
    chacha_ciphertext=h("0ae7b6b932bc27d786f4bc2bb20f2162ba"),
    chacha_sample=h("e7b6b932bc27d786f4bc2bb20f2162ba"),
    chacha_mask=h("97580e32bf"),
    chacha_protected_header=h("5558b1c6"),
    chacha_packet=h("5558b1c60ae7b6b932bc27d786f4bc2bb20f2162ba"),
)

VECTORS = pytest.mark.parametrize("vec", [V1_VECTORS, V2_VECTORS], ids=["v1", "v2"])

# Offsets of the Packet Number field in the sample packets.
CLIENT_PN_OFFSET = 18  # 1 + 4 + 1 + 8 (DCID) + 1 + 0 (SCID) + 1 (token len) + 2 (Length)
SERVER_PN_OFFSET = 18  # 1 + 4 + 1 + 0 (DCID) + 1 + 8 (SCID) + 1 (token len) + 2 (Length)


# --- §A.1 keys ---------------------------------------------------------------------


@VECTORS
def test_initial_secrets(vec: Vectors) -> None:
    assert hkdf_extract("sha256", INITIAL_SALT[vec.version], CID) == vec.initial_secret
    assert initial_secrets(vec.version, CID) == (vec.client_secret, vec.server_secret)


@VECTORS
def test_initial_packet_keys(vec: Vectors) -> None:
    assert derive_packet_keys(AES128, vec.client_secret, vec.version) == vec.client_keys
    assert derive_packet_keys(AES128, vec.server_secret, vec.version) == vec.server_keys


@VECTORS
def test_hkdf_labels(vec: Vectors) -> None:
    # The RFC lists each HkdfLabel; expanding it by hand must give the same keys.
    for index, name in enumerate(("key", "iv", "hp")):
        info_hex, length = vec.labels[name]
        for secret, keys in (
            (vec.client_secret, vec.client_keys),
            (vec.server_secret, vec.server_keys),
        ):
            assert hkdf_expand("sha256", secret, h(info_hex), int(length)) == keys[index]


def test_initial_secret_labels() -> None:
    # RFC 9001 §A.1 "client in" / "server in" HkdfLabels (the same for v2).
    prk = V1_VECTORS.initial_secret
    assert hkdf_expand("sha256", prk, h("00200f746c73313320636c69656e7420696e00"), 32) == (
        V1_VECTORS.client_secret
    )
    assert hkdf_expand("sha256", prk, h("00200f746c7331332073657276657220696e00"), 32) == (
        V1_VECTORS.server_secret
    )


# --- §A.2 client Initial -----------------------------------------------------------


@VECTORS
def test_client_initial_header_protection_mask(vec: Vectors) -> None:
    hp = HeaderProtection(AES128, vec.client_keys[2])
    assert hp.mask(vec.client_sample)[:5] == vec.client_mask


@VECTORS
def test_client_initial_protect(vec: Vectors) -> None:
    assert len(CLIENT_PAYLOAD) == 1162
    protector = PacketProtector(AES128, vec.client_secret, vec.version)
    packet = protector.encrypt_packet(vec.client_header, CLIENT_PAYLOAD, 2)
    assert packet[: CLIENT_PN_OFFSET + 4] == vec.client_protected_header
    assert packet[22:38] == vec.client_sample
    assert packet == vec.client_packet
    assert len(packet) == 1200
    assert protector.encrypted_packets == 1


@VECTORS
def test_client_initial_unprotect(vec: Vectors) -> None:
    unprotector = PacketUnprotector(AES128, vec.client_secret, vec.version)
    header, pn, payload = unprotector.decrypt_packet(vec.client_packet, CLIENT_PN_OFFSET, -1)
    assert header == vec.client_header
    assert pn == 2
    assert payload == CLIENT_PAYLOAD
    assert unprotector.failed_decryptions == 0


@VECTORS
def test_client_initial_via_initial_keys(vec: Vectors) -> None:
    client_send, client_receive = initial_keys(vec.version, CID, is_client=True)
    server_send, server_receive = initial_keys(vec.version, CID, is_client=False)
    assert client_send.encrypt_packet(vec.client_header, CLIENT_PAYLOAD, 2) == vec.client_packet
    assert server_receive.decrypt_packet(vec.client_packet, CLIENT_PN_OFFSET, -1)[2] == (
        CLIENT_PAYLOAD
    )
    assert server_send.encrypt_packet(vec.server_header, SERVER_PAYLOAD, 1) == vec.server_packet
    assert client_receive.decrypt_packet(vec.server_packet, SERVER_PN_OFFSET, -1)[2] == (
        SERVER_PAYLOAD
    )
    # A client cannot read its own packets with its receive keys.
    with pytest.raises(DecryptionError):
        client_receive.decrypt_packet(vec.client_packet, CLIENT_PN_OFFSET, -1)


# --- §A.3 server Initial -----------------------------------------------------------


@VECTORS
def test_server_initial_protect(vec: Vectors) -> None:
    hp = HeaderProtection(AES128, vec.server_keys[2])
    assert hp.mask(vec.server_sample)[:5] == vec.server_mask
    protector = PacketProtector(AES128, vec.server_secret, vec.version)
    packet = protector.encrypt_packet(vec.server_header, SERVER_PAYLOAD, 1)
    assert packet[:20] == vec.server_protected_header
    # 2-byte packet number: the sample starts at the third protected payload byte.
    assert packet[22:38] == vec.server_sample
    assert packet == vec.server_packet


@VECTORS
def test_server_initial_unprotect(vec: Vectors) -> None:
    unprotector = PacketUnprotector(AES128, vec.server_secret, vec.version)
    header, pn, payload = unprotector.decrypt_packet(vec.server_packet, SERVER_PN_OFFSET, 0)
    assert (header, pn, payload) == (vec.server_header, 1, SERVER_PAYLOAD)


# --- §A.4 Retry --------------------------------------------------------------------


@VECTORS
def test_retry_integrity_tag(vec: Vectors) -> None:
    body, tag = vec.retry[:-16], vec.retry[-16:]
    assert retry_integrity_tag(vec.version, retry_pseudo_packet(CID, body)) == tag
    assert retry_pseudo_packet(CID, body) == bytes([len(CID)]) + CID + body
    assert append_retry_integrity_tag(vec.version, CID, body) == vec.retry
    assert verify_retry_integrity(vec.version, CID, vec.retry)


@VECTORS
def test_retry_integrity_rejects(vec: Vectors) -> None:
    other = V2 if vec.version == V1 else V1
    assert not verify_retry_integrity(other, CID, vec.retry)
    assert not verify_retry_integrity(vec.version, CID[:-1], vec.retry)
    assert not verify_retry_integrity(vec.version, b"", vec.retry)
    for i in range(len(vec.retry)):
        tampered = bytearray(vec.retry)
        tampered[i] ^= 0x01
        assert not verify_retry_integrity(vec.version, CID, bytes(tampered))
    assert not verify_retry_integrity(vec.version, CID, vec.retry[:15])
    assert not verify_retry_integrity(vec.version, CID, b"")
    assert not verify_retry_integrity(0x12345678, CID, vec.retry)
    assert not verify_retry_integrity(vec.version, bytes(256), vec.retry)
    # memoryview input works too.
    assert verify_retry_integrity(vec.version, CID, memoryview(vec.retry))


def test_retry_keys_derive_from_secrets() -> None:
    # RFC 9001 §5.8 and RFC 9369 §3.3.3: the fixed key/nonce come from these secrets.
    from quic.tls.hkdf import hkdf_expand_label

    v1_secret = h("d9c9943e6101fd200021506bcc02814c73030f25c79d71ce876eca876e6fca8e")
    assert hkdf_expand_label("sha256", v1_secret, b"quic key", b"", 16) == h(
        "be0c690b9f66575a1d766b54e368c84e"
    )
    assert hkdf_expand_label("sha256", v1_secret, b"quic iv", b"", 12) == h(
        "461599d35d632bf2239825bb"
    )
    v2_secret = h("c4dd2484d681aefa4ff4d69c2c20299984a765a5d3c31982f38fc74162155e9f")
    assert hkdf_expand_label("sha256", v2_secret, b"quicv2 key", b"", 16) == h(
        "8fb4b01b56ac48e260fbcbcead7ccc92"
    )
    assert hkdf_expand_label("sha256", v2_secret, b"quicv2 iv", b"", 12) == h(
        "d86969bc2d7c6d9990efb04a"
    )


def test_retry_unknown_version_and_long_odcid() -> None:
    with pytest.raises(ValueError):
        retry_integrity_tag(0x12345678, b"\x00")
    with pytest.raises(ValueError):
        retry_pseudo_packet(bytes(256), b"")


# --- §A.5 ChaCha20-Poly1305 short header -------------------------------------------


@VECTORS
def test_chacha20_keys_and_ku(vec: Vectors) -> None:
    assert derive_packet_keys(CHACHA, CHACHA_SECRET, vec.version) == vec.chacha_keys
    assert next_key_phase_secret(CHACHA, CHACHA_SECRET, vec.version) == vec.chacha_ku


@VECTORS
def test_chacha20_nonce_and_mask(vec: Vectors) -> None:
    iv = vec.chacha_keys[1]
    nonce = (int.from_bytes(iv, "big") ^ CHACHA_PN).to_bytes(12, "big")
    assert nonce == vec.chacha_nonce
    hp = HeaderProtection(CHACHA, vec.chacha_keys[2])
    assert hp.mask(vec.chacha_sample)[:5] == vec.chacha_mask


@VECTORS
def test_chacha20_protect(vec: Vectors) -> None:
    protector = PacketProtector(CHACHA, CHACHA_SECRET, vec.version)
    packet = protector.encrypt_packet(vec.chacha_header, b"\x01", CHACHA_PN)
    assert packet[4:] == vec.chacha_ciphertext
    assert packet[:4] == vec.chacha_protected_header
    assert packet == vec.chacha_packet
    assert len(packet) == 21  # the smallest possible packet


@VECTORS
def test_chacha20_unprotect(vec: Vectors) -> None:
    unprotector = PacketUnprotector(CHACHA, CHACHA_SECRET, vec.version)
    header, pn, payload = unprotector.decrypt_packet(vec.chacha_packet, 1, CHACHA_PN - 1)
    assert (header, pn, payload) == (vec.chacha_header, CHACHA_PN, b"\x01")
    # Any largest_pn close enough recovers the same full packet number.
    assert unprotector.decrypt_packet(vec.chacha_packet, 1, CHACHA_PN - 1000)[1] == CHACHA_PN
    # One byte shorter cannot be sampled.
    with pytest.raises(DecryptionError):
        unprotector.decrypt_packet(vec.chacha_packet[:-1], 1, CHACHA_PN - 1)


@VECTORS
def test_chacha20_key_update_generation(vec: Vectors) -> None:
    gen0 = PacketProtector(CHACHA, CHACHA_SECRET, vec.version)
    gen1 = gen0.next_generation()
    assert gen1.key_phase == 1
    assert gen1.header_protection is gen0.header_protection
    expected = PacketProtector(CHACHA, vec.chacha_ku, vec.version)
    header = bytes([vec.chacha_header[0] | 0x04]) + vec.chacha_header[1:]
    packet = gen1.encrypt_packet(header, b"\x01", CHACHA_PN)
    # Same AEAD key and IV as keys derived directly from the RFC's "ku" secret ...
    assert packet[4:] == expected.encrypt_packet(header, b"\x01", CHACHA_PN)[4:]
    # ... but the header protection key is still the one from the original secret.
    receive0 = PacketUnprotector(CHACHA, CHACHA_SECRET, vec.version)
    assert receive0.unprotect_header(packet, 1, CHACHA_PN - 1) == (header, CHACHA_PN)
    with pytest.raises(DecryptionError):
        receive0.decrypt_payload(header, CHACHA_PN, packet)
    receive1 = receive0.next_generation()
    assert receive1.decrypt_packet(packet, 1, CHACHA_PN - 1) == (header, CHACHA_PN, b"\x01")


# --- round trips -------------------------------------------------------------------


def long_header(
    first: int,
    version: int,
    dcid: bytes,
    scid: bytes,
    pn: int,
    pn_len: int,
    rest_len: int,
    token: bytes | None = None,
) -> tuple[bytes, int]:
    """A long header (Initial when ``token`` is given) ending with the packet number."""
    out = bytearray([first | (pn_len - 1)])
    out += version.to_bytes(4, "big")
    out += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if token is not None:
        out += bytes([len(token)]) + token
    length = pn_len + rest_len + AEAD_TAG_LENGTH
    out += (0x4000 | length).to_bytes(2, "big")
    pn_offset = len(out)
    out += (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
    return bytes(out), pn_offset


def short_header(dcid: bytes, pn: int, pn_len: int, key_phase: int = 0) -> tuple[bytes, int]:
    first = 0x40 | (key_phase << 2) | (pn_len - 1)
    return bytes([first]) + dcid + (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big"), (
        1 + len(dcid)
    )


LEVELS = ["initial", "0rtt", "handshake", "1rtt"]


def make_header(
    level: str, version: int, pn: int, pn_len: int, payload_len: int
) -> tuple[bytes, int]:
    dcid, scid = b"\x11" * 8, b"\x22" * 5
    v2 = version == V2
    if level == "initial":
        return long_header(
            0xD0 if v2 else 0xC0, version, dcid, scid, pn, pn_len, payload_len, token=b"tok"
        )
    if level == "0rtt":
        return long_header(0xE0 if v2 else 0xD0, version, dcid, scid, pn, pn_len, payload_len)
    if level == "handshake":
        return long_header(0xF0 if v2 else 0xE0, version, dcid, scid, pn, pn_len, payload_len)
    return short_header(dcid, pn, pn_len)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("version", ALL_VERSIONS, ids=["v1", "v2"])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("pn_len", [1, 2, 3, 4])
def test_round_trip(suite: CipherSuite, version: int, level: str, pn_len: int) -> None:
    secret = bytes(range(48 if suite == AES256 else 32))
    protector = PacketProtector(suite, secret, version)
    unprotector = PacketUnprotector(suite, secret, version)
    largest = 0x1234_5678
    for payload in (bytes(min_payload_length(pn_len)), b"\x01" * 7, bytes(range(256)) * 5):
        pn = largest + 1
        header, pn_offset = make_header(level, version, pn, pn_len, len(payload))
        packet = protector.encrypt_packet(header, payload, pn)
        assert len(packet) == len(header) + len(payload) + AEAD_TAG_LENGTH
        assert packet[1:pn_offset] == header[1:pn_offset]  # only first byte + pn change
        assert packet[0] & (0xF0 if level != "1rtt" else 0xE0) == header[0] & (
            0xF0 if level != "1rtt" else 0xE0
        )
        got_header, got_pn, got_payload = unprotector.decrypt_packet(packet, pn_offset, largest)
        assert (got_header, got_pn, got_payload) == (header, pn, payload)
        # Also from a memoryview slice inside a larger (coalesced) datagram.
        datagram = b"\xaa" * 3 + packet + b"\xbb" * 9
        view = memoryview(datagram)[3 : 3 + len(packet)]
        assert unprotector.decrypt_packet(view, pn_offset, largest) == (header, pn, payload)
        largest = pn
    assert protector.encrypted_packets == 3


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_wrong_suite_or_version_fails(suite: CipherSuite) -> None:
    secret = bytes(range(48 if suite == AES256 else 32))
    header, pn_offset = short_header(b"\x01\x02", 5, 1)
    packet = PacketProtector(suite, secret, V1).encrypt_packet(header, b"\x01\x00\x00", 5)
    with pytest.raises(DecryptionError):
        PacketUnprotector(suite, secret, V2).decrypt_packet(packet, pn_offset, 4)
    with pytest.raises(DecryptionError):
        PacketUnprotector(suite, bytes(len(secret)), V1).decrypt_packet(packet, pn_offset, 4)


def test_too_short_payload_rejected_on_send() -> None:
    protector = PacketProtector(AES128, bytes(32), V1)
    for pn_len in (1, 2, 3):
        header, _ = short_header(b"", 0, pn_len)
        with pytest.raises(ValueError):
            protector.encrypt_packet(header, bytes(min_payload_length(pn_len) - 1), 0)
    assert protector.encrypted_packets == 0


def test_min_payload_length() -> None:
    assert [min_payload_length(n) for n in (1, 2, 3, 4)] == [3, 2, 1, 0]


# --- key update --------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("version", ALL_VERSIONS, ids=["v1", "v2"])
def test_key_update_generations(suite: CipherSuite, version: int) -> None:
    secret = bytes(range(100, 100 + (48 if suite == AES256 else 32)))
    send = [PacketProtector(suite, secret, version)]
    receive = [PacketUnprotector(suite, secret, version)]
    for _ in range(3):
        send.append(send[-1].next_generation())
        receive.append(receive[-1].next_generation())
    assert [p.key_phase for p in send] == [0, 1, 0, 1]
    assert [p.key_phase for p in receive] == [0, 1, 0, 1]
    assert all(p.header_protection is send[0].header_protection for p in send)
    assert all(p.header_protection is receive[0].header_protection for p in receive)
    # Generation 1 equals keys built directly from the "quic ku" secret (same hp key).
    direct = PacketUnprotector(
        suite,
        next_key_phase_secret(suite, secret, version),
        version,
        header_protection=receive[0].header_protection,
    )
    for gen, protector in enumerate(send):
        pn = 10 + gen
        header, pn_offset = short_header(b"\xc1" * 4, pn, 2, key_phase=protector.key_phase)
        packet = protector.encrypt_packet(header, b"\x01" * 5, pn)
        # Header protection is shared: every generation can read the header and key phase.
        for other in receive:
            plain_header, got_pn = other.unprotect_header(packet, pn_offset, pn - 1)
            assert plain_header == header
            assert got_pn == pn
            assert (plain_header[0] >> 2) & 1 == protector.key_phase
        # Only the matching generation decrypts the payload.
        for other_gen, other in enumerate(receive):
            if other_gen == gen:
                assert other.decrypt_payload(header, pn, packet) == b"\x01" * 5
                if gen == 1:
                    assert direct.decrypt_payload(header, pn, packet) == b"\x01" * 5
            else:
                with pytest.raises(DecryptionError):
                    other.decrypt_payload(header, pn, packet)
    assert [r.failed_decryptions for r in receive] == [3, 3, 3, 3]


# --- tampering, truncation, limits -------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("level", ["initial", "1rtt"])
def test_every_single_bit_flip_is_rejected(suite: CipherSuite, level: str) -> None:
    secret = bytes(range(48 if suite == AES256 else 32))
    protector = PacketProtector(suite, secret, V1)
    unprotector = PacketUnprotector(suite, secret, V1)
    payload = b"\x01\x00\x00\x00\x00\x00"
    header, pn_offset = make_header(level, V1, 77, 1, len(payload))
    packet = protector.encrypt_packet(header, payload, 77)
    assert unprotector.decrypt_packet(packet, pn_offset, 76)[2] == payload
    failures = 0
    for i in range(len(packet)):
        for bit in (0x01, 0x80):
            tampered = bytearray(packet)
            tampered[i] ^= bit
            with pytest.raises(DecryptionError):
                unprotector.decrypt_packet(bytes(tampered), pn_offset, 76)
            failures += 1
    assert unprotector.failed_decryptions == failures


def test_truncated_packets_rejected() -> None:
    unprotector = PacketUnprotector(AES128, V1_VECTORS.client_secret, V1)
    packet = V1_VECTORS.client_packet
    # Long enough to sample but cut short: bad tag.
    for end in (len(packet) - 1, CLIENT_PN_OFFSET + 20, 100):
        with pytest.raises(DecryptionError):
            unprotector.decrypt_packet(packet[:end], CLIENT_PN_OFFSET, -1)
    failed = unprotector.failed_decryptions
    # Too short for a sample: dropped before any AEAD work (not counted).
    for end in (0, 1, CLIENT_PN_OFFSET, CLIENT_PN_OFFSET + 19):
        with pytest.raises(DecryptionError):
            unprotector.decrypt_packet(packet[:end], CLIENT_PN_OFFSET, -1)
        with pytest.raises(DecryptionError):
            unprotector.unprotect_header(packet[:end], CLIENT_PN_OFFSET, -1)
    assert unprotector.failed_decryptions == failed
    # Nonsensical packet number offsets.
    with pytest.raises(DecryptionError):
        unprotector.decrypt_packet(packet, 0, -1)
    with pytest.raises(DecryptionError):
        unprotector.decrypt_packet(packet, -5, -1)
    with pytest.raises(DecryptionError):
        unprotector.decrypt_packet(packet, len(packet), -1)
    # Trailing bytes (e.g. a coalesced packet not sliced off) break authentication.
    with pytest.raises(DecryptionError):
        unprotector.decrypt_packet(packet + b"\x00", CLIENT_PN_OFFSET, -1)


def test_aead_limits() -> None:
    assert CONFIDENTIALITY_LIMIT[AES128] == CONFIDENTIALITY_LIMIT[AES256] == 2**23
    assert CONFIDENTIALITY_LIMIT[CHACHA] == 2**62
    assert INTEGRITY_LIMIT[AES128] == INTEGRITY_LIMIT[AES256] == 2**52
    assert INTEGRITY_LIMIT[CHACHA] == 2**36
    protector = PacketProtector(AES128, bytes(32), V1)
    assert protector.confidentiality_limit == 2**23
    assert not protector.confidentiality_limit_reached
    protector.encrypted_packets = 2**23 - 1
    assert not protector.confidentiality_limit_reached
    header, _ = short_header(b"", 1, 4)
    protector.encrypt_packet(header, b"\x01", 1)
    assert protector.confidentiality_limit_reached
    assert protector.next_generation().encrypted_packets == 0
    unprotector = PacketUnprotector(CHACHA, bytes(32), V1)
    assert unprotector.integrity_limit == 2**36


def test_unknown_version_and_suite() -> None:
    with pytest.raises(ValueError):
        initial_secrets(0x0A0A0A0A, CID)
    with pytest.raises(ValueError):
        derive_packet_keys(AES128, bytes(32), 0xFF00001D)
    with pytest.raises(ValueError):
        next_key_phase_secret(AES128, bytes(32), 0xFF00001D)
    with pytest.raises(ValueError):
        PacketProtector(AES128, bytes(32), 0xFF00001D)
    with pytest.raises(ValueError):
        PacketUnprotector(CipherSuite(0x1301) + 3, bytes(32), V1)  # type: ignore[arg-type]


def test_aes256_key_lengths() -> None:
    key, iv, hp = derive_packet_keys(AES256, bytes(48), V1)
    assert (len(key), len(iv), len(hp)) == (32, 12, 32)
    assert len(next_key_phase_secret(AES256, bytes(48), V1)) == 48
    key, iv, hp = derive_packet_keys(CHACHA, bytes(32), V2)
    assert (len(key), len(iv), len(hp)) == (32, 12, 32)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("pn_len", [1, 2, 3, 4])
def test_open_short_agrees_with_decrypt_packet(suite: CipherSuite, pn_len: int) -> None:
    """open_short (the 1-RTT receive path: its own packet-number decoding, two-byte
    numbers read without slices) gives what decrypt_packet gives, from bytes and from a
    memoryview, for packet numbers whose truncated bytes vary in both positions."""
    secret = bytes(range(48 if suite == AES256 else 32))
    protector = PacketProtector(suite, secret, V1)
    unprotector = PacketUnprotector(suite, secret, V1)
    payload = bytes(range(256)) * 2
    largest = 0x1_2345
    for step in (1, 2, 0xFF, 0x100, 0x1FF, 0x7F):
        if step >= 1 << (8 * pn_len - 1):
            continue  # beyond what pn_len bytes can tell apart (RFC 9000 §17.1)
        pn = largest + step
        header, pn_offset = make_header("1rtt", V1, pn, pn_len, len(payload))
        packet = protector.encrypt_packet(header, payload, pn)
        expected = unprotector.decrypt_packet(packet, pn_offset, largest)
        assert expected == (header, pn, payload)
        assert unprotector.open_short(packet, pn_offset, largest) == expected
        assert unprotector.open_short(memoryview(packet), pn_offset, largest) == expected
        largest = pn


def test_suite_given_as_member_or_number() -> None:
    """The suite TLS hands over (a CipherSuite member) is kept as is; a plain number is
    made the member (and an unknown one refused, test_unknown_version_and_suite)."""
    for make in (PacketProtector, PacketUnprotector):
        by_member = make(CipherSuite.TLS_AES_128_GCM_SHA256, bytes(32), V1)
        by_number = make(0x1301, bytes(32), V1)  # type: ignore[arg-type]
        assert by_member.suite is by_number.suite is CipherSuite.TLS_AES_128_GCM_SHA256
        assert type(by_number.suite) is CipherSuite
        assert by_member.header_protection.mask(bytes(16)) == (
            by_number.header_protection.mask(bytes(16))
        )
