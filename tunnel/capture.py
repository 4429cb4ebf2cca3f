"""Recording the tunnel in the same pcap as the TUN: each datagram between nodes is written as the IPv4 or IPv6
UDP packet it travelled in, so Wireshark shows the cluster's traffic (GUE on the node port) beside the clients'.
The kernel builds the real headers; these are rebuilt from the socket addresses, enough for any reader."""

import ipaddress
import struct

from stack.wire.checksum import internet_checksum, pseudo_header_sum

from .pcap import PcapWriter

UDP = 17
TTL = 64


def udp_packet(src: tuple, dst: tuple, payload: bytes) -> bytes:
    """An IP packet carrying ``payload`` from ``src`` to ``dst`` ((host, port) pairs of one family)."""
    s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if s.version != d.version:
        raise ValueError(f"{src[0]} and {dst[0]} are of different families: a datagram has one")
    length = 8 + len(payload)
    header = struct.pack("!HHHH", src[1], dst[1], length, 0)
    checksum = internet_checksum(header + payload, pseudo_header_sum(s.packed, d.packed, UDP, length)) or 0xFFFF
    udp = header[:6] + checksum.to_bytes(2, "big") + payload  # RFC 768: a computed zero is sent as all ones
    if s.version == 6:
        return struct.pack("!IHBB", 6 << 28, length, UDP, TTL) + s.packed + d.packed + udp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, TTL, UDP, 0, s.packed, d.packed)
    return ip[:10] + internet_checksum(ip).to_bytes(2, "big") + ip[12:] + udp


class TunnelCapture:
    """Writes a node's datagrams to ``writer`` as seen on the wire from ``local`` (its peer socket's address)."""

    def __init__(self, writer: PcapWriter, local: tuple, clock) -> None:
        self.writer, self.local, self.clock = writer, local[:2], clock

    def received(self, data: bytes, source: tuple) -> None:
        self.writer.write(udp_packet(source[:2], self.local, data), self.clock(), "in")

    def sent(self, data: bytes, destination: tuple) -> None:
        self.writer.write(udp_packet(self.local, destination[:2], data), self.clock(), "out")
