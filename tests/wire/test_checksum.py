"""The fast checksum against RFC 1071's definition, its known vectors, dpkt, and the pseudo-headers."""

import random

import dpkt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stack.wire import (
    PROTO_TCP,
    TcpSegment,
    WireError,
    build_tcp,
    internet_checksum,
    parse_tcp,
    pseudo_header_sum,
    verify_transport_checksum,
)

from .strategies import ADDRESS_PAIR, pseudo_header_bytes, reference_checksum, tcp_segments

RFC1071_EXAMPLE = bytes.fromhex("0001f203f4f5f6f7")


def test_rfc1071_example_sums_to_ddf2_and_checksums_to_220d():
    # RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 have the one's complement sum ddf2.
    assert internet_checksum(RFC1071_EXAMPLE) == 0x220D
    assert ~internet_checksum(RFC1071_EXAMPLE) & 0xFFFF == 0xDDF2
    assert reference_checksum(RFC1071_EXAMPLE) == 0x220D


@pytest.mark.parametrize(
    ("data", "initial", "expected"),
    [
        (b"", 0, 0xFFFF),  # nothing at all sums to +0
        (b"\x00" * 20, 0, 0xFFFF),
        (b"\xff\xff", 0, 0x0000),  # a non-zero sum ≡ 0 (mod 0xFFFF) is negative zero, 0xFFFF
        (b"\xff\xff" * 700, 0, 0x0000),
        (b"\x00\x01", 0xFFFE, 0x0000),  # the partial sum alone reaches 0xFFFF
        (b"", 0xFFFF, 0x0000),
        (b"", 0x1FFFE, 0x0000),
        (b"\x01", 0, 0xFEFF),  # an odd byte is the high byte of a zero-padded word
        (b"\x12\x34\x56", 0, ~(0x1234 + 0x5600) & 0xFFFF),
    ],
)
def test_one_complement_edge_cases(data, initial, expected):
    assert internet_checksum(data, initial) == expected
    assert reference_checksum(data, initial) == expected


@given(data=st.binary(max_size=3000), initial=st.integers(0, 1 << 40))
@example(data=b"\xff\xff" * 3, initial=0)
@example(data=b"", initial=0)
def test_fast_checksum_equals_word_by_word_reference(data, initial):
    assert internet_checksum(data, initial) == reference_checksum(data, initial)


def test_fast_checksum_equals_reference_at_every_length_up_to_3000():
    rng = random.Random(1071)
    for length in range(3001):
        for data in (rng.randbytes(length), b"\xff" * length, bytes(length)):
            assert internet_checksum(data) == reference_checksum(data), length


@given(data=st.binary(max_size=3000))
def test_fast_checksum_equals_dpkt_in_cksum(data):
    # dpkt sums little-endian words and byte-swaps at the end; as a value in the header it must agree.
    assert internet_checksum(data) == dpkt.in_cksum(data)


@given(data=st.binary(max_size=64))
def test_checksum_takes_bytearray_and_memoryview_alike(data):
    expected = internet_checksum(data)
    assert internet_checksum(bytearray(data)) == expected
    assert internet_checksum(memoryview(data)) == expected
    if len(data) % 2 == 0:
        assert internet_checksum(memoryview(data).cast("H")) == expected


@given(addresses=ADDRESS_PAIR, protocol=st.integers(0, 255), payload=st.binary(max_size=200))
def test_pseudo_header_sum_gives_the_checksum_of_the_drawn_pseudo_header(addresses, protocol, payload):
    src, dst = addresses
    partial = pseudo_header_sum(src, dst, protocol, len(payload))
    assert internet_checksum(payload, partial) == reference_checksum(
        pseudo_header_bytes(src, dst, protocol, len(payload)) + payload
    )


def test_ipv6_pseudo_header_carries_a_32_bit_length():
    src, dst = bytes(16), bytes(15) + b"\x01"
    length = 0x12345
    assert internet_checksum(b"", pseudo_header_sum(src, dst, 6, length)) == reference_checksum(
        pseudo_header_bytes(src, dst, 6, length)
    )


@pytest.mark.parametrize(
    ("src", "dst"),
    [(b"\x01" * 4, b"\x01" * 16), (b"\x01" * 5, b"\x01" * 5), (b"", b"")],
)
def test_pseudo_header_sum_refuses_mismatched_or_odd_addresses(src, dst):
    with pytest.raises(ValueError):
        pseudo_header_sum(src, dst, PROTO_TCP, 20)


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR)
def test_verify_transport_checksum_accepts_what_build_tcp_makes(seg, addresses):
    src, dst = addresses
    assert verify_transport_checksum(build_tcp(seg, src, dst), src, dst, PROTO_TCP)


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR, data=st.data())
def test_any_single_corrupted_byte_is_caught_by_parse_tcp(seg, addresses, data):
    src, dst = addresses
    wire = bytearray(build_tcp(seg, src, dst))
    position = data.draw(st.integers(0, len(wire) - 1))
    wire[position] ^= data.draw(st.integers(1, 255))
    assert not verify_transport_checksum(bytes(wire), src, dst, PROTO_TCP)
    with pytest.raises(WireError):
        parse_tcp(bytes(wire), src, dst)


def test_checksum_covers_the_pseudo_header_so_a_misrouted_segment_is_caught():
    # RFC 9293 §3.1: the pseudo-header "gives the TCP connection protection against misrouted segments".
    seg = TcpSegment(1, 2, 3, 4, 0x10, 5, b"data")
    wire = build_tcp(seg, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
    with pytest.raises(WireError):
        parse_tcp(wire, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x03")


@pytest.mark.parametrize(
    ("src", "dst"),
    [(b"\xff" * 4, bytes(4)), (bytes(4), bytes(4)), (b"\xff" * 16, b"\xff" * 16), (bytes(16), bytes(16))],
)
def test_pseudo_header_sum_keeps_the_two_zeros_of_ones_complement_apart(src, dst):
    # Addresses that sum to 0xFFFF (negative zero) and addresses that sum to +0 checksum differently.
    for protocol, length in ((0, 0), (6, 0), (0, 1)):
        expected = reference_checksum(pseudo_header_bytes(src, dst, protocol, length))
        assert internet_checksum(b"", pseudo_header_sum(src, dst, protocol, length)) == expected


@pytest.mark.parametrize(
    ("src", "protocol", "length"),
    [
        (bytes(4), 256, 0),
        (bytes(4), -1, 0),
        (bytes(4), 6, 0x10000),
        (bytes(16), 6, 1 << 32),
        (bytes(16), 6, -1),
    ],
)
def test_pseudo_header_sum_refuses_fields_out_of_range(src, protocol, length):
    with pytest.raises(ValueError):
        pseudo_header_sum(src, src, protocol, length)
