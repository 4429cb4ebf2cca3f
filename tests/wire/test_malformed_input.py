"""Whatever bytes arrive, every parser returns or raises WireError, nothing else, whatever the buffer type.

Random bytes mostly die at the first length check, so the same property is also driven by valid packets with a
few bytes overwritten and the tail cut, which reach the option walk, the extension-header walk and the quotes.
"""

import struct

from hypothesis import example, given
from hypothesis import strategies as st

from stack.wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    IcmpMessage,
    WireError,
    build_icmp,
    build_ipv4,
    build_ipv6,
    build_tcp_packet,
    internet_checksum,
    parse_icmp,
    parse_ip,
    parse_options,
    parse_quoted_tcp,
    parse_tcp,
)

from .strategies import ADDRESS_PAIR, BUFFER_KINDS, U8, tcp_segments

V4 = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
V6 = (b"\xfd" + bytes(14) + b"\x01", b"\xfd" + bytes(14) + b"\x02")


def outcome(parse, data):
    """What ``parse`` made of ``data``: its result, or the WireError type; any other exception fails the
    test."""
    try:
        return parse(data)
    except WireError:
        return WireError


def every_parser(data, kind) -> None:
    """Feed ``data`` (as ``kind`` of buffer) to every parser, with and without checksums, as bytes would
    be."""
    parsers = [
        parse_ip,
        parse_options,
        parse_quoted_tcp,
        lambda d: parse_tcp(d, *V4),
        lambda d: parse_tcp(d, *V6),
        lambda d: parse_tcp(d, b"", b"", verify_checksum=False),
        lambda d: parse_icmp(d, version=4),
        lambda d: parse_icmp(d, version=6, src=V6[0], dst=V6[1]),
        lambda d: parse_icmp(d, version=6, verify_checksum=False),
    ]
    for parse in parsers:
        assert outcome(parse, kind(data)) == outcome(parse, bytes(data))


@given(data=st.binary(max_size=120), kind=BUFFER_KINDS)
@example(data=b"", kind=bytes)
@example(data=b"\x45" + bytes(19), kind=bytearray)
@example(data=b"\x60" + bytes(39), kind=memoryview)
@example(data=b"\x4f" + bytes(59), kind=bytes)
def test_arbitrary_bytes_parse_or_raise_wire_error(data, kind):
    every_parser(data, kind)


def reseal(data: bytearray) -> None:
    """Recompute an IPv4 header checksum in place, so mutations reach what lies behind it."""
    if len(data) >= 20 and data[0] >> 4 == 4 and 20 <= (data[0] & 15) * 4 <= len(data):
        ihl = (data[0] & 15) * 4
        data[10:12] = b"\x00\x00"
        data[10:12] = internet_checksum(bytes(data[:ihl])).to_bytes(2, "big")


@st.composite
def valid_packets(draw) -> bytes:
    """TCP packets, IPv6 with extension headers, and ICMP errors quoting a TCP packet, all well formed."""
    seg = draw(tcp_segments(max_payload=40))
    src, dst = draw(ADDRESS_PAIR)
    tcp = build_tcp_packet(seg, src, dst)
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return tcp
    if choice == 1:
        chain = b"".join(bytes((nxt, 0)) + bytes(6) for nxt in (60, 43, 51)) + struct.pack("!BxHI", 6, 0, 1)
        return build_ipv6(*V6, 0, chain + tcp[20 if len(src) == 4 else 40 :])
    if choice == 2:
        return build_ipv4(*V4, PROTO_ICMP, build_icmp(IcmpMessage(4, 3, 4, 1400, tcp[:48])))
    return build_ipv6(*V6, PROTO_ICMPV6, build_icmp(IcmpMessage(6, 2, 0, 1280, tcp[:88]), *V6))


@given(
    wire=valid_packets(),
    edits=st.lists(st.tuples(st.integers(0, 150), U8), min_size=1, max_size=4),
    cut=st.integers(0, 60),
    seal=st.booleans(),
    kind=BUFFER_KINDS,
)
def test_mutated_packets_parse_or_raise_wire_error_all_the_way_down(wire, edits, cut, seal, kind):
    data = bytearray(wire)
    for position, value in edits:
        data[position % len(data)] = value
    del data[len(data) - min(cut, len(data)) :]
    if seal:
        reseal(data)
    every_parser(bytes(data), kind)
    packet = outcome(parse_ip, bytes(data))
    if packet is WireError:
        return
    # Everything the packet carries goes on down, as the host and the ICMP handler would send it.
    every_parser(packet.payload, kind)
    for version in (4, 6):
        message = outcome(lambda d, v=version: parse_icmp(d, version=v, verify_checksum=False), packet.payload)
        if message is not WireError:
            every_parser(message.payload, kind)
            every_parser(message.payload[:28], kind)
