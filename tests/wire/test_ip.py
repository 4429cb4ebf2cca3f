"""IPv4 (RFC 791) and IPv6 (RFC 8200) headers: round trips, options, padding, extension headers, fragments."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    PROTO_TCP,
    IpPacket,
    WireError,
    build_ip,
    build_ipv4,
    build_ipv6,
    internet_checksum,
    parse_ip,
)

from .strategies import IPV4_ADDRESS, IPV6_ADDRESS, U8, U16

EXTENSION_HEADERS = {0, 43, 44, 51, 60}
UPPER_LAYER = st.integers(0, 255).filter(lambda p: p not in EXTENSION_HEADERS and p != 59)
V6_SRC = bytes.fromhex("20010db8000000000000000000000001")
V6_DST = bytes.fromhex("20010db8000000000000000000000002")


@given(
    src=IPV4_ADDRESS,
    dst=IPV4_ADDRESS,
    protocol=U8,
    payload=st.binary(max_size=300),
    ttl=U8,
    tos=U8,
    ident=U16,
    dont_fragment=st.booleans(),
)
def test_build_ipv4_then_parse_gives_back_every_field(src, dst, protocol, payload, ttl, tos, ident, dont_fragment):
    wire = build_ipv4(src, dst, protocol, payload, ttl=ttl, tos=tos, ident=ident, dont_fragment=dont_fragment)
    assert internet_checksum(wire[:20]) == 0
    assert parse_ip(wire) == IpPacket(
        4,
        src,
        dst,
        protocol,
        ttl,
        payload,
        tos=tos,
        ident=ident,
        dont_fragment=dont_fragment,
        header_length=20,
    )


@given(
    src=IPV6_ADDRESS,
    dst=IPV6_ADDRESS,
    protocol=UPPER_LAYER,
    payload=st.binary(min_size=1, max_size=300),
    hop_limit=U8,
    traffic_class=U8,
    flow_label=st.integers(0, 0xFFFFF),
)
def test_build_ipv6_then_parse_gives_back_every_field(
    src, dst, protocol, payload, hop_limit, traffic_class, flow_label
):
    wire = build_ipv6(
        src, dst, protocol, payload, hop_limit=hop_limit, traffic_class=traffic_class, flow_label=flow_label
    )
    assert parse_ip(wire) == IpPacket(
        6, src, dst, protocol, hop_limit, payload, tos=traffic_class, flow_label=flow_label, header_length=40
    )


def test_build_ip_chooses_the_family_by_address_length():
    assert parse_ip(build_ip(b"\x01" * 4, b"\x02" * 4, PROTO_TCP, b"x", ttl=9)).version == 4
    packet = parse_ip(build_ip(V6_SRC, V6_DST, PROTO_TCP, b"x", ttl=9))
    assert (packet.version, packet.ttl) == (6, 9)
    with pytest.raises(ValueError):
        build_ip(b"\x01" * 5, b"\x02" * 5, PROTO_TCP, b"x")


def ipv4(
    payload=b"data",
    *,
    options=b"",
    total=None,
    ident=0x1234,
    flags_offset=0x4000,
    version_ihl=None,
    checksum=None,
):
    """An IPv4 header built field by field (protocol 253, for experiments), checksummed unless told
    otherwise."""
    ihl = 20 + len(options)
    if version_ihl is None:
        version_ihl = 0x40 | ihl // 4
    if total is None:
        total = ihl + len(payload)
    addresses = b"\x0a\x00\x00\x01\x0a\x00\x00\x02"
    header = struct.pack("!BBHHHBBH8s", version_ihl, 0, total, ident, flags_offset, 64, 253, 0, addresses) + options
    if checksum is None:
        checksum = internet_checksum(header)
    return header[:10] + checksum.to_bytes(2, "big") + header[12:] + payload


def test_ipv4_options_are_skipped():
    packet = parse_ip(ipv4(b"data", options=b"\x94\x04\x00\x00" + b"\x01\x01\x01\x00"))
    assert (packet.payload, packet.header_length) == (b"data", 28)


def test_ipv4_link_padding_past_total_length_is_dropped():
    # A 40-byte datagram arrives in a 46-byte Ethernet payload with six bytes of padding.
    assert parse_ip(ipv4(b"data") + bytes(6)).payload == b"data"


@pytest.mark.parametrize("total", [0, 19, 23, 29])
def test_ipv4_total_length_shorter_than_header_or_longer_than_data_is_rejected(total):
    # 24 bytes of header (one word of options) and 4 of payload.
    with pytest.raises(WireError, match="total length"):
        parse_ip(ipv4(b"data", options=b"\x01\x01\x01\x00", total=total))


@pytest.mark.parametrize("ihl_words", [0, 4])
def test_ipv4_header_length_below_five_words_is_rejected(ihl_words):
    with pytest.raises(WireError, match="header length"):
        parse_ip(ipv4(version_ihl=0x40 | ihl_words))


def test_ipv4_header_length_past_the_data_is_rejected():
    with pytest.raises(WireError, match="header length"):
        parse_ip(ipv4(b"", version_ihl=0x4F, total=20))


def test_ipv4_bad_header_checksum_is_rejected():
    # RFC 1122 §3.2.1.2: "silently discard every datagram that has a bad checksum".
    good = ipv4()
    with pytest.raises(WireError, match="checksum"):
        parse_ip(ipv4(checksum=int.from_bytes(good[10:12], "big") ^ 1))


def test_ipv4_header_checksum_of_ffff_and_0000_are_the_same_zero():
    # Moving the checksum's value into the Identification field makes the right checksum 0x0000; one's
    # complement has two zeros, so 0xFFFF (which RFC 1624 §3 incremental updates can produce) verifies too.
    ident = int.from_bytes(ipv4(ident=0)[10:12], "big")
    assert ipv4(ident=ident)[10:12] == b"\x00\x00"
    assert parse_ip(ipv4(ident=ident)).ident == ident
    assert parse_ip(ipv4(ident=ident, checksum=0xFFFF)).ident == ident


@pytest.mark.parametrize(
    ("flags_offset", "df", "mf", "offset"),
    [
        (0x4000, True, False, 0),
        (0x2000, False, True, 0),
        (0x2003, False, True, 24),
        (0x0004, False, False, 32),
    ],
)
def test_ipv4_fragment_fields(flags_offset, df, mf, offset):
    packet = parse_ip(ipv4(flags_offset=flags_offset))
    assert (packet.dont_fragment, packet.more_fragments, packet.fragment_offset) == (df, mf, offset)
    assert packet.is_fragment == (mf or offset != 0)


@pytest.mark.parametrize("first_byte", [0x00, 0x15, 0x55, 0x75, 0xF5])
def test_other_ip_versions_are_rejected(first_byte):
    with pytest.raises(WireError, match="version"):
        parse_ip(bytes((first_byte,)) + bytes(59))


def test_empty_and_short_packets_are_rejected():
    for data in (b"", b"\x45", b"\x45" + bytes(18), b"\x60" + bytes(38)):
        with pytest.raises(WireError):
            parse_ip(data)


def ext(kind: int, next_header: int, units: int = 0) -> bytes:
    """An IPv6 extension header of the given kind, padded to its declared length."""
    if kind == 51:
        return bytes((next_header, units)) + bytes((units + 2) * 4 - 2)
    return bytes((next_header, units)) + bytes((units + 1) * 8 - 2)


def fragment(next_header: int, offset: int = 0, more: bool = False, ident: int = 0xCAFE) -> bytes:
    return struct.pack("!BxHI", next_header, offset | more, ident)


def ipv6(chain: bytes, first: int, payload: bytes = b"upper", *, extra: bytes = b"", length=None) -> bytes:
    body = chain + payload
    return (
        struct.pack("!IHBB16s16s", 0x60000000, len(body) if length is None else length, first, 64, V6_SRC, V6_DST)
        + body
        + extra
    )


@given(
    kinds=st.lists(st.sampled_from([43, 51, 60]), max_size=7),
    units=st.lists(st.integers(0, 3), min_size=7, max_size=7),
    hop_by_hop=st.booleans(),
    protocol=UPPER_LAYER,
)
def test_ipv6_extension_headers_are_stepped_over_to_the_upper_layer(kinds, units, hop_by_hop, protocol):
    kinds = ([0] if hop_by_hop else []) + kinds
    chain = b"".join(ext(kind, nxt, u) for kind, nxt, u in zip(kinds, [*kinds[1:], protocol], [*units, 0]))
    packet = parse_ip(ipv6(chain, kinds[0] if kinds else protocol) + b"linkpad")
    assert (packet.protocol, packet.payload, packet.header_length) == (protocol, b"upper", 40 + len(chain))
    assert not packet.is_fragment


def test_eight_extension_headers_are_accepted_and_nine_rejected():
    eight = b"".join(ext(60, 60) for _ in range(7)) + ext(60, PROTO_TCP)
    assert parse_ip(ipv6(eight, 60)).protocol == PROTO_TCP
    with pytest.raises(WireError, match="extension headers"):
        parse_ip(ipv6(ext(60, 60) + eight, 60))


def test_hop_by_hop_anywhere_but_first_is_rejected():
    # RFC 8200 §4.1: it "must immediately follow the IPv6 header".
    with pytest.raises(WireError, match="Hop-by-Hop"):
        parse_ip(ipv6(ext(60, 0) + ext(0, PROTO_TCP), 60))


def test_authentication_header_length_is_in_four_byte_units_plus_two():
    packet = parse_ip(ipv6(ext(51, PROTO_TCP, units=4), 51))
    assert (packet.protocol, packet.header_length, packet.payload) == (PROTO_TCP, 40 + 24, b"upper")


@pytest.mark.parametrize("chain", [ext(60, PROTO_TCP, units=2)[:20], b"\x06\x00\x00"])
def test_extension_header_running_past_the_payload_is_rejected(chain):
    with pytest.raises(WireError, match="truncated"):
        parse_ip(ipv6(chain, 60, payload=b""))


def test_non_first_fragment_stops_the_walk_and_is_a_fragment():
    packet = parse_ip(ipv6(fragment(PROTO_TCP, offset=8 * 185, more=True, ident=7), 44, b"middle"))
    assert (packet.protocol, packet.payload, packet.header_length) == (PROTO_TCP, b"middle", 48)
    assert (packet.fragment_offset, packet.more_fragments, packet.ident, packet.is_fragment) == (
        1480,
        True,
        7,
        True,
    )


def test_first_fragment_is_a_fragment_even_at_offset_zero():
    packet = parse_ip(ipv6(fragment(60, more=True), 44, ext(60, PROTO_TCP) + b"head"))
    assert packet.is_fragment
    assert packet.protocol == 60  # the headers after a Fragment header are not walked


def test_atomic_fragment_is_processed_as_a_whole_packet():
    # RFC 8200 §4.5: offset 0 and M 0 "should be processed as a fully reassembled packet" (RFC 6946).
    packet = parse_ip(ipv6(ext(0, 44) + fragment(60, ident=99) + ext(60, PROTO_TCP), 0))
    assert (packet.protocol, packet.payload, packet.ident, packet.header_length) == (
        PROTO_TCP,
        b"upper",
        99,
        64,
    )
    assert not packet.is_fragment


def test_no_next_header_has_protocol_59_and_no_payload():
    # RFC 8200 §4.7: octets past a header whose Next Header is 59 "must be ignored".
    packet = parse_ip(ipv6(ext(60, 59), 60, b"ignored"))
    assert (packet.protocol, packet.payload) == (59, b"")
    assert parse_ip(ipv6(b"", 59, b"")).payload == b""


def test_jumbogram_payload_length_zero_is_rejected():
    with pytest.raises(WireError, match="jumbogram"):
        parse_ip(ipv6(ext(0, PROTO_TCP), 0, length=0))


def test_ipv6_payload_length_past_the_data_is_rejected_and_shorter_trims_padding():
    with pytest.raises(WireError, match="payload length"):
        parse_ip(ipv6(b"", PROTO_TCP, b"upper", length=6))
    assert parse_ip(ipv6(b"", PROTO_TCP, b"upper", extra=b"pad")).payload == b"upper"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 256},
        {"tos": -1},
        {"ident": 65536},
        {"protocol": 256},
        {"src": b"\x01" * 16},
        {"payload": bytes(65516)},
    ],
)
def test_build_ipv4_refuses_fields_out_of_range(kwargs):
    args = {"src": b"\x01" * 4, "dst": b"\x02" * 4, "protocol": 6, "payload": b""} | kwargs
    with pytest.raises(ValueError):
        build_ipv4(**args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hop_limit": 256},
        {"traffic_class": 256},
        {"flow_label": 1 << 20},
        {"src": b"\x01" * 4},
        {"payload": bytes(65536)},
    ],
)
def test_build_ipv6_refuses_fields_out_of_range(kwargs):
    args = {"src": V6_SRC, "dst": V6_DST, "protocol": 6, "payload": b""} | kwargs
    with pytest.raises(ValueError):
        build_ipv6(**args)
