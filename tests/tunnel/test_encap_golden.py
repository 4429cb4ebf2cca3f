"""Golden vectors: the exact bytes of two datagrams, also printed in docs/protocol.md ("Golden vectors"). A change
here is a wire format change: bump the format version and say so in the docs."""

import hashlib

from tunnel.encap import Kind, Opened, Opener, Sealer
from tunnel.keys import ClusterKeys

KEY = bytes(range(32))  # 000102...1f
KEY_FILE = f"# golden vectors only\n1 {KEY.hex()}\n"
NODE_ID = 3
INCARNATION = 0x0102030405060708

# IPv4 ICMP echo request 192.0.2.1 -> 192.0.2.2 (RFC 5737 documentation addresses), id 1, seq 1, data "ping".
PACKET = bytes.fromhex("45000020123440004001a4a5c0000201c00002020800192d0001000170696e67")

DATA_DATAGRAM = bytes.fromhex(
    "0a040000"  # GUE: variant 0, C=0, Hlen=10 | proto 4 (IPv4) | flags 0
    "01010100"  # format 1 | hops 1 | key id 1 | reserved
    "00030000"  # sender 3 | reserved
    "0102030405060708"  # incarnation
    "0000000000000001"  # counter 1
    "4d0b1389b397c8616befd1ff7223d09a"  # tag
    "45000020123440004001a4a5c0000201c00002020800192d0001000170696e67"  # the IPv4 packet
)
CONTROL_DATAGRAM = bytes.fromhex(
    "2a000000"  # GUE: variant 0, C=1, Hlen=10 | ctype 0 | flags 0
    "01010100"  # format 1 | hops 1 | key id 1 | reserved
    "00030000"  # sender 3 | reserved
    "0102030405060708"  # incarnation
    "0000000000000002"  # counter 2
    "86a236910135168f99cffd851d26cfdd"  # tag
    "0102"  # the control message
)


def test_sealer_produces_the_golden_datagrams():
    sealer = Sealer(NODE_ID, INCARNATION, ClusterKeys.parse(KEY_FILE))
    assert sealer.data(PACKET).hex() == DATA_DATAGRAM.hex()
    assert sealer.control(b"\x01\x02").hex() == CONTROL_DATAGRAM.hex()


def test_opener_opens_the_golden_datagrams():
    opener = Opener(ClusterKeys.parse(KEY_FILE), [NODE_ID])
    assert opener.open(DATA_DATAGRAM) == Opened(NODE_ID, INCARNATION, 1, Kind.DATA, PACKET, new_incarnation=True)
    assert opener.open(CONTROL_DATAGRAM) == Opened(NODE_ID, INCARNATION, 1, Kind.CONTROL, b"\x01\x02", False)


def test_golden_tags_are_plain_keyed_blake2b_over_the_zeroed_header_and_payload():
    """The tag recomputed from its definition alone, so another implementation can follow docs/protocol.md."""
    for datagram in (DATA_DATAGRAM, CONTROL_DATAGRAM):
        message = datagram[:28] + bytes(16) + datagram[44:]
        tag = hashlib.blake2b(message, key=KEY, digest_size=16, person=b"anycast-tcp/gue1").digest()
        assert datagram[28:44] == tag


def test_first_byte_reads_as_linux_gue_h_bitfields():
    """include/net/gue.h, big-endian bitfields: version:2, control:1, hlen:5."""
    for datagram, control in ((DATA_DATAGRAM, 0), (CONTROL_DATAGRAM, 1)):
        assert (datagram[0] >> 6, datagram[0] >> 5 & 1, datagram[0] & 0x1F) == (0, control, 10)
        assert 4 + 4 * (datagram[0] & 0x1F) == 44  # a GUE decapsulator finds the payload right after our header
