"""ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): round trips, checksums, error classes, and the quoted TCP
header."""

import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    ACK,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    IcmpMessage,
    QuotedTcp,
    TcpOptions,
    TcpSegment,
    WireError,
    build_icmp,
    build_ip,
    build_ipv4,
    build_ipv6,
    build_tcp_packet,
    parse_icmp,
    parse_ip,
    parse_quoted_tcp,
)

from .strategies import IPV6_ADDRESS, U8, U32

V4 = (b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x02")
V6 = (bytes.fromhex("20010db8000000000000000000000001"), bytes.fromhex("20010db8000000000000000000000002"))
ROUTER4 = b"\xcb\x00\x71\x09"
ROUTER6 = bytes.fromhex("20010db8ffff00000000000000000009")
SEG = TcpSegment(40000, 443, 0xFFFFFF00, 7, ACK, 1000, b"x" * 1400, TcpOptions(timestamps=(5, 6)))


@given(icmp_type=U8, code=U8, rest=U32, payload=st.binary(max_size=200))
def test_icmpv4_build_then_parse_gives_back_the_message(icmp_type, code, rest, payload):
    msg = IcmpMessage(4, icmp_type, code, rest, payload)
    assert parse_icmp(build_icmp(msg), version=4) == msg


@given(icmp_type=U8, code=U8, rest=U32, payload=st.binary(max_size=200), src=IPV6_ADDRESS, dst=IPV6_ADDRESS)
def test_icmpv6_build_then_parse_gives_back_the_message(icmp_type, code, rest, payload, src, dst):
    msg = IcmpMessage(6, icmp_type, code, rest, payload)
    assert parse_icmp(build_icmp(msg, src, dst), version=6, src=src, dst=dst) == msg


def test_icmpv4_bad_checksum_is_rejected_unless_verification_is_off():
    wire = bytearray(build_icmp(IcmpMessage(4, 8, 0, 0x12340001, b"ping")))
    wire[-1] ^= 1
    with pytest.raises(WireError, match="checksum"):
        parse_icmp(bytes(wire), version=4)
    assert parse_icmp(bytes(wire), version=4, verify_checksum=False).payload == b"pinf"


def test_icmpv6_checksum_covers_the_pseudo_header():
    # RFC 4443 §2.3: the checksum is "prepended with a "pseudo-header" of IPv6 header fields".
    wire = build_icmp(IcmpMessage(6, 128, 0, 1, b"ping"), *V6)
    with pytest.raises(WireError, match="checksum"):
        parse_icmp(wire, version=6, src=V6[0], dst=ROUTER6)
    assert parse_icmp(wire, version=6, verify_checksum=False).type == 128


def test_icmpv6_needs_the_addresses_to_verify_or_build():
    with pytest.raises(ValueError):
        parse_icmp(bytes(8), version=6)
    with pytest.raises(ValueError):
        build_icmp(IcmpMessage(6, 128, 0, 0, b""))
    with pytest.raises(ValueError):
        parse_icmp(bytes(8), version=5)


@pytest.mark.parametrize("length", [0, 1, 7])
def test_message_shorter_than_eight_bytes_is_rejected(length):
    with pytest.raises(WireError):
        parse_icmp(bytes(length), version=4, verify_checksum=False)


@pytest.mark.parametrize(
    ("version", "icmp_type", "is_error"),
    [(4, t, t in (3, 4, 5, 11, 12)) for t in range(20)] + [(6, t, 1 <= t <= 4) for t in (0, 1, 2, 3, 4, 5, 128)],
)
def test_error_classes(version, icmp_type, is_error):
    assert IcmpMessage(version, icmp_type, 0, 0, b"").is_error == is_error


def test_mtu_of_fragmentation_needed_is_the_low_16_bits():
    # RFC 1191 §4: the Next-Hop MTU sits in the low-order 16 bits of the second word.
    assert IcmpMessage(4, 3, 4, 0xABCD_0578, b"").mtu == 1400
    assert IcmpMessage(4, 3, 1, 0x0578, b"").mtu is None
    assert IcmpMessage(4, 11, 0, 0x0578, b"").mtu is None


def test_mtu_of_packet_too_big_is_all_32_bits():
    # RFC 4443 §3.2.
    assert IcmpMessage(6, 2, 0, 0x0001_0000, b"").mtu == 65536
    assert IcmpMessage(6, 1, 0, 1280, b"").mtu is None


@pytest.mark.parametrize(("src", "dst"), [V4, V6])
def test_frag_needed_from_a_router_leads_back_to_our_segment(src, dst):
    sent = build_tcp_packet(SEG, src, dst)
    if len(src) == 4:
        # RFC 792: the quote is "Internet Header + 64 bits of Original Data Datagram".
        quote = sent[:28]
        error = IcmpMessage(4, 3, 4, 1280, quote)
        arrived = build_ipv4(ROUTER4, src, PROTO_ICMP, build_icmp(error))
    else:
        # RFC 4443 §3.2: as much of the invoking packet as fits in the minimum MTU.
        quote = sent[: 1280 - 48]
        error = IcmpMessage(6, 2, 0, 1280, quote)
        arrived = build_ipv6(ROUTER6, src, PROTO_ICMPV6, build_icmp(error, ROUTER6, src))
    packet = parse_ip(arrived)
    msg = parse_icmp(packet.payload, version=packet.version, src=packet.src, dst=packet.dst)
    assert (msg.is_error, msg.mtu) == (True, 1280)
    quoted = parse_quoted_tcp(msg.payload)
    assert quoted == QuotedTcp(packet.version, src, dst, SEG.src_port, SEG.dst_port, SEG.seq)


@pytest.mark.parametrize(("src", "dst"), [V4, V6])
def test_quote_of_exactly_eight_transport_bytes_is_enough(src, dst):
    header_length = 20 if len(src) == 4 else 40
    sent = build_tcp_packet(SEG, src, dst)
    quoted = parse_quoted_tcp(sent[: header_length + 8])
    assert (quoted.src_port, quoted.dst_port, quoted.seq) == (40000, 443, 0xFFFFFF00)
    with pytest.raises(WireError, match="too short"):
        parse_quoted_tcp(sent[: header_length + 7])


def test_quote_is_read_without_checking_lengths_or_checksums():
    quote = bytearray(build_tcp_packet(SEG, *V4)[:28])
    quote[10:12] = b"\xde\xad"  # IPv4 header checksum
    quote[2:4] = b"\x05\xdc"  # total length 1500, far past the quote
    assert parse_quoted_tcp(bytes(quote)).seq == SEG.seq


def test_quote_with_ipv4_options_is_read_past_them():
    inner = build_ipv4(*V4, PROTO_TCP, struct.pack("!HHI", 1, 2, 3))
    with_options = bytes((0x46,)) + inner[1:20] + b"\x01\x01\x01\x00" + inner[20:]
    assert parse_quoted_tcp(with_options) == QuotedTcp(4, *V4, 1, 2, 3)


def test_quote_with_ipv6_extension_headers_is_read_past_them():
    ports_seq = struct.pack("!HHI", 1, 2, 3)
    destination_options = bytes((PROTO_TCP, 0)) + bytes(6)
    assert parse_quoted_tcp(build_ipv6(*V6, 60, destination_options + ports_seq)) == QuotedTcp(6, *V6, 1, 2, 3)
    first_fragment = struct.pack("!BxHI", PROTO_TCP, 1, 9)
    assert parse_quoted_tcp(build_ipv6(*V6, 44, first_fragment + ports_seq)).seq == 3
    later_fragment = struct.pack("!BxHI", PROTO_TCP, 1480 | 1, 9)
    with pytest.raises(WireError, match="fragment"):
        parse_quoted_tcp(build_ipv6(*V6, 44, later_fragment + ports_seq))


def test_quote_of_a_later_ipv4_fragment_or_of_udp_is_rejected():
    fragment = bytearray(build_ipv4(*V4, PROTO_TCP, bytes(8), dont_fragment=False))
    fragment[6:8] = b"\x00\xb9"
    with pytest.raises(WireError, match="fragment"):
        parse_quoted_tcp(bytes(fragment))
    with pytest.raises(WireError, match="protocol 17"):
        parse_quoted_tcp(build_ip(*V4, 17, bytes(8)))


@pytest.mark.parametrize("quote", [b"", b"\x45", b"\x44" + bytes(27), b"\x65" + bytes(47), b"\x60" + bytes(38)])
def test_quote_that_is_no_ip_header_is_rejected(quote):
    with pytest.raises(WireError):
        parse_quoted_tcp(quote)


@given(icmp_type=U8, code=U8, rest=U32, payload=st.binary(max_size=100))
def test_dpkt_reads_our_icmpv4_messages_alike(icmp_type, code, rest, payload):
    wire = build_icmp(IcmpMessage(4, icmp_type, code, rest, payload))
    theirs = dpkt.icmp.ICMP(wire)
    assert (theirs.type, theirs.code, theirs.sum) == (icmp_type, code, int.from_bytes(wire[2:4], "big"))
    if icmp_type not in (3, 4, 5, 11):
        # dpkt re-parses the quote of these error types, so its bytes need not round-trip; for the others it
        # recomputes a zeroed checksum, which must come out as ours.
        theirs.sum = 0
        assert bytes(theirs) == wire
