"""Segmentation offload in software (stack/wire/tso.py): what a device makes of a super-segment, and what the anycast
node makes of a packet the kernel handed over as to such a device."""

import socket

import pytest

from stack.wire import (
    ACK,
    FIN,
    PROTO_UDP,
    PSH,
    TcpOptions,
    TcpSegment,
    WireError,
    build_ip,
    build_tcp_packet,
    parse_ip,
    parse_tcp,
)
from stack.wire.tso import build_tso_packet, fit, segment

FAMILIES = {4: ("10.1.0.1", "10.1.0.2", 20), 6: ("fd00::1", "fd00::2", 40)}
OPTIONS = TcpOptions(timestamps=(1000, 2000))


def addresses(family: int) -> tuple[bytes, bytes]:
    src, dst, _ = FAMILIES[family]
    kind = socket.AF_INET if family == 4 else socket.AF_INET6
    return socket.inet_pton(kind, src), socket.inet_pton(kind, dst)


def pieces_of(packets: list[bytes]) -> list[TcpSegment]:
    """Every piece parsed with its checksums verified (parse_tcp raises on a wrong one)."""
    segments = []
    for packet in packets:
        ip = parse_ip(packet)
        segments.append(parse_tcp(ip.payload, ip.src, ip.dst))
    return segments


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("size", [1, 1448, 1449, 20_000, 65_000])
def test_a_device_cuts_a_super_segment_at_gso_size_like_linux(family, size):
    src, dst = addresses(family)
    payload = bytes(i * 7 & 0xFF for i in range(size))
    seg = TcpSegment(40000, 80, 0xFFFF_FF00, 5, ACK | PSH | FIN, 512, payload, OPTIONS)
    pieces = pieces_of(segment(build_tso_packet(seg, src, dst, 1448)))
    assert len(pieces) == -(-size // 1448)
    assert b"".join(p.payload for p in pieces) == payload
    assert [p.seq for p in pieces] == [(0xFFFF_FF00 + i * 1448) & 0xFFFFFFFF for i in range(len(pieces))]
    # tcp_gso_segment: FIN and PSH on the last piece only; the rest of the header and the options on every one.
    assert [p.flags for p in pieces] == [ACK] * (len(pieces) - 1) + [ACK | PSH | FIN]
    assert all(p.options == OPTIONS and p.ack == 5 and p.window == 512 for p in pieces)


@pytest.mark.parametrize("family", [4, 6])
def test_fit_cuts_what_is_larger_than_the_mtu_and_completes_each_checksum(family):
    src, dst = addresses(family)
    payload = bytes(range(256)) * 40
    seg = TcpSegment(40000, 80, 1, 5, ACK | PSH, 512, payload, OPTIONS)
    packet = build_tcp_packet(seg, src, dst, partial_checksum=True)
    pieces = fit(packet, 1400, partial=True)
    assert all(len(piece) <= 1400 for piece in pieces)
    assert b"".join(p.payload for p in pieces_of(pieces)) == payload


@pytest.mark.parametrize("family", [4, 6])
def test_fit_fills_in_a_partial_checksum_in_place_and_leaves_a_complete_packet_alone(family):
    src, dst = addresses(family)
    seg = TcpSegment(40000, 80, 1, 5, ACK, 512, b"x" * 1000, OPTIONS)
    complete = build_tcp_packet(seg, src, dst)
    assert fit(build_tcp_packet(seg, src, dst, partial_checksum=True), 1500, partial=True) == [complete]
    assert fit(complete, 1500, partial=False) == [complete]


def test_fit_refuses_what_is_not_tcp():
    udp = build_ip(*addresses(4), PROTO_UDP, bytes(8))  # a well-formed datagram, just not TCP
    parse_ip(udp)
    with pytest.raises(WireError, match="only TCP"):
        fit(udp, 1500, partial=True)
