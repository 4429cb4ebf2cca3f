"""TCP segments: round trips through build and parse, header edge cases, and the per-packet builder."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    ACK,
    CWR,
    ECE,
    FIN,
    NO_OPTIONS,
    PROTO_TCP,
    PSH,
    RST,
    SYN,
    URG,
    TcpOptions,
    TcpSegment,
    WireError,
    build_ip,
    build_tcp,
    build_tcp_packet,
    flags_str,
    parse_ip,
    parse_tcp,
)

from .strategies import ADDRESS_PAIR, U8, tcp_segments

V4 = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
V6 = (bytes.fromhex("fd000000000000000000000000000001"), bytes.fromhex("fd000000000000000000000000000002"))


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR)
def test_build_tcp_then_parse_tcp_gives_back_the_segment(seg, addresses):
    src, dst = addresses
    parsed = parse_tcp(build_tcp(seg, src, dst), src, dst)
    assert parsed == seg
    assert type(parsed.payload) is bytes


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR, ttl=U8)
def test_build_tcp_packet_then_parse_ip_and_tcp_gives_back_the_segment(seg, addresses, ttl):
    src, dst = addresses
    packet = parse_ip(build_tcp_packet(seg, src, dst, ttl=ttl))
    assert (packet.src, packet.dst, packet.protocol, packet.ttl) == (src, dst, PROTO_TCP, ttl)
    assert not packet.is_fragment
    assert parse_tcp(packet.payload, packet.src, packet.dst) == seg


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR, ttl=U8)
def test_build_tcp_packet_is_build_ip_around_build_tcp(seg, addresses, ttl):
    src, dst = addresses
    assert build_tcp_packet(seg, src, dst, ttl=ttl) == build_ip(src, dst, PROTO_TCP, build_tcp(seg, src, dst), ttl=ttl)


def test_ipv4_packets_we_send_set_dont_fragment():
    packet = parse_ip(build_tcp_packet(TcpSegment(1, 2, 3, 4, ACK, 5), *V4))
    assert packet.dont_fragment


def test_seg_len_counts_syn_and_fin():
    # RFC 9293 §3.4: "SEG.LEN = the number of octets occupied by the data in the segment (counting SYN and
    # FIN)".
    assert TcpSegment(1, 2, 3, 4, ACK, 5, b"abc").seg_len == 3
    assert TcpSegment(1, 2, 3, 4, SYN, 5).seg_len == 1
    assert TcpSegment(1, 2, 3, 4, FIN | ACK, 5, b"ab").seg_len == 3
    assert TcpSegment(1, 2, 3, 4, SYN | FIN, 5, b"a").seg_len == 3
    assert TcpSegment(1, 2, 3, 4, RST | ACK | PSH | URG | ECE | CWR, 5).seg_len == 0


@given(flags=U8)
def test_flag_properties_read_their_own_bit(flags):
    seg = TcpSegment(1, 2, 3, 4, flags, 5)
    assert seg.syn == bool(flags & SYN)
    assert seg.fin == bool(flags & FIN)
    assert seg.rst == bool(flags & RST)
    assert seg.has_ack == bool(flags & ACK)
    assert seg.psh == bool(flags & PSH)
    assert seg.urg == bool(flags & URG)


def test_flags_str_names_flags_lowest_bit_first():
    assert flags_str(SYN | ACK) == "SYN|ACK"
    assert flags_str(FIN | PSH | ACK) == "FIN|PSH|ACK"
    assert flags_str(ECE | CWR | SYN) == "SYN|ECE|CWR"
    assert flags_str(0) == ""
    assert flags_str(0x100 | RST) == "RST|0x100"


def header(data_offset_words: int, flags: int = ACK, reserved: int = 0) -> bytes:
    return struct.pack("!HHIIHHHH", 1000, 80, 7, 9, data_offset_words << 12 | reserved << 8 | flags, 512, 0, 0)


@pytest.mark.parametrize("words", [0, 1, 4])
def test_data_offset_below_five_words_is_rejected(words):
    with pytest.raises(WireError, match="offset"):
        parse_tcp(header(words) + bytes(40), *V4, verify_checksum=False)


def test_data_offset_past_the_end_of_the_segment_is_rejected():
    with pytest.raises(WireError, match="offset"):
        parse_tcp(header(6), *V4, verify_checksum=False)
    assert parse_tcp(header(6) + b"\x01\x01\x01\x01", *V4, verify_checksum=False).payload == b""


@pytest.mark.parametrize("length", [0, 1, 19])
def test_segment_shorter_than_a_header_is_rejected(length):
    with pytest.raises(WireError):
        parse_tcp(bytes(length), *V4, verify_checksum=False)


def test_reserved_bits_are_ignored():
    # RFC 9293 §3.1: reserved bits "must be ignored in received segments".
    seg = parse_tcp(header(5, flags=SYN | ACK, reserved=0xF), *V4, verify_checksum=False)
    assert seg.flags == SYN | ACK


def test_bad_checksum_is_rejected_unless_verification_is_off():
    wire = bytearray(build_tcp(TcpSegment(1, 2, 3, 4, ACK, 5, b"payload"), *V6))
    wire[16] ^= 0xFF
    with pytest.raises(WireError, match="checksum"):
        parse_tcp(bytes(wire), *V6)
    assert parse_tcp(bytes(wire), *V6, verify_checksum=False).payload == b"payload"


def test_segment_whose_checksum_is_zero_verifies():
    # Folding the checksum's value into the sequence number makes the other words sum to 0xFFFF (negative
    # zero), so the checksum field becomes 0x0000 and must still verify.
    wanted = int.from_bytes(build_tcp(TcpSegment(1, 2, 3, 4, ACK, 5), *V4)[16:18], "big")
    wire = build_tcp(TcpSegment(1, 2, 3 + wanted, 4, ACK, 5), *V4)
    assert wire[16:18] == b"\x00\x00"
    assert parse_tcp(wire, *V4).seq == 3 + wanted


def test_ipv4_segment_longer_than_65535_is_rejected_not_crashed():
    with pytest.raises(WireError):
        parse_tcp(header(5) + bytes(0x10000), *V4)


@pytest.mark.parametrize(
    "seg",
    [
        TcpSegment(65536, 2, 3, 4, ACK, 5),
        TcpSegment(1, -1, 3, 4, ACK, 5),
        TcpSegment(1, 2, 1 << 32, 4, ACK, 5),
        TcpSegment(1, 2, 3, -4, ACK, 5),
        TcpSegment(1, 2, 3, 4, 0x100, 5),
        TcpSegment(1, 2, 3, 4, -1, 5),
        TcpSegment(1, 2, 3, 4, ACK, 65536),
        TcpSegment(1, 2, 3, 4, ACK, 5, urgent=65536),
        TcpSegment(1, 2, 3, 4, ACK, 5, options=TcpOptions(timestamps=(1, 1 << 32))),
    ],
)
def test_builders_refuse_fields_out_of_range_with_value_error(seg):
    for src, dst in (V4, V6):
        with pytest.raises(ValueError):
            build_tcp(seg, src, dst)
        with pytest.raises(ValueError):
            build_tcp_packet(seg, src, dst)


@pytest.mark.parametrize(("src", "dst"), [(V4[0], V6[1]), (b"\x01" * 5, b"\x01" * 5), (b"", b"")])
def test_builders_refuse_mismatched_or_odd_addresses(src, dst):
    seg = TcpSegment(1, 2, 3, 4, ACK, 5)
    with pytest.raises(ValueError):
        build_tcp(seg, src, dst)
    with pytest.raises(ValueError):
        build_tcp_packet(seg, src, dst)


def test_build_tcp_packet_refuses_ttl_out_of_range():
    with pytest.raises(ValueError):
        build_tcp_packet(TcpSegment(1, 2, 3, 4, ACK, 5), *V4, ttl=256)


def test_ipv4_packet_over_65535_bytes_is_refused():
    with pytest.raises(ValueError):
        build_tcp_packet(TcpSegment(1, 2, 3, 4, ACK, 5, bytes(65535 - 40 + 1)), *V4)
    assert len(build_tcp_packet(TcpSegment(1, 2, 3, 4, ACK, 5, bytes(65535 - 40)), *V4)) == 65535


@given(seg=tcp_segments(max_payload=0), addresses=ADDRESS_PAIR)
def test_segments_with_no_payload_and_no_options_default_cleanly(seg, addresses):
    bare = TcpSegment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window)
    assert bare.options is NO_OPTIONS
    assert parse_tcp(build_tcp(bare, *addresses), *addresses) == bare


@given(seg=tcp_segments(), addresses=ADDRESS_PAIR, kind=st.sampled_from([bytearray, memoryview]))
def test_parse_tcp_takes_bytearray_and_memoryview(seg, addresses, kind):
    src, dst = addresses
    assert parse_tcp(kind(build_tcp(seg, src, dst)), src, dst) == seg
