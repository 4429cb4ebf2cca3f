"""The tunnel's datagrams in a capture: rebuilt UDP packets that an independent parser (dpkt) reads back."""

import dpkt
import pytest

from stack.wire.checksum import internet_checksum, pseudo_header_sum
from tunnel.capture import TunnelCapture, udp_packet
from tunnel.pcap import PcapWriter


def test_ipv4_datagram_round_trips_through_dpkt_with_valid_checksums():
    packet = udp_packet(("10.10.0.1", 6080), ("10.10.0.2", 6081), b"gue")
    ip = dpkt.ip.IP(packet)
    assert (ip.src, ip.dst, ip.p, ip.ttl, ip.len) == (bytes([10, 10, 0, 1]), bytes([10, 10, 0, 2]), 17, 64, 31)
    assert internet_checksum(packet[:20]) == 0  # a correct header sums to zero
    udp = ip.data
    assert (udp.sport, udp.dport, udp.ulen, bytes(udp.data)) == (6080, 6081, 11, b"gue")
    assert internet_checksum(packet[20:], pseudo_header_sum(ip.src, ip.dst, 17, 11)) == 0


def test_ipv6_datagram_has_the_mandatory_udp_checksum():
    packet = udp_packet(("fd00::1", 6080), ("fd00::2", 6080), b"x" * 5)
    ip = dpkt.ip6.IP6(packet)
    assert (ip.nxt, ip.plen, ip.hlim) == (17, 13, 64)
    assert internet_checksum(packet[40:], pseudo_header_sum(ip.src, ip.dst, 17, 13)) == 0  # RFC 8200 §8.1


def test_mixed_families_are_refused():
    with pytest.raises(ValueError, match="different families"):
        udp_packet(("10.0.0.1", 1), ("fd00::1", 1), b"")


def test_capture_records_both_directions_from_the_local_address(tmp_path):
    path = tmp_path / "t.pcap"
    with PcapWriter(path) as writer:
        capture = TunnelCapture(writer, ("10.10.0.1", 6080), clock=lambda: 1.5)
        capture.sent(b"out", ("10.10.0.2", 6080))
        capture.received(b"in", ("10.10.0.3", 6080))
    with open(path, "rb") as f:
        records = [(ts, dpkt.ip.IP(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    assert [(ts, r.src[-1], r.dst[-1], bytes(r.data.data)) for ts, r in records] == [
        (1.5, 1, 2, b"out"),
        (1.5, 3, 1, b"in"),
    ]
