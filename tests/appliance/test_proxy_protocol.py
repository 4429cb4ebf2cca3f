"""PROXY protocol v2 (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt §2.2): golden headers laid out
by hand from the spec, round trips, and hostile input that must raise ValueError and nothing else."""

import ipaddress
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from appliance.proxy_protocol import build_v2, build_v2_local, header_length, parse_v2

SIG = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])  # §2.2, byte by byte


def test_tcp4_header_is_byte_exact():
    expected = (
        SIG
        + bytes([0x21, 0x11])  # version 2 | PROXY; AF_INET | STREAM
        + struct.pack("!H", 12)  # 2*4 + 2*2
        + bytes([192, 0, 2, 1])
        + bytes([198, 51, 100, 7])
        + struct.pack("!HH", 51_000, 443)
    )
    assert build_v2(("192.0.2.1", 51_000), ("198.51.100.7", 443)) == expected
    assert parse_v2(expected) == (("192.0.2.1", 51_000), ("198.51.100.7", 443))


def test_tcp6_header_is_byte_exact():
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000abc")
    expected = SIG + bytes([0x21, 0x21]) + struct.pack("!H", 36) + src + dst + struct.pack("!HH", 1, 65535)
    assert build_v2(("2001:db8::1", 1), ("2001:db8::abc", 65535)) == expected
    assert parse_v2(expected) == (("2001:db8::1", 1), ("2001:db8::abc", 65535))


def test_local_header_has_no_address_and_parses_as_use_the_real_endpoints():
    expected = SIG + bytes([0x20, 0x00, 0x00, 0x00])  # version 2 | LOCAL; UNSPEC; length 0
    assert build_v2_local() == expected
    assert parse_v2(expected) is None


def test_local_with_an_address_block_is_still_local():
    # §2.2: receivers "must not assume zero is presented for LOCAL connections" and ignore the family.
    header = SIG + bytes([0x20, 0x11]) + struct.pack("!H", 12) + bytes(12)
    assert parse_v2(header) is None


def test_tlvs_after_the_addresses_are_skipped():
    noop_tlv = bytes([0x04, 0x00, 0x03]) + b"pad"  # PP2_TYPE_NOOP
    header = build_v2(("10.0.0.1", 1000), ("10.0.0.2", 80))
    grown = header[:14] + struct.pack("!H", 12 + len(noop_tlv)) + header[16:] + noop_tlv
    assert header_length(grown[:16]) == len(grown)
    assert parse_v2(grown) == (("10.0.0.1", 1000), ("10.0.0.2", 80))


@pytest.mark.parametrize("family", [0x00, 0x12, 0x22, 0x31, 0x32])
def test_valid_families_a_tcp_receiver_does_not_use_fall_back_to_unspec(family):
    header = SIG + bytes([0x21, family]) + struct.pack("!H", 216) + bytes(216)
    assert parse_v2(header) is None


def test_header_length_tells_a_backend_how_much_to_read():
    header = build_v2(("2001:db8::1", 5), ("2001:db8::2", 6))
    assert header_length(header[:16]) == 16 + 36 == len(header)


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        (("192.0.2.1", 1), ("2001:db8::1", 2)),
        (("2001:db8::1", 1), ("192.0.2.1", 2)),
        (("192.0.2.1", 1), ("::ffff:192.0.2.2", 2)),  # IPv4-mapped is IPv6 on the wire
    ],
)
def test_mixed_families_are_refused_with_a_clear_message(source, destination):
    with pytest.raises(ValueError, match="same family"):
        build_v2(source, destination)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (("192.0.2.1", 65536), "not a TCP port"),
        (("192.0.2.1", -1), "not a TCP port"),
        (("192.0.2.1", "80"), "not a TCP port"),
        (("192.0.2.1", True), "not a TCP port"),
        (("example.com", 80), "not an .IP address, port. pair"),
        (("192.0.2.1",), "not an .IP address, port. pair"),
        (None, "not an .IP address, port. pair"),
    ],
)
def test_bad_endpoints_are_refused(source, match):
    with pytest.raises(ValueError, match=match):
        build_v2(source, ("192.0.2.2", 80))


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)


@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), ports, ports)
@example(("0.0.0.0", "255.255.255.255"), 0, 65535)
@example(("::", "::ffff:10.0.0.1"), 65535, 0)
def test_round_trip(hosts, source_port, destination_port):
    header = build_v2((hosts[0], source_port), (hosts[1], destination_port))
    assert len(header) == header_length(header[:16]) == (28 if ":" not in hosts[0] else 52)
    (parsed_host, parsed_port), (parsed_dest, parsed_dest_port) = parse_v2(header)
    # Compared as addresses: the text form of IPv4-mapped addresses differs between Python versions.
    assert ipaddress.ip_address(parsed_host) == ipaddress.ip_address(hosts[0]) and parsed_port == source_port
    assert ipaddress.ip_address(parsed_dest) == ipaddress.ip_address(hosts[1]) and parsed_dest_port == destination_port
    assert build_v2((parsed_host, parsed_port), (parsed_dest, parsed_dest_port)) == header


def test_malformed_headers_say_what_is_wrong():
    good = build_v2(("10.0.0.1", 1), ("10.0.0.2", 2))
    cases = {
        b"": "first 16 bytes",
        good[:15]: "first 16 bytes",
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n": "no PROXY v2 signature",
        good[:12] + bytes([0x11]) + good[13:]: "version 1",
        good[:12] + bytes([0x22]) + good[13:]: "command 0x2",
        good[:13] + bytes([0x41]) + good[14:]: "0x41 is not defined",
        good[:13] + bytes([0x13]) + good[14:]: "0x13 is not defined",
        good[:-1]: "cut short",
        good + b"GET /": "followed by 5 more bytes",
        good[:14] + struct.pack("!H", 4) + good[16:20]: "too short for the 12-byte address block",
    }
    for data, match in cases.items():
        with pytest.raises(ValueError, match=match):
            parse_v2(data)


@given(st.binary(max_size=80))
@example(SIG + bytes([0x21, 0x11, 0x00, 0x0C]))
@example(SIG + bytes([0x21, 0x21, 0x00, 0x00]))
def test_arbitrary_bytes_parse_or_raise_value_error(data):
    try:
        parse_v2(data)
    except ValueError:
        pass


@given(st.binary(min_size=0, max_size=60), st.integers(0, 255), st.integers(0, 255))
def test_arbitrary_bodies_behind_a_valid_signature_parse_or_raise_value_error(body, version_command, family):
    data = SIG + bytes([version_command, family]) + struct.pack("!H", len(body)) + body
    try:
        result = parse_v2(data)
    except ValueError:
        return
    assert result is None or (isinstance(result, tuple) and len(result) == 2)
